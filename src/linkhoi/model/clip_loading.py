"""Reading CLIP weights from local files: format detection, converters and hashing.

Formats recognised by :func:`detect_format`:

- ``"open_clip"``: an open_clip (= OpenAI layout) state dict in ``.safetensors``, or in a
  ``torch.save`` file (``.bin``/``.pt``/``.pth``) read with ``torch.load(weights_only=True)``;
  open_clip training checkpoints (``{"state_dict": ...}``, ``module.`` prefixes) are accepted.
- ``"openai-torchscript"``: an OpenAI TorchScript archive (``ViT-B-16.pt``), read directly by
  :func:`linkhoi.model.openai_archive.read_openai_archive`, which rebuilds its tensors without
  running any of its code (no ``torch.jit.load``); ``linkhoi convert-clip`` writes the same
  tensors to a safetensors file for those who want one.
- ``"hf"``: a Hugging Face ``CLIPModel`` directory (``config.json`` + ``model.safetensors``,
  preferred, or a tensor-only ``pytorch_model.bin``), mapped onto open_clip names by
  :func:`hf_to_open_clip`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from linkhoi.io import InputError, atomic_path, load_json
from linkhoi.model.openai_archive import ArchiveError, is_torchscript_archive, read_openai_archive

# Tensors OpenAI's TorchScript state dicts carry that are not open_clip parameters.
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class ClipLoadError(ValueError):
    """A CLIP weights file or directory cannot be used; the message names the path and field."""


# ----------------------------------------------------------------------------- hashing

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, streamed; cached per (path, mtime, size) in this process."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        bar = tqdm(total=st.st_size, unit="B", unit_scale=True, desc=f"sha256 {path.name}",
                   disable=st.st_size < (256 << 20))  # fmt: skip
        with path.open("rb") as f, bar:
            while block := f.read(chunk):
                h.update(block)
                bar.update(len(block))
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, in sorted key order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- detection


def hf_weights_file(directory: Path) -> Path | None:
    """The weights file of a Hugging Face model directory, safetensors preferred."""
    for name in _HF_WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def detect_format(path: str | Path) -> str:
    """Return ``"open_clip"``, ``"openai-torchscript"`` or ``"hf"`` for a weights path.

    Raises :class:`ClipLoadError` for a missing path or an unrecognised directory.
    """
    path = Path(path)
    if not path.exists():
        raise ClipLoadError(f"{path}: CLIP weights not found")
    if path.is_dir():
        if (path / "config.json").is_file() and hf_weights_file(path) is not None:
            return "hf"
        raise ClipLoadError(
            f"{path}: directory is not a Hugging Face CLIP model (expected config.json and "
            f"one of {', '.join(_HF_WEIGHT_FILES)})"
        )
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
        if any(k.startswith(("vision_model.", "text_model.")) for k in keys):
            raise ClipLoadError(
                f"{path}: holds Hugging Face CLIP weights; pass the model directory "
                "(with its config.json) instead of the single file"
            )
        return "open_clip"
    if is_torchscript_archive(path):
        return "openai-torchscript"
    return "open_clip"


# ----------------------------------------------------------------------------- reading


def _clean_open_clip(state: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ClipLoadError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ClipLoadError(f"{path}: field {bad[0]!r} is not a tensor")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in _OPENAI_EXTRA_KEYS}


def _torch_load_tensors(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with one line instead of torch's retry advice."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "pickle" in text.lower():
            raise ClipLoadError(
                f"{path}: holds pickled code or objects, which linkhoi does not load; re-save "
                "its tensors as safetensors (safetensors.torch.save_file, or save_pretrained "
                "with safe_serialization=True)"
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise ClipLoadError(
            f"{path}: cannot be read as a tensor-only state dict ({first})"
        ) from None


def read_open_clip_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an open_clip-layout state dict from ``.safetensors`` or a ``torch.save`` file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return _clean_open_clip(load_file(str(path), device="cpu"), path)
    return _clean_open_clip(_torch_load_tensors(path), path)


def read_openai_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The open_clip state dict of an OpenAI TorchScript archive, read without running it."""
    path = Path(path)
    try:
        state = read_openai_archive(path)
    except ArchiveError as exc:
        raise ClipLoadError(str(exc)) from None
    return {k: v for k, v in state.items() if k not in _OPENAI_EXTRA_KEYS}


