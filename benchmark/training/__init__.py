"""Training that produces new cards: `maebench finetune`, `maebench pretrain` and
`maebench backbone` (studies of objectives, built on them, are benchmark.studies).

Weights go under the user's maebench home (benchmark.core.paths.checkpoints_dir), never into git;
the resulting card refers to them as `home:checkpoints/<name>`.
"""
