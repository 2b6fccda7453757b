"""Bundles in and out: a model's card and results as a bundle (bundle), and a submitted bundle
validated, recomputed and added to the results store (submit).
"""
