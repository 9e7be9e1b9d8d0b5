"""`LinkConfig`: every size and [ours] choice of the LINK head (docs/method.md §0-§4) as plain data."""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A model configuration that cannot be used (unknown key, wrong type, bad value)."""


@dataclass
class LinkConfig:
    """Sizes and switches of the LINK model. Defaults follow docs/method.md; [ours] marks project choices.

    ``backbone`` is a spec of ``linkhoi.model.load_backbone`` (an alias such as ``"vit-b16"``,
    ``"open_clip:NAME"``, ``"open_clip:PATH.json"`` or ``"hf:DIR"``); ``image_size=None`` means
    the backbone's native resolution.
    """

    backbone: str = "vit-b16"  # a spec of linkhoi.model.load_backbone (docs/training.md)
    image_size: int | None = None
    # A second spec whose text tower encodes the prompts, for vision-only backbones (DINOv2).
    text_backbone: str | None = None
    # A local tokenizer folder of the text tower (open_clip models whose tokenizer open_clip
    # fetches from a hub, e.g. open_clip:ViT-B-16-SigLIP; or another folder for hf:DIR).
    tokenizer: str | None = None
    # Proposal filtering (§0): keyword arguments of `linkhoi.detections.filter_proposals` (its
    # defaults are UPT's). Kept with the model so inference filters as training did.
    proposals: dict[str, Any] = field(default_factory=dict)
    # Widths (§2, §3).
    d_model: int = 256  # unary query width d
    d_pair: int = 384  # pair query width
    d_latent: int = 256  # latent map F^l width (spatial branch)
    num_heads: int = 8  # heads of every attention block (must divide d_model, d_pair, d_latent, C)
    encoder_layers: int = 2
    decoder_layers: int = 2
    ffn_ratio: int = 4
    dropout: float = 0.1  # [ours, UPT] transformer dropout
    # Geometry (§2).
    roi_size: int = 7
    pe_temperature: float = 20.0
    pe_dims: int = 128  # sine-encoding channels per scalar
    spatial_hidden: tuple[int, int] = (128, 256)  # 36 -> 128 -> 256 -> d_pair
    # Scores (§4).
    prior_lambda_train: float = 1.0
    prior_lambda_test: float = 2.8
    logit_scale_init: float = 1.0 / 0.07
    logit_scale_max: float = 100.0  # [ours, CLIP] clamp of the learnable scale
    text_template: str = "auto"
    top_k: int = 100
    # Ablation switches [ours].
    use_geometry_encoder: bool = True
    use_spatial_branch: bool = True
    use_semantic_branch: bool = True

    def __post_init__(self) -> None:
        self.spatial_hidden = tuple(self.spatial_hidden)  # lists from YAML/JSON
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` on values that cannot build a model."""
        for name in ("d_model", "d_pair", "d_latent", "num_heads", "roi_size", "pe_dims", "top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"LinkConfig.{name} must be a positive integer, got {value!r}")
        for name in ("encoder_layers", "decoder_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"LinkConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("d_model", "d_pair", "d_latent"):
            if getattr(self, name) % self.num_heads:
                raise ConfigError(
                    f"LinkConfig.{name}={getattr(self, name)} is not divisible by "
                    f"num_heads={self.num_heads}"
                )
        if self.pe_dims % 2:
            raise ConfigError(f"LinkConfig.pe_dims must be even, got {self.pe_dims}")
        if len(self.spatial_hidden) != 2:
            raise ConfigError(
                f"LinkConfig.spatial_hidden needs 2 widths, got {self.spatial_hidden}"
            )
        if not isinstance(self.proposals, dict):
            raise ConfigError(f"LinkConfig.proposals must be a mapping, got {self.proposals!r}")
        from linkhoi.detections.proposals import filter_proposals  # no import cycle at load

        params = inspect.signature(filter_proposals).parameters
        known = set(params) - {"dets", "human_label"}
        unknown = sorted(set(self.proposals) - known)
        if unknown:
            raise ConfigError(
                f"LinkConfig.proposals: unknown key(s) {unknown}; known: {sorted(known)}"
            )
        for key, value in self.proposals.items():
            default = params[key].default  # its type is the one expected (int, float or bool)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            ok = (
                isinstance(value, bool)
                if isinstance(default, bool)
                else number and math.isfinite(value) and value >= 0
                and (isinstance(value, int) or not isinstance(default, int))
            )  # fmt: skip
            if not ok:
                rule = (
                    "true or false"
                    if isinstance(default, bool)
                    else "an integer >= 0"
                    if isinstance(default, int)
                    else "a finite number >= 0"
                )
                raise ConfigError(f"LinkConfig.proposals.{key} must be {rule}, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LinkConfig.dropout must be in [0, 1), got {self.dropout}")
        if not (self.logit_scale_init > 0 and math.isfinite(self.logit_scale_init)):
            raise ConfigError(
                f"LinkConfig.logit_scale_init must be > 0, got {self.logit_scale_init}"
            )
        if self.tokenizer is not None and not isinstance(self.tokenizer, str):
            raise ConfigError(f"LinkConfig.tokenizer must be a folder path, got {self.tokenizer!r}")
        if self.image_size is not None and (
            not isinstance(self.image_size, int) or self.image_size <= 0
        ):
            raise ConfigError(f"LinkConfig.image_size must be None or > 0, got {self.image_size}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples) for YAML/JSON/checkpoints."""
        out = dataclasses.asdict(self)
        out["spatial_hidden"] = list(self.spatial_hidden)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkConfig:
        """Build from plain data; unknown keys raise `ConfigError` naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config key(s) {unknown}; known keys: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as err:  # e.g. a tuple field given as a scalar
            raise ConfigError(f"bad model config: {err}") from None
