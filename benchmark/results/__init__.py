"""The results store: the schema of a stored result (schema), its identity (identity), whether
a stored result may stand in for a run (reuse), the only owner of the results/ tree and its file
formats (result_store, runfiles), published numbers (reported) and MTEB result files (mteb_files).
"""
