"""Training data for the trainer: samples, detection sources, proposals, augmentation, batches.

``TrainData(config, label_space, class_mask, models, dist)`` reads the training (and
validation) samples, removes the zero-shot pairs, picks the detection source and groups the
models by backbone. Per batch, ``prepare(items, epoch)`` returns the filtered (and augmented)
detections, the ground-truth tensors and every model's backbone features, each backbone run
once (or read from the feature cache). The data order of epoch e is fixed by (seed, e)
(``epoch_batches``) and augmentation by (seed, e, image index), so resuming is exact.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from linkhoi.train.augment import augment
from linkhoi.train.config import ConfigError, TrainConfig
from linkhoi.train.distributed import DistInfo
from linkhoi.train.feature_cache import FeatureCache, cached_features, default_cache_dir
from linkhoi.train.losses import gt_pair_tensor, remove_unseen


class IndexedDataset(Dataset):
    """(index, PIL image, Sample, image path): augmentation is seeded by the index, the
    feature cache keyed by the path."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, sample = self.dataset[index]
        return index, image, sample, self.dataset.image_path(index)


def collate(items: list) -> list:
    return items


def to_device(det, device: torch.device):
    """``Detections`` with its tensors on ``device``."""
    return replace(
        det,
        boxes=det.boxes.to(device),
        labels=det.labels.to(device),
        scores=det.scores.to(device),
    )


def read_split(key: str, kind: str, spec: dict[str, Any], label_space) -> list:
    """``read_dataset(kind, **spec)``; a path that is a folder or cannot be read is reported
    with its config key (``data.train.path: '/data' is a folder, not an annotation file``)."""
    from linkhoi.data import read_dataset

    for name in ("path", "vcoco_json", "instances_json", "ids_file"):  # the files it reads
        value = spec.get(name)
        if isinstance(value, str) and Path(value).is_dir():
            raise ConfigError(
                f"{key}.{name}: {value!r} is a folder; give the annotation file, not its folder"
            )
    try:
        return read_dataset(kind, **{"label_space": label_space, **spec})
    except OSError as exc:  # e.g. permission denied: the reader names no key
        where = next((f"{key}.{n}" for n, v in spec.items() if v == exc.filename), key)
        raise ConfigError(f"{where}: cannot read {exc.filename!r}: {exc.strerror}") from None


