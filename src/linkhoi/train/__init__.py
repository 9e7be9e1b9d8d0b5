"""Training: ground-truth matching and focal loss, progressive distillation, the trainer.

Modules are imported on use (``linkhoi.train.trainer`` builds models; ``losses`` does not).
"""

__all__ = [
    "checkpointing",
    "cli",
    "config",
    "distill",
    "distributed",
    "feature_cache",
    "losses",
    "trainer",
]
