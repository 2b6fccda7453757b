"""The embedding store (keyed shards + manifest), below the retrievers whose engines fill it
(benchmark.retrievers: local encoding in dense, Ray in ray_engine).

Encoding, whichever engine, writes shards into the store; search reads them back. Nothing
downstream knows how a vector was produced beyond its store key (benchmark.embeddings.key).
"""
