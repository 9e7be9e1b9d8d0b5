"""One training loop for both stages of the Progressive Learning Strategy (docs/method.md §5-§7).

``Trainer(config, teachers=...)``: without teachers it trains a teacher (stage 1, L_M only);
with teachers it trains a student (stage 2, L_M + distillation). The loop is deterministic
given the config: the data order of epoch e comes from (seed, e), augmentation from
(seed, e, image index), so a run that is stopped and resumed ends on the same weights as an
uninterrupted one. The data side (samples, detections, proposals, augmentation, backbone
features of a batch) is ``linkhoi.train.batches.TrainData``; the loss of an optimizer step
(accumulated micro-batches) is ``linkhoi.train.step``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from linkhoi.train import distributed
from linkhoi.train.batches import TrainData, collate
from linkhoi.train.checkpointing import (
    load_training_checkpoint,
    restore_training_state,
    rng_state,
    save_atomic,
    training_state,
)
from linkhoi.train.config import ConfigError, TrainConfig, save_config
from linkhoi.train.distill import Distiller
from linkhoi.train.step import StepLoss, step_targets


class Trainer:
    """Train a LINK model as configured.

    Args:
        config: the resolved ``TrainConfig``.
        resume: continue from ``<out_dir>/last.pt`` (same weights as an uninterrupted run).
    """

    def __init__(self, config: TrainConfig, resume: bool = False):
        config.validate()
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
        # Checked before the model is built: computing text embeddings takes a while.
        self.class_mask = self._class_mask()
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
            text_weights=cfg.runtime.text_weights or None,
        )
        self.teachers = self._load_teachers()
        # Same initialisation on every rank (above); different dropout noise per rank (below).
        torch.manual_seed(cfg.runtime.seed + self.dist.rank)
        self.distiller = (
            Distiller(self.model, self.teachers, cfg.distill).to(self.device)
            if self.teachers
            else None
        )
        self._init_rows = None
        if self.class_mask is not None:
            self._protect_unseen_rows()
        self.step_module = StepLoss(
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
        models = [self.model, *self.teachers]
        self.data = TrainData(cfg, self.label_space, self.class_mask, models, self.dist, self.amp)
        self.samples, self.dataset = self.data.samples, self.data.dataset
        self.val_samples, self._groups = self.data.val_samples, self.data.groups
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
        """Unseen classifier rows get no gradient and keep their CLIP init (docs/method.md §5)."""
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

    # ------------------------------------------------------------------ data
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's micro-batches (dataset indices) of ``epoch``, fixed by (seed, epoch)."""
        return self.data.epoch_batches(epoch)

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
            collate_fn=collate,
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
        micro_batches = iter(bar)
        while self.batch_in_epoch < len(batches):
            # One optimizer step: `acc` micro-batches (the epoch's last group may be shorter).
            # Groups start at multiples of acc, since resuming happens only at their ends.
            size = min(acc, len(batches) - self.batch_in_epoch)
            group = [next(micro_batches) for _ in range(size)]
            prepared = [self.data.prepare(items, self.epoch) for items in group]
            normaliser, inputs = step_targets(
                self.model, prepared, self.class_mask, len(self.label_space.hois)
            )
            stats: dict[str, float] = {}
            for j, (items, batch, targets) in enumerate(zip(group, prepared, inputs, strict=True)):
                self.batch_in_epoch += 1
                last = j == size - 1
                sync = self.ddp.no_sync() if (self.dist.enabled and not last) else nullcontext()
                with sync:
                    with torch.autocast("cuda", enabled=self.amp):
                        loss, part = self.ddp(batch, self.class_mask, normaliser, size, targets)
                    self.scaler.scale(loss).backward()
                for k, v in part.items():  # each micro-batch's share of the step's values
                    stats[k] = stats.get(k, 0.0) + v
                images += len(items)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
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
        from linkhoi.eval.hico import SPLITS, HICOEvaluator
        from linkhoi.model.link import to_triplets

        self.model.eval()
        results = []
        for name, det, feats in tqdm(
            self.data.val_items(),
            total=self.data.num_val_items(),
            desc="eval",
            disable=not (self.cfg.runtime.progress and self.dist.is_main),
        ):
            with torch.autocast("cuda", enabled=self.amp):
                out = self.model(None, [det], features=feats)[0]
            results.append((name, to_triplets(out, self.label_space, self.model.config.top_k)))
        self.model.train()
        gathered = distributed.gather_objects(results)
        if gathered is None:
            return None
        zero_shot = self.cfg.data.zero_shot
        split = zero_shot if zero_shot in SPLITS else "full"
        evaluator = HICOEvaluator(self.val_samples, self.label_space, split=split)
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


def classifier_weight(model: nn.Module) -> torch.Tensor:
    """The (K, C) text-initialised classifier parameter T of a ``LinkModel``."""
    return model.text


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
