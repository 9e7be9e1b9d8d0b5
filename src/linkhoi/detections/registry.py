"""Detector kinds by name: ``KIND:ARG`` strings (``--detector hf:DIR``) -> `DetectionSource`.

Each kind registers a factory ``(arg, label_space, options) -> source``; adding a detector
family is one `register` call, not a branch in the command line. Options the factories read:
``weights``, ``score_threshold``, ``device``, ``batch_size``, ``objects``, ``labels``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from linkhoi.detections.base import DetectionError
from linkhoi.labels import LabelSpace

Factory = Callable[[str, LabelSpace, dict[str, Any]], Any]


@dataclass(frozen=True)
class Kind:
    """A detector kind: its factory, what ARG is, and an example."""

    factory: Factory
    arg: str
    example: str
    takes_objects: bool = False


KINDS: dict[str, Kind] = {}


def register(
    name: str, arg: str, example: str, takes_objects: bool = False
) -> Callable[[Factory], Factory]:
    """Decorator registering `factory` as detector kind `name` (`takes_objects`: it can be
    prompted with object names)."""

    def wrap(factory: Factory) -> Factory:
        KINDS[name] = Kind(factory, arg, example, takes_objects)
        return factory

    return wrap


def kinds_help() -> str:
    """One line per kind: ``KIND:ARG`` and an example."""
    return "; ".join(f"{n}:{k.arg} (e.g. {k.example})" for n, k in KINDS.items())


def make_source(spec: str, label_space: LabelSpace, **options: Any) -> Any:
    """The `DetectionSource` of ``KIND:ARG`` (see `KINDS`); one `DetectionError` for an
    unknown kind or a missing ARG. ``cache=DIR`` wraps it in a `CachedDetector`."""
    kind, sep, arg = spec.partition(":")
    if kind not in KINDS or not sep or not arg:
        raise DetectionError(f"--detector {spec!r}: write KIND:ARG, one of {kinds_help()}")
    if options.get("objects") and not KINDS[kind].takes_objects:
        raise DetectionError(f"--objects: detector kind {kind!r} cannot be prompted with names")
    source = KINDS[kind].factory(arg, label_space, options)
    if options.get("cache"):
        from linkhoi.detections.cache import CachedDetector

        source = CachedDetector(source, options["cache"])
    return source


def _pick(options: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: options[k] for k in keys if options.get(k) is not None}


@register("torchvision", "NAME", "torchvision:fasterrcnn_resnet50_fpn_v2 --detector-weights W")
def _torchvision(arg: str, label_space: LabelSpace, options: dict[str, Any]) -> Any:
    if not options.get("weights"):
        raise DetectionError(
            f"--detector torchvision:{arg}: --detector-weights FILE is needed (nothing is "
            "downloaded)"
        )
    from linkhoi.detections.torchvision_detector import TorchvisionDetector

    return TorchvisionDetector(
        arg, options["weights"], label_space, **_pick(options, "score_threshold", "device")
    )


@register("hf", "DIR", "hf:detr-hico (a transformers save_pretrained folder)", takes_objects=True)
def _hf(arg: str, label_space: LabelSpace, options: dict[str, Any]) -> Any:
    from linkhoi.detections.hf import load_hf_detector

    return load_hf_detector(
        arg,
        label_space,
        objects=options.get("objects"),
        **_pick(options, "score_threshold", "device", "batch_size"),
    )


@register("folder", "DIR", "folder:cached/test2015 (one json per image, UPT/SCG layout)")
def _folder(arg: str, label_space: LabelSpace, options: dict[str, Any]) -> Any:
    from linkhoi.detections.folder import FolderDetections

    return FolderDetections(arg, label_space, label_kind=options.get("label_kind") or "positions")
