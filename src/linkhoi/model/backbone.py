"""The three named CLIP backbones of linkhoi's first releases, kept as aliases.

``vit-b16``, ``vit-l14-336`` and ``tiny`` are specs of :func:`linkhoi.model.load_backbone`
(``linkhoi.model.backbones``), which accepts any open_clip model, open_clip config file or
transformers folder. ``load_clip`` / ``ClipBackbone`` remain for code written against them.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import open_clip

from linkhoi.model.backbones.open_clip_adapter import ALIASES, OpenClipBackbone, load_clip
from linkhoi.model.clip_loading import ClipLoadError

__all__ = ["BACKBONES", "BackboneSpec", "ClipBackbone", "ClipLoadError", "load_clip"]

ClipBackbone = OpenClipBackbone


@dataclass(frozen=True)
class BackboneSpec:
    """A named CLIP architecture: an open_clip config plus the facts the head needs."""

    name: str
    open_clip_name: str  # a built-in open_clip config, or the name ``config`` is known as
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
    "tiny": BackboneSpec(
        "tiny", "linkhoi-tiny", 64, 64, 16, quick_gelu=True, config=ALIASES["tiny"][1]
    ),
}
