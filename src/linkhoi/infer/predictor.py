"""`Predictor`: a LINK checkpoint + a detection source -> HOI triplets for any image.

Images are loaded with `linkhoi.data.load_image` (EXIF orientation applied, grayscale, RGBA
and 16-bit converted), detections filtered as in training (`LinkModel.propose`: the proposal
settings of the model's config), and the model's scores turned into triplet dicts with
`linkhoi.model.to_triplets`. Open
vocabulary: `set_vocabulary(verbs=..., hois=...)` swaps the classifier rows for CLIP text
embeddings of the user's prompts without retraining.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from linkhoi.data import load_image
from linkhoi.detections import (
    CallableDetector,
    DetectionError,
    Detections,
    DetectionSource,
    FileDetections,
    check_detections,
)
from linkhoi.labels import HOIClass, LabelError, LabelSpace, normalise_name
from linkhoi.model import LinkModel, to_triplets, valid_class_table

ImageInput = str | Path | Image.Image
DetectionsArg = Detections | DetectionSource | Callable[..., Any] | list[Detections] | None


class InferenceError(ValueError):
    """Inference cannot run as asked; the message says what to change."""


def open_vocabulary_space(
    base: LabelSpace,
    verbs: Iterable[str] = (),
    hois: Iterable[tuple[str, str]] = (),
    objects: Iterable[str] = (),
) -> LabelSpace:
    """A label space of user classes over `base`'s objects plus new `objects`.

    Each verb becomes an any-object class (valid for every detected object), each (verb,
    object) pair a class valid for that object only; objects must be `base`'s or among
    `objects` (names an open-vocabulary detector is prompted with; those `base` lacks are
    appended with new ids). Verbs keep the user's spelling.
    """
    verbs, hois = [v.strip() for v in verbs], [(v.strip(), o.strip()) for v, o in hois]
    new: list[str] = []
    for name in (" ".join(o.split()) for o in objects):
        try:
            base.object_position(name)
        except LabelError:
            if name and normalise_name(name) not in {normalise_name(n) for n in new}:
                new.append(name)
    all_objects = (*base.objects, *new)
    first_id = max(base.object_ids, default=0) + 1
    all_ids = (*base.object_ids, *range(first_id, first_id + len(new)))
    names = list(dict.fromkeys([*verbs, *(v for v, _ in hois)]))
    if not names:
        raise InferenceError("open vocabulary needs at least one verb or (verb, object) pair")
    verb_id = {v: i + 1 for i, v in enumerate(names)}
    classes = [HOIClass(i + 1, v, None, verb_id[v], None) for i, v in enumerate(verbs)]
    new_pos = {normalise_name(n): len(base.objects) + j for j, n in enumerate(new)}
    for v, o in hois:
        try:
            pos = base.object_position(o)
        except LabelError:
            pos = new_pos.get(normalise_name(o), -1)
        if pos < 0:
            raise InferenceError(
                f"HOI ({v!r}, {o!r}): object {o!r} is not one of the checkpoint's objects "
                f"(label space {base.name!r}: {', '.join(base.objects[:12])}...) nor of the "
                "detector's --objects"
            )
        name = all_objects[pos]
        classes.append(HOIClass(len(classes) + 1, v, name, verb_id[v], all_ids[pos]))
    try:
        return LabelSpace(
            name=f"{base.name}+open",
            human=base.human,
            verbs=names,
            verb_ids=[verb_id[v] for v in names],
            objects=all_objects,
            object_ids=all_ids,
            hois=classes,
            verb_ing={v: g for v, g in base.verb_ing.items() if v in verb_id},
        )
    except LabelError as err:  # e.g. the same (verb, object) twice
        raise InferenceError(f"open vocabulary: {err}") from None


class Predictor:
    """HOI triplets of images from a `LinkModel`.

    Args:
        model: a LINK model (eval mode is set).
        detector: default detection source when a call gives none.
        device: default the model's device.
    """

    def __init__(
        self,
        model: LinkModel,
        detector: DetectionsArg = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = torch.device(device) if device else model.text.device
        self.model = model.to(self.device).eval()
        self.base_label_space = model.label_space
        self._base_text = model.text.detach().clone()
        self.detector = detector
        self.prompts: list[str] | None = None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        clip_weights: str | Path | None = None,
        device: str | torch.device | None = None,
        verbs: list[str] | None = None,
        hois: list[tuple[str, str]] | None = None,
        detector: DetectionsArg = None,
        text_weights: str | Path | None = None,
        tokenizer: str | Path | None = None,
    ) -> Predictor:
        """Load a linkhoi checkpoint (`linkhoi.model.checkpoint.load_model`); device cuda if
        available else cpu. `verbs`/`hois` switch to an open vocabulary at once. `text_weights`:
        the text backbone's weights when not included; `tokenizer`: the text tower's tokenizer
        folder when the recorded one moved."""
        from linkhoi.model.checkpoint import load_model

        model = load_model(
            path, clip_weights, device, text_weights=text_weights, tokenizer=tokenizer
        )
        pred = cls(model, detector)
        if verbs or hois:
            pred.set_vocabulary(verbs, hois)
        return pred

    @property
    def label_space(self) -> LabelSpace:
        """The label space of the triplets (the checkpoint's, or the open vocabulary)."""
        return self.model.label_space

    def set_vocabulary(
        self,
        verbs: list[str] | None = None,
        hois: list[tuple[str, str]] | None = None,
        objects: list[str] | None = None,
    ) -> list[str]:
        """Replace the classifier rows by text embeddings of user classes; returns the prompts.

        `objects`: names an open-vocabulary detector finds; those the checkpoint lacks become
        new objects of `label_space` (build the detector with it). No verbs and no hois
        restores the checkpoint's classes. Needs the CLIP text tower, which the loaded
        backbone always has (included, rebuilt, or from `clip_weights`).
        """
        from linkhoi.model.text import prompt_embeddings

        model = self.model
        if not verbs and not hois:
            if objects:
                raise InferenceError("new objects need verbs or hois to pair them with")
            space, text, prompts = self.base_label_space, self._base_text, None
        else:
            space = open_vocabulary_space(
                self.base_label_space, verbs or [], hois or [], objects or []
            )
            verbs_in = [h.verb for h in space.hois if h.object is None]
            hois_in = [(h.verb, h.object) for h in space.hois if h.object is not None]
            prompts, text = prompt_embeddings(
                model.backbone, verbs_in, hois_in, label_space=self.base_label_space
            )
        model.text = nn.Parameter(text.to(self.device, torch.float32), requires_grad=False)
        model.valid_table = valid_class_table(space).to(self.device)
        model.label_space = space
        self.prompts = prompts
        return prompts or []

    # ----------------------------------------------------------------- detections
    def _source(self, detections: DetectionsArg) -> Any:
        detections = self.detector if detections is None else detections
        if detections is None:
            raise InferenceError(
                "no detections: pass detections= a Detections, a DetectionSource (e.g. "
                "TorchvisionDetector, FileDetections) or a function image -> (boxes, labels, "
                "scores)"
            )
        if (
            isinstance(detections, FileDetections)
            and detections.label_space.name != self.base_label_space.name
        ):
            raise InferenceError(
                f"detection file {str(detections.path)!r} is read for label space "
                f"{detections.label_space.name!r} but the checkpoint is for label space "
                f"{self.base_label_space.name!r}; use detections and a checkpoint of the same "
                "label space"
            )
        if isinstance(detections, Detections | list | DetectionSource):
            return detections
        if callable(detections):
            return CallableDetector(detections, self.base_label_space)
        raise InferenceError(f"detections= of type {type(detections).__name__} is not usable")

    def _detections_for(self, source: Any, index: int, name: str, image: Image.Image) -> Detections:
        if isinstance(source, Detections | list):
            dets = source if isinstance(source, Detections) else source[index]
            self._check_given(dets, name)
        else:
            if isinstance(source, FileDetections):
                if name == PIL_NAME:
                    raise InferenceError(
                        "a PIL image has no file name to look up in the detection file "
                        f"{str(source.path)!r}: pass the image's path, or its Detections"
                    )
                name = detection_key(source, name) or name
            dets = source.detect(name, image)
        self._check_size(name, dets, image)
        return dets

    @staticmethod
    def _check_size(name: str, dets: Detections, image: Image.Image) -> None:
        if tuple(dets.image_size) != image.size:
            raise InferenceError(
                f"image {name!r}: detections are for a {dets.image_size[0]}x{dets.image_size[1]}"
                f" image but the image (EXIF-rotated) is {image.size[0]}x{image.size[1]}"
            )

    def _check_given(self, dets: Detections, name: str) -> None:
        """Detections passed in directly get the checks a detection file gets."""
        if not isinstance(dets, Detections):
            raise InferenceError(f"image {name!r}: expected Detections, got {type(dets).__name__}")
        space = self.label_space  # an open vocabulary may add objects
        n_obj = len(space.objects)
        labels = dets.labels.cpu()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_obj):
            raise DetectionError(
                f"object positions must be in 0..{n_obj - 1} of label space {space.name!r}",
                image=name,
                field="labels",
            )
        boxes, scores = dets.boxes.detach().cpu().numpy(), dets.scores.detach().cpu().numpy()
        check_detections(boxes, scores, tuple(dets.image_size), image=name)

    # ----------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict_batch(
        self,
        images: list[Image.Image],
        detections: list[Detections],
        top_k: int | None = None,
        threshold: float = 0.0,
    ) -> list[list[dict[str, Any]]]:
        """Triplets of B RGB images given their raw detections (filtered here), best first."""
        model = self.model
        top_k = model.config.top_k if top_k is None else top_k
        kept = [model.propose(d.to(self.device)).to(self.device) for d in detections]
        # Pairs need a human and another box; images without any skip the model.
        run = [
            i
            for i, d in enumerate(kept)
            if len(d) >= 2 and bool((d.labels == model.human_label).any())
        ]
        results: list[list[dict[str, Any]]] = [[] for _ in images]
        if not run:
            return results
        batch = torch.stack([model.preprocess(images[i]) for i in run]).to(self.device)
        outputs = model(batch, [kept[i] for i in run])
        for i, out in zip(run, outputs, strict=True):
            results[i] = to_triplets(out, model.label_space, top_k=top_k, threshold=threshold)
        return results

    def __call__(
        self,
        images: ImageInput | list[ImageInput],
        detections: DetectionsArg = None,
        top_k: int | None = None,
        threshold: float = 0.0,
        batch_size: int = 8,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Triplet dicts of one image, or a list of them for a list of images.

        `detections`: a `Detections` (one image), a list of them (one per image), a
        `DetectionSource`, or a function ``image -> (boxes, labels, scores)``; None uses the
        predictor's default detector. A source is asked by the path as given (a
        `FileDetections` without that key: by the base name). Boxes are in the (EXIF-rotated)
        image's pixels.
        """
        _check_batch_size(batch_size)
        single = not isinstance(images, list)
        items = [images] if single else list(images)
        if single and isinstance(detections, Detections):
            detections = [detections]
        source = self._source(detections)
        if isinstance(source, list) and len(source) != len(items):
            raise InferenceError(f"{len(items)} images but {len(source)} detection sets")
        out: list[list[dict[str, Any]]] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            names, imgs = zip(*(_open(x) for x in chunk), strict=True)
            dets = [
                self._detections_for(source, start + j, n, im)
                for j, (n, im) in enumerate(zip(names, imgs, strict=True))
            ]
            out.extend(self.predict_batch(list(imgs), dets, top_k, threshold))
        return out[0] if single else out

    def predict_many(
        self,
        paths: Iterable[str | Path | tuple[str | Path, str]],
        detector: DetectionsArg = None,
        batch_size: int = 8,
        top_k: int | None = None,
        threshold: float = 0.0,
        on_error: Callable[[Path, Exception], None] | None = None,
    ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Yield (file_name, triplets) per image, `batch_size` images per forward pass.

        `paths` items are paths (file_name = the path as given) or (path, file_name). An
        unreadable image calls ``on_error(path, error)`` and is skipped; without `on_error`
        the error is raised.
        """
        _check_batch_size(batch_size)
        from linkhoi.data import ImageError

        source = self._source(detector)
        if isinstance(source, Detections | list):
            raise InferenceError("predict_many needs a DetectionSource or a function")
        pending: list[tuple[str, Image.Image]] = []
        for item in paths:
            path, name = item if isinstance(item, tuple) else (item, str(item))
            try:
                image = load_image(path)
            except ImageError as err:
                if on_error is None:
                    raise
                on_error(Path(path), err)
                continue
            pending.append((name, image))
            if len(pending) >= batch_size:
                yield from self._flush(source, pending, top_k, threshold)
                pending = []
        if pending:
            yield from self._flush(source, pending, top_k, threshold)

    def _flush(
        self,
        source: Any,
        pending: list[tuple[str, Image.Image]],
        top_k: int | None,
        threshold: float,
    ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        names, imgs = (list(x) for x in zip(*pending, strict=True))
        batch = getattr(source, "detect_batch", None)
        if batch is not None:  # a detector model: one batched forward pass for the chunk
            dets = batch(imgs)
            for name, image, d in zip(names, imgs, dets, strict=True):
                self._check_size(name, d, image)
        else:
            dets = [
                self._detections_for(source, 0, n, im) for n, im in zip(names, imgs, strict=True)
            ]
        results = self.predict_batch(imgs, dets, top_k, threshold)
        yield from zip(names, results, strict=True)


def _check_batch_size(batch_size: Any) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InferenceError(f"batch_size must be an integer >= 1, got {batch_size!r}")


PIL_NAME = "<image>"  # the name of an image given as a PIL object


def detection_key(source: FileDetections, name: str) -> str | None:
    """The record of ``source`` that image ``name`` reads: the name itself, else its base name
    (a path given to the API, a file keyed by base names); None when neither is there."""
    if name in source:
        return name
    base = Path(name).name
    return base if base in source else None


def _open(image: ImageInput) -> tuple[str, Image.Image]:
    if isinstance(image, Image.Image):
        from linkhoi.data.images import _NonFinitePixels, _to_rgb

        try:
            return PIL_NAME, _to_rgb(image)
        except _NonFinitePixels as err:
            raise InferenceError(f"{PIL_NAME}: {err}") from None
    return str(image), load_image(image)
