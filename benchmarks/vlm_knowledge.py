"""What a synthetic-world VLM knows at image level, and what it would take to know more.

On held-out caption-corpus scenes (the corpus's validation seeds, never HOI images), for the
shipped pretrained tiny CLIP and the same network with random weights (or ``--weights`` files):

1. ``image_map``: the demo's measure (each class prompt ranks the whole images by cosine; mean
   AP of "this interaction happens in the image"), per class with ``--per-class``.
2. The same cosines centred per image (each image's mean over the prompts subtracted), which
   removes what an image shares with every prompt. Not the demo's measure: a reading aid.
3. Object knowledge: "a photo of a {object}" ranks images by whether that object is drawn
   (cosines centred per image as in 2), on the whole images and on crops around one person
   (where held objects are 2-3x larger).
4. References that need no VLM: each class's positive rate (what a constant score gets) and an
   oracle that knows how many of the prompt's object are drawn but nothing of verbs.

    .venv/bin/python benchmarks/vlm_knowledge.py [--scenes 512] [--per-class] [--weights A B]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def scenes(n: int, seed: int) -> dict:
    """Rendered scenes (full size), one person-crop box each, image-level classes, object
    counts and the objects inside the crop."""
    from linkhoi.data.synthetic_scene import make_scene, render
    from linkhoi.synthetic.captions import image_classes
    from linkhoi.synthetic.corpus import SCENE, VAL_CODE, crop_box

    out: dict[str, list] = {"img": [], "box": [], "classes": [], "counts": [], "in_crop": []}
    for k in range(n):
        rng = np.random.default_rng([seed, VAL_CODE, k])
        scene = make_scene(rng, f"corpus_{k:06d}.png", SCENE)
        out["img"].append(render(scene, rng))
        box = crop_box(scene, int(rng.integers(len(scene.people))), rng)
        centres = (scene.boxes[:, :2] + scene.boxes[:, 2:]) / 2
        inside = (centres >= box[:2]).all(1) & (centres <= box[2:]).all(1)
        out["box"].append(box)
        out["classes"].append(image_classes(scene))
        out["counts"].append({c: scene.labels.count(c) for c in set(scene.labels)})
        out["in_crop"].append({c for c, i in zip(scene.labels, inside, strict=True) if i})
    return out


def views(data: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(whole images, person crops), each (N, size, size, 3) uint8, as the corpus squashes them."""
    from linkhoi.synthetic.corpus import squash

    whole = np.stack([squash(img, size=size) for img in data["img"]])
    crop = np.stack(
        [squash(img, box, size) for img, box in zip(data["img"], data["box"], strict=True)]
    )
    return whole, crop


def mean_ap(scores: np.ndarray, positives: np.ndarray) -> tuple[float, list[float]]:
    """scores, positives (N, K) -> (mean AP over the K columns with a positive, per column)."""
    from linkhoi.synthetic.vlm import average_precision

    aps = [average_precision(scores[:, k], positives[:, k]) for k in range(scores.shape[1])]
    return float(np.nanmean(aps)), aps


@torch.no_grad()
def cosines(model: torch.nn.Module, images: np.ndarray, prompts: list[str]) -> np.ndarray:
    """(N, R, R, 3) uint8 images x prompts -> (N, K) cosine similarities."""
    from linkhoi.synthetic.vlm import normalise, tokenizer

    model.eval()
    text = model.encode_text(tokenizer()(prompts), normalize=True)
    feats = [model.encode_image(normalise(images[i : i + 128]), normalize=True)
             for i in range(0, len(images), 128)]  # fmt: skip
    return (torch.cat(feats) @ text.T).numpy()


