"""Command-line inputs: IMAGES (files, folders, globs) and the detection source to use."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from linkhoi.infer.predictor import InferenceError
from linkhoi.labels import LabelSpace

# Suffixes a folder is searched for; explicit files are tried whatever their suffix.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


def expand_images(inputs: list[str]) -> list[tuple[Path, str]]:
    """(path, file_name) of every image named by `inputs`, in a stable order.

    A file keeps its base name; a folder gives its image files (recursively, sorted), named
    by their path relative to the folder; a glob pattern gives its matches (base names).
    Raises `InferenceError` for an input matching nothing or for two images with one name.
    """
    found: list[tuple[Path, str]] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            found += [(p, p.relative_to(path).as_posix()) for p in files]
        elif path.is_file():
            found.append((path, path.name))
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            found += [(m, m.name) for m in matches if m.is_file()]
            if not matches:
                raise InferenceError(f"no file matches {text!r}")
        else:
            raise InferenceError(f"image {text!r}: no such file or folder")
    seen: dict[str, Path] = {}
    unique: list[tuple[Path, str]] = []
    for path, name in found:
        if name in seen:
            if seen[name].resolve() == path.resolve():
                continue  # the same file named twice
            raise InferenceError(
                f"two images share the file name {name!r} ({seen[name]} and {path}); give their "
                "common folder instead so names stay distinct"
            )
        seen[name] = path
        unique.append((path, name))
    return unique


def make_detector(
    label_space: LabelSpace | None,
    detector: str | None = None,
    detector_weights: str | None = None,
    detections: str | None = None,
    device: str | None = None,
    score_threshold: float = 0.05,
    categories: str | None = None,
    **options: Any,
) -> Any:
    """The `DetectionSource` the command line asks for.

    ``detector="KIND:ARG"`` builds a registered detector kind (`linkhoi.detections.registry`:
    ``torchvision:NAME`` with ``detector_weights``, ``hf:DIR``, ...; `options` such as
    ``batch_size``, ``objects`` go to its factory); ``detections=FILE`` reads a detection
    file (its label space must be the checkpoint's; COCO results also need ``categories``,
    the COCO-style file of image ids and categories).
    """
    from linkhoi.detections.registry import kinds_help, make_source

    if (detector is None) == (detections is None):
        raise InferenceError(
            "give exactly one box source: --detector KIND:ARG, one of "
            f"{kinds_help()}; or --detections FILE (boxes from any detector)"
        )
    if detections is not None:
        from linkhoi.detections import FileDetections

        return FileDetections(detections, label_space, categories=categories)
    return make_source(
        detector,  # type: ignore[arg-type]
        label_space,  # type: ignore[arg-type]
        weights=detector_weights,
        device=device,
        score_threshold=score_threshold,
        **options,
    )
