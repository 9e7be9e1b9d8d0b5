"""The LINK model: frozen backbone, Geometrical Encoder, Linking Decoder, text classifier.

``create_model(config, label_space, clip_weights=None)`` builds it; ``load_backbone(spec, ...)``
loads any supported backbone (``linkhoi.model.backbones``); ``to_triplets`` turns one image's
output into triplet-format dicts; ``checkpoint.load_model`` reads a saved model.
The names are imported on first use, so ``linkhoi convert-clip --help`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from linkhoi.model.backbones import load_backbone
    from linkhoi.model.config import ConfigError, LinkConfig
    from linkhoi.model.link import LinkModel, create_model, to_triplets, valid_class_table

_HOMES = {
    "ConfigError": "linkhoi.model.config",
    "LinkConfig": "linkhoi.model.config",
    "LinkModel": "linkhoi.model.link",
    "create_model": "linkhoi.model.link",
    "load_backbone": "linkhoi.model.backbones",
    "to_triplets": "linkhoi.model.link",
    "valid_class_table": "linkhoi.model.link",
}
__all__ = [
    "ConfigError",
    "LinkConfig",
    "LinkModel",
    "create_model",
    "load_backbone",
    "to_triplets",
    "valid_class_table",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'linkhoi.model' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
