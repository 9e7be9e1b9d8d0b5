"""The frozen CLIP image backbone (method.md §1).

``load_clip`` builds an open_clip ``CLIP`` model for a named configuration and fills it with
weights from a local file (any format :mod:`linkhoi.model.clip_loading` recognises) or with a
seeded random initialisation. ``ClipBackbone`` wraps it frozen and returns the feature map F
(last-layer patch tokens after ``ln_post`` and ``proj``) plus the projected global embedding.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
import torchvision.transforms.functional as TF
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import resize_pos_embed
from PIL import Image
from torch import nn

from linkhoi.model.clip_loading import (
    ClipLoadError,
    file_sha256,
    hf_weights_file,
    read_hf_config,
    read_state_dict,
    state_dict_sha256,
)

__all__ = ["BACKBONES", "BackboneSpec", "ClipBackbone", "ClipLoadError", "load_clip"]

_TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


@dataclass(frozen=True)
class BackboneSpec:
    """A named CLIP architecture: an open_clip config plus the facts the head needs."""

    name: str
    open_clip_name: str  # a built-in open_clip config, or the name ``config`` is registered as
    image_size: int  # native input resolution R
    embed_dim: int  # C, the joint embedding width (channels of F)
    patch_size: int
    quick_gelu: bool  # OpenAI's checkpoints were trained with QuickGELU
    config: dict[str, Any] | None = field(default=None, compare=False)

    def model_config(self) -> dict[str, Any]:
        """The full open_clip model config dict (a copy)."""
        cfg = (
            deepcopy(self.config)
            if self.config
            else open_clip.get_model_config(self.open_clip_name)
        )
        cfg["quick_gelu"] = self.quick_gelu
        return cfg


BACKBONES: dict[str, BackboneSpec] = {
    "vit-b16": BackboneSpec("vit-b16", "ViT-B-16", 224, 512, 16, quick_gelu=True),
    "vit-l14-336": BackboneSpec("vit-l14-336", "ViT-L-14-336", 336, 768, 14, quick_gelu=True),
    "tiny": BackboneSpec("tiny", "linkhoi-tiny", 64, 64, 16, quick_gelu=True, config=_TINY_CONFIG),
}


def _default_device() -> torch.device:
    from linkhoi.devices import resolve_device

    return resolve_device(None)


@contextmanager
def _quiet_open_clip():
    # create_model logs "initialized randomly" at WARNING level; the weights come afterwards.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ClipLoadError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def _build(spec: BackboneSpec, image_size: int) -> nn.Module:
    if spec.config is not None:
        # Register the packaged config under its own name so create_model can find it.
        open_clip.factory._MODEL_CONFIGS[spec.open_clip_name] = deepcopy(spec.config)
    with _quiet_open_clip():
        return open_clip.create_model(
            spec.open_clip_name,
            pretrained=None,
            force_quick_gelu=spec.quick_gelu,
            force_image_size=image_size,
        )


def _flat(cfg: dict[str, Any]) -> dict[str, Any]:
    """Architecture fields of an open_clip config with open_clip's defaults filled in."""
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    return {
        "embed_dim": cfg["embed_dim"],
        "quick_gelu": bool(cfg.get("quick_gelu", False)),
        "vision.layers": v["layers"],
        "vision.width": v["width"],
        "vision.head_width": v.get("head_width", 64),
        "vision.mlp_ratio": float(v.get("mlp_ratio", 4.0)),
        "vision.patch_size": v["patch_size"],
        "text.width": t["width"],
        "text.heads": t.get("heads", 8),
        "text.layers": t["layers"],
        "text.mlp_ratio": float(t.get("mlp_ratio", 4.0)),
        "text.context_length": t.get("context_length", 77),
        "text.vocab_size": t.get("vocab_size", 49408),
    }


def _check_hf_config(spec: BackboneSpec, directory: Path) -> None:
    want, got = _flat(spec.model_config()), _flat(read_hf_config(directory))
    for key, value in want.items():
        if got[key] != value:
            raise ClipLoadError(
                f"{directory / 'config.json'}: field {key} is {got[key]!r} but backbone "
                f"{spec.name!r} needs {value!r}"
            )


