"""Evaluation and report writing of ``linkhoi demo``: predictions per box source, the
HICO-DET-protocol metrics, the chance level, a per-class AP chart, drawn predictions and
report.md. Everything reported is computed here, in the run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from linkhoi.io import atomic_path, atomic_write_text

METRIC_KEYS = ("full", "rare", "non_rare", "seen", "unseen")


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    samples: Sequence[Any],
    source: Any,
    label_space: Any,
    desc: str = "predict",
    progress: bool = True,
) -> list[tuple[str, dict[str, torch.Tensor], list[dict]]]:
    """Run ``model`` on every sample's image with boxes from ``source``.

    Returns per image ``(file_name, output, triplets)``: ``output`` keeps the model's
    ``pairs`` (P, 2), ``boxes`` (N, 4), ``object_labels`` (N,), ``valid`` (P, K) and ``scores``
    (P, K) on the CPU; ``triplets`` is ``to_triplets(output)`` (top-K of the model config).
    """
    from linkhoi.data import load_image
    from linkhoi.model.link import to_triplets

    device = next(model.parameters()).device
    model.eval()
    out = []
    for s in tqdm(samples, desc=desc, unit="img", disable=not progress, leave=False):
        image = load_image(s.image_path)
        det = model.propose(source.detect(s.file_name, image))
        det.boxes, det.labels, det.scores = (
            t.to(device) for t in (det.boxes, det.labels, det.scores)
        )
        res = model(model.preprocess(image).unsqueeze(0).to(device), [det])[0]
        keep = {
            k: res[k].detach().cpu() for k in ("pairs", "boxes", "object_labels", "valid", "scores")
        }
        out.append((s.file_name, keep, to_triplets(res, label_space, top_k=model.config.top_k)))
    return out


def chance_triplets(
    outputs: Sequence[tuple[str, dict[str, torch.Tensor], list[dict]]],
    label_space: Any,
    seed: int,
    top_k: int = 100,
) -> list[tuple[str, list[dict]]]:
    """The same candidate pairs and valid classes as ``outputs``, scored uniformly at random
    (seeded): the chance level of the benchmark."""
    from linkhoi.model.link import to_triplets

    gen = torch.Generator().manual_seed(seed)
    result = []
    for name, out, _ in outputs:
        scores = torch.rand(out["valid"].shape, generator=gen) * out["valid"]
        result.append((name, to_triplets({**out, "scores": scores}, label_space, top_k=top_k)))
    return result


def evaluate(
    samples: Sequence[Any], label_space: Any, triplets: Sequence[tuple[str, list[dict]]]
) -> dict[str, Any]:
    """HICO-DET protocol (official rules) on the synthetic test set.

    Returns ``{"full", "rare", "non_rare", "seen", "unseen"}`` (fractions; seen / unseen are the
    mean per-class AP over the label space's ``unseen`` subset and its complement) and
    ``per_class_ap`` (HOI id -> AP).
    """
    from linkhoi.eval.hico import HICOEvaluator

    ev = HICOEvaluator(samples, label_space, split="full", source="test.json")
    for name, dets in triplets:
        ev.process(name, dets)
    summary = ev.evaluate().summary
    ap = np.array([summary["per_class_ap"][str(h.id)] for h in label_space.hois])
    unseen = label_space.subset_mask("unseen")
    res = {k: float(summary["map"][k]) for k in ("full", "rare", "non_rare")}
    res["seen"] = float(ap[~unseen].mean()) if (~unseen).any() else 0.0
    res["unseen"] = float(ap[unseen].mean()) if unseen.any() else 0.0
    res["per_class_ap"] = summary["per_class_ap"]
    return res


def strip(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics.json shape: the five means only."""
    return {k: metrics[k] for k in METRIC_KEYS}


def bar_chart(per_class: dict[str, dict[str, float]], label_space: Any, path: Path) -> None:
    """Per-class AP (gt boxes), one bar per model, classes in label-space order; rare classes
    are marked with r, unseen ones with u."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rare, unseen = label_space.subset_mask("rare"), label_space.subset_mask("unseen")
    names = [
        f"{h.verb} {h.object}" + (" (r)" if rare[i] else "") + (" (u)" if unseen[i] else "")
        for i, h in enumerate(label_space.hois)
    ]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(names)), 4.5))
    width = 0.8 / max(len(per_class), 1)
    for k, (model, aps) in enumerate(per_class.items()):
        ax.bar(
            x + (k - (len(per_class) - 1) / 2) * width,
            [aps[str(h.id)] for h in label_space.hois],
            width,
            label=model,
        )
    ax.set_xticks(x, names, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("AP (ground-truth boxes)")
    ax.set_ylim(0, 1)
    ax.set_title(
        "Synthetic world: per-class AP, teacher vs student\n"
        "(r) rare: seldom in the training images; (u) unseen: held out of training (zero-shot)",
        fontsize=9,
    )
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


def draw_predictions(
    image_path: Path, triplets: list[dict], path: Path, max_items: int = 5, min_score: float = 0.2
) -> None:
    """Draw the best interactions (not no_interaction) with `linkhoi.infer.draw_triplets`:
    boxes, a line from human to object, the verb, object and score."""
    from linkhoi.infer.draw import draw_triplets

    shown = [t for t in triplets if t["score"] >= min_score]
    draw_triplets(image_path, shown, path, max_triplets=max_items)


def table(metrics: dict[str, Any]) -> str:
    """A compact fixed-width table of mAP (percent) per model and box source."""
    lines = [f"{'model':8s} {'boxes':6s} " + " ".join(f"{k:>8s}" for k in METRIC_KEYS)]
    for model, by_src in metrics.items():
        for src, m in by_src.items():
            lines.append(
                f"{model:8s} {src:6s} " + " ".join(f"{100 * m[k]:8.1f}" for k in METRIC_KEYS)
            )
    return "\n".join(lines)


def write_report(out: Path, metrics: dict[str, Any], info: dict[str, Any]) -> None:
    """report.md: what was run, the numbers, what they mean (atomic write)."""
    tbl = table(metrics)
    text = f"""# linkhoi demo: LINK on the synthetic HOI world

**A synthetic sanity benchmark, not a HICO-DET result.** The numbers below show that the
whole pipeline (data -> detections -> LINK teacher -> distilled student -> HICO-DET evaluator)
runs and learns on this machine. They say nothing about accuracy on real images: the CLIP
backbone here is the `tiny` architecture with *random* weights (no pretrained weights can be
downloaded), so the model can only learn from box geometry and raw pixels.

## What was run

- World: {info["num_train"]} training images ({info["sparsity"]:.0%} of the positive human-object
  pairs left unannotated), {info["num_test"]} test images (complete labels), seed {info["seed"]};
  held-out compositions (absent from training, the `unseen` subset): {info["holdout"]}.
- Backbone: tiny CLIP, random weights saved to `{info["clip_weights"]}` (sha256 {info["clip_sha"][:12]}...).
- Teacher: {info["teacher_epochs"]} epochs on ground-truth boxes (stage 1, focal loss only).
- Student: {info["student_epochs"]} epochs, a narrower head distilled from the frozen teacher
  (stage 2: logit, query and map distillation).
- Time per stage (s): {json.dumps(info["times"])}; total {info["total_time"]:.0f} s on {info["device"]}.

## Results: mAP (%) with the HICO-DET protocol

```
{tbl}
```

- `full` / `rare` / `non_rare`: mean AP over all {info["num_classes"]} classes / the rare-by-design
  classes / the rest. `seen` / `unseen`: over the classes seen in training / the held-out ones.
- Box sources: `gt` = ground-truth boxes (an oracle detector), `good` / `noisy` = the simulated
  detectors of `data/detections_*.json` (jittered boxes, misses, false positives).
- `chance`: the same candidate pairs and valid classes scored uniformly at random (seed
  {info["seed"]}). AP is the official 11-point VOC AP, pairs match at IoU >= 0.5 on both boxes.

## Files

- `metrics.json`: the numbers above (fractions); `per_class_ap.png`: per-class AP on
  ground-truth boxes, teacher vs student; `predictions/`: the teacher's best interactions on a
  few test images (gt boxes).
- `teacher.pt`, `student.pt`: linkhoi checkpoints (the tiny backbone is included).
- `data/`: the test images, `test.json` and the two detection files, to try next, e.g.
  `linkhoi detect` with `student.pt` on `data/images`.
"""
    atomic_write_text(out / "report.md", text)
