"""Contrastive pretraining of the tiny CLIP on the caption corpus (``linkhoi pretrain-vlm``).

open_clip's own model (``open_clip.model.CLIP``), tokenizer and ``ClipLoss``; AdamW with
open_clip's parameter groups (no weight decay on gains, biases, embeddings and the logit
scale), linear warm-up then cosine decay, the logit scale clamped at ln(100) as open_clip's
training loop does. Every random choice of a step (the batch, the caption variant of each item,
horizontal flips) is drawn from a generator seeded by (seed, step), so a run resumed from its
``state.pt`` continues exactly as an uninterrupted one. The result is exported as a normal
open_clip safetensors state dict (fp16) with its model config beside it.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from linkhoi.io import atomic_path, atomic_write_text
from linkhoi.synthetic.corpus import Corpus, load_corpus
from linkhoi.synthetic.vlm import build_model, image_map, normalise, tokenizer, vlm_config


@dataclass
class PretrainConfig:
    steps: int = 6000
    batch_size: int = 128
    lr: float = 5e-4
    warmup: int = 300
    weight_decay: float = 0.1
    seed: int = 0
    eval_every: int = 500  # image_map on the corpus's validation split
    save_every: int = 100  # state.pt for resuming


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip's split: decay only matrices that are not embeddings."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        no_decay = p.ndim < 2 or "embedding" in name or "logit_scale" in name or name.endswith("bn")
        (rest if no_decay else decay).append(p)
    return [{"params": rest, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, t)))


def tokenize_corpus(corpus: Corpus) -> torch.Tensor:
    """(N, CAPTIONS, context) token ids of every caption variant."""
    tok = tokenizer()
    n, k = len(corpus.captions), len(corpus.captions[0])
    flat = [c for caps in corpus.captions for c in caps]
    return tok(flat).view(n, k, -1)


def batch_at(
    step: int, cfg: PretrainConfig, n: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, caption variants, flips) of a step: a permutation per epoch, seeded."""
    per_epoch = n // cfg.batch_size
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([cfg.seed, 7, epoch]).permutation(n)
    idx = perm[pos * cfg.batch_size : (pos + 1) * cfg.batch_size]
    rng = np.random.default_rng([cfg.seed, 8, step])
    return idx, rng.integers(k, size=len(idx)), rng.uniform(size=len(idx)) < 0.5


def pretrain(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: PretrainConfig,
    progress: bool = True,
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Pretrain (or resume) into ``out_dir``: ``state.pt`` (resume), ``log.jsonl`` (loss, lr,
    image_map), then ``model.safetensors`` + ``open_clip_config.json``. Returns the summary.
    ``stop_at``: leave after that step with its state saved (a resumable pause)."""
    from open_clip.loss import ClipLoss

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus, val = load_corpus(corpus_dir, "train"), load_corpus(corpus_dir, "val")
    if len(corpus.images) < cfg.batch_size:
        raise ValueError(
            f"{corpus_dir}: {len(corpus.images)} images, fewer than a batch of {cfg.batch_size}"
        )
    tokens = tokenize_corpus(corpus)
    size = int(corpus.images.shape[1])  # the model's input size is the corpus's image size
    model = build_model(cfg.seed, size)
    opt = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6
    )
    loss_fn = ClipLoss()
    state_path, log_path = out / "state.pt", out / "log.jsonl"
    step, elapsed = 0, 0.0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["config"] != asdict(cfg):
            raise ValueError(f"{state_path}: made with {state['config']}, not {asdict(cfg)}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
    if step == 0 and log_path.exists():
        log_path.unlink()
    bar = tqdm(
        total=cfg.steps, initial=step, desc="pretrain-vlm", unit="step", disable=not progress
    )
    t0 = time.perf_counter() - elapsed
    n, k = tokens.shape[:2]
    last = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    while step < last:
        model.train()
        idx, var, flip = batch_at(step, cfg, n, k)
        imgs = corpus.images[idx]
        imgs = np.where(flip[:, None, None, None], imgs[:, :, ::-1], imgs)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        res = model(normalise(imgs), tokens[torch.from_numpy(idx), torch.from_numpy(var)])
        loss = loss_fn(res["image_features"], res["text_features"], res["logit_scale"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        rec: dict[str, Any] = {
            "step": step,
            "loss": round(loss.item(), 5),
            "lr": lr_at(step - 1, cfg),
        }
        if step % cfg.eval_every == 0 or step == cfg.steps:
            rec["image_map"] = round(image_map(model, val.images, val.classes)["map"], 4)
        if step % 10 == 0 or "image_map" in rec:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if step % cfg.save_every == 0 or step == last:
            elapsed = time.perf_counter() - t0
            with atomic_path(state_path) as tmp:
                torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
                            "elapsed": elapsed, "config": asdict(cfg)}, tmp)  # fmt: skip
    bar.close()
    if step < cfg.steps:
        return {"steps": step, "paused": True}
    export(model, out / "model.safetensors", out / "open_clip_config.json")
    final = image_map(model, val.images, val.classes)["map"]
    random_map = image_map(build_model(cfg.seed + 1, size), val.images, val.classes)["map"]
    summary = {"steps": step, "image_map": final, "random_image_map": random_map,
               "seconds": round(time.perf_counter() - t0, 1), "config": asdict(cfg),
               "corpus_items": n, "threads": torch.get_num_threads()}  # fmt: skip
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def export(model: torch.nn.Module, weights: Path, config: Path) -> None:
    """An open_clip safetensors state dict (fp16: half the size, and the loader casts it
    back) and the open_clip model config it belongs to (at the model's input size)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    # The config first: a reader that sees the weights file finds its config beside it.
    model_config = vlm_config(int(model.visual.image_size[0]))
    atomic_write_text(config, json.dumps(model_config, indent=2) + "\n")
    with atomic_path(weights) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt", "model": "open_clip"})


def ship(run_dir: str | os.PathLike, dest_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Copy a finished run's weights and config into ``dest_dir`` under the shipped VLM's name,
    with a provenance record: the file's sha256, the run's summary and ``record`` (the exact
    command, settings and machine). Returns the weights' path."""
    import hashlib
    import shutil

    from linkhoi.synthetic.vlm import VLM_NAME

    run, dest = Path(run_dir), Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    weights = dest / f"{VLM_NAME}.safetensors"
    shutil.copyfile(run / "model.safetensors", weights)
    shutil.copyfile(run / "open_clip_config.json", dest / f"{VLM_NAME}.json")
    summary = json.loads((run / "summary.json").read_text())
    prov = {"name": VLM_NAME, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            "open_clip_config": json.loads((run / "open_clip_config.json").read_text()),
            **record, "summary": summary}  # fmt: skip
    atomic_write_text(dest / f"{VLM_NAME}.provenance.json", json.dumps(prov, indent=2) + "\n")
    return weights
