"""maebench: reproducible benchmark and leaderboard for MAE-pretrained dense retrievers."""

__version__ = "0.1.0"
