"""One training loop for both stages of the Progressive Learning Strategy (method.md §5-§7).

``Trainer(config, teachers=...)``: without teachers it trains a teacher (stage 1, L_M only);
with teachers it trains a student (stage 2, L_M + distillation). The loop is deterministic
given the config: the data order of epoch e comes from (seed, e), augmentation from
(seed, e, image index), so a run that is stopped and resumed ends on the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import random
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from PIL import ImageOps
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from linkhoi.train import distributed
from linkhoi.train.checkpointing import (
    load_training_checkpoint,
    restore_training_state,
    rng_state,
    save_atomic,
    training_state,
)
from linkhoi.train.config import ConfigError, TrainConfig, save_config
from linkhoi.train.distill import Distiller
from linkhoi.train.feature_cache import FeatureCache, cached_features, default_cache_dir
from linkhoi.train.losses import (
    batch_targets,
    gt_pair_tensor,
    matching_loss,
    remove_unseen,
    unannotated_pairs,
)


class _Indexed(Dataset):
    """(index, PIL image, Sample, image path): augmentation is seeded by the index, the
    feature cache keyed by the path."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, sample = self.dataset[index]
        return index, image, sample, self.dataset.image_path(index)


def _collate(items: list) -> list:
    return items


def augment(image, dets, gt_boxes: torch.Tensor, rng: random.Random, scales, flip_prob: float):
    """Random scale + horizontal flip of the image, its detections and its GT boxes (N, 4)."""
    s = rng.choice(list(scales)) if scales else 1.0
    flip = rng.random() < flip_prob
    w, h = image.size
    if s != 1.0:
        w, h = max(1, round(w * s)), max(1, round(h * s))
        image = image.resize((w, h))

    def move(boxes: torch.Tensor) -> torch.Tensor:
        boxes = boxes * s
        if flip:
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        return boxes

    if flip:
        image = ImageOps.mirror(image)
    dets = replace(dets, boxes=move(dets.boxes.float()), image_size=(w, h))
    return image, dets, move(gt_boxes)


