"""open_clip models as backbones: the three aliases, ``open_clip:NAME`` and ``open_clip:PATH.json``.

The model is built by ``open_clip.create_model`` from its config (never with a pretrained tag:
nothing is downloaded) and filled from a local weights file (any format
:mod:`linkhoi.model.clip_loading` reads), or left at a seeded random initialisation.
F is the last block's patch tokens after the tower's final norm (``ln_post`` for CLIP ViTs,
timm's ``norm`` for timm towers) and, when the tower has one, its projection (``visual.proj``);
global is the tower's own image embedding (``encode_image``).

Text is tokenized as ``open_clip.get_tokenizer`` does: the CLIP BPE, or, for configs whose
tokenizer open_clip fetches from a hub (``text_cfg.hf_tokenizer_name``, e.g. SigLIP), open_clip's
``HFTokenizer`` on a local tokenizer folder given as ``tokenizer=DIR``
(:mod:`linkhoi.model.backbones.tokenizer_folder`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import resize_pos_embed
from torch import nn

from linkhoi.model.backbones.base import Backbone, BackboneError, close_matches, register
from linkhoi.model.backbones.tokenizer_folder import (
    WHAT_TO_COPY,
    hf_text_model_folder,
    open_clip_hf_tokenizer,
    open_clip_tokenizer_info,
)
from linkhoi.model.clip_loading import (
    file_sha256,
    hf_weights_file,
    read_hf_config,
    read_state_dict,
    state_dict_sha256,
)

__all__ = ["ALIASES", "OpenClipBackbone", "load_clip", "load_open_clip", "model_config"]

_TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}

# alias -> (open_clip name, config of its own or None). OpenAI's checkpoints use QuickGELU.
ALIASES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "vit-b16": ("ViT-B-16", None),
    "vit-l14-336": ("ViT-L-14-336", None),
    "tiny": ("linkhoi-tiny", _TINY_CONFIG),
}


@contextmanager
def _quiet_open_clip():
    # create_model logs "initialized randomly" at WARNING level; the weights come afterwards.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _read_json_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BackboneError(f"{path}: open_clip model config file not found")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackboneError(f"{path}: cannot be read as JSON ({exc})") from None
    if isinstance(cfg, dict) and isinstance(cfg.get("model_cfg"), dict):  # open_clip_config.json
        cfg = cfg["model_cfg"]
    if not isinstance(cfg, dict):
        raise BackboneError(f"{path}: an open_clip model config must be a JSON object")
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in cfg:
            raise BackboneError(f"{path}: field {key!r} is missing (an open_clip model config)")
    for key in ("vision_cfg", "text_cfg"):
        if not isinstance(cfg[key], dict):
            raise BackboneError(f"{path}: field {key!r} must be an object")
    return cfg


def model_config(rest: str) -> tuple[dict[str, Any], str]:
    """``(open_clip config dict, display name)`` of ``open_clip:REST`` or an alias."""
    if rest in ALIASES:
        name, own = ALIASES[rest]
        cfg = deepcopy(own) if own else open_clip.get_model_config(name)
        cfg["quick_gelu"] = True
        return cfg, rest
    if rest.endswith(".json"):
        return _read_json_config(Path(rest)), rest
    cfg = open_clip.get_model_config(rest)
    if cfg is None:
        raise BackboneError(
            f"backbone 'open_clip:{rest}': not an open_clip model name"
            + close_matches(rest, open_clip.list_models())
            + " (open_clip.list_models() has them all; or give a config file PATH.json)"
        )
    return deepcopy(cfg), rest


def _preprocess_cfg(rest: str) -> dict[str, Any]:
    """mean/std/interpolation of an open_clip name from its pretrained tags' metadata (SigLIP's
    are 0.5); OpenAI's for configs without tags. Read locally, nothing is downloaded."""
    out: dict[str, Any] = {}
    for tag in open_clip.list_pretrained_tags_by_model(rest) if rest not in ALIASES else []:
        cfg = open_clip.get_pretrained_cfg(rest, tag)
        out = {k: cfg[k] for k in ("mean", "std", "interpolation") if k in cfg}
        break
    return out


