"""The frozen image backbone interface every adapter implements (docs/internals.md, "Backbones").

A backbone spec is a string: an alias (``vit-b16``, ``vit-l14-336``, ``tiny``), ``open_clip:NAME``
(any name of ``open_clip.list_models()``), ``open_clip:PATH.json`` (an open_clip model config
file) or ``hf:DIR`` (a transformers folder). :func:`register` maps a prefix to the adapter that
loads it, so the loader has no per-family branches.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn

from linkhoi.model.clip_loading import ClipLoadError

__all__ = ["Backbone", "BackboneError", "close_matches", "register", "resolve_loader"]

# A backbone error is a weights error: callers that catch ClipLoadError keep working.
BackboneError = ClipLoadError

_INTERPOLATION = {
    "bicubic": TF.InterpolationMode.BICUBIC,
    "bilinear": TF.InterpolationMode.BILINEAR,
    "nearest": TF.InterpolationMode.NEAREST,
}


class Backbone(nn.Module):
    """A frozen vision tower (and, usually, its text tower) seen through one interface.

    Attributes every adapter sets: ``spec`` (the string it was loaded from), ``name`` (same,
    kept for messages and old checkpoints), ``sha256`` (of the weights file, or of the state
    dict's bytes for a seeded random initialisation), ``embed_dim`` (C, channels of F),
    ``text_dim`` (width of ``encode_text``'s rows, 0 without a text tower), ``image_size`` R,
    ``grid`` (h, w), ``patch_size``, ``mean``/``std``/``interpolation`` of ``preprocess`` and
    ``info`` (plain data; ``info["config"]`` rebuilds a custom architecture from a checkpoint;
    ``info["tokenizer_sha256"]`` hashes the tokenizer files read from a folder, "" for a
    tokenizer built into the library).

    Always in eval mode and without gradients, whatever the parent module does.
    """

    spec: str
    name: str
    sha256: str
    embed_dim: int
    text_dim: int
    image_size: int
    grid: tuple[int, int]
    patch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    info: dict[str, Any]

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> Backbone:
        """Ignore ``mode``: the backbone stays in eval mode (no dropout, no patch dropout)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed ``images`` (B, 3, R, R) -> ``F`` (B, C, h, w), ``global`` (B, C_g)."""
        raise NotImplementedError

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """``prompts`` (K strings) -> (K, C_text) text embeddings as the library computes them
        (not normalised)."""
        raise BackboneError(
            f"backbone {self.spec!r} has no text tower: name one with model.text_backbone"
        )

    def weights_state(self) -> dict[str, torch.Tensor]:
        """The wrapped library model's own state dict (what ``sha256`` hashes when random)."""
        raise NotImplementedError

    def vision_parameters(self) -> list[nn.Parameter]:
        """The parameters ``forward`` uses (the image tower), for cost figures."""
        return list(self.parameters())

    def _check_images(self, images: torch.Tensor) -> None:
        r = self.image_size
        if images.dim() != 4 or images.shape[-2:] != (r, r):
            raise ValueError(f"images must be (B, 3, {r}, {r}), got {tuple(images.shape)}")

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The whole PIL image resized to R x R with the model's interpolation and mean/std:
        (3, R, R). No crop: box coordinates map to the canvas by scaling alone."""
        image = image.convert("RGB")
        r = self.image_size
        mode = _INTERPOLATION.get(self.interpolation, TF.InterpolationMode.BICUBIC)
        resized = TF.resize(image, [r, r], interpolation=mode, antialias=True)
        return TF.normalize(TF.to_tensor(resized), self.mean, self.std)

    @property
    def num_bytes(self) -> int:
        """Bytes of the backbone's parameters and buffers (what a checkpoint would store)."""
        tensors = list(self.parameters()) + list(self.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)

    def record(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild this backbone (plain data)."""
        return {
            "name": self.spec,
            "spec": self.spec,
            "sha256": self.sha256,
            "image_size": int(self.image_size),
            "random": self.info.get("format") == "random",
            "config": self.info.get("config"),
            "preprocess": self.info.get("preprocess"),
            "folder_weights": bool(self.info.get("folder_weights")),
            # A tokenizer folder given apart from the spec, and the hash of the files used.
            "tokenizer": self.info.get("tokenizer"),
            "tokenizer_sha256": self.info.get("tokenizer_sha256") or "",
        }


Loader = Callable[..., Backbone]
_LOADERS: dict[str, Loader] = {}


def register(prefix: str, loader: Loader) -> None:
    """Route specs ``prefix:REST`` to ``loader(REST, weights, image_size, device, **kw)``."""
    _LOADERS[prefix] = loader


def resolve_loader(spec: str) -> tuple[Loader, str]:
    """``(loader, rest)`` for a spec; raises :class:`BackboneError` listing the prefixes."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in _LOADERS and rest:
        return _LOADERS[prefix], rest
    raise BackboneError(
        f"backbone {spec!r}: unknown spec; use an alias, "
        + ", ".join(f"{p}:..." for p in sorted(_LOADERS))
    )


def close_matches(word: str, choices: list[str], n: int = 5) -> str:
    """``"; close matches: a, b"`` (or ``""``) for an error message."""
    found = difflib.get_close_matches(word, choices, n=n, cutoff=0.6)
    if not found:
        lowered = word.lower()
        found = [c for c in choices if lowered in c.lower()][:n]
    return f"; close matches: {', '.join(found)}" if found else ""
