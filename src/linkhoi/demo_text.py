"""The printed table and report.md of ``linkhoi demo`` (numbers from ``demo_report``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from linkhoi.demo_report import SOURCES, STAGES, SUBSETS
from linkhoi.io import atomic_write_text

SHORT = {"non_rare": "non-rare", "unseen_composition": "u-comp", "unseen_object": "u-obj",
         "unseen_verb": "u-verb"}  # fmt: skip


def table(metrics: dict[str, Any]) -> str:
    """A fixed-width table of mAP (percent): chance, then each VLM x stage x box source, then the
    VLMs' own image-level mAP and the open-vocabulary verb's AP."""
    head = f"{'vlm':10s} {'model':8s} {'boxes':5s} " + " ".join(
        f"{SHORT.get(k, k):>8s}" for k in SUBSETS
    )
    lines = [head]

    def row(vlm: str, model: str, src: str, m: dict[str, float]) -> None:
        cells = " ".join(f"{100 * m[k]:8.1f}" for k in SUBSETS)
        lines.append(f"{vlm:10s} {model:8s} {src:5s} {cells}")

    for src in SOURCES:
        row("-", "chance", src, metrics["chance"][src])
    for vlm in ("pretrained", "random"):
        for stage in STAGES:
            for src in SOURCES:
                row(vlm, stage, src, metrics[vlm][stage][src])
    v, ov = metrics["vlm"], metrics["open_vocabulary"]
    lines.append(
        f"VLM image-level mAP of the class prompts: pretrained {100 * v['pretrained']['image_map']:.1f}, "
        f"random {100 * v['random']['image_map']:.1f}"
    )
    lines.append(
        f"open vocabulary, '{ov['verb']}' (no label space has it; students, gt boxes): AP "
        f"pretrained {100 * ov['pretrained']:.1f}, random {100 * ov['random']:.1f}"
    )
    return "\n".join(lines)


def write_report(out: Path, metrics: dict[str, Any], info: dict[str, Any]) -> None:
    """report.md: what was run, the numbers, what they mean (atomic write)."""
    vl = info["vlms"]
    text = f"""# linkhoi demo: LINK on the synthetic HOI world, with a pretrained and a random VLM

**A synthetic sanity benchmark, not a HICO-DET result.** It shows what LINK is for: turning a
vision-language model's image-level knowledge into instance-level HOI knowledge. The same
pipeline runs twice on the same world with the same seeds: once on a tiny CLIP pretrained on the
world's own caption corpus (it has read "someone rides a bicycle", "a person pointing at a kite",
never an HOI box), once on the same network with random weights.

## What was run

- World: {info["num_train"]} training images ({info["sparsity"]:.0%} of the positive human-object
  pairs left unannotated), {info["num_test"]} test images (complete labels), seed {info["seed"]}.
  Held out of training (zero-shot, the `unseen` subsets): {info["holdout"]}; the kite never
  appears in a training image (unseen object), nor does anyone carry anything (unseen verb).
- VLMs: pretrained `{vl["pretrained"]["weights"]}` (sha256 {vl["pretrained"]["sha256"][:12]}...),
  random `{vl["random"]["weights"]}` (sha256 {vl["random"]["sha256"][:12]}...).
- Per VLM: a teacher, {info["teacher_epochs"]} epochs on ground truth only; a student,
  {info["student_epochs"]} epochs from scratch on ground truth plus the teacher's dense
  supervision on every candidate pair (logit, query and map distillation).
- Time per stage (s): {json.dumps(info["times"])}; total {info["total_time"]:.0f} s on {info["device"]}.

## Results: mAP (%) with the HICO-DET protocol

```
{table(metrics)}
```

- `full` / `rare` / `non-rare`: all {info["num_classes"]} classes / the seen classes with fewer
  than 10 training pairs / the rest. `seen` / `unseen`: classes in / held out of training;
  `u-comp`, `u-obj`, `u-verb`: the unseen compositions, the unseen object (kite), the unseen
  verb (carry). An unseen class is scored only through its prompt's text embedding.
- Classes without a test pair: {", ".join(info.get("no_test_pairs") or []) or "none"}. The
  HICO-DET rule counts each as AP 0 in every mean (and for chance too), so with k of the
  {info["num_classes"]} classes missing, `full` cannot exceed (1 - k / {info["num_classes"]}).
- Box sources: `gt` = ground-truth boxes, `good` / `noisy` = the simulated detectors of
  `data/detections_*.json` (jittered boxes, misses, false positives).
- `chance`: the pretrained teacher's candidate pairs and valid classes scored uniformly at
  random (seed {info["seed"]}). AP is the official 11-point VOC AP; a pair matches at IoU >= 0.5 on
  both boxes.
- VLM image-level mAP: how well each VLM's image embedding ranks held-out caption-corpus images
  by the class prompts ("a photo of a person riding a horse"), before any HOI training.
- Open vocabulary: each student's classifier replaced by the text embedding of
  "{info["open_verb"]}", scored against the world's own truth for it (`data/test_open_vocabulary.json`).

## Files

- `metrics.json`: the numbers above (fractions); `per_class_ap.png`: per-class AP on
  ground-truth boxes, all four models; `predictions/`: the pretrained-VLM student's best
  interactions on a few test images (gt boxes).
- `{{pretrained,random}}_{{teacher,student}}.pt`: linkhoi checkpoints (the VLM is included).
- `data/`: the test images, `test.json`, the detection files and the open-vocabulary truth, e.g.
  `linkhoi detect pretrained_student.pt data/images --verbs "{info["open_verb"]}"`.
"""
    atomic_write_text(out / "report.md", text)