def _build(cfg: dict[str, Any], image_size: int, spec: str) -> nn.Module:
    # Register the config under a content name so create_model builds exactly it.
    key = "linkhoi-" + hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
    open_clip.factory._MODEL_CONFIGS[key] = deepcopy(cfg)
    try:
        with _quiet_open_clip(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same random initialisation on every call
            return open_clip.create_model(
                key,
                pretrained=None,
                pretrained_text=False,  # never fetch a text tower from a hub
                force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                force_image_size=image_size,
            )
    except Exception as exc:  # e.g. a hub-only text tower config, or a bad field
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackboneError(f"backbone {spec!r}: open_clip cannot build it ({first})") from None
    finally:
        open_clip.factory._MODEL_CONFIGS.pop(key, None)


def _flat(cfg: dict[str, Any]) -> dict[str, Any]:
    """Architecture fields of an open_clip CLIP config with open_clip's defaults filled in."""
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    return {
        "embed_dim": cfg["embed_dim"],
        "quick_gelu": bool(cfg.get("quick_gelu", False)),
        "vision.layers": v.get("layers"),
        "vision.width": v.get("width"),
        "vision.head_width": v.get("head_width", 64),
        "vision.mlp_ratio": float(v.get("mlp_ratio", 4.0)),
        "vision.patch_size": v.get("patch_size"),
        "text.width": t.get("width"),
        "text.heads": t.get("heads", 8),
        "text.layers": t.get("layers"),
        "text.mlp_ratio": float(t.get("mlp_ratio", 4.0)),
        "text.context_length": t.get("context_length", 77),
        "text.vocab_size": t.get("vocab_size", 49408),
    }


def _check_hf_config(cfg: dict[str, Any], spec: str, directory: Path) -> None:
    want, got = _flat(cfg), _flat(read_hf_config(directory))
    for key, value in want.items():
        if got[key] != value:
            raise BackboneError(
                f"{directory / 'config.json'}: field {key} is {got[key]!r} but backbone "
                f"{spec!r} needs {value!r}"
            )


def _load_into(model: nn.Module, state: dict, path: Path, spec: str) -> None:
    """Strictly load ``state`` into ``model``, resizing the position grid if needed."""
    # OpenAI ships fp16; interpolate and load in fp32 (CPU bicubic has no fp16 kernel).
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    if "visual.positional_embedding" in state and hasattr(model.visual, "grid_size"):
        resize_pos_embed(state, model)  # no-op at the native resolution
    if "logit_scale" in state:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"missing field {missing[0]!r}" if missing else f"unexpected field {unexpected[0]!r}"
        raise BackboneError(
            f"{path}: does not match backbone {spec!r} ({what}; "
            f"{len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise BackboneError(
                f"{path}: field {key!r} has shape {tuple(value.shape)} but backbone "
                f"{spec!r} needs {tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


def load_clip(
    name: str,
    weights: str | Path | None,
    image_size: int | None = None,
    device: str | torch.device | None = None,
    config: dict[str, Any] | None = None,
    tokenizer: str | Path | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the open_clip model ``name`` (an alias or ``open_clip:REST``) with local weights.

    ``weights=None`` gives a seeded random initialisation (identical across calls; the global
    RNG is left untouched) and ``sha256`` is then the hash of the state dict's bytes; otherwise
    ``sha256`` is the weights file's. An ``image_size`` other than the native one resizes the
    position embedding at load (open_clip's ``resize_pos_embed``). ``config`` overrides the
    architecture (a checkpoint's stored copy of a ``PATH.json`` config). ``tokenizer``: a
    local tokenizer folder, for models whose open_clip tokenizer is a hub tokenizer (SigLIP).

    Returns ``(model, info)`` with ``info = {name, spec, sha256, image_size, mean, std,
    interpolation, embed_dim, patch_size, format, weights, config, hub_tokenizer,
    tokenizer_cfg, tokenizer, tokenizer_sha256}``; eval mode on ``device``.
    """
    from linkhoi.devices import resolve_device

    rest = name.removeprefix("open_clip:")
    if rest == name and name not in ALIASES:
        raise BackboneError(
            f"unknown backbone {name!r}"
            + close_matches(name, [*ALIASES, *open_clip.list_models()])
            + "; use an alias ("
            + ", ".join(sorted(ALIASES))
            + "), open_clip:NAME, open_clip:PATH.json or hf:DIR"
        )
    cfg, _ = (deepcopy(config), rest) if config else model_config(rest)
    tok_info = open_clip_tokenizer_info(cfg, rest, name, tokenizer)
    build_cfg = cfg
    if cfg["text_cfg"].get("hf_model_name"):  # a transformers text tower (roberta, mt5, ...)
        build_cfg = deepcopy(cfg)  # its config.json from the local folder, not the hub
        build_cfg["text_cfg"]["hf_model_name"] = hf_text_model_folder(cfg, tok_info, name)
    vision = cfg["vision_cfg"]
    native = vision.get("image_size", 224)
    native = native[0] if isinstance(native, (list, tuple)) else native
    size = int(image_size or native)
    patch = vision.get("patch_size")
    if patch and size % int(patch):
        raise BackboneError(f"image_size {size} is not a multiple of the patch size {patch}")
    model = _build(build_cfg, size, name)
    if weights is None:
        fmt, sha = "random", state_dict_sha256(model.state_dict())
    else:
        path = Path(weights)
        state, fmt = read_state_dict(path)
        if fmt == "hf":
            _check_hf_config(cfg, name, path)
            sha = file_sha256(hf_weights_file(path))
        else:
            sha = file_sha256(path)
        _load_into(model, state, path, name)
    model = model.to(resolve_device(device)).eval()
    pre = getattr(model.visual, "preprocess_cfg", {}) or {}
    pre = {**pre, **_preprocess_cfg(rest)}
    info = {
        "name": name,
        "spec": name,
        "sha256": sha,
        "image_size": size,
        "mean": tuple(pre.get("mean", OPENAI_DATASET_MEAN)),
        "std": tuple(pre.get("std", OPENAI_DATASET_STD)),
        "interpolation": pre.get("interpolation", "bicubic"),
        "embed_dim": int(cfg["embed_dim"]),
        "patch_size": int(patch) if patch else 0,
        "format": fmt,
        "weights": None if weights is None else str(weights),
        # A config file's contents travel with checkpoints (the file may be gone at load).
        "config": cfg if rest.endswith(".json") else None,
        **tok_info,
    }
    return model, info


class OpenClipBackbone(Backbone):
    """An open_clip model (``self.clip``) as a frozen backbone.

    F (B, C, h, w): the last block's patch tokens after the final norm and the tower's
    projection when it has one (CLIP ViTs: ``ln_post`` then ``proj``); global (B, C): the
    tower's image embedding (``clip.encode_image``).
    """

    def __init__(self, clip_model: nn.Module, info: dict[str, Any]) -> None:
        super().__init__()
        self.clip = clip_model
        self.info = dict(info)
        self.spec = self.name = str(info.get("spec") or info["name"])
        self.sha256 = str(info["sha256"])
        self.image_size = int(info["image_size"])
        self.mean = tuple(info["mean"])
        self.std = tuple(info["std"])
        self.interpolation = str(info.get("interpolation", "bicubic"))
        visual = clip_model.visual
        proj = getattr(visual, "proj", None)
        self._proj = proj if isinstance(proj, torch.Tensor) else None
        if hasattr(visual, "grid_size") and self._proj is not None:
            self.grid = tuple(visual.grid_size)
            self.embed_dim = int(self._proj.shape[1])
        else:  # other towers (timm): read the sizes off one forward pass
            probe = torch.zeros(1, 3, self.image_size, self.image_size, device=self._device())
            f, _ = self._features(probe)
            self.grid, self.embed_dim = tuple(f.shape[-2:]), int(f.shape[1])
        self.patch_size = int(info.get("patch_size") or self.image_size // self.grid[0])
        self.text_dim = int(info.get("embed_dim", self.embed_dim))
        self._tokenizer = None
        if info.get("tokenizer"):  # read now: a bad folder is an error at load, not later
            cfg = dict(info.get("tokenizer_cfg") or {})
            self._tokenizer = open_clip_hf_tokenizer(Path(info["tokenizer"]), cfg, self.spec)
        self._freeze()

    def _device(self) -> torch.device:
        return next(self.clip.parameters()).device

    def weights_state(self) -> dict[str, torch.Tensor]:
        return self.clip.state_dict()

    def vision_parameters(self) -> list[nn.Parameter]:
        return list(self.clip.visual.parameters())

    def _features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            out = self.clip.visual.forward_intermediates(
                images, indices=1, normalize_intermediates=True
            )
        tokens = out["image_intermediates"][0]  # (B, width, h, w), final norm applied
        if self._proj is not None:
            tokens = torch.einsum("bwhv,wc->bchv", tokens, self._proj)
        return tokens.contiguous(), out["image_features"]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed ``images`` (B, 3, R, R) -> F (B, C, h, w), global (B, C)."""
        self._check_images(images)
        param = next(self.clip.visual.parameters())
        return self._features(images.to(device=param.device, dtype=param.dtype))

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """Token ids (K, context_length): open_clip's CLIP BPE tokenizer, or its
        ``HFTokenizer`` on the local tokenizer folder (models with a hub tokenizer)."""
        if self._tokenizer is None:
            hub = self.info.get("hub_tokenizer")
            if hub:
                raise BackboneError(
                    f"backbone {self.spec!r}: its tokenizer is the Hugging Face tokenizer "
                    f"{hub!r}, which open_clip fetches from the hub; put its files "
                    f"({WHAT_TO_COPY}) in a local folder and pass it as tokenizer=DIR "
                    "(model.tokenizer in training configs, --tokenizer for linkhoi detect)"
                )
            self._tokenizer = open_clip.SimpleTokenizer(
                context_length=getattr(self.clip, "context_length", 77)
            )
        return self._tokenizer(prompts)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """``prompts`` -> (K, C_text) ``clip.encode_text`` of their tokens, float32."""
        tokens = self.tokenize(prompts).to(self._device())
        return self.clip.encode_text(tokens).float()


def load_open_clip(
    rest: str,
    weights: str | Path | None = None,
    image_size: int | None = None,
    device: str | torch.device | None = None,
    config: dict[str, Any] | None = None,
    tokenizer: str | Path | None = None,
    **_: Any,  # options of other adapters (e.g. a stored preprocess of hf:DIR)
) -> OpenClipBackbone:
    """The backbone of spec ``open_clip:REST`` (or an alias when ``rest`` is one);
    ``tokenizer``: a local tokenizer folder (models whose open_clip tokenizer is a hub one)."""
    name = rest if rest in ALIASES else f"open_clip:{rest}"
    return OpenClipBackbone(*load_clip(name, weights, image_size, device, config, tokenizer))


register("open_clip", load_open_clip)