class Trainer:
    """Train a LINK model as configured.

    Args:
        config: the resolved ``TrainConfig``.
        resume: continue from ``<out_dir>/last.pt`` (same weights as an uninterrupted run).
    """

    def __init__(self, config: TrainConfig, resume: bool = False):
        from linkhoi import labels
        from linkhoi.model.config import LinkConfig
        from linkhoi.model.link import create_model

        self.cfg = cfg = config
        self.dist = distributed.setup(cfg.runtime.device)
        self.device = self.dist.device
        self.out_dir = Path(cfg.runtime.out_dir)
        self.amp = cfg.runtime.amp and self.device.type == "cuda"
        torch.manual_seed(cfg.runtime.seed)
        random.seed(cfg.runtime.seed)
        self.label_space = labels.load(cfg.data.label_space)
        try:
            model_cfg = LinkConfig.from_dict(cfg.model)
        except ValueError as exc:
            raise ConfigError(f"model: {exc}") from None
        cache_dir = cfg.runtime.cache_dir or None
        self.model = create_model(
            model_cfg,
            self.label_space,
            clip_weights=cfg.runtime.clip_weights or None,
            cache_dir=cache_dir,
            device=self.device,
        )
        self.teachers = self._load_teachers()
        # Same initialisation on every rank (above); different dropout noise per rank (below).
        torch.manual_seed(cfg.runtime.seed + self.dist.rank)
        self.distiller = (
            Distiller(self.model, self.teachers, cfg.distill).to(self.device)
            if self.teachers
            else None
        )
        self.class_mask = self._class_mask()
        self._init_rows = None
        if self.class_mask is not None:
            self._protect_unseen_rows()
        self.step_module = _StepModule(
            self.model, self.distiller, cfg.optim, len(self.label_space.hois)
        )
        self.ddp = (
            DistributedDataParallel(
                self.step_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.runtime.find_unused_parameters,
            )
            if self.dist.enabled
            else self.step_module
        )
        params = [p for p in self.step_module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(cfg.optim.lr_drop), gamma=cfg.optim.lr_gamma
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch = self.step = self.batch_in_epoch = 0
        self._stop_signal: int | None = None
        self.history: list[dict[str, float]] = []  # per optimizer step (for tests and logs)
        self._build_data()
        self._groups = self._backbone_groups()
        if resume:
            self.load(self.out_dir / "last.pt")

    # ------------------------------------------------------------------ set-up
    def _load_teachers(self) -> list[nn.Module]:
        from linkhoi.model.checkpoint import load_model

        cfg = self.cfg.distill
        weights = list(cfg.teacher_clip_weights)
        if weights and len(weights) != len(cfg.teachers):
            raise ConfigError("distill.teacher_clip_weights needs one entry per teacher (or none)")
        teachers = []
        for i, path in enumerate(cfg.teachers):
            clip = weights[i] if weights else (self.cfg.runtime.clip_weights or None)
            teacher = load_model(path, clip_weights=clip or None, device=self.device)
            if teacher.label_space != self.label_space:
                raise ConfigError(
                    f"{path}: the teacher's label space {teacher.label_space.name!r} is not the "
                    f"student's {self.label_space.name!r}: their classes must align one to one"
                )
            teachers.append(teacher)
        return teachers

    def _class_mask(self) -> torch.Tensor | None:
        name = self.cfg.data.zero_shot
        if not name:
            return None
        if name not in self.label_space.subsets:
            raise ConfigError(
                f"data.zero_shot: {name!r} is not a subset of label space "
                f"{self.label_space.name!r} ({', '.join(sorted(self.label_space.subsets))})"
            )
        mask = torch.ones(len(self.label_space.hois), dtype=torch.bool, device=self.device)
        mask[sorted(self.label_space.subsets[name])] = False
        return mask

    def _protect_unseen_rows(self) -> None:
        """Unseen classifier rows get no gradient and keep their CLIP init (method.md §5)."""
        weight = classifier_weight(self.model)
        keep = self.class_mask.to(weight.device).to(weight.dtype).unsqueeze(1)
        weight.register_hook(lambda grad: grad * keep)
        self._init_rows = weight.detach().clone()

    def _restore_unseen_rows(self) -> None:
        # AdamW's decoupled weight decay shrinks rows even with a zero gradient: undo it.
        if self._init_rows is not None:
            weight = classifier_weight(self.model)
            with torch.no_grad():
                unseen = ~self.class_mask.to(weight.device)
                weight[unseen] = self._init_rows[unseen]

    def _build_data(self) -> None:
        from linkhoi.data import HOIDataset, read_dataset
        from linkhoi.detections import FileDetections, GroundTruthDetections, filter_proposals

        d = self.cfg.data
        if not d.train:
            raise ConfigError("data.train: no training annotations given")
        samples = read_dataset(d.format, **{"label_space": self.label_space, **d.train})
        if self.class_mask is not None:
            unseen = (~self.class_mask).nonzero().flatten().tolist()
            samples = remove_unseen(samples, unseen)
        if not samples:
            raise ConfigError(f"data.train {d.train}: no training images (after zero-shot removal)")
        known = set(inspect.signature(filter_proposals).parameters) - {"dets", "human_label"}
        unknown = sorted(set(d.proposals) - known)
        if unknown:
            raise ConfigError(f"data.proposals: unknown key(s) {unknown}; known: {sorted(known)}")
        self.samples = samples
        self.dataset = _Indexed(HOIDataset(samples, d.image_root or None))
        self.detector = (
            GroundTruthDetections(samples)
            if d.detections == "gt"
            else FileDetections(d.detections, self.label_space)
        )
        self.human = self.label_space.object_position(self.label_space.human)
        if d.val and d.format not in ("hico_det", "generic"):
            raise ConfigError(
                f"data.val: per-epoch evaluation uses the HICO-DET protocol; format {d.format!r} "
                "is evaluated after training with `linkhoi eval`"
            )
        self.val_samples = (
            read_dataset(d.format, **{"label_space": self.label_space, **d.val}) if d.val else None
        )

    def _backbone_groups(self) -> list[dict[str, Any]]:
        """Models grouped by (backbone sha256, resolution): one backbone forward per group."""
        use_cache = self.cfg.runtime.feature_cache and not self.cfg.data.augment
        root = Path(self.cfg.runtime.cache_dir) / "features" if self.cfg.runtime.cache_dir else None
        groups: dict[tuple[str, int], dict[str, Any]] = {}
        for i, model in enumerate([self.model, *self.teachers]):
            bb = model.backbone
            key = (bb.sha256, int(bb.image_size))
            if key not in groups:
                cache = FeatureCache(root or default_cache_dir(), *key) if use_cache else None
                groups[key] = {"backbone": bb, "cache": cache, "members": []}
            groups[key]["members"].append(i)
        return list(groups.values())

    # ------------------------------------------------------------------ data
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's micro-batches (dataset indices) of ``epoch``, fixed by (seed, epoch)."""
        sampler = DistributedSampler(
            self.dataset,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=self.cfg.runtime.seed,
        )
        sampler.set_epoch(epoch)
        order = list(sampler)
        bs = self.cfg.optim.batch_size
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    def _prepare(self, items: list, epoch: int) -> dict[str, Any]:
        """Detections (filtered), GT tensors and per-group backbone features of one batch."""
        from linkhoi.detections import filter_proposals

        d = self.cfg.data
        images, dets, gt_boxes, gt_pairs, paths, unannotated = [], [], [], [], [], []
        for index, image, sample, path in items:
            det = filter_proposals(
                self.detector.detect(sample.file_name, image), self.human, **d.proposals
            )
            boxes = torch.as_tensor(sample.boxes, dtype=torch.float32).reshape(-1, 4)
            if d.augment:
                rng = random.Random(f"{self.cfg.runtime.seed}-{epoch}-{index}")
                image, det, boxes = augment(image, det, boxes, rng, d.scales, d.flip_prob)
            images.append(image)
            dets.append(_to_device(det, self.device))
            gt_boxes.append(boxes.to(self.device))
            gt_pairs.append(gt_pair_tensor(sample.pairs, self.device))
            unannotated.append(torch.as_tensor(sample.unannotated, dtype=torch.bool).reshape(-1))
            paths.append(None if d.augment else path)
        features: list[Any] = [None] * (1 + len(self.teachers))
        for group in self._groups:
            feats = self._features(group, images, paths)
            for member in group["members"]:
                features[member] = feats
        return {
            "dets": dets,
            "gt_boxes": gt_boxes,
            "gt_pairs": gt_pairs,
            "unannotated": unannotated,
            "features": features,
        }

    def _features(self, group: dict[str, Any], images: list, paths: list):
        backbone = group["backbone"]

        def compute(indices: list[int]):
            batch = torch.stack([backbone.preprocess(images[i]) for i in indices]).to(self.device)
            with torch.no_grad(), torch.autocast("cuda", enabled=self.amp):
                f, g = backbone(batch)
            return f.float(), g.float()

        return cached_features(group["cache"], paths, compute, self.device)

    # ------------------------------------------------------------------ training
    def _handle_signal(self, signum, _frame) -> None:
        if self._stop_signal is not None:  # a second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        self._stop_signal = signum  # checkpoint and stop after the current optimizer step

    def fit(self) -> dict[str, Any]:
        """Train until ``optim.epochs`` (or ``runtime.max_steps``, or a stop signal).

        Returns ``{"status": "finished" | "stopped" | "interrupted", "epoch", "step"}``; a
        checkpoint ``<out_dir>/last.pt`` is written every epoch and whenever the loop stops.
        """
        cfg = self.cfg
        main = self.dist.is_main
        if main:
            save_config(cfg, self.out_dir / "config.yaml")
        writer = _summary_writer(self.out_dir / "tensorboard") if main else None
        # Signal handlers can only be installed from the main thread (not e.g. in a notebook worker).
        handled = (signal.SIGINT, signal.SIGTERM)
        in_main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, self._handle_signal) for s in handled} if in_main else {}
        status = "finished"
        try:
            while self.epoch < cfg.optim.epochs:
                status = self._run_epoch(writer)
                if status != "running":
                    break
                status = "finished"
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if writer is not None:
                writer.close()
        return {"status": status, "epoch": self.epoch, "step": self.step}

    def _run_epoch(self, writer) -> str:
        cfg = self.cfg
        acc = cfg.optim.accumulate
        batches = self.epoch_batches(self.epoch)
        todo = batches[self.batch_in_epoch :]
        loader = DataLoader(
            self.dataset,
            batch_sampler=todo,
            collate_fn=_collate,
            num_workers=cfg.data.num_workers,
            generator=torch.Generator(),  # keeps the global RNG untouched (exact resume)
        )
        self.ddp.train()
        sums: dict[str, float] = {}
        count, images, t0 = 0, 0, time.perf_counter()
        bar = tqdm(
            loader,
            total=len(todo),
            desc=f"epoch {self.epoch + 1}/{cfg.optim.epochs}",
            disable=not (cfg.runtime.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        pending = 0
        for items in bar:
            batch = self._prepare(items, self.epoch)
            self.batch_in_epoch += 1
            pending += 1
            last = pending == acc or self.batch_in_epoch == len(batches)
            sync = self.ddp.no_sync() if (self.dist.enabled and not last) else nullcontext()
            with sync:
                with torch.autocast("cuda", enabled=self.amp):
                    loss, stats = self.ddp(batch, self.class_mask)
                self.scaler.scale(loss / acc).backward()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            images += len(items)
            if not last:
                continue
            pending = 0
            self._optimizer_step()
            rate = images * self.dist.world_size / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", img_s=f"{rate:.1f}")
            self.history.append(dict(stats))
            if writer is not None:
                for k, v in stats.items():
                    writer.add_scalar(f"train/{k}", v, self.step)
                writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
            stop = bool(cfg.runtime.max_steps and self.step >= cfg.runtime.max_steps)
            signalled = distributed.broadcast_flag(self._stop_signal is not None, self.device)
            if (stop or signalled) and self.batch_in_epoch < len(batches):
                self.save()
                return "interrupted" if signalled else "stopped"
            if stop or signalled:
                break
        bar.close()
        self.scheduler.step()
        self.epoch += 1
        self.batch_in_epoch = 0
        record = {k: v / max(count, 1) for k, v in sums.items()}
        record.update(epoch=self.epoch, step=self.step, lr=self.optimizer.param_groups[0]["lr"])
        record["images_per_s"] = images * self.dist.world_size / max(time.perf_counter() - t0, 1e-9)
        if self.val_samples is not None and self.epoch % max(cfg.runtime.eval_every, 1) == 0:
            record["eval"] = self.evaluate()
        if self.dist.is_main:
            _append_jsonl(self.out_dir / "log.jsonl", record)
            if writer is not None and isinstance(record.get("eval"), dict):
                for k, v in record["eval"].get("map", {}).items():
                    writer.add_scalar(f"eval/map_{k}", v, self.epoch)
        self.save()
        if self.epoch >= cfg.optim.epochs:
            return "running"  # the loop ends: finished
        if self._stop_signal is not None or (
            cfg.runtime.max_steps and self.step >= cfg.runtime.max_steps
        ):
            return "interrupted" if self._stop_signal is not None else "stopped"
        return "running"

    def _optimizer_step(self) -> None:
        if self.cfg.optim.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._restore_unseen_rows()
        self.step += 1

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, Any] | None:
        """Per-epoch HICO-DET-protocol evaluation on ``data.val`` (results gathered to rank 0)."""
        from linkhoi.data import HOIDataset
        from linkhoi.detections import FileDetections, GroundTruthDetections, filter_proposals
        from linkhoi.eval.hico import SPLITS, HICOEvaluator
        from linkhoi.model.link import to_triplets

        d = self.cfg.data
        samples = self.val_samples
        dataset = HOIDataset(samples, d.val_image_root or d.image_root or None)
        source = (
            GroundTruthDetections(samples)
            if d.val_detections == "gt"
            else FileDetections(d.val_detections, self.label_space)
        )
        self.model.eval()
        results = []
        indices = range(self.dist.rank, len(samples), self.dist.world_size)
        for i in tqdm(
            indices, desc="eval", disable=not (self.cfg.runtime.progress and self.dist.is_main)
        ):
            image, sample = dataset[i]
            det = filter_proposals(
                source.detect(sample.file_name, image), self.human, **d.proposals
            )
            feats = self._features(self._groups[0], [image], [dataset.image_path(i)])
            with torch.autocast("cuda", enabled=self.amp):
                out = self.model(None, [_to_device(det, self.device)], features=feats)[0]
            results.append((sample.file_name, to_triplets(out, self.label_space)))
        self.model.train()
        gathered = distributed.gather_objects(results)
        if gathered is None:
            return None
        split = d.zero_shot if d.zero_shot in SPLITS else "full"
        evaluator = HICOEvaluator(samples, self.label_space, split=split)
        for part in gathered:
            for name, triplets in part:
                evaluator.process(name, triplets)
        summary = evaluator.evaluate().summary
        return {k: v for k, v in summary.items() if k != "per_class_ap"}  # log.jsonl stays short

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """The training checkpoint: model payload + everything resuming needs (plain data)."""
        return training_state(self)

    def save(self) -> Path | None:
        """Write ``<out_dir>/last.pt`` atomically (rank 0 writes; every rank's RNG state in it)."""
        path = None
        rng = distributed.gather_objects(rng_state())
        if self.dist.is_main:
            path = save_atomic({**self.state(), "rng": rng}, self.out_dir / "last.pt")
        distributed.barrier()
        return path

    def load(self, path: str | Path) -> None:
        """Restore a training checkpoint written by ``save``."""
        restore_training_state(self, load_training_checkpoint(path), str(path))


class _StepModule(nn.Module):
    """Student (+ distillation adapters) computing the whole loss; what DDP wraps."""

    def __init__(self, model: nn.Module, distiller: Distiller | None, optim, num_classes: int):
        super().__init__()
        self.model = model
        self.distiller = distiller
        self.optim = optim
        self.num_classes = num_classes

    def forward(self, batch: dict[str, Any], class_mask: torch.Tensor | None):
        cfg = self.optim
        feats = batch["features"]
        out = self.model(None, batch["dets"], features=feats[0])
        targets = batch_targets(out, batch["gt_boxes"], batch["gt_pairs"], self.num_classes)
        ignore = None
        if any(u.any() for u in batch["unannotated"]):  # V-COCO: persons without labels
            ignore = [
                unannotated_pairs(o["pairs"], o["boxes"], gb, u)
                for o, gb, u in zip(out, batch["gt_boxes"], batch["unannotated"], strict=True)
            ]
        loss, stats = matching_loss(
            out, targets, class_mask, cfg.focal_alpha, cfg.focal_gamma, cfg.aux_loss, ignore
        )
        if self.distiller is not None:
            teacher_inputs = [(None, f) for f in feats[1:]]
            t_out = self.distiller.teacher_outputs(teacher_inputs, batch["dets"])
            kd, kd_stats = self.distiller.loss(out, t_out, class_mask)
            loss = loss + kd
            stats.update(kd_stats)
        # The loss of the whole global batch (each process holds its share of it).
        stats["loss"] = float(distributed.all_reduce_mean(loss.detach()))
        if not math.isfinite(stats["loss"]):
            raise FloatingPointError(f"loss is {stats['loss']}: {stats}")
        return loss, stats


def classifier_weight(model: nn.Module) -> torch.Tensor:
    """The (K, C) text-initialised classifier parameter T of a ``LinkModel``."""
    return model.text


def _to_device(det, device: torch.device):
    return replace(
        det,
        boxes=det.boxes.to(device),
        labels=det.labels.to(device),
        scores=det.scores.to(device),
    )


def _summary_writer(log_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line; flushed and fsynced so a killed run keeps whole lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record, default=float) + "\n")
        f.flush()
        os.fsync(f.fileno())
