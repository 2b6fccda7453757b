"""Measuring a run: canonical tie-breaking and ranx metrics (metrics), paired significance
tests and multiple-comparison correction (significance). Pure functions of runs, qrels and
scores: the catalog names its metrics from here, so this layer sits below it.
"""