class TrainData:
    """The training set of one run and the batches built from it.

    Args:
        config: the run's ``TrainConfig``.
        label_space: the models' ``LabelSpace``.
        class_mask: (K,) bool, False for zero-shot unseen classes (their pairs are removed), or
            None.
        models: the student first, then the teachers; grouped by backbone (weights sha256,
            resolution) so each backbone runs once per batch.
        dist: the process group (``distributed.setup``): its device gets the batches, its
            rank / world size pick this process's share of every epoch.
        amp: mixed precision for the backbone (CUDA).
    """

    def __init__(
        self,
        config: TrainConfig,
        label_space,
        class_mask: torch.Tensor | None,
        models: list[nn.Module],
        dist: DistInfo,
        amp: bool = False,
    ):
        self.cfg, self.label_space, self.amp = config, label_space, amp
        self.device, self.rank, self.world_size = dist.device, dist.rank, dist.world_size
        self.num_models = len(models)
        self.student = models[0]  # its config's proposal settings filter every batch
        self._read(class_mask)
        self.groups = self._backbone_groups(models)

    # ------------------------------------------------------------------ set-up
    def _read(self, class_mask: torch.Tensor | None) -> None:
        from linkhoi.data import HOIDataset
        from linkhoi.detections import FileDetections, GroundTruthDetections

        d = self.cfg.data
        if not d.train:
            raise ConfigError("data.train: no training annotations given")
        samples = read_split("data.train", d.format, d.train, self.label_space)
        if class_mask is not None:
            unseen = (~class_mask).nonzero().flatten().tolist()
            samples = remove_unseen(samples, unseen)
        if not samples:
            raise ConfigError(f"data.train {d.train}: no training images (after zero-shot removal)")
        _check_boxes(samples, f"data.train {d.train}")
        self.samples = samples
        self.dataset = IndexedDataset(HOIDataset(samples, d.image_root or None))
        _check_images(self.dataset.dataset, "data.image_root", d.image_root)
        self.detector = (
            GroundTruthDetections(samples)
            if d.detections == "gt"
            else FileDetections(d.detections, self.label_space)
        )
        if d.val and d.format not in ("hico_det", "generic"):
            raise ConfigError(
                f"data.val: per-epoch evaluation uses the HICO-DET protocol; format {d.format!r} "
                "is evaluated after training with `linkhoi eval`"
            )
        self.val_samples = (
            read_split("data.val", d.format, d.val, self.label_space) if d.val else None
        )
        if self.val_samples:
            root = d.val_image_root or d.image_root
            key = "data.val_image_root" if d.val_image_root else "data.image_root"
            _check_images(HOIDataset(self.val_samples, root or None), key, root)

    def _backbone_groups(self, models: list[nn.Module]) -> list[dict[str, Any]]:
        """Models grouped by (backbone sha256, resolution): one backbone forward per group."""
        runtime = self.cfg.runtime
        use_cache = runtime.feature_cache and not self.cfg.data.augment
        root = Path(runtime.cache_dir) / "features" if runtime.cache_dir else None
        groups: dict[tuple[str, int], dict[str, Any]] = {}
        for i, model in enumerate(models):
            bb = model.backbone
            key = (bb.sha256, int(bb.image_size))
            if key not in groups:
                cache = FeatureCache(root or default_cache_dir(), *key) if use_cache else None
                groups[key] = {"backbone": bb, "cache": cache, "members": []}
            groups[key]["members"].append(i)
        return list(groups.values())

    # ------------------------------------------------------------------ batches
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's micro-batches (dataset indices) of ``epoch``, fixed by (seed, epoch)."""
        order, bs = self.epoch_order(epoch), self.cfg.optim.batch_size
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    def epoch_order(self, epoch: int) -> list[int]:
        """This process's dataset indices of ``epoch`` in training order, fixed by (seed, epoch)."""
        sampler = DistributedSampler(
            self.dataset,
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=self.cfg.runtime.seed,
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def prepare(self, items: list, epoch: int) -> dict[str, Any]:
        """Detections (filtered), GT tensors and per-model backbone features of one batch."""
        d = self.cfg.data
        images, dets, gt_boxes, gt_pairs, paths, unannotated = [], [], [], [], [], []
        for index, image, sample, path in items:
            det = self.student.propose(self.detector.detect(sample.file_name, image))
            boxes = torch.as_tensor(sample.boxes, dtype=torch.float32).reshape(-1, 4)
            if d.augment:
                rng = random.Random(f"{self.cfg.runtime.seed}-{epoch}-{index}")
                image, det, boxes = augment(image, det, boxes, rng, d.scales, d.flip_prob)
            images.append(image)
            dets.append(to_device(det, self.device))
            gt_boxes.append(boxes.to(self.device))
            gt_pairs.append(gt_pair_tensor(sample.pairs, self.device))
            unannotated.append(torch.as_tensor(sample.unannotated, dtype=torch.bool).reshape(-1))
            paths.append(None if d.augment else path)
        features: list[Any] = [None] * self.num_models
        for group in self.groups:
            feats = self.features(group, images, paths)
            for member in group["members"]:
                features[member] = feats
        return {
            "dets": dets,
            "gt_boxes": gt_boxes,
            "gt_pairs": gt_pairs,
            "unannotated": unannotated,
            "features": features,
        }

    def features(self, group: dict[str, Any], images: list, paths: list):
        """``(F, global)`` of ``images`` from the group's frozen backbone (or the cache)."""
        backbone = group["backbone"]

        def compute(indices: list[int]):
            batch = torch.stack([backbone.preprocess(images[i]) for i in indices]).to(self.device)
            with torch.no_grad(), torch.autocast("cuda", enabled=self.amp):
                f, g = backbone(batch)
            return f.float(), g.float()

        return cached_features(group["cache"], paths, compute, self.device)

    # ------------------------------------------------------------------ validation
    def val_items(self):
        """``(file name, filtered detections on the device, features)`` of this process's share
        of ``data.val``, with the student's backbone (group 0)."""
        from linkhoi.data import HOIDataset
        from linkhoi.detections import FileDetections, GroundTruthDetections

        d = self.cfg.data
        samples = self.val_samples
        dataset = HOIDataset(samples, d.val_image_root or d.image_root or None)
        source = (
            GroundTruthDetections(samples)
            if d.val_detections == "gt"
            else FileDetections(d.val_detections, self.label_space)
        )
        for i in range(self.rank, len(samples), self.world_size):
            image, sample = dataset[i]
            det = self.student.propose(source.detect(sample.file_name, image))
            feats = self.features(self.groups[0], [image], [dataset.image_path(i)])
            yield sample.file_name, to_device(det, self.device), feats

    def num_val_items(self) -> int:
        return len(range(self.rank, len(self.val_samples or []), self.world_size))


def _check_images(dataset, key: str, root: str | None) -> None:
    """Refuse a missing image folder or image files before anything is written (a stat per
    image: a few seconds for HICO-DET's 38,000)."""
    if root and not Path(root).is_dir():
        raise ConfigError(f"{key}: {root!r} is not a folder")
    for i in range(len(dataset)):
        try:
            path = dataset.image_path(i)
        except ValueError as err:
            raise ConfigError(f"{key}: {err}") from None
        if not path.is_file():
            missing = sum(not dataset.image_path(j).is_file() for j in range(i, len(dataset)))
            raise ConfigError(
                f"{key}: {missing} of {len(dataset)} images not found, first {str(path)!r}"
                + ("" if root else " (set data.image_root to the folder holding the images)")
            )


def _check_boxes(samples: list, where: str) -> None:
    """Ground-truth pairs whose human or object box has zero area can never be matched (IoU 0):
    refuse a training set without any usable pair, warn naming the images that have none."""
    useless = []
    for s in samples:
        if not s.pairs:
            continue
        b = s.boxes
        area = (b[:, 2] - b[:, 0]).clip(min=0) * (b[:, 3] - b[:, 1]).clip(min=0)
        ok = [area[p.human] > 0 and (p.object is None or area[p.object] > 0) for p in s.pairs]
        if not any(ok):
            useless.append(s.file_name)
    with_pairs = sum(bool(s.pairs) for s in samples)
    if not useless:
        return
    names = ", ".join(repr(n) for n in useless[:5]) + (", ..." if len(useless) > 5 else "")
    if len(useless) == with_pairs:
        raise ConfigError(
            f"{where}: every ground-truth pair has a zero-area human or object box ({names}): "
            "no pair can be a positive, training would learn nothing; check the box format "
            "([x1, y1, x2, y2] in pixels)"
        )
    warnings.warn(
        f"{where}: {len(useless)} of {with_pairs} images have only pairs with a zero-area box "
        f"(no positives from them): {names}",
        stacklevel=3,
    )