def read_hf_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The tensors of a Hugging Face folder (``model.safetensors`` preferred over
    ``pytorch_model.bin``) or of one weights file; returns ``(state, file read)``."""
    path = Path(path)
    file = hf_weights_file(path) if path.is_dir() else path
    if file is None or not file.is_file():
        raise ClipLoadError(
            f"{path}: no weights file (expected one of {', '.join(_HF_WEIGHT_FILES)})"
        )
    if file.suffix == ".safetensors":
        try:
            return load_file(str(file), device="cpu"), file
        except Exception as exc:
            raise ClipLoadError(f"{file}: cannot be read as safetensors ({exc})") from None
    state = _torch_load_tensors(file)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ClipLoadError(f"{file}: expected a state dict of tensors")
    return state, file


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read any supported format into open_clip names; returns (state_dict, format)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "openai-torchscript":
        return read_openai_state_dict(path), fmt
    if fmt == "hf":
        raw, weights = read_hf_weights(path)
        return hf_to_open_clip(raw, weights), fmt
    return read_open_clip_state_dict(path), fmt


# ----------------------------------------------------------------------------- HF mapping

# (HF regex, open_clip template) for parameters that map one to one.
_HF_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), t)
    for p, t in [
        (r"vision_model\.embeddings\.class_embedding", "visual.class_embedding"),
        (r"vision_model\.embeddings\.patch_embedding\.weight", "visual.conv1.weight"),
        (r"vision_model\.embeddings\.position_embedding\.weight", "visual.positional_embedding"),
        (r"vision_model\.pre_layrnorm\.(weight|bias)", r"visual.ln_pre.\1"),
        (r"vision_model\.post_layernorm\.(weight|bias)", r"visual.ln_post.\1"),
        (r"text_model\.embeddings\.token_embedding\.weight", "token_embedding.weight"),
        (r"text_model\.embeddings\.position_embedding\.weight", "positional_embedding"),
        (r"text_model\.final_layer_norm\.(weight|bias)", r"ln_final.\1"),
        (r"logit_scale", "logit_scale"),
    ]
]
_HF_LAYER = re.compile(r"(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)")
_HF_LAYER_PARTS = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_HF_TRANSPOSED = {
    "visual_projection.weight": "visual.proj",
    "text_projection.weight": "text_projection",
}


def hf_to_open_clip(hf: dict[str, torch.Tensor], path: str | Path = "<state dict>") -> dict:
    """Map a transformers ``CLIPModel`` state dict onto open_clip ``CLIP`` parameter names.

    q/k/v projections (each (W, W) + (W,)) are packed into ``in_proj_weight`` (3W, W) and
    ``in_proj_bias`` (3W,) in q, k, v order; the projection matrices are transposed
    (HF ``Linear`` weight (E, W) -> open_clip ``proj`` (W, E)).
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in hf.items():
        if key.endswith("position_ids"):  # a non-parameter buffer older checkpoints saved
            continue
        if key in _HF_TRANSPOSED:
            out[_HF_TRANSPOSED[key]] = value.t().contiguous()
            continue
        if m := _HF_LAYER.fullmatch(key):
            tower, idx, rest = m.groups()
            prefix = (
                "visual." if tower == "vision_model" else ""
            ) + f"transformer.resblocks.{idx}."
            if pm := re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest):
                qkv.setdefault((prefix, pm.group(2)), {})[pm.group(1)] = value
                continue
            part, _, leaf = rest.rpartition(".")
            if part in _HF_LAYER_PARTS:
                out[f"{prefix}{_HF_LAYER_PARTS[part]}.{leaf}"] = value
                continue
        for pattern, template in _HF_RULES:
            if pattern.fullmatch(key):
                out[pattern.sub(template, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ClipLoadError(f"{path}: unknown Hugging Face CLIP field {unknown[0]!r}")
    for (prefix, leaf), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ClipLoadError(f"{path}: field {prefix}attn has only {sorted(parts)} projections")
        out[f"{prefix}attn.in_proj_{leaf}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out


def hf_config_to_open_clip(config: dict, path: str | Path = "config.json") -> dict:
    """Translate a transformers ``CLIPConfig`` dict into an open_clip model config dict."""
    vision = config.get("vision_config") or config.get("vision_config_dict") or {}
    text = config.get("text_config") or config.get("text_config_dict") or {}
    if config.get("model_type", "clip") != "clip":
        raise ClipLoadError(f"{path}: field model_type is {config['model_type']!r}, not 'clip'")
    # Defaults of transformers' CLIPVisionConfig / CLIPTextConfig, used when a key is omitted.
    v_width = vision.get("hidden_size", 768)
    v_heads = vision.get("num_attention_heads", 12)
    t_width = text.get("hidden_size", 512)
    acts = {vision.get("hidden_act", "quick_gelu"), text.get("hidden_act", "quick_gelu")}
    if len(acts) != 1 or not acts <= {"quick_gelu", "gelu"}:
        raise ClipLoadError(f"{path}: field hidden_act {sorted(acts)} is not supported")
    return {
        "embed_dim": config.get("projection_dim", 512),
        "quick_gelu": acts == {"quick_gelu"},
        "vision_cfg": {
            "image_size": vision.get("image_size", 224),
            "layers": vision.get("num_hidden_layers", 12),
            "width": v_width,
            "head_width": v_width // v_heads,
            "mlp_ratio": vision.get("intermediate_size", 3072) / v_width,
            "patch_size": vision.get("patch_size", 32),
        },
        "text_cfg": {
            "context_length": text.get("max_position_embeddings", 77),
            "vocab_size": text.get("vocab_size", 49408),
            "width": t_width,
            "heads": text.get("num_attention_heads", 8),
            "layers": text.get("num_hidden_layers", 12),
            "mlp_ratio": text.get("intermediate_size", 2048) / t_width,
        },
    }


def read_hf_config(directory: str | Path) -> dict:
    """open_clip model config of a Hugging Face CLIP directory (see :func:`hf_config_to_open_clip`)."""
    path = Path(directory) / "config.json"
    try:
        config = load_json(path)
    except (OSError, InputError) as exc:  # also too large or too deeply nested
        raise ClipLoadError(f"{path}: cannot be read as JSON ({exc})") from None
    return hf_config_to_open_clip(config, path)


# ----------------------------------------------------------------------------- conversion


def describe_architecture(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """Architecture numbers read off an open_clip/OpenAI ViT state dict's shapes."""
    try:
        conv = state_dict["visual.conv1.weight"]  # (width, 3, patch, patch)
        n_pos = state_dict["visual.positional_embedding"].shape[0]
        layers = {
            int(m.group(1))
            for k in state_dict
            if (m := re.match(r"visual\.transformer\.resblocks\.(\d+)\.", k))
        }
        grid = round((n_pos - 1) ** 0.5)
        return {
            "width": conv.shape[0],
            "patch_size": conv.shape[-1],
            "image_size": grid * conv.shape[-1],
            "layers": len(layers),
            "embed_dim": state_dict["visual.proj"].shape[1],
        }
    except KeyError as exc:
        raise ClipLoadError(f"state dict has no field {exc.args[0]!r}: not a CLIP ViT") from exc


def atomic_save_safetensors(
    state: dict[str, torch.Tensor], dst: str | Path, metadata: dict
) -> None:
    """Write ``state`` to ``dst`` through a temporary file in the same folder, then rename."""
    with atomic_path(dst) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)


def convert_openai_archive(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Convert an OpenAI TorchScript CLIP archive to an open_clip ``.safetensors`` state dict.

    The archive is read by :func:`read_openai_state_dict` (no code from it runs; fp16 tensors
    saved on ``cuda`` convert on a CPU-only machine). Tensors keep their dtype (loading casts
    to the model's fp32). Returns ``{"architecture": dict, "sha256": hex digest of dst,
    "tensors": count}``.
    """
    src, dst = Path(src), Path(dst)
    if detect_format(src) != "openai-torchscript":
        raise ClipLoadError(f"{src}: is not a TorchScript archive (nothing to convert)")
    if dst.suffix != ".safetensors":
        raise ClipLoadError(f"{dst}: the destination must end in .safetensors")
    state = {k: v.contiguous() for k, v in read_openai_state_dict(src).items()}
    arch = describe_architecture(state)
    atomic_save_safetensors(state, dst, metadata={"source": "openai-torchscript", "from": src.name})
    return {"architecture": arch, "sha256": file_sha256(dst), "tensors": len(state)}