def centred(sims: np.ndarray) -> np.ndarray:
    """(N, K) cosines minus each image's mean over the K prompts."""
    return sims - sims.mean(1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=512, help="held-out scenes (default 512)")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed (the shipped VLM's is 0)")
    ap.add_argument("--weights", nargs="*", default=None,
                    help="tiny-CLIP safetensors files to measure (default: shipped and random)")  # fmt: skip
    ap.add_argument("--per-class", action="store_true", help="print every class and object")
    args = ap.parse_args()

    from linkhoi.synthetic.vlm import build_model, class_prompts, load_vlm, shipped_paths

    data = scenes(args.scenes, args.seed)
    sized: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    classes, prompts = class_prompts()
    objects = sorted({c for counts in data["counts"] for c in counts} - {"person"})
    object_prompts = [f"a photo of a {o}" for o in objects]
    pos = np.array([[c in cl for c in classes] for cl in data["classes"]])
    has = np.array([[counts.get(o, 0) > 0 for o in objects] for counts in data["counts"]])
    has_crop = np.array([[o in inside for o in objects] for inside in data["in_crop"]])

    shipped = load_vlm(shipped_paths()[0])
    random = build_model(seed=0, image_size=int(shipped.visual.image_size[0]))
    models = {"pretrained": shipped, "random": random}
    if args.weights:
        # Named by folder and file: runs often share a file name (model.safetensors).
        models = {f"{Path(w).parent.name}/{Path(w).stem}"[-22:]: load_vlm(w) for w in args.weights}
    rows: dict[str, dict[str, float]] = {}
    per_class: dict[str, list[float]] = {}
    for name, model in models.items():
        size = int(model.visual.image_size[0])  # each VLM sees the scenes at its input size
        if size not in sized:
            sized[size] = views(data, size)
        whole, crop = sized[size]
        sims = cosines(model, whole, prompts)
        rows[name] = {"image_map": mean_ap(sims, pos)[0]}
        rows[name]["centred"] = mean_ap(centred(sims), pos)[0]
        obj = centred(cosines(model, whole, object_prompts))
        rows[name]["objects"], per_class[f"{name} objects"] = mean_ap(obj, has)
        obj = centred(cosines(model, crop, object_prompts))
        rows[name]["objects_crop"], per_class[f"{name} crop objects"] = mean_ap(obj, has_crop)
        per_class[f"{name} classes"] = mean_ap(sims, pos)[1]
    # References without a VLM. Ties are broken by a fixed random order (rank by count first).
    jitter = np.random.default_rng(0).random(pos.shape) * 1e-3
    count = np.array([[cnt.get(o, 0) for _, o in classes] for cnt in data["counts"]], float)
    rows["object-count oracle"] = {"image_map": mean_ap(count + jitter, pos)[0]}
    rows["constant score"] = {"image_map": mean_ap(jitter, pos)[0]}
    per_class["object-count oracle classes"] = mean_ap(count + jitter, pos)[1]
    per_class["positive rate classes"] = list(pos.mean(0))
    per_class["positive rate objects"] = list(has.mean(0))
    per_class["positive rate crop objects"] = list(has_crop.mean(0))

    print(f"{args.scenes} held-out scenes (corpus seed {args.seed}); AP in %")
    cols = ("image_map", "centred", "objects", "objects_crop")
    print(f"{'':22s}" + "".join(f"{c:>14s}" for c in cols))
    for name, r in rows.items():
        cells = "".join(f"{100 * r[c]:14.1f}" if c in r else f"{'-':>14s}" for c in cols)
        print(f"{name:22s}{cells}")
    if args.per_class:
        for what, labels in (("classes", [f"{v} {o}" for v, o in classes]),
                             ("objects", objects), ("crop objects", objects)):  # fmt: skip
            keys = [k for k in per_class if k.endswith(" " + what) and
                    not (what == "objects" and k.endswith("crop objects"))]  # fmt: skip
            print(f"\n{what}: " + " | ".join(k.removesuffix(" " + what) for k in keys))
            for i, label in enumerate(labels):
                print(f"  {label:18s}" + "".join(f"{100 * per_class[k][i]:8.1f}" for k in keys))


if __name__ == "__main__":
    main()
