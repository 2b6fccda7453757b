"""What can be run: the task catalog, the model registry (one card per retriever), declared
benchmarks, where a card's weights are and what a checkpoint's own configuration says, and
cards drafted for checkpoints that have none.
"""
