"""torchrun with 2 CPU processes (gloo) gives the losses and weights of 1 process, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from linkhoi.data.synthetic import generate_world

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from linkhoi.train.config import TrainConfig, apply_overrides
    from linkhoi.train.trainer import Trainer

    out = sys.argv[1]
    trainer = Trainer(apply_overrides(TrainConfig(), sys.argv[2:]))
    result = trainer.fit()
    if trainer.dist.is_main:
        with open(out + "/history.json", "w") as f:
            json.dump({"result": result, "world_size": trainer.dist.world_size,
                       "losses": [h["loss"] for h in trainer.history]}, f)
        torch.save(trainer.model.state_dict(), out + "/weights.pt")
    """
)


def _overrides(world, out: Path, batch_size: int) -> list[str]:
    return [
        f"data.train={{path: {world.train}}}",
        f"data.image_root={world.images}",
        "model={backbone: tiny, d_model: 32, d_pair: 32, d_latent: 32, num_heads: 4, "
        "pe_dims: 16, spatial_hidden: [32, 32], dropout: 0.0}",
        f"optim.batch_size={batch_size}",
        "optim.lr=1e-3",
        "optim.epochs=2",
        f"runtime.out_dir={out}",
        "runtime.progress=false",
        "runtime.feature_cache=false",
        "runtime.device=cpu",
    ]


def _run(cmd: list[str], out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "history.json").read_text())


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    world = generate_world(tmp_path / "world", num_train=8, num_test=0, image_size=(192, 192),
                           progress=False)  # fmt: skip
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    one = tmp_path / "one"
    single = _run([sys.executable, str(worker), str(one), *_overrides(world, one, 4)], one)
    two = tmp_path / "two"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    multi = _run([*torchrun, str(worker), str(two), *_overrides(world, two, 2)], two)
    assert single["world_size"] == 1 and multi["world_size"] == 2
    assert single["result"] == multi["result"] == {"status": "finished", "epoch": 2, "step": 4}
    # Same global batches (DistributedSampler order), positives averaged across processes and
    # DDP's gradient averaging: the same loss up to float summation order.
    assert len(single["losses"]) == len(multi["losses"]) == 4
    for a, b in zip(single["losses"], multi["losses"], strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    wa = torch.load(one / "weights.pt", weights_only=True)
    wb = torch.load(two / "weights.pt", weights_only=True)
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-4), k
