"""The embedding store (keyed shards + manifest) and the engines that fill it.

Encoding, whichever engine, writes shards into the store; search reads them back. Nothing
downstream knows how a vector was produced beyond its store key (benchmark.embeddings.key).
"""
