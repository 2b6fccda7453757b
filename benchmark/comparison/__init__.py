"""Comparing stored results: paired tests per task, the across-task summary (compare), the
report they make and its text forms (report), its terminal tables (console), and who is ranked
on a declared benchmark (standings).
"""
