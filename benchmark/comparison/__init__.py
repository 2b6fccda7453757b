"""Comparing stored results: paired tests per task, the across-task summary (compare), and who
is ranked on a declared benchmark (standings).
"""
