"""Hugging Face transformers folders as backbones: ``hf:DIR`` with a ``config.json`` whose
``model_type`` is ``clip``, ``siglip``, ``siglip2`` or ``dinov2``.

The model class is transformers' own (``CLIPModel``, ``SiglipModel``, ``Siglip2Model``,
``Dinov2Model``), built from the folder's config and filled from its ``model.safetensors``
(preferred) or a tensor-only ``pytorch_model.bin``. Nothing is fetched from a hub. What F and
global are per family (docs/internals.md, "Backbones"):

- clip: patch tokens of the last layer after ``post_layernorm`` and ``visual_projection``;
  global = ``get_image_features``;
- siglip / siglip2: the last hidden state (after the final layer norm; no class token, no
  projection); global = the attention-pooled embedding (``pooler_output``); SigLIP2 NaFlex
  models see a fixed square of sqrt(num_patches) x sqrt(num_patches) patches;
- dinov2: patch tokens after its final layer norm; global = the class token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from linkhoi.model.backbones.base import Backbone, BackboneError, close_matches, register
from linkhoi.model.backbones.tokenizer_folder import (
    TOKENIZER_FILES,
    WHAT_TO_COPY,
    check_tokenizer_folder,
    tokenizer_sha256,
)
from linkhoi.model.clip_loading import file_sha256, hf_weights_file, read_hf_weights

__all__ = ["FAMILIES", "HFBackbone", "load_hf"]

_OPENAI = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
_HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_RESAMPLE = {2: "bilinear", 3: "bicubic", 0: "nearest"}  # PIL codes in preprocessor_config.json

Tokens = tuple[torch.Tensor, torch.Tensor]  # (B, N, C) patch tokens, (B, C_g) global


def _clip_vision(model: nn.Module, images: torch.Tensor) -> Tokens:
    out = model.vision_model(pixel_values=images, interpolate_pos_encoding=True)
    hidden = model.vision_model.post_layernorm(out.last_hidden_state[:, 1:])
    return model.visual_projection(hidden), model.visual_projection(out.pooler_output)


def _siglip_vision(model: nn.Module, images: torch.Tensor) -> Tokens:
    out = model.vision_model(pixel_values=images, interpolate_pos_encoding=True)
    return out.last_hidden_state, out.pooler_output


def _siglip2_vision(model: nn.Module, images: torch.Tensor) -> Tokens:
    from transformers.models.siglip2.image_processing_siglip2 import convert_image_to_patches

    patch = model.config.vision_config.patch_size
    patches = torch.stack([convert_image_to_patches(im, patch) for im in images])
    side = images.shape[-1] // patch
    mask = torch.ones(patches.shape[:2], dtype=torch.int32, device=images.device)
    shapes = torch.tensor([[side, side]] * len(images), device=images.device)
    out = model.vision_model(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes)
    return out.last_hidden_state, out.pooler_output


def _dinov2_vision(model: nn.Module, images: torch.Tensor) -> Tokens:
    out = model(pixel_values=images)
    return out.last_hidden_state[:, 1:], out.pooler_output


def _siglip2_size(config: Any) -> int:
    v = config.vision_config
    return int(round(v.num_patches**0.5)) * v.patch_size


@dataclass(frozen=True)
class Family:
    """How one transformers model type becomes a backbone."""

    model_class: str  # transformers class
    vision: Callable[[nn.Module, torch.Tensor], Tokens]
    image_size: Callable[[Any], int]
    patch_size: Callable[[Any], int]
    mean_std: tuple[tuple[float, ...], tuple[float, ...]]
    resample: str
    has_text: bool = True
    pad_to_max_length: bool = False  # SigLIP's text tower was trained on max-length padding
    text_attention_mask: bool = True


FAMILIES: dict[str, Family] = {
    "clip": Family(
        "CLIPModel", _clip_vision, lambda c: c.vision_config.image_size,
        lambda c: c.vision_config.patch_size, _OPENAI, "bicubic",
    ),
    "siglip": Family(
        "SiglipModel", _siglip_vision, lambda c: c.vision_config.image_size,
        lambda c: c.vision_config.patch_size, _HALF, "bilinear",
        pad_to_max_length=True, text_attention_mask=False,
    ),
    "siglip2": Family(
        "Siglip2Model", _siglip2_vision, _siglip2_size, lambda c: c.vision_config.patch_size,
        _HALF, "bilinear", pad_to_max_length=True, text_attention_mask=False,
    ),
    "dinov2": Family(
        "Dinov2Model", _dinov2_vision, lambda c: c.image_size, lambda c: c.patch_size,
        _IMAGENET, "bicubic", has_text=False,
    ),
}  # fmt: skip


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackboneError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BackboneError(f"{path}: must hold a JSON object")
    return data


def _family(directory: Path) -> tuple[str, Family]:
    if not directory.is_dir():
        raise BackboneError(f"backbone 'hf:{directory}': no such folder")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise BackboneError(f"{config_file}: not found (a transformers folder has config.json)")
    model_type = _read_json(config_file).get("model_type")
    if model_type not in FAMILIES:
        raise BackboneError(
            f"{config_file}: field model_type is {model_type!r}; supported: "
            + ", ".join(FAMILIES)
            + close_matches(str(model_type), list(FAMILIES))
        )
    return model_type, FAMILIES[model_type]


def _tokenizer(directory: Path, family: Family, model_type: str, config: Any) -> Any:
    """A callable prompts -> (input_ids, attention_mask), from the folder's own files."""
    import transformers

    length = int(config.text_config.max_position_embeddings)
    if any((directory / name).is_file() for name in TOKENIZER_FILES):
        try:
            tok = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackboneError(
                f"{directory}: its tokenizer files cannot be read ({first})"
            ) from None
        padding = "max_length" if family.pad_to_max_length else "longest"

        def encode(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            out = tok(prompts, padding=padding, max_length=length, truncation=True,
                      return_tensors="pt")  # fmt: skip
            return out["input_ids"], out["attention_mask"]

        return encode
    if model_type == "clip":  # open_clip's CLIP tokenizer is the same BPE
        import open_clip

        simple = open_clip.SimpleTokenizer(context_length=length)

        def encode_bpe(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            ids = simple(prompts)
            return ids, (ids != 0).long()

        return encode_bpe
    raise BackboneError(
        f"{directory}: no tokenizer files; copy the model repository's {WHAT_TO_COPY} into "
        "this folder, or name another folder holding them as tokenizer=DIR (nothing is "
        "downloaded)"
    )


class HFBackbone(Backbone):
    """A transformers model (``self.model``) as a frozen backbone; see the module docstring."""

    def __init__(self, model: nn.Module, family: Family, tokenizer: Any, info: dict[str, Any]):
        super().__init__()
        self.model = model
        self.family = family
        self._tokenize = tokenizer
        self.info = dict(info)
        self.spec = self.name = str(info["spec"])
        self.sha256 = str(info["sha256"])
        self.image_size = int(info["image_size"])
        self.patch_size = int(info["patch_size"])
        self.mean, self.std = (tuple(x) for x in (info["mean"], info["std"]))
        self.interpolation = str(info["interpolation"])
        side = self.image_size // self.patch_size
        self.grid = (side, side)
        probe = torch.zeros(1, 3, self.image_size, self.image_size, device=self._device())
        self.embed_dim = int(self.forward(probe)[0].shape[1])
        self.text_dim = 0
        if family.has_text:  # probe with token ids: a stored model may have no tokenizer
            ids = torch.zeros(1, 4, dtype=torch.long, device=self._device())
            out = model.get_text_features(input_ids=ids)
            self.text_dim = int(getattr(out, "pooler_output", out).shape[1])
        self._freeze()

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def weights_state(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def vision_parameters(self) -> list[nn.Parameter]:
        return list(getattr(self.model, "vision_model", self.model).parameters())

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed ``images`` (B, 3, R, R) -> F (B, C, h, w), global (B, C_g)."""
        self._check_images(images)
        param = next(self.model.parameters())
        images = images.to(device=param.device, dtype=param.dtype)
        tokens, pooled = self.family.vision(self.model, images)
        b, n, c = tokens.shape
        h, w = self.grid
        if n != h * w:
            raise BackboneError(f"backbone {self.spec!r}: {n} patch tokens, expected {h}x{w}")
        return tokens.transpose(1, 2).reshape(b, c, h, w).contiguous(), pooled

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """``prompts`` -> (K, C_text) ``get_text_features`` (SigLIP: padded to max length)."""
        if not self.family.has_text:
            return super().encode_text(prompts)
        if self._tokenize is None:
            raise BackboneError(
                f"backbone {self.spec!r}: the folder is gone, and its tokenizer is needed to "
                "encode new prompts; pass a folder holding its tokenizer files as tokenizer=DIR "
                "(--tokenizer for linkhoi detect)"
            )
        ids, mask = self._tokenize(prompts)
        kwargs = {"input_ids": ids.to(self._device())}
        if self.family.text_attention_mask:
            kwargs["attention_mask"] = mask.to(self._device())
        out = self.model.get_text_features(**kwargs)
        return getattr(out, "pooler_output", out).float()


def _preprocessing(directory: Path, family: Family) -> dict[str, Any]:
    path = directory / "preprocessor_config.json"
    data = _read_json(path) if path.is_file() else {}
    mean, std = family.mean_std
    return {
        "mean": tuple(data.get("image_mean", mean)),
        "std": tuple(data.get("image_std", std)),
        "interpolation": _RESAMPLE.get(data.get("resample"), family.resample),
    }


@contextmanager
def _quiet_transformers():
    import transformers

    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _from_folder(model_class: Any, folder: Path, config: Any, spec: str) -> tuple[nn.Module, Path]:
    """transformers' own ``from_pretrained`` (with its key conversions), local files only;
    any missing, unexpected or mis-shaped field is an error, not a random initialisation."""
    source = hf_weights_file(folder) if folder.is_dir() else None
    if source is None:
        raise BackboneError(
            f"{folder}: no model.safetensors or pytorch_model.bin (the weights of {spec!r})"
        )
    if source.suffix != ".safetensors":
        read_hf_weights(folder)  # a pickle with code or objects: one clear error
    try:
        with _quiet_transformers():
            model, loading = model_class.from_pretrained(
                folder,
                config=config,
                local_files_only=True,
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # reported below, naming the field
            )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackboneError(f"{source}: cannot be loaded as {spec!r} ({first})") from None
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        fields = sorted(str(k) for k in loading.get(kind) or [])
        if fields:
            what = kind.replace("_keys", "")
            raise BackboneError(
                f"{source}: does not match backbone {spec!r} ({what} field {fields[0]!r}; "
                f"{len(fields)} {what})"
            )
    return model.eval(), source


def load_hf(
    rest: str,
    weights: str | Path | None = None,
    image_size: int | None = None,
    device: str | torch.device | None = None,
    config: dict[str, Any] | None = None,
    preprocess: dict[str, Any] | None = None,
    tokenizer: str | Path | None = None,
    **_: Any,
) -> HFBackbone:
    """The backbone of spec ``hf:DIR``; ``weights`` (another folder of the same model, or a
    folder's weights file) replaces the folder's own; ``tokenizer`` (a folder of tokenizer
    files) replaces the folder's own tokenizer.

    ``config``/``preprocess``: a checkpoint's stored copies of ``config.json`` and the
    preprocessing, used when the folder is gone (the checkpoint then holds the weights).
    """
    import transformers

    from linkhoi.devices import resolve_device
    from linkhoi.model.clip_loading import state_dict_sha256

    directory, spec = Path(rest), f"hf:{rest}"
    gone = config is not None and not directory.is_dir() and weights is None
    if gone:
        model_type = config.get("model_type")
        if model_type not in FAMILIES:
            raise BackboneError(f"backbone {spec!r}: stored model_type {model_type!r} unknown")
        family, config_dict = FAMILIES[model_type], config
    else:
        model_type, family = _family(directory)
        config_dict = _read_json(directory / "config.json")
    config_class = transformers.AutoConfig.for_model(model_type).__class__
    try:
        hf_config = config_class.from_dict(config_dict)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackboneError(f"{directory / 'config.json'}: {first}") from None
    model_class = getattr(transformers, family.model_class)
    if gone:  # the checkpoint's own weights are loaded over these
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = model_class(hf_config).eval()
        sha, source = state_dict_sha256(model.state_dict()), None
    else:  # weights: another copy of the folder, or its weights file
        folder = directory if weights is None else Path(weights)
        folder = folder if folder.is_dir() or not folder.exists() else folder.parent
        model, source = _from_folder(model_class, folder, hf_config, spec)
        sha = file_sha256(source)
    patch = int(family.patch_size(hf_config))
    size = int(image_size or family.image_size(hf_config))
    if size % patch:
        raise BackboneError(f"image_size {size} is not a multiple of the patch size {patch}")
    tok_dir = None if gone else directory
    if tokenizer is not None:
        if not family.has_text:
            raise BackboneError(
                f"backbone {spec!r} has no text tower, so no tokenizer; name the text tower's "
                "spec as model.text_backbone and give the tokenizer to it"
            )
        tok_dir = check_tokenizer_folder(tokenizer, f"backbone {spec!r}")
    encode = None
    if family.has_text and tok_dir is not None:
        encode = _tokenizer(tok_dir, family, model_type, hf_config)
    pre = preprocess if gone and preprocess else _preprocessing(directory, family)
    info = {
        "spec": spec,
        "name": spec,
        "sha256": sha,
        "image_size": size,
        "patch_size": patch,
        "format": "hf",
        "weights": None if source is None else str(source),
        "folder_weights": weights is None,  # the spec names its weights: nothing else needed
        "model_type": model_type,
        "config": config_dict,
        "preprocess": pre,
        **pre,
        "tokenizer": None if tokenizer is None else str(tokenizer),
        "tokenizer_sha256": tokenizer_sha256(tok_dir) if encode is not None else "",
    }
    return HFBackbone(model.to(resolve_device(device)), family, encode, info)


register("hf", load_hf)
