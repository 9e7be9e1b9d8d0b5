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

import math
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from linkhoi.stopping import StopSignals
from linkhoi.train import distributed, run_folder
from linkhoi.train.batches import TrainData, collate
from linkhoi.train.checkpointing import (
    load_training_checkpoint,
    restore_training_state,
    rng_state,
    save_atomic,
    training_state,
)
from linkhoi.train.config import ConfigError, TrainConfig, save_config
from linkhoi.train.distill import Distiller, load_teachers
from linkhoi.train.step import StepLoss, step_targets
from linkhoi.train.validation import ValidationStopped, validate


class Trainer:
    """Train a LINK model as configured.

    Args:
        config: the resolved ``TrainConfig``.
        resume: continue from ``<out_dir>/last.pt`` (same weights as an uninterrupted run); with
            no checkpoint there, start a new run (with a warning).
        force: replace the run already in ``out_dir``; without it (or ``resume``) a folder
            holding ``last.pt`` is refused (`ConfigError`).

    Everything is checked here, before the run folder is created; ``fit`` locks it.
    """

    def __init__(self, config: TrainConfig, resume: bool = False, force: bool = False):
        config.validate()
        from linkhoi import labels
        from linkhoi.model.config import LinkConfig
        from linkhoi.model.link import create_model

        self.cfg = cfg = config
        self.dist = distributed.setup(cfg.runtime.device)
        self.device = self.dist.device
        self.out_dir = Path(cfg.runtime.out_dir)
        self.resume, self.force = run_folder.start_mode(self.out_dir, resume, force), force
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
        self.teachers = load_teachers(self.cfg, self.label_space, self.device)
        # Same initialisation on every rank (above); different dropout noise per rank (below).
        torch.manual_seed(cfg.runtime.seed + self.dist.rank)
        self.distiller = (
            Distiller(self.model, self.teachers, cfg.distill).to(self.device)
            if self.teachers
            else None
        )
        text = classifier_weight(self.model)
        if cfg.optim.text_lr_scale == 0:
            text.requires_grad_(False)  # before the DDP wrapper is built, which reads it
        self._init_rows = None
        if self.class_mask is not None and text.requires_grad:
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
        params: list[Any] = [p for p in self.step_module.parameters() if p.requires_grad]
        if text.requires_grad and cfg.optim.text_lr_scale != 1.0:
            rest = [p for p in params if p is not text]
            params = [
                {"params": rest},
                {"params": [text], "lr": cfg.optim.lr * cfg.optim.text_lr_scale},
            ]
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(cfg.optim.lr_drop), gamma=cfg.optim.lr_gamma
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch = self.step = self.images_in_epoch = 0  # images: this process's share
        self.epoch_stats = _fresh_stats()  # running sums of the epoch (kept in checkpoints)
        self.epoch_record: dict[str, Any] | None = None  # the last finished epoch's log line
        self._pending: dict[str, Any] | None = None  # ... when not in log.jsonl yet
        self._stop: StopSignals | None = None
        self.history: list[dict[str, float]] = []  # per optimizer step (for tests and logs)
        models = [self.model, *self.teachers]
        self.data = TrainData(cfg, self.label_space, self.class_mask, models, self.dist, self.amp)
        self.samples, self.dataset = self.data.samples, self.data.dataset
        self.val_samples, self._groups = self.data.val_samples, self.data.groups
        self._checkpoint_stat = run_folder.checkpoint_stat(self.out_dir) if self.resume else None
        if self.resume:
            self.load(self.out_dir / run_folder.CHECKPOINT)
            if self.epoch_record:  # killed before its log line? rank 0 reads the log
                logged = run_folder.logged_epochs(self.out_dir) if self.dist.is_main else 0
                missing = self.dist.is_main and logged < int(self.epoch_record["epoch"])
                if distributed.broadcast_flag(missing, self.device):  # every rank validates
                    self._pending = dict(self.epoch_record)
            self._say(
                f"resuming from epoch {min(self.epoch + 1, cfg.optim.epochs)}/"
                f"{cfg.optim.epochs}, step {self.step}"
                + (f" (image {self.images_in_epoch} of the epoch)" if self.images_in_epoch else "")
            )

    @property
    def batch_in_epoch(self) -> int:
        """Micro-batches of ``optim.batch_size`` done in the current epoch."""
        return math.ceil(self.images_in_epoch / self.cfg.optim.batch_size)

    def _say(self, line: str) -> None:
        _ = self.dist.is_main and tqdm.write(line)

    # ------------------------------------------------------------------ set-up
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
    def fit(self) -> dict[str, Any]:
        """Train until ``optim.epochs`` (or ``runtime.max_steps``, or a stop signal).

        Returns ``{"status": "finished" | "stopped" | "interrupted", "epoch", "step"}`` (epoch:
        the epochs done). ``<out_dir>/last.pt`` is written at every epoch end (before that
        epoch's validation) and whenever the loop stops; ``log.jsonl`` gets the epoch's line
        after the checkpoint. SIGINT / SIGTERM stop after the current optimizer step or
        validation image; a second one stops at once (`linkhoi.stopping.Interrupted`).
        """
        cfg = self.cfg
        main = self.dist.is_main
        claim = (
            run_folder.claim(self.out_dir, self.resume, self.force, self._checkpoint_stat)
            if main
            else nullcontext()
        )
        second = (
            f"stopped at once by a second signal; {self.out_dir / 'last.pt'} is the last checkpoint"
        )
        status = "finished"
        with claim, StopSignals(second) as self._stop:
            if main:
                save_config(cfg, self.out_dir / run_folder.CONFIG)
            writer = _summary_writer(self.out_dir / "tensorboard") if main else None
            try:
                if self._pending is not None:  # the last epoch's validation and log line
                    status = self._finish_epoch(writer, self._pending)
                while status in ("finished", "running") and self.epoch < cfg.optim.epochs:
                    status = self._run_epoch(writer)
                status = "finished" if status == "running" else status
            finally:
                if writer is not None:
                    writer.close()
                self._stop = None
        return {"status": status, "epoch": self.epoch, "step": self.step}

    def _stop_requested(self) -> bool:
        return distributed.broadcast_flag(
            self._stop is not None and self._stop.requested, self.device
        )

    def _run_epoch(self, writer) -> str:
        cfg = self.cfg
        acc, bs = cfg.optim.accumulate, cfg.optim.batch_size
        order = self.data.epoch_order(self.epoch)
        # The position is kept in images: a resumed run may use another batch size.
        todo = [order[i : i + bs] for i in range(self.images_in_epoch, len(order), bs)]
        loader = DataLoader(
            self.dataset,
            batch_sampler=todo,
            collate_fn=collate,
            num_workers=cfg.data.num_workers,
            generator=torch.Generator(),  # keeps the global RNG untouched (exact resume)
        )
        self.ddp.train()
        stats_so_far, t0 = self.epoch_stats["seconds"], time.perf_counter()
        bar = tqdm(
            total=len(order),
            initial=self.images_in_epoch,
            unit="img",
            desc=f"epoch {self.epoch + 1}/{cfg.optim.epochs}",
            disable=not (cfg.runtime.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        micro_batches, done = iter(loader), 0
        while done < len(todo):
            # One optimizer step: `acc` micro-batches (the epoch's last group may be shorter).
            size = min(acc, len(todo) - done)
            group = [next(micro_batches) for _ in range(size)]
            done += size
            prepared = [self.data.prepare(items, self.epoch) for items in group]
            normaliser, inputs = step_targets(
                self.model, prepared, self.class_mask, len(self.label_space.hois)
            )
            stats: dict[str, float] = {}
            for j, (batch, targets) in enumerate(zip(prepared, inputs, strict=True)):
                last = j == size - 1
                sync = self.ddp.no_sync() if (self.dist.enabled and not last) else nullcontext()
                with sync:
                    with torch.autocast("cuda", enabled=self.amp):
                        loss, part = self.ddp(batch, self.class_mask, normaliser, size, targets)
                    self.scaler.scale(loss).backward()
                for k, v in part.items():  # each micro-batch's share of the step's values
                    stats[k] = stats.get(k, 0.0) + v
            images = sum(len(items) for items in group)
            self.images_in_epoch += images
            self._optimizer_step()
            ep = self.epoch_stats
            for k, v in stats.items():
                ep["sums"][k] = ep["sums"].get(k, 0.0) + v
            ep["steps"] += 1
            ep["images"] += images
            ep["seconds"] = stats_so_far + time.perf_counter() - t0
            bar.update(images)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", img_s=f"{_rate(ep, self.dist):.1f}")
            self.history.append(dict(stats))
            if writer is not None:
                for k, v in stats.items():
                    writer.add_scalar(f"train/{k}", v, self.step)
                writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
            stop = bool(cfg.runtime.max_steps and self.step >= cfg.runtime.max_steps)
            signalled = self._stop_requested()
            if (stop or signalled) and done < len(todo):
                bar.close()
                self.save()
                return "interrupted" if signalled else "stopped"
            if stop or signalled:
                break
        bar.close()
        self.scheduler.step()
        self.epoch += 1
        self.images_in_epoch = 0
        ep, self.epoch_stats = self.epoch_stats, _fresh_stats()
        record = {k: v / max(ep["steps"], 1) for k, v in ep["sums"].items()}
        record.update(epoch=self.epoch, step=self.step, lr=self.optimizer.param_groups[0]["lr"])
        record.update(images_per_s=_rate(ep, self.dist), seconds=ep["seconds"])
        self.epoch_record = record
        self.save()  # before validating: a stop or a kill there loses no training
        return self._finish_epoch(writer, dict(record))

    def _finish_epoch(self, writer, record: dict[str, Any]) -> str:
        """Validate the finished epoch (when due), then log it: ``log.jsonl``, TensorBoard and
        one summary line. Returns the loop's status."""
        cfg = self.cfg
        self._pending = None
        if self.val_samples is not None and record["epoch"] % max(cfg.runtime.eval_every, 1) == 0:
            try:
                record["eval"] = self.evaluate()
            except ValidationStopped:
                self._say(f"validation of epoch {record['epoch']} stopped; --resume runs it again")
                return "interrupted"
        if self.dist.is_main:
            run_folder.append_log(self.out_dir, record)
            self._say(run_folder.epoch_summary(record, cfg.optim.epochs))
            if writer is not None and isinstance(record.get("eval"), dict):
                for k, v in record["eval"].get("map", {}).items():
                    writer.add_scalar(f"eval/map_{k}", v, record["epoch"])
        if self.epoch >= cfg.optim.epochs:
            return "running"  # the loop ends: finished
        if self._stop_requested():
            return "interrupted"
        if cfg.runtime.max_steps and self.step >= cfg.runtime.max_steps:
            return "stopped"
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
    def evaluate(self) -> dict[str, Any] | None:
        """Per-epoch HICO-DET-protocol evaluation on ``data.val`` (results gathered to rank 0);
        inside ``fit`` a stop signal ends it between two images (`ValidationStopped`)."""
        return validate(self, self._stop_requested if self._stop is not None else None)

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


def _fresh_stats() -> dict[str, Any]:
    return {"sums": {}, "steps": 0, "images": 0, "seconds": 0.0}


def _rate(stats: dict[str, Any], dist) -> float:
    """Images per second over all processes."""
    return stats["images"] * dist.world_size / max(stats["seconds"], 1e-9)


def _summary_writer(log_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))
