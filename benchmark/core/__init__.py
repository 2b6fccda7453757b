"""Foundation: errors, where things live (paths), safe file reading and validation, devices,
timings, progress display and provenance. Imports nothing else from maebench.
"""
