"""Text classifier weights from CLIP's text tower (docs/method.md §1).

One prompt per HOI class of a label space, encoded by open_clip's text tower, L2-normalised
and cached on disk under a key of (backbone weights sha256, label space name + digest,
template). Arbitrary user prompts (``--verbs "ride, feed"``) are encoded for open-vocabulary
inference by :func:`prompt_embeddings`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from linkhoi.labels import LabelSpace, ing_form
from linkhoi.model.clip_loading import atomic_save_safetensors
from linkhoi.paths import safe_component

__all__ = [
    "TEMPLATES",
    "build_prompts",
    "cache_root",
    "encode_text",
    "parse_hoi_list",
    "parse_prompt_list",
    "prompt_embeddings",
    "text_embeddings",
]

# Named templates: {ing} = verb -ing form, {a} = "a"/"an", {object} = object name.
TEMPLATES: dict[str, dict[str, str]] = {
    "hico": {
        "default": "a photo of a person {ing} {a} {object}",
        "no_interaction": "a photo of a person and {a} {object}",
        "any_object": "a photo of a person {ing} an object",
        "agent_only": "a photo of a person {ing}",
    },
    # V-COCO classes accept any object; agent-only actions (stand, smile, ...) have no role.
    "vcoco": {
        "default": "a photo of a person {ing} an object",
        "agent_only": "a photo of a person {ing}",
    },
    # SWiG-HOI actions are -ing forms already (ing_form returns them unchanged).
    "swig": {"default": "a photo of a person {ing} {a} {object}"},
}
_AUTO = {"hico_det": "hico", "vcoco": "vcoco", "swig_hoi": "swig"}


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _words(name: str) -> str:
    return name.replace("_", " ").strip()


def _resolve_template(label_space: LabelSpace, template: str) -> str:
    if template == "auto":
        return _AUTO.get(label_space.name, "hico")
    if template in TEMPLATES or "{" in template:
        return template
    raise ValueError(
        f"unknown prompt template {template!r}: use 'auto', one of {sorted(TEMPLATES)}, or a "
        "format string with {ing}, {a} and {object}"
    )


def _prompt(verb: str, obj: str | None, role: str | None, ing: str, template: str) -> str:
    if "{" in template:  # a user's format string
        return template.format(ing=ing, a=_article(obj or "object"), object=_words(obj or "object"))
    forms = TEMPLATES[template]
    if obj is None:
        key = "agent_only" if role is None else "any_object"
        text = forms.get(key, forms["default"])
    elif verb == "no_interaction" and "no_interaction" in forms:
        text = forms["no_interaction"]
    else:
        text = forms["default"]
    return text.format(ing=ing, a=_article(_words(obj or "")), object=_words(obj or ""))


def build_prompts(label_space: LabelSpace, template: str = "hico") -> list[str]:
    """One prompt per HOI class, in the label space's HOI order.

    ``template``: ``"hico"`` ("a photo of a person riding a horse", "... and an airplane" for
    no_interaction), ``"vcoco"`` ("a photo of a person holding an object"; agent-only
    actions "a photo of a person standing"), ``"swig"``, ``"auto"`` (by label space name), or
    a format string using ``{ing}``, ``{a}`` and ``{object}``.
    """
    template = _resolve_template(label_space, template)
    no_inter = label_space.extra.get("no_interaction_verb", "no_interaction")
    prompts = []
    for hoi in label_space.hois:
        verb = "no_interaction" if hoi.verb == no_inter else hoi.verb
        ing = _words(ing_form(hoi.verb, label_space))
        prompts.append(_prompt(verb, hoi.object, hoi.role, ing, template))
    return prompts


def _encoder(model: nn.Module) -> Any:
    """prompts -> (n, C_text): a ``Backbone``'s own ``encode_text``, or a bare open_clip CLIP
    model's text tower with its BPE tokenizer."""
    from linkhoi.model.backbones import Backbone

    if isinstance(model, Backbone):
        return model.encode_text

    def encode(batch: list[str]) -> torch.Tensor:
        tokens = open_clip.tokenize(batch, model.context_length)
        return model.encode_text(tokens.to(next(model.parameters()).device)).float()

    return encode


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_text(model: nn.Module, prompts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Encode ``prompts`` with the text tower of ``model`` (a ``Backbone`` or an open_clip
    CLIP model): (K, C_text) float32, rows L2-normalised."""
    if not prompts:
        raise ValueError("encode_text needs at least one prompt")
    encode = _encoder(model)
    was_training = model.training
    model.eval()
    chunks = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="text embeddings", unit="batch", disable=len(starts) <= 1):
        chunks.append(encode(prompts[start : start + batch_size]).float())
    model.train(was_training)
    return F.normalize(torch.cat(chunks), dim=-1)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$LINKHOI_CACHE``, else ``~/.cache/linkhoi``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("LINKHOI_CACHE") or Path.home() / ".cache" / "linkhoi")


def _cache_key(
    info: dict[str, Any], label_space: LabelSpace, template: str, prompts: list[str]
) -> str:
    blob = json.dumps(
        {
            "weights_sha256": info["sha256"],
            "backbone": info["name"],
            "label_space": label_space.name,
            "label_space_digest": label_space.digest,
            "template": TEMPLATES.get(template, template),
            "prompts": prompts,
            # The text tower, when it is another model's (a vision-only backbone).
            **({"text_sha256": info["text_sha256"]} if info.get("text_sha256") else {}),
            # The tokenizer's files, when read from a folder (hf:DIR, SigLIP's tokenizer=DIR).
            **(
                {"tokenizer_sha256": info["tokenizer_sha256"]}
                if info.get("tokenizer_sha256")
                else {}
            ),  # fmt: skip
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def text_embeddings(
    clip_model: nn.Module,
    info: dict[str, Any],
    label_space: LabelSpace,
    template: str = "auto",
    cache_dir: str | Path | None = None,
) -> torch.Tensor:
    """Classifier initialisation T: (K, C) L2-normalised prompt embeddings, K = #HOI classes.

    Cached as safetensors in ``<cache>/text/``; a second call with the same weights, label
    space and template reads the file instead of running the text tower.
    """
    resolved = _resolve_template(label_space, template)
    prompts = build_prompts(label_space, resolved)
    key = _cache_key(info, label_space, resolved, prompts)
    # The name is free text from a label-space file: never a raw path component.
    stem = safe_component(label_space.name)
    path = cache_root(cache_dir) / "text" / f"{stem}-{key[:24]}.safetensors"
    device = _device(clip_model)
    if path.is_file():
        try:
            cached = load_file(str(path))["embeddings"]
            if cached.shape[0] == len(prompts):
                return cached.to(device)
        except Exception:  # a truncated or foreign file: recompute and overwrite it
            pass
    emb = encode_text(clip_model, prompts)
    meta = {
        "label_space": label_space.name,
        "label_space_digest": label_space.digest,
        "weights_sha256": str(info["sha256"]),
        "template": resolved,
    }
    atomic_save_safetensors({"embeddings": emb.cpu()}, path, metadata=meta)
    return emb


def parse_prompt_list(text: str) -> list[str]:
    """``"ride, feed ,hold"`` -> ``["ride", "feed", "hold"]`` (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_hoi_list(text: str) -> list[tuple[str, str]]:
    """``"ride:horse, feed:giraffe"`` -> ``[("ride", "horse"), ("feed", "giraffe")]``."""
    pairs = []
    for item in parse_prompt_list(text):
        verb, sep, obj = item.partition(":")
        if not sep or not verb.strip() or not obj.strip():
            raise ValueError(f"HOI {item!r} must be written verb:object, e.g. ride:horse")
        pairs.append((verb.strip(), obj.strip()))
    return pairs


def prompt_embeddings(
    clip_model: nn.Module,
    verbs: list[str] | None = None,
    hois: list[tuple[str, str]] | None = None,
    label_space: LabelSpace | None = None,
) -> tuple[list[str], torch.Tensor]:
    """Embeddings for user-given classes (open vocabulary), not cached.

    ``verbs`` become object-agnostic prompts ("a photo of a person feeding an object"),
    ``hois`` (verb, object) pairs become "a photo of a person riding a horse". Returns
    ``(prompts, embeddings (len(verbs) + len(hois), C))`` in that order.
    """

    def ing(verb: str) -> str:  # users may already type "riding"
        first = re.split(r"[\s_]+", verb.strip())[0]
        return _words(verb if first.endswith("ing") else ing_form(verb, label_space))

    prompts = [_prompt(v, None, "obj", ing(v), "hico") for v in verbs or []]
    prompts += [_prompt(v, o, None, ing(v), "hico") for v, o in hois or []]
    if not prompts:
        raise ValueError("prompt_embeddings needs at least one verb or (verb, object) pair")
    return prompts, encode_text(clip_model, prompts)
