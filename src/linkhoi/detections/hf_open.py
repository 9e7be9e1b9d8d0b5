"""Open-vocabulary transformers detectors (OWL-ViT, OWLv2, Grounding DINO, ...) prompted with
object names: the label space's objects, or the user's (``--objects "giraffe, cup"``).

Each query is an object name (underscores become spaces: "dining_table" -> "dining table");
the label-space person is always queried, since pairs need a human. OWL-style models return
the query index of each box; Grounding DINO returns the phrase of the prompt tokens above
``text_threshold``, mapped back to the query it spells (a phrase naming none or several
queries is dropped and counted in ``dropped``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from linkhoi.detections.base import DetectionError
from linkhoi.detections.hf import TransformersSource
from linkhoi.labels import LabelSpace


def _prompt(name: str) -> str:
    return " ".join(name.replace("_", " ").split())


class OpenVocabDetector(TransformersSource):
    """A zero-shot transformers detector from a local folder, prompted with object names.

    Args:
        folder: written by ``save_pretrained`` (model, processor with its tokenizer).
        label_space: the detections' object positions; every queried name must be one of its
            objects (an open vocabulary adds new ones, see `Predictor.set_vocabulary`).
        objects: the names to query; default every object of the label space.
        score_threshold: the box threshold of the library's post-processing.
        text_threshold: Grounding DINO's token threshold.
    """

    def __init__(
        self,
        folder: str | Path,
        label_space: LabelSpace | str,
        objects: list[str] | None = None,
        score_threshold: float = 0.1,
        text_threshold: float = 0.25,
        device: str | torch.device | None = None,
        batch_size: int = 8,
    ) -> None:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self._setup(folder, label_space, score_threshold, device, batch_size)
        self.text_threshold = float(text_threshold)
        human = self.label_space.human
        wanted = list(objects) if objects else list(self.label_space.objects)
        if not any(_prompt(w).lower() == _prompt(human).lower() for w in wanted):
            wanted.insert(0, human)  # pairs need a human
        self.names = list(dict.fromkeys(_prompt(w) for w in wanted if w.strip()))
        self._map_names()
        if self.unmapped:
            raise DetectionError(
                f"objects {self.unmapped} are not in label space {self.label_space.name!r}; "
                "an open vocabulary (--verbs/--hois) adds them"
            )
        try:
            self.processor = AutoProcessor.from_pretrained(self.folder, local_files_only=True)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(
                self.folder, local_files_only=True
            )
        except (OSError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DetectionError(f"cannot load open-vocabulary detector: {first}", folder) from None
        self.model = model.to(self.device).eval()
        self._by_phrase = {n.lower(): i for i, n in enumerate(self.names)}

    def _run(self, images: list[Image.Image]) -> list[tuple[Any, Any, Any]]:
        texts = [self.names] * len(images)
        inputs = self.processor(images=images, text=texts, return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        sizes = [(im.size[1], im.size[0]) for im in images]
        post = self.processor.post_process_grounded_object_detection
        if "text_threshold" in inspect.signature(post).parameters:  # phrases from tokens
            results = post(
                outputs,
                inputs["input_ids"],
                threshold=self.score_threshold,
                text_threshold=self.text_threshold,
                target_sizes=sizes,
            )
            return [
                (r["boxes"], self._phrase_classes(r["text_labels"]), r["scores"]) for r in results
            ]
        results = post(outputs, threshold=self.score_threshold, target_sizes=sizes)
        return [(r["boxes"], r["labels"], r["scores"]) for r in results]

    def _phrase_classes(self, phrases: list[str]) -> torch.Tensor:
        """Query index of each phrase; -len(names)-1 (dropped) when it spells no single query."""
        out = []
        for phrase in phrases:
            parts = [_prompt(p).lower() for p in phrase.replace("[SEP]", "").split(".")]
            hits = {self._by_phrase[p] for p in parts if p in self._by_phrase}
            junk = [p for p in parts if p and p not in self._by_phrase]
            if len(hits) == 1 and not junk:
                out.append(hits.pop())
            else:
                self.dropped[phrase] += 1
                out.append(len(self.names))  # outside the table: dropped by _convert
        return torch.tensor(out, dtype=torch.int64)
