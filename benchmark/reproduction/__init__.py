"""Reported-vs-reproduced checks: re-run a paper's table and say OK / OKish / FAIL / NOT RUN.
"""
