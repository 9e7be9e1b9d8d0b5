"""LINK model checkpoints as plain data (docs/internals.md, "Checkpoints").

A payload holds the model config, the label space, the backbone's identity (spec, weights
hash, resolution, whether its weights are included, and the architecture of a config-file
spec) and the head's state dict (with the text classifier). Backbones larger than
``SMALL_BACKBONE_BYTES`` are left out: loading then needs the same weights file, checked by
hash. A random backbone (tests, demo) rebuilds deterministically and is checked too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from linkhoi.io import atomic_path
from linkhoi.model.config import LinkConfig
from linkhoi.model.link import LinkModel
from linkhoi.weights import load_torch_file

FORMAT = "linkhoi-checkpoint"
VERSION = 1
# Backbones up to this many bytes of weights are included in checkpoints by default (the
# "tiny" alias is 14 MB; ViT-B/16 is 600 MB), so a checkpoint of a small model stands alone.
SMALL_BACKBONE_BYTES = 64 << 20


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the field."""


def model_payload(model: LinkModel, include_backbone: bool | None = None) -> dict[str, Any]:
    """The model as plain data: ``{format, version, model_config, label_space, backbone, model}``.

    ``include_backbone=None`` includes the backbone weights when they are at most
    ``SMALL_BACKBONE_BYTES``.
    """
    backbone = model.backbone
    if include_backbone is None:
        include_backbone = backbone.num_bytes <= SMALL_BACKBONE_BYTES
    state = {
        k: v.detach().cpu()
        for k, v in model.state_dict().items()
        if include_backbone or not k.startswith("backbone.")
    }
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "label_space": model.label_space.to_dict(),
        "backbone": {**backbone.record(), "included": bool(include_backbone)},
        "model": state,
    }


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename (atomic, durable).

    Written through a Python file object, so a full disk is an ``OSError`` that `atomic_path`
    reports in one line (torch's own writer reports it as an "enforce fail")."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        torch.save(payload, fh)
    return path


def _field(payload: dict, key: str, where: str) -> Any:
    if key not in payload:
        raise CheckpointError(f"{where}: missing field {key!r}")
    return payload[key]


def load_model(
    path_or_payload: str | Path | dict[str, Any],
    clip_weights: str | Path | None = None,
    device: str | torch.device | None = None,
    text_weights: str | Path | None = None,
    tokenizer: str | Path | None = None,
) -> LinkModel:
    """Rebuild a ``LinkModel`` from a checkpoint file (``torch.load(weights_only=True)``) or payload.

    When the backbone is not included, ``clip_weights`` must be the weights file it was trained
    with (its sha256 is compared); a random backbone is rebuilt from its seed and its hash
    compared. ``tokenizer``: the text tower's tokenizer folder when the recorded one moved
    (its files' hash is compared with the recorded one). Raises ``CheckpointError`` with the
    file and field on any mismatch.
    """
    from linkhoi.labels import LabelSpace
    from linkhoi.model.clip_loading import state_dict_sha256

    if isinstance(path_or_payload, dict):
        where, payload = "<checkpoint payload>", path_or_payload
    else:
        where = str(path_or_payload)
        payload = load_torch_file(
            path_or_payload, CheckpointError, "linkhoi checkpoint", "no such checkpoint file"
        )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{where}: field 'format' is not {FORMAT!r}")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{where}: field 'version' is {payload.get('version')!r}, need {VERSION}"
        )
    try:
        config = LinkConfig.from_dict(dict(_field(payload, "model_config", where)))
    except ValueError as err:
        raise CheckpointError(f"{where}: field 'model_config': {err}") from None
    label_space = LabelSpace.from_dict(_field(payload, "label_space", where))
    info = _field(payload, "backbone", where)
    state = _field(payload, "model", where)
    from linkhoi.devices import resolve_device

    device = resolve_device(device)

    included, random_init = bool(info.get("included")), bool(info.get("random"))
    backbone = _rebuild_checked(info, where, clip_weights, text_weights, device, tokenizer)
    backbone.sha256 = backbone.info["sha256"] = info["sha256"]
    text = state.get("text") if isinstance(state, dict) else None
    if not isinstance(text, torch.Tensor):
        raise CheckpointError(f"{where}: field 'model' has no 'text' classifier weights")
    _check_head_shapes(config, label_space, backbone, state, where)
    model = LinkModel(config, label_space, backbone, torch.zeros_like(text))
    own = model.state_dict()
    expected = {k for k in own if included or not k.startswith("backbone.")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: field 'model' does not match the config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    try:
        model.load_state_dict(state, strict=included)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{where}: field 'model' does not fit the config: {err}") from None
    if included and random_init:
        got = state_dict_sha256(model.backbone.weights_state())
        if got != info["sha256"]:
            raise CheckpointError(
                f"{where}: included backbone weights do not match 'backbone.sha256'"
            )
    return model.to(device).eval()


def _rebuild_checked(
    info: dict[str, Any],
    where: str,
    clip_weights: str | Path | None,
    text_weights: str | Path | None,
    device: torch.device,
    tokenizer: str | Path | None = None,
) -> Any:
    """The backbone of a checkpoint's ``backbone`` record, its weights checked by hash.

    Weights given are always checked, even when the checkpoint holds its own (a file of
    another model used to be ignored without a word); both hashes are named on a mismatch.
    """
    from linkhoi.model.backbones import rebuild_backbone
    from linkhoi.model.clip_loading import state_dict_sha256

    included, random_init = bool(info.get("included")), bool(info.get("random"))
    in_folder = bool(info.get("folder_weights"))  # hf:DIR names its own weights
    if not included and not random_init and not in_folder and clip_weights is None:
        raise CheckpointError(
            f"{where}: the {info['name']!r} backbone weights are not included; pass "
            f"clip_weights= the weights file (sha256 {info['sha256'][:16]}...)"
        )
    text_info = info.get("text") or {}
    needs_text = text_info and not (text_info.get("random") or text_info.get("folder_weights"))
    if needs_text and not included and text_weights is None:
        raise CheckpointError(
            f"{where}: the text backbone {text_info['spec']!r} weights are not included; "
            f"pass text_weights= its weights file (sha256 {text_info['sha256'][:16]}...)"
        )
    backbone = rebuild_backbone(info, clip_weights, device, text_weights, tokenizer)
    _check_tokenizer(backbone, text_info or info, where)
    tower = getattr(backbone, "text_tower", None)
    text_checked = text_weights is not None or not included
    if tower is not None and text_checked and tower.sha256 != text_info["sha256"]:
        raise CheckpointError(
            f"{where}: field 'backbone.text.sha256' is {text_info['sha256']} but the text "
            f"backbone hashes to {tower.sha256}: not the one this model was trained with"
        )
    checked = clip_weights is not None or not included  # else the stored weights are used
    if checked and backbone.sha256 != info["sha256"]:
        same = (
            clip_weights is not None
            and random_init
            and state_dict_sha256(backbone.weights_state()) == info["sha256"]
        )  # the seeded random weights, saved to a file
        if not same:
            what = "the rebuilt random backbone" if clip_weights is None else f"{clip_weights}"
            raise CheckpointError(
                f"{where}: field 'backbone.sha256' is {info['sha256']} but {what} hashes to "
                f"{backbone.sha256}: not the backbone this model was trained with"
            )
    return backbone


def _check_tokenizer(backbone: Any, record: dict[str, Any], where: str) -> None:
    """The text tower's tokenizer files hash as recorded (when both are known)."""
    tower = getattr(backbone, "text_tower", backbone)
    want, got = record.get("tokenizer_sha256"), tower.info.get("tokenizer_sha256")
    if want and got and want != got:
        field = "backbone.tokenizer_sha256"
        if tower is not backbone:
            field = "backbone.text.tokenizer_sha256"
        raise CheckpointError(
            f"{where}: field {field!r} is {want} but the tokenizer files of "
            f"{tower.info.get('tokenizer') or tower.spec} hash to {got}: not the tokenizer "
            "this model was trained with"
        )


_SIZES = ("d_model", "d_pair", "d_latent", "num_heads", "pe_dims", "encoder_layers",
          "decoder_layers", "ffn_ratio", "roi_size", "spatial_hidden")  # fmt: skip


def _check_head_shapes(
    config: LinkConfig, label_space: Any, backbone: Any, state: dict[str, Any], where: str
) -> None:
    """Compare the head's tensor shapes that ``model_config`` implies with the state dict's,
    before the head is built: the head is laid out on PyTorch's ``meta`` device (shapes, no
    memory), so a config claiming ``d_model: 60000`` is refused instead of allocating tens of
    GB first. Missing or extra head tensors are refused here too."""
    text = state["text"]
    try:
        with torch.device("meta"):
            head = LinkModel(config, label_space, backbone, torch.empty(tuple(text.shape)))
    except ValueError as err:  # text rows vs classes, widths vs heads
        raise CheckpointError(f"{where}: field 'model_config': {err}") from None
    want = {
        k: tuple(v.shape) for k, v in head.state_dict().items() if not k.startswith("backbone.")
    }
    got = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    missing, unexpected = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: field 'model' does not match the config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    for key, shape in want.items():
        value = got[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where}: field 'model.{key}' is not a tensor")
        if tuple(value.shape) != shape:
            sizes = ", ".join(f"{n}={getattr(config, n)}" for n in _SIZES)
            raise CheckpointError(
                f"{where}: field 'model' does not fit the config: 'model.{key}' has shape "
                f"{tuple(value.shape)} but 'model_config' ({sizes}) needs {shape}"
            )
