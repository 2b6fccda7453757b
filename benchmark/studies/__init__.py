"""Controlled comparisons of pre-training objectives (`maebench study`): the spec, its runner,
the zero-shot scores and learning-rate pilot, collapse diagnostics, contrasts that respect
training variance, and the report.
"""
