"""Training that produces new cards: `maebench finetune` and `maebench pretrain` (+ studies).

Weights go under the user's maebench home (benchmark.core.paths.checkpoints_dir), never into git;
the resulting card refers to them as `home:checkpoints/<name>`.
"""
