"""The results store: the schema of a stored result (schema), its identity (identity), the
only owner of the results/ tree and its file formats (store, runfiles), published numbers
(reported) and MTEB result files (mteb_files).
"""
