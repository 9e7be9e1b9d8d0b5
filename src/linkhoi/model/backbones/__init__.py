"""Frozen backbones behind one interface: :func:`load_backbone` turns a spec string into a
:class:`Backbone` (docs/internals.md, "Backbones"; the accepted specs are listed in
docs/training.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from linkhoi.model.backbones import open_clip_adapter
from linkhoi.model.backbones.base import Backbone, BackboneError, close_matches, resolve_loader

__all__ = ["Backbone", "BackboneError", "load_backbone", "rebuild_backbone"]


def load_backbone(
    spec: str,
    weights: str | Path | None = None,
    image_size: int | None = None,
    device: str | torch.device | None = None,
    **options: Any,
) -> Backbone:
    """The frozen backbone of ``spec`` in eval mode on ``device``.

    ``spec``: an alias (``vit-b16``, ``vit-l14-336``, ``tiny``), ``open_clip:NAME``,
    ``open_clip:PATH.json`` or ``hf:DIR``. ``weights``: a local weights file (None: a seeded
    random initialisation, or the folder's own weights for ``hf:DIR``). ``image_size``: the
    input resolution R (None: the model's native one).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise BackboneError(f"backbone spec must be a non-empty string, got {spec!r}")
    aliases = open_clip_adapter.ALIASES
    if spec in aliases:
        return open_clip_adapter.load_open_clip(spec, weights, image_size, device, **options)
    if ":" not in spec:
        import open_clip

        raise BackboneError(
            f"unknown backbone {spec!r}"
            + close_matches(spec, [*aliases, *open_clip.list_models()])
            + f"; use an alias ({', '.join(aliases)}), open_clip:NAME, open_clip:PATH.json "
            "or hf:DIR"
        )
    loader, rest = resolve_loader(spec)
    return loader(rest, weights, image_size, device, **options)


def rebuild_backbone(
    record: dict[str, Any],
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
) -> Backbone:
    """The backbone a checkpoint's ``backbone`` record describes (its stored config, if any,
    replaces a config file that may be gone)."""
    spec = str(record.get("spec") or record["name"])
    options = {"config": record["config"]} if record.get("config") else {}
    return load_backbone(spec, weights, record.get("image_size"), device, **options)
