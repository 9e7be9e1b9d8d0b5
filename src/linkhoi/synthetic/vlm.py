"""The synthetic world's VLMs: the shipped pretrained tiny CLIP, a random one of the same shape,
and the measure of what a VLM knows at image level (``image_map``).

``image_map``: for every image of a held-out set and every interaction class of the synthetic
label space, the cosine between the image embedding and the classifier's prompt for that class
("a photo of a person riding a horse") ranks the images; the mean over classes of the average
precision of "this class happens somewhere in the image" is the VLM's image-level mAP.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

VLM_NAME = "synthetic-clip-v1"
# The tiny CLIP, as an open_clip model config (the same file format as open_clip's own
# model_configs/*.json): 128 px images in 16 px patches (an 8 x 8 feature map), average-pooled
# patch tokens, a 48-token text context (long enough for every corpus caption).
VLM_CONFIG: dict[str, Any] = {
    "embed_dim": 128,
    "quick_gelu": False,
    "vision_cfg": {
        "image_size": 128,
        "patch_size": 16,
        "width": 128,
        "layers": 4,
        "head_width": 32,
        "pool_type": "avg",
    },
    "text_cfg": {"context_length": 48, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3},
}


def vlm_config(image_size: int = 128) -> dict[str, Any]:
    """The tiny CLIP's open_clip config at an input size (a multiple of the 16 px patch)."""
    cfg = json.loads(json.dumps(VLM_CONFIG))
    cfg["vision_cfg"]["image_size"] = int(image_size)
    return cfg


def build_model(seed: int = 0, image_size: int = 128) -> torch.nn.Module:
    """The tiny CLIP with seeded random weights (open_clip's own model class)."""
    from open_clip.model import CLIP

    cfg = {k: v for k, v in vlm_config(image_size).items() if k != "quick_gelu"}
    torch.manual_seed(seed)
    return CLIP(**cfg, quick_gelu=VLM_CONFIG["quick_gelu"], output_dict=True)


def tokenizer():
    """open_clip's CLIP BPE tokenizer at the tiny CLIP's context length."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=VLM_CONFIG["text_cfg"]["context_length"])


def normalise(images: np.ndarray) -> torch.Tensor:
    """(B, R, R, 3) uint8 -> (B, 3, R, R) float with OpenAI CLIP's mean / std."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def class_prompts() -> tuple[list[tuple[str, str]], list[str]]:
    """The synthetic label space's interaction classes and their classifier prompts (the very
    strings ``linkhoi.model.text.build_prompts`` gives the classifier)."""
    from linkhoi import labels
    from linkhoi.model.text import build_prompts

    space = labels.load("synthetic")
    pairs = [
        ((h.verb, h.object), prompt)
        for h, prompt in zip(space.hois, build_prompts(space), strict=True)
        if h.verb != "no_interaction"
    ]
    return [c for c, _ in pairs], [p for _, p in pairs]


def load_vlm(weights: str | Path) -> torch.nn.Module:
    """The tiny CLIP with the weights of a safetensors file (fp16 files are cast back); its
    input size follows from the file's position embedding (one row per patch, plus one)."""
    from safetensors.torch import load_file

    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    patch = VLM_CONFIG["vision_cfg"]["patch_size"]
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    model = build_model(image_size=grid * patch)
    model.load_state_dict(state)
    return model


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Non-interpolated AP: the mean of the precision at the rank of each positive
    (ties broken by order). NaN when there is no positive."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order].astype(float)
    if hits.sum() == 0:
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


@torch.no_grad()
def image_map(
    model: torch.nn.Module, images: np.ndarray, labels: list[list[tuple[str, str]]]
) -> dict[str, Any]:
    """Image-level mAP of the class prompts (module docstring). ``images`` (N, R, R, 3) uint8,
    ``labels`` the true (verb, object) classes of each image. Returns ``{"map", "per_class"}``
    (classes without a positive image are left out of the mean)."""
    model.eval()
    classes, prompts = class_prompts()
    text = model.encode_text(tokenizer()(prompts), normalize=True)
    feats = torch.cat(
        [
            model.encode_image(normalise(images[i : i + 128]), normalize=True)
            for i in range(0, len(images), 128)
        ]
    )
    sims = (feats @ text.T).numpy()
    per_class = {}
    for k, c in enumerate(classes):
        pos = np.array([c in set(lab) for lab in labels])
        per_class[f"{c[0]} {c[1]}"] = average_precision(sims[:, k], pos)
    valid = [v for v in per_class.values() if not np.isnan(v)]
    return {"map": float(np.mean(valid)), "per_class": per_class}


def shipped_paths() -> tuple[Path, Path, Path]:
    """(weights, open_clip config, provenance record) of the VLM shipped in the package."""
    root = Path(str(resources.files("linkhoi.synthetic") / "vlm"))
    return (
        root / f"{VLM_NAME}.safetensors",
        root / f"{VLM_NAME}.json",
        root / f"{VLM_NAME}.provenance.json",
    )


def load_provenance() -> dict[str, Any]:
    return json.loads(shipped_paths()[2].read_text("utf-8"))
