"""One LINK checkpoint, several box sources, no retraining: the plug-and-play drop in one run.

Evaluates CHECKPOINT (a checkpoint of the synthetic label space, e.g. ``demo/student.pt``
from ``linkhoi demo --quick --out demo``) on the synthetic world's test set with boxes from
the ground truth, each simulated detector of the world, and any ``--detector KIND:ARG`` given
(``hf:DIR``, ``folder:DIR``, ``torchvision:NAME`` with ``--detector-weights``). Prints, per
source, the HICO-DET-protocol mAP (full / rare / non-rare) and the detector's own pair
recall: the fraction of ground-truth human-object pairs whose human and object both have a
detection of the right class with IoU >= 0.5 (no model involved).

    python benchmarks/detector_swap.py CHECKPOINT [--world DIR] [--detector hf:DIR ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.ops import box_iou


def pair_recall(samples: list, source: object) -> float:
    """Fraction of ground-truth (human, object) pairs covered by the source's detections."""
    from linkhoi.data import load_image

    found = total = 0
    for s in samples:
        dets = source.detect(s.file_name, load_image(s.image_path))
        boxes = torch.as_tensor(s.boxes, dtype=torch.float32).reshape(-1, 4)
        iou = box_iou(boxes, dets.boxes.float()) if len(dets) else torch.zeros(len(boxes), 0)
        same = torch.as_tensor(s.labels)[:, None] == dets.labels[None, :]
        hit = ((iou >= 0.5) & same).any(dim=1)
        for p in s.pairs:
            if p.object is None:
                continue
            total += 1
            found += int(hit[p.human] and hit[p.object])
    return found / max(total, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a linkhoi checkpoint of the synthetic label space")
    parser.add_argument("--world", help="a world written by generate_world (default: a new one)")
    parser.add_argument("--num-test", type=int, default=40, help="test images of a new world")
    parser.add_argument("--detector", action="append", default=[], help="KIND:ARG, repeatable")
    parser.add_argument("--detector-weights", help="weights of a torchvision:NAME detector")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    from linkhoi.data import read_generic
    from linkhoi.data.synthetic import generate_world
    from linkhoi.demo_report import evaluate
    from linkhoi.detections import FileDetections, GroundTruthDetections
    from linkhoi.detections.registry import make_source
    from linkhoi.infer import Predictor

    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    space = predictor.label_space
    if space.name != "synthetic":
        print(f"error: the checkpoint is for {space.name!r}, not 'synthetic'", file=sys.stderr)
        return 2
    tmp = tempfile.TemporaryDirectory(prefix="detector_swap_")
    root = Path(args.world or tmp.name)
    world = generate_world(root, num_train=1, num_test=args.num_test, progress=False)
    samples = read_generic(world.test)
    sources: dict[str, object] = {"ground truth": GroundTruthDetections(samples)}
    sources |= {f"simulated {k}": FileDetections(p, space) for k, p in world.detections.items()}
    for spec in args.detector:
        sources[spec] = make_source(spec, space, weights=args.detector_weights, device=args.device)
    print(f"{len(samples)} test images of the synthetic world, checkpoint {args.checkpoint}")
    print(
        f"{'box source':<28} {'full':>6} {'rare':>6} {'non-rare':>8} {'pair recall':>11} {'s':>6}"
    )
    for name, source in sources.items():
        t = time.perf_counter()
        paths = [(s.image_path, s.file_name) for s in samples]
        triplets = list(predictor.predict_many(paths, source, batch_size=8))
        m = evaluate(samples, space, triplets)
        recall = pair_recall(samples, source)
        dt = time.perf_counter() - t
        print(
            f"{name[:28]:<28} {100 * m['full']:6.2f} {100 * m['rare']:6.2f} "
            f"{100 * m['non_rare']:8.2f} {100 * recall:10.1f}% {dt:6.1f}"
        )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
