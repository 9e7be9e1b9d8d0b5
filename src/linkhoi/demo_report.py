"""Evaluation of ``linkhoi demo``: predictions per VLM, model and box source, the HICO-DET
protocol metrics with the zero-shot subsets, the chance level, the VLMs' own image-level
knowledge, the open-vocabulary verb, a per-class AP chart and drawn examples. Everything
reported is computed here, in the run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from linkhoi.io import atomic_path

SUBSETS = ("full", "rare", "non_rare", "seen", "unseen", "unseen_composition", "unseen_object",
           "unseen_verb")  # fmt: skip
SOURCES = ("gt", "good", "noisy")
STAGES = ("teacher", "student")


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
    """HICO-DET protocol (official rules) on the synthetic test set: ``SUBSETS`` as fractions
    (``full`` / ``rare`` / ``non_rare`` from the evaluator, the others the mean per-class AP over
    the label space's subset of that name) and ``per_class_ap`` (HOI id -> AP)."""
    from linkhoi.eval.hico import HICOEvaluator

    ev = HICOEvaluator(samples, label_space, split="full", source="test.json")
    for name, dets in triplets:
        ev.process(name, dets)
    summary = ev.evaluate().summary
    ap = np.array([summary["per_class_ap"][str(h.id)] for h in label_space.hois])
    res = {k: float(summary["map"][k]) for k in ("full", "rare", "non_rare")}
    unseen = label_space.subset_mask("unseen")
    res["seen"] = float(ap[~unseen].mean())
    for sub in SUBSETS[4:]:
        res[sub] = float(ap[label_space.subset_mask(sub)].mean())
    res["per_class_ap"] = summary["per_class_ap"]
    return res


def classes_without_test_pairs(samples: Sequence[Any], label_space: Any) -> list[str]:
    """The classes the test set holds no pair of ("verb object"): the HICO-DET rule counts each
    as AP 0 in every mean, for every model and for chance alike."""
    from linkhoi.eval.hico import HICOEvaluator

    ev = HICOEvaluator(samples, label_space, split="full", source="test.json")
    return [f"{label_space.hois[c].verb} {label_space.hois[c].object}"
            for c in ev.classes_without_gt()]  # fmt: skip


def strip(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics.json shape: the subset means only."""
    return {k: metrics[k] for k in SUBSETS}


def vlm_knowledge(vlms: dict[str, dict[str, Any]], num_images: int, seed: int) -> dict[str, Any]:
    """Each VLM's image-level mAP of the class prompts on ``num_images`` held-out caption-corpus
    scenes (the corpus's validation seeds, never HOI images)."""
    from linkhoi.synthetic.corpus import VAL_CODE, build_chunk
    from linkhoi.synthetic.vlm import image_map, load_vlm

    out, vals = {}, {}
    for name, vlm in vlms.items():
        model = load_vlm(vlm["weights"])
        size = int(model.visual.image_size[0])  # the scenes at each VLM's own input size
        if size not in vals:
            val = build_chunk(seed, VAL_CODE, 0, num_images, crops=False, size=size)
            vals[size] = val["images"], [[tuple(c) for c in cl] for cl in val["classes"]]
        out[name] = {"image_map": image_map(model, *vals[size])["map"]}
    return out


def evaluate_all(
    out: Path,
    world: Any,
    samples: Sequence[Any],
    space: Any,
    vlms: dict[str, dict[str, Any]],
    device: str | None,
    seed: int,
    progress: bool,
) -> tuple[dict[str, Any], dict[str, dict[str, float]], list]:
    """Every VLM x stage x box source; the chance level on the pretrained teacher's candidate
    pairs. Returns (metrics, per-class AP on gt boxes per model, examples to draw)."""
    from linkhoi.detections import FileDetections, GroundTruthDetections
    from linkhoi.model.checkpoint import load_model

    sources = {"gt": GroundTruthDetections(samples)}
    sources.update({k: FileDetections(p, space) for k, p in world.detections.items()})
    metrics: dict[str, Any] = {"chance": {}, "vlm": vlm_knowledge(vlms, 128, seed)}
    per_class: dict[str, dict[str, float]] = {}
    examples: list = []
    for name in vlms:
        metrics[name] = {}
        for stage in STAGES:
            model = load_model(out / f"{name}_{stage}.pt", device=device)  # proves the file loads
            metrics[name][stage] = {}
            for src in SOURCES:
                preds = predict(
                    model, samples, sources[src], space, f"{name} {stage}/{src}", progress
                )
                m = evaluate(samples, space, [(n, tr) for n, _, tr in preds])
                metrics[name][stage][src] = strip(m)
                if src == "gt":
                    per_class[f"{name} {stage}"] = m["per_class_ap"]
                    if name == "pretrained" and stage == "student":
                        examples = [(n, tr) for n, _, tr in preds[:4]]
                if name == "pretrained" and stage == "teacher":
                    chance = chance_triplets(preds, space, seed, model.config.top_k)
                    metrics["chance"][src] = strip(evaluate(samples, space, chance))
    return metrics, per_class, examples


def verb_ap(predictions: dict[str, list[dict]], truth: dict[str, list[tuple[list, list]]]) -> float:
    """11-point AP (the HICO-DET rule) of one verb over all images: ``predictions`` per image
    the triplets of that verb (any object), ``truth`` per image the (human box, object box)
    pairs. A prediction is a hit when both boxes overlap an unmatched true pair at IoU >= 0.5."""
    from torchvision.ops import box_iou

    from linkhoi.eval.ap import MATLAB_11_POINTS, ap_11_point, precision_recall, stable_descending

    npos = sum(len(v) for v in truth.values())
    rows = [(t["score"], name, t) for name, ts in predictions.items() for t in ts]
    order = stable_descending(np.array([r[0] for r in rows], dtype=float))
    used = {name: np.zeros(len(v), bool) for name, v in truth.items()}
    tp = np.zeros(len(rows), bool)
    for rank, i in enumerate(order):
        _, name, t = rows[i]
        pairs = truth.get(name, [])
        if not pairs or t.get("object_box") is None:
            continue
        h = box_iou(torch.tensor([t["human_box"]]), torch.tensor([p[0] for p in pairs]))[0]
        o = box_iou(torch.tensor([t["object_box"]]), torch.tensor([p[1] for p in pairs]))[0]
        ok = (torch.minimum(h, o) >= 0.5).numpy() & ~used[name]
        if ok.any():
            j = int(np.argmax(np.where(ok, torch.minimum(h, o).numpy(), -1)))
            used[name][j] = tp[rank] = True
    rec, prec = precision_recall(tp, npos)
    return ap_11_point(rec, prec, MATLAB_11_POINTS)


def open_vocabulary(
    out: Path, world: Any, samples: Sequence[Any], verb: str, device: str | None, progress: bool
) -> dict[str, Any]:
    """Each student, its classifier replaced by the text embedding of ``verb`` (a verb of no
    label space), on ground-truth boxes: AP against the world's own truth for that verb."""
    from linkhoi.data import load_image
    from linkhoi.detections import GroundTruthDetections
    from linkhoi.infer.predictor import Predictor

    pairs = json.loads(Path(world.open_vocabulary).read_text())["pairs"]
    by_name = {s.file_name: s for s in samples}
    truth = {}
    for name, hj in pairs.items():
        boxes = np.asarray(by_name[name].boxes, dtype=float).tolist()
        truth[name] = [(boxes[h], boxes[j]) for h, j in hj]
    gt = GroundTruthDetections(samples)
    result: dict[str, Any] = {"verb": verb}
    for vlm in ("pretrained", "random"):
        pred = Predictor.from_checkpoint(out / f"{vlm}_student.pt", device=device, verbs=[verb])
        found = {}
        for s in tqdm(samples, desc=f"{vlm} open vocabulary", disable=not progress, leave=False):
            image = load_image(s.image_path)
            found[s.file_name] = pred(image, detections=gt.detect(s.file_name, image))
        result[vlm] = verb_ap(found, truth)
    return result


def bar_chart(per_class: dict[str, dict[str, float]], label_space: Any, path: Path) -> None:
    """Per-class AP (gt boxes), one bar per model, classes in label-space order; rare classes
    are tagged (r), held-out (zero-shot) ones (u), as the legend says."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rare, unseen = label_space.subset_mask("rare"), label_space.subset_mask("unseen")
    names = [
        f"{h.verb} {h.object}" + (" (r)" if rare[i] else "") + (" (u)" if unseen[i] else "")
        for i, h in enumerate(label_space.hois)
    ]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(9, 0.4 * len(names)), 4.8))
    width = 0.8 / max(len(per_class), 1)
    for k, (model, aps) in enumerate(per_class.items()):
        offset = (k - (len(per_class) - 1) / 2) * width
        ax.bar(x + offset, [aps[str(h.id)] for h in label_space.hois], width, label=model)
    ax.set_xticks(x, names, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("AP (ground-truth boxes)")
    ax.set_ylim(0, 1)
    ax.set_title(
        "Synthetic world: per-class AP of the four models\n"
        "(r) rare: few training pairs; (u) unseen: held out of training (zero-shot)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


def draw_examples(world: Any, examples: list, folder: Path, min_score: float = 0.2) -> None:
    """The pretrained-VLM student's best interactions on a few test images (gt boxes)."""
    from linkhoi.infer.draw import draw_triplets

    folder.mkdir(exist_ok=True)
    for name, triplets in examples:
        shown = [t for t in triplets if t["score"] >= min_score]
        draw_triplets(world.images / name, shown, folder / name, max_triplets=5)
