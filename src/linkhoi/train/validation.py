"""The per-epoch validation of a training run (HICO-DET protocol on ``data.val``).

It can be stopped between two images (``stop()`` is asked before each), so a SIGTERM during
a long validation is honoured at once: the epoch's checkpoint was written before it, and a
resumed run validates that epoch again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm import tqdm

from linkhoi.train import distributed


class ValidationStopped(Exception):
    """A stop was asked for during the validation."""


@torch.no_grad()
def validate(trainer: Any, stop: Callable[[], bool] | None = None) -> dict[str, Any] | None:
    """Evaluate ``trainer.model`` on ``data.val``: the summary (mAP per split, without the
    per-class APs) on rank 0, None on other ranks.

    Args:
        trainer: a `linkhoi.train.trainer.Trainer` (its model, data, label space, config).
        stop: asked before each image; True raises `ValidationStopped`. In a process group it
            must be a collective (every process asks it the same number of times), so it is
            asked only for the images every process has.
    """
    from linkhoi.eval.hico import SPLITS, HICOEvaluator
    from linkhoi.model.link import to_triplets

    model, data, dist = trainer.model, trainer.data, trainer.dist
    model.eval()
    results = []
    shared = len(trainer.val_samples) // dist.world_size  # images every process has
    items = tqdm(
        data.val_items(),
        total=data.num_val_items(),
        desc="eval",
        disable=not (trainer.cfg.runtime.progress and dist.is_main),
    )
    try:
        for i, (name, det, feats) in enumerate(items):
            if stop is not None and i < shared and stop():
                raise ValidationStopped
            with torch.autocast("cuda", enabled=trainer.amp):
                out = model(None, [det], features=feats)[0]
            results.append((name, to_triplets(out, trainer.label_space, model.config.top_k)))
    finally:
        items.close()
        model.train()
    gathered = distributed.gather_objects(results)
    if gathered is None:
        return None
    zero_shot = trainer.cfg.data.zero_shot
    split = zero_shot if zero_shot in SPLITS else "full"
    evaluator = HICOEvaluator(trainer.val_samples, trainer.label_space, split=split)
    for part in gathered:
        for name, triplets in part:
            evaluator.process(name, triplets)
    summary = evaluator.evaluate().summary
    return {k: v for k, v in summary.items() if k != "per_class_ap"}  # log.jsonl stays short