def load_clip(
    name: str,
    weights: str | Path | None,
    image_size: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the open_clip CLIP model ``name`` (a key of :data:`BACKBONES`) with local weights.

    ``weights=None`` gives a seeded random initialisation (identical across calls; the global
    RNG is left untouched) and ``sha256`` is then the hash of the state dict's bytes; otherwise
    ``sha256`` is the weights file's. An ``image_size`` other than the native one resizes
    the position embedding at load (open_clip's ``resize_pos_embed``).

    Returns ``(model, info)`` with ``info = {name, sha256, image_size, mean, std, embed_dim,
    patch_size, format, weights}``; the model is in eval mode on ``device``.
    """
    spec = _spec(name)
    size = int(image_size or spec.image_size)
    if size % spec.patch_size:
        raise ClipLoadError(
            f"image_size {size} is not a multiple of the patch size {spec.patch_size}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _build(spec, size)
    if weights is None:
        fmt, sha = "random", state_dict_sha256(model.state_dict())
    else:
        path = Path(weights)
        state, fmt = read_state_dict(path)
        if fmt == "hf":
            _check_hf_config(spec, path)
            sha = file_sha256(hf_weights_file(path))
        else:
            sha = file_sha256(path)
        _load_into(model, state, path, spec)
    model = model.to(device or _default_device()).eval()
    info = {
        "name": spec.name,
        "sha256": sha,
        "image_size": size,
        "mean": tuple(OPENAI_DATASET_MEAN),
        "std": tuple(OPENAI_DATASET_STD),
        "embed_dim": spec.embed_dim,
        "patch_size": spec.patch_size,
        "format": fmt,
        "weights": None if weights is None else str(weights),
    }
    return model, info


def _load_into(model: nn.Module, state: dict, path: Path, spec: BackboneSpec) -> None:
    """Strictly load ``state`` into ``model``, resizing the position grid if needed."""
    # OpenAI ships fp16; interpolate and load in fp32 (CPU bicubic has no fp16 kernel).
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    resize_pos_embed(state, model)  # no-op at the native resolution
    if "logit_scale" in state:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"missing field {missing[0]!r}" if missing else f"unexpected field {unexpected[0]!r}"
        raise ClipLoadError(
            f"{path}: does not match backbone {spec.name!r} ({what}; "
            f"{len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise ClipLoadError(
                f"{path}: field {key!r} has shape {tuple(value.shape)} but backbone "
                f"{spec.name!r} needs {tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


class ClipBackbone(nn.Module):
    """Frozen CLIP image encoder producing the feature map F and the global embedding.

    Always in eval mode and without gradients, whatever the parent module does. The whole
    CLIP model is kept as ``self.clip`` so its text tower can build the classifier.
    """

    def __init__(self, clip_model: nn.Module, info: dict[str, Any]) -> None:
        super().__init__()
        self.clip = clip_model
        self.info = dict(info)
        self.name: str = info["name"]
        self.sha256: str = info["sha256"]
        self.embed_dim: int = int(info["embed_dim"])
        self.image_size: int = int(info["image_size"])
        self.patch_size: int = int(info["patch_size"])
        self.grid: tuple[int, int] = tuple(clip_model.visual.grid_size)
        self.mean: tuple[float, ...] = tuple(info["mean"])
        self.std: tuple[float, ...] = tuple(info["std"])
        self.clip.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> ClipBackbone:
        """Ignore ``mode``: the backbone stays in eval mode (no dropout, no patch dropout)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode CLIP-normalised ``images`` (B, 3, R, R).

        Returns ``F`` (B, C, h, w): the last block's patch tokens after ``ln_post`` and
        ``proj``; and ``global`` (B, C): the class token after ``ln_post`` and ``proj``
        (equal to ``clip.encode_image``).
        """
        visual = self.clip.visual
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"images must be (B, 3, {self.image_size}, {self.image_size}), got {tuple(images.shape)}"
            )
        images = images.to(device=visual.conv1.weight.device, dtype=visual.conv1.weight.dtype)
        out = visual.forward_intermediates(images, indices=1, normalize_intermediates=True)
        tokens = out["image_intermediates"][0]  # (B, width, h, w), ln_post applied
        feature_map = torch.einsum("bwhv,wc->bchv", tokens, visual.proj)
        return feature_map.contiguous(), out["image_features"]

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The whole PIL image resized to R x R (bicubic, as CLIP), CLIP mean/std: (3, R, R)."""
        image = image.convert("RGB")
        r = self.image_size
        resized = TF.resize(
            image, [r, r], interpolation=TF.InterpolationMode.BICUBIC, antialias=True
        )
        return TF.normalize(TF.to_tensor(resized), self.mean, self.std)
