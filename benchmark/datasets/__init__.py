"""Loading a task's data: BEIR folders (and their download), the corpus streamed shard by
shard, TREC topics and qrels, the MTEB hub fallback. Every file is checked and fingerprinted.
"""
