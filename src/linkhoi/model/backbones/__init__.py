"""Frozen backbones behind one interface: :func:`load_backbone` turns a spec string into a
:class:`Backbone` (docs/internals.md, "Backbones"; the accepted specs are listed in
docs/training.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from linkhoi.model.backbones import hf_adapter, open_clip_adapter  # noqa: F401  (register)
from linkhoi.model.backbones.base import Backbone, BackboneError, close_matches, resolve_loader

__all__ = ["Backbone", "BackboneError", "WithTextTower", "load_backbone", "rebuild_backbone"]


class WithTextTower(Backbone):
    """A vision backbone (``self.vision``) whose prompts are encoded by another backbone's
    text tower (``self.text_tower``), e.g. DINOv2 with a CLIP text tower: F and global come
    from the first, ``encode_text`` (and ``text_dim``) from the second."""

    def __init__(self, vision: Backbone, text_tower: Backbone) -> None:
        super().__init__()
        if not text_tower.text_dim:
            raise BackboneError(f"text backbone {text_tower.spec!r} has no text tower")
        self.vision, self.text_tower = vision, text_tower
        for name in ("spec", "name", "sha256", "embed_dim", "image_size", "grid", "patch_size",
                     "mean", "std", "interpolation"):  # fmt: skip
            setattr(self, name, getattr(vision, name))
        self.text_dim = text_tower.text_dim
        # The text cache key must change with either tower (and the text tower's tokenizer).
        self.info = {**vision.info, "text_spec": text_tower.spec,
                     "text_sha256": text_tower.sha256,
                     "tokenizer_sha256": text_tower.info.get("tokenizer_sha256") or ""}  # fmt: skip
        self._freeze()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """F (B, C, h, w) and global (B, C_g) of the vision backbone."""
        return self.vision(images)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """(K, C_text) from the text backbone."""
        return self.text_tower.encode_text(prompts)

    def weights_state(self) -> dict[str, torch.Tensor]:
        return self.vision.weights_state()

    def vision_parameters(self) -> list[torch.nn.Parameter]:
        return self.vision.vision_parameters()

    def record(self) -> dict[str, Any]:
        return {**self.vision.record(), "text": self.text_tower.record()}


def load_backbone(
    spec: str,
    weights: str | Path | None = None,
    image_size: int | None = None,
    device: str | torch.device | None = None,
    text_backbone: str | None = None,
    text_weights: str | Path | None = None,
    tokenizer: str | Path | None = None,
    **options: Any,
) -> Backbone:
    """The frozen backbone of ``spec`` in eval mode on ``device``.

    ``spec``: an alias (``vit-b16``, ``vit-l14-336``, ``tiny``), ``open_clip:NAME``,
    ``open_clip:PATH.json`` or ``hf:DIR``. ``weights``: a local weights file (None: a seeded
    random initialisation, or the folder's own weights for ``hf:DIR``). ``image_size``: the
    input resolution R (None: the model's native one). ``text_backbone`` (+ ``text_weights``):
    another spec whose text tower encodes the prompts (for vision-only models such as DINOv2).
    ``tokenizer``: a local tokenizer folder for the text tower that encodes the prompts (the
    text backbone's when there is one): open_clip models whose tokenizer open_clip fetches
    from a hub (SigLIP), or another folder than an ``hf:DIR``'s own.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise BackboneError(f"backbone spec must be a non-empty string, got {spec!r}")
    aliases = open_clip_adapter.ALIASES
    if tokenizer is not None and not text_backbone:
        options["tokenizer"] = tokenizer
    if spec in aliases:
        backbone = open_clip_adapter.load_open_clip(spec, weights, image_size, device, **options)
    elif ":" not in spec:
        import open_clip

        raise BackboneError(
            f"unknown backbone {spec!r}"
            + close_matches(spec, [*aliases, *open_clip.list_models()])
            + f"; use an alias ({', '.join(aliases)}), open_clip:NAME, open_clip:PATH.json "
            "or hf:DIR"
        )
    else:
        loader, rest = resolve_loader(spec)
        backbone = loader(rest, weights, image_size, device, **options)
    if text_backbone:
        text = load_backbone(text_backbone, text_weights, device=device, tokenizer=tokenizer)
        backbone = WithTextTower(backbone, text)
    return backbone


def rebuild_backbone(
    record: dict[str, Any],
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    text_weights: str | Path | None = None,
    tokenizer: str | Path | None = None,
) -> Backbone:
    """The backbone a checkpoint's ``backbone`` record describes (its stored config, if any,
    stands in for a config file or folder that may be gone). ``tokenizer`` replaces the
    recorded tokenizer folder of the text tower; a recorded folder that is gone is left out
    (the weights still load; encoding new prompts then asks for one)."""
    spec = str(record.get("spec") or record["name"])
    options = {"config": record["config"]} if record.get("config") else {}
    if record.get("preprocess"):
        options["preprocess"] = record["preprocess"]
    text = record.get("text")
    if not text:
        recorded = record.get("tokenizer")
        tokenizer = tokenizer or (recorded if recorded and Path(recorded).is_dir() else None)
        if tokenizer is not None:
            options["tokenizer"] = tokenizer
    backbone = load_backbone(spec, weights, record.get("image_size"), device, **options)
    if text:
        tower = rebuild_backbone(text, text_weights, device, tokenizer=tokenizer)
        backbone = WithTextTower(backbone, tower)
    return backbone
