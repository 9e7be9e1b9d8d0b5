"""Local tokenizer folders: the tokenizer of a text tower read from files, never from a hub.

A tokenizer folder is what transformers' ``save_pretrained`` writes for a tokenizer
(``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``, or a sentencepiece
``spiece.model``). ``hf:DIR`` backbones read their own folder; open_clip models whose tokenizer
open_clip would fetch from a hub (``text_cfg.hf_tokenizer_name``: SigLIP, SigLIP2, CLIPA, the
multilingual "worldwide" models) take one as ``tokenizer=DIR`` and tokenize exactly as
``open_clip.get_tokenizer`` does, with the model config's ``tokenizer_kwargs`` and padding to
the context length. Models whose text tower is itself a transformers model
(``text_cfg.hf_model_name``: roberta, xlm-roberta, mt5, nllb) find that model's ``config.json``
in the same folder. The hash of the folder's tokenizer files joins the text-embedding cache key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch

from linkhoi.model.backbones.base import BackboneError

__all__ = [
    "TOKENIZER_FILES",
    "WHAT_TO_COPY",
    "check_tokenizer_folder",
    "hf_text_model_folder",
    "open_clip_hf_tokenizer",
    "open_clip_tokenizer_info",
    "tokenizer_files",
    "tokenizer_sha256",
]

# Every file a transformers tokenizer may read (what the folder's hash covers).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")  # fmt: skip
# At least one of these holds the vocabulary itself.
_VOCABULARY_FILES = ("tokenizer.json", "spiece.model", "sentencepiece.bpe.model",
                     "tokenizer.model", "vocab.json", "vocab.txt")  # fmt: skip
WHAT_TO_COPY = (
    "tokenizer.json, tokenizer_config.json and special_tokens_map.json (or spiece.model for a "
    "sentencepiece tokenizer)"
)


def tokenizer_files(folder: str | Path) -> list[Path]:
    """The tokenizer files present in ``folder`` (sorted by name)."""
    folder = Path(folder)
    return [folder / name for name in sorted(TOKENIZER_FILES) if (folder / name).is_file()]


def tokenizer_sha256(folder: str | Path) -> str:
    """sha256 over (name, bytes) of the folder's tokenizer files; "" when it has none."""
    files = tokenizer_files(folder)
    if not files:
        return ""
    h = hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        h.update(f"{path.name}|{len(data)}|".encode())
        h.update(data)
    return h.hexdigest()


def check_tokenizer_folder(folder: str | Path, what: str) -> Path:
    """``folder`` if it holds a tokenizer's vocabulary, else one :class:`BackboneError`
    naming the folder and the files to put there. ``what`` says whose tokenizer it is
    (e.g. "backbone 'open_clip:ViT-B-16-SigLIP' (the Hugging Face tokenizer ...)")."""
    path = Path(folder)
    if not path.is_dir():
        raise BackboneError(
            f"tokenizer folder {path} of {what}: no such folder; create it with "
            f"{WHAT_TO_COPY} (nothing is downloaded)"
        )
    if not any((path / name).is_file() for name in _VOCABULARY_FILES):
        raise BackboneError(
            f"tokenizer folder {path} of {what}: no tokenizer files; copy {WHAT_TO_COPY} "
            "into it (nothing is downloaded)"
        )
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_clip_hf_tokenizer(
    folder: Path, text_cfg: dict[str, Any], spec: str
) -> Callable[[list[str]], torch.Tensor]:
    """open_clip's own ``HFTokenizer`` on a local folder, built as ``open_clip.get_tokenizer``
    builds it for a config with ``hf_tokenizer_name``: ``context_length`` from ``text_cfg``
    (77 when absent), its ``tokenizer_kwargs`` (SigLIP: ``clean="canonicalize"``) and
    ``tokenizer_mode``; every prompt is padded to ``context_length`` (as SigLIP was trained).
    Returns prompts (K strings) -> token ids (K, context_length)."""
    from open_clip.tokenizer import DEFAULT_CONTEXT_LENGTH, HFTokenizer

    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    try:
        return HFTokenizer(
            str(folder),
            context_length=text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH),
            cache_dir=None,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            local_files_only=True,  # passed on to AutoTokenizer.from_pretrained
            **kwargs,
        )
    except Exception as exc:
        raise BackboneError(
            f"tokenizer folder {folder}: cannot be read as the tokenizer of {spec!r} "
            f"({_first_line(exc)}); it needs {WHAT_TO_COPY}"
        ) from None


def open_clip_tokenizer_info(
    cfg: dict[str, Any], rest: str, name: str, tokenizer: str | Path | None
) -> dict[str, Any]:
    """How the text is tokenized: ``hub_tokenizer`` (the hub name open_clip would fetch, ""
    for the built-in CLIP BPE), ``tokenizer_cfg`` (the text config fields open_clip's
    tokenizer reads) and the local ``tokenizer`` folder with its ``tokenizer_sha256``."""
    text_cfg = cfg["text_cfg"]
    hub = str(text_cfg.get("hf_tokenizer_name") or "")
    if not hub and "siglip" in rest.lower() and not rest.endswith(".json"):
        # open_clip would use its SigLipTokenizer (a fetched sentencepiece file); no config
        # of open_clip 3.x takes this path: they all name hf_tokenizer_name.
        hub = "SigLIP's sentencepiece"
    fields = ("context_length", "tokenizer_kwargs", "tokenizer_mode")
    out: dict[str, Any] = {
        "hub_tokenizer": hub,
        "tokenizer_cfg": {k: deepcopy(text_cfg[k]) for k in fields if k in text_cfg},
        "tokenizer": None,
        "tokenizer_sha256": "",
    }
    if tokenizer is not None:
        if not hub:
            raise BackboneError(
                f"backbone {name!r} tokenizes with open_clip's built-in CLIP BPE: a tokenizer "
                "folder is only for models whose open_clip tokenizer is a Hugging Face one "
                "(text_cfg.hf_tokenizer_name, e.g. SigLIP); leave it out"
            )
        what = f"backbone {name!r} (the Hugging Face tokenizer {hub!r})"
        folder = check_tokenizer_folder(tokenizer, what)
        out["tokenizer"], out["tokenizer_sha256"] = str(folder), tokenizer_sha256(folder)
    return out


def hf_text_model_folder(cfg: dict[str, Any], tok_info: dict[str, Any], name: str) -> str:
    """The local folder standing for ``text_cfg.hf_model_name`` (open_clip models whose text
    tower is a transformers model: roberta, xlm-roberta, mt5, nllb): the tokenizer folder,
    which then also holds that model's ``config.json`` (the weights come from the open_clip
    weights file). One :class:`BackboneError` saying what to put there otherwise."""
    hub = cfg["text_cfg"]["hf_model_name"]
    folder = tok_info.get("tokenizer")
    if not folder or not (Path(folder) / "config.json").is_file():
        where = f"the folder {folder}" if folder else "a local folder"
        raise BackboneError(
            f"backbone {name!r}: its text tower is the Hugging Face model {hub!r}, whose "
            f"config open_clip reads from the hub; put that model's config.json and its "
            f"tokenizer files ({WHAT_TO_COPY}) in {where} and pass it as tokenizer=DIR "
            "(model.tokenizer in training configs); the weights come from the weights file"
        )
    return str(folder)
