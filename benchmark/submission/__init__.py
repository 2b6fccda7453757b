"""Bundles in and out: a model's card and results as a bundle (bundle), and a submitted bundle
read as untrusted input (reading), each result checked and its numbers recomputed (checks), the
whole added to the results store or refused (submit), and what a reviewer reads of it (review).
"""
