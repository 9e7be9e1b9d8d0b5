"""The trainer on a tiny synthetic world with a tiny random CLIP (each test a few seconds).

Teacher loss decreases; a student step with each distillation level on/off (backbone run once);
exact resume mid-epoch; SIGTERM checkpoint; zero-shot rows keep their CLIP init; evaluation,
logs and the resolved config beside the outputs.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from linkhoi.train.config import TrainConfig, apply_overrides
from linkhoi.train.trainer import Trainer

TINY_MODEL = (
    "model={backbone: tiny, d_model: 32, d_pair: 32, d_latent: 32, num_heads: 4, pe_dims: 16, "
    "spatial_hidden: [32, 32], dropout: 0.0}"
)
STUDENT_MODEL = (
    "model={backbone: tiny, d_model: 16, d_pair: 24, d_latent: 16, num_heads: 4, pe_dims: 16, "
    "spatial_hidden: [16, 16]}"
)


def make_config(tiny_world, out: Path, *overrides: str) -> TrainConfig:
    cfg = TrainConfig()
    return apply_overrides(
        cfg,
        [
            f"data.train={{path: {tiny_world.train}}}",
            f"data.image_root={tiny_world.images}",
            "data.label_space=synthetic",
            TINY_MODEL,
            "optim.batch_size=4",
            "optim.lr=1e-3",
            "optim.epochs=100",
            f"runtime.out_dir={out}",
            "runtime.progress=false",
            *overrides,
        ],
    )


def test_teacher_loss_decreases_and_outputs_written(tiny_world, tmp_path: Path) -> None:
    # One batch holds all 8 images, so every step sees the same data and the loss is comparable.
    out = tmp_path / "teacher"
    cfg = make_config(
        tiny_world, out, "optim.batch_size=8", "optim.epochs=30", "runtime.max_steps=30"
    )
    trainer = Trainer(cfg)
    result = trainer.fit()
    assert result == {"status": "finished", "epoch": 30, "step": 30}
    losses = [h["loss"] for h in trainer.history]
    assert len(losses) == 30
    assert losses[-1] < 0.6 * losses[0], losses
    assert all(b < a for a, b in zip(losses[10:], losses[11:], strict=False)), losses
    lines = (out / "log.jsonl").read_text().splitlines()
    assert len(lines) == 30 and json.loads(lines[-1])["step"] == 30
    assert (out / "config.yaml").exists() and list((out / "tensorboard").iterdir())
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["format"] == "linkhoi-checkpoint" and ckpt["epoch"] == 30 and ckpt["step"] == 30
    assert ckpt["config"]["runtime"]["max_steps"] == 30
    from linkhoi.model.checkpoint import load_model

    model = load_model(out / "last.pt", device="cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(v, trainer.model.state_dict()[k].cpu()), k


@pytest.fixture(scope="module")
def teacher_ckpt(tiny_world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    Trainer(make_config(tiny_world, out, "runtime.max_steps=2")).fit()
    return out / "last.pt"


@pytest.mark.parametrize(
    "levels",
    [("logit", "query", "map"), ("logit",), ("query",), ("map",), ()],
)
def test_student_step_with_each_distillation_level(
    tiny_world, teacher_ckpt, tmp_path, levels
) -> None:
    switches = [
        f"distill.{lv}={'true' if lv in levels else 'false'}" for lv in ("logit", "query", "map")
    ]
    cfg = make_config(
        tiny_world, tmp_path, STUDENT_MODEL, f"distill.teachers=[{teacher_ckpt}]", "runtime.max_steps=1",
        "runtime.feature_cache=false", *switches,
    )  # fmt: skip
    trainer = Trainer(cfg)
    teacher = trainer.teachers[0]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    calls = []
    for m in {
        id(trainer.model.backbone): trainer.model.backbone,
        id(teacher.backbone): teacher.backbone,
    }.values():
        m.register_forward_hook(lambda *_: calls.append(1))
    trainer.fit()
    stats = trainer.history[0]
    assert {k for k in stats if k.startswith("kd_")} == {f"kd_{lv}" for lv in levels}
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    # The teacher shares the tiny backbone: one backbone forward for the batch, not two.
    assert len(trainer._groups) == 1 and len(calls) == 1
    assert not teacher.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # frozen teacher
    # The student is narrower: adapters are trained with it and checkpointed.
    if "query" in levels:
        assert trainer.distiller.pair_adapter.weight.shape == (32, 24)
        ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
        assert "pair_adapter.weight" in ckpt["distiller"]


def test_teacher_with_another_backbone_resolution(tiny_world, tmp_path: Path) -> None:
    # Teacher at 96 px (6x6 latent map), student at 64 px (4x4): two backbone forwards per
    # batch, the map KD resamples the teacher's map in space and channels.
    teacher_out = tmp_path / "t96"
    Trainer(
        make_config(tiny_world, teacher_out, "model.image_size=96", "runtime.max_steps=1")
    ).fit()
    cfg = make_config(
        tiny_world, tmp_path / "s", STUDENT_MODEL, f"distill.teachers=[{teacher_out / 'last.pt'}]",
        "runtime.max_steps=1", "runtime.feature_cache=false",
    )  # fmt: skip
    trainer = Trainer(cfg)
    assert len(trainer._groups) == 2
    calls: list[int] = []
    trainer.model.backbone.register_forward_hook(lambda *_: calls.append(64))
    trainer.teachers[0].backbone.register_forward_hook(lambda *_: calls.append(96))
    trainer.fit()
    assert sorted(calls) == [64, 96]
    assert trainer.history[0]["kd_map"] > 0
    # 32 teacher latent channels onto the student's 16: resampled, no learned map.
    assert {n.split(".")[0] for n, _ in trainer.distiller.named_parameters()} <= {
        "unary_adapter",
        "pair_adapter",
    }


def test_cli_train_and_errors(tiny_world, tmp_path: Path, capsys) -> None:
    from linkhoi.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(
        f"data:\n  train: {{path: {tiny_world.train}}}\n  image_root: {tiny_world.images}\n"
        "model: {backbone: tiny, d_model: 32, d_pair: 32, d_latent: 32, num_heads: 4, "
        "pe_dims: 16, spatial_hidden: [32, 32]}\noptim: {batch_size: 4, epochs: 1}\n"
        "runtime: {progress: false}\n"
    )
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "optim.lr=1e-3"]) == 0
    assert "teacher finished at epoch 1/1, step 2" in capsys.readouterr().out
    assert (tmp_path / "run" / "last.pt").exists()
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "lr: 0.001" in saved and str(tmp_path / "run") in saved
    # Resuming the finished run with one more epoch: a one-line warning names the change.
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "optim.lr=1e-3",
                 "optim.epochs=2", "--resume"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "linkhoi train: warning:" in err and "optim.epochs: 1 -> 2" in err
    assert "restore_training_state(" not in err  # no source line under it
    # Resuming into a model of other sizes: one line naming the first tensor that differs.
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "optim.lr=1e-3",
                 "optim.epochs=2", "model.d_model=16", "--resume"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert "does not fit the configured model (size mismatch for" in err[-1]
    assert "tensor(s) differ)" in err[-1]
    assert main(["train", str(config), "optim.lrr=1"]) == 2
    assert "unknown key 'optim.lrr'" in capsys.readouterr().err
    assert main(["train", str(config), "--out", str(tmp_path / "z"), "data.scales=[1, 0]"]) == 2
    assert "data.scales must be > 0" in capsys.readouterr().err
    assert main(["train", str(config), "model.proposals={max_human: 2}"]) == 2
    assert "proposals: unknown key(s) ['max_human']" in capsys.readouterr().err


def test_feature_cache_skips_the_backbone_next_time(tiny_world, tmp_path: Path) -> None:
    cfg = make_config(tiny_world, tmp_path, "optim.epochs=1", f"runtime.cache_dir={tmp_path / 'c'}")
    first = Trainer(cfg)
    calls: list[int] = []
    first.model.backbone.register_forward_hook(lambda *_: calls.append(1))
    first.fit()
    assert len(calls) == 2  # two batches of 4 images, computed and stored
    assert len(list((tmp_path / "c" / "features").rglob("*.safetensors"))) == 8
    again = Trainer(cfg, force=True)
    again.model.backbone.register_forward_hook(lambda *_: calls.append(1))
    again.fit()
    assert len(calls) == 2  # every image read back from the cache
    assert again.history[0]["loss"] == pytest.approx(first.history[0]["loss"], rel=1e-6)


def _final_state(trainer: Trainer) -> tuple[dict, dict]:
    return trainer.model.state_dict(), trainer.optimizer.state_dict()


def test_resume_mid_epoch_is_bit_identical(tiny_world, tmp_path: Path) -> None:
    # dropout on, augmentation on, accumulation 2, an lr drop, a stop in the middle of epoch 2.
    common = [
        "model.dropout=0.1", "data.augment=true", "optim.batch_size=2", "optim.accumulate=2",
        "optim.lr_drop=[1]", "optim.epochs=3",
    ]  # fmt: skip
    full = Trainer(make_config(tiny_world, tmp_path / "full", *common, "runtime.max_steps=5"))
    full.fit()
    part = Trainer(make_config(tiny_world, tmp_path / "part", *common, "runtime.max_steps=3"))
    assert part.fit() == {"status": "stopped", "epoch": 1, "step": 3}
    assert torch.load(tmp_path / "part" / "last.pt", weights_only=True)["batch_in_epoch"] == 2
    del part
    # A changed config value is named (here on purpose: a later stop).
    with pytest.warns(
        UserWarning, match=r"differs from the checkpoint's: runtime.max_steps: 3 -> 5$"
    ):
        resumed = Trainer(
            make_config(tiny_world, tmp_path / "part", *common, "runtime.max_steps=5"), resume=True
        )
    assert (resumed.epoch, resumed.step, resumed.batch_in_epoch) == (1, 3, 2)
    resumed.fit()
    assert resumed.step == full.step == 5
    (ma, oa), (mb, ob) = _final_state(full), _final_state(resumed)
    assert ma.keys() == mb.keys()
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k
    for pid, sa in oa["state"].items():
        for key, value in sa.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(ob["state"][pid][key]))
    assert full.scheduler.state_dict() == resumed.scheduler.state_dict()
    assert [h["loss"] for h in full.history[3:]] == [h["loss"] for h in resumed.history]


def test_sigterm_writes_checkpoint_and_stops(tiny_world, tmp_path: Path) -> None:
    trainer = Trainer(make_config(tiny_world, tmp_path, "optim.batch_size=1", "optim.epochs=2"))
    step = trainer._optimizer_step

    def step_then_signal() -> None:
        step()
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the trainer, not fatal

    trainer._optimizer_step = step_then_signal
    before = signal.getsignal(signal.SIGTERM)
    assert trainer.fit() == {"status": "interrupted", "epoch": 0, "step": 2}
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"]) == (0, 2, 2)
    for k, v in trainer.model.state_dict().items():
        if not k.startswith("backbone."):
            assert torch.equal(ckpt["model"][k], v), k


def test_zero_shot_rows_keep_clip_init(tiny_world, tmp_path: Path) -> None:
    trainer = Trainer(
        make_config(tiny_world, tmp_path, "data.zero_shot=unseen", "runtime.max_steps=4")
    )
    unseen = sorted(trainer.label_space.subsets["unseen"])
    assert all(p.hoi not in unseen for s in trainer.samples for p in s.pairs)
    init = trainer.model.text.detach().clone()
    assert torch.equal(init, trainer.model.text_init)
    trainer.fit()
    text = trainer.model.text.detach()
    seen = [k for k in range(len(text)) if k not in unseen]
    assert torch.equal(text[unseen], init[unseen])
    assert not torch.equal(text[seen], init[seen])


def test_text_lr_scale_freezes_or_slows_the_classifier_rows(tiny_world, tmp_path: Path) -> None:
    frozen = Trainer(
        make_config(tiny_world, tmp_path / "a", "optim.text_lr_scale=0", "runtime.max_steps=3")
    )
    text = frozen.model.text
    assert not text.requires_grad
    assert all(p is not text for g in frozen.optimizer.param_groups for p in g["params"])
    frozen.fit()
    assert torch.equal(frozen.model.text.detach(), frozen.model.text_init)  # every row: the prompt
    slow = Trainer(
        make_config(tiny_world, tmp_path / "b", "optim.text_lr_scale=0.25", "optim.lr=4e-4")
    )
    groups = slow.optimizer.param_groups
    assert [g["lr"] for g in groups] == [pytest.approx(4e-4), pytest.approx(1e-4)]
    assert groups[1]["params"] == [slow.model.text]


def test_per_epoch_evaluation_logged(tiny_world, tmp_path: Path) -> None:
    cfg = make_config(
        tiny_world, tmp_path, f"data.val={{path: {tiny_world.test}}}", f"data.val_image_root={tiny_world.images}",
        "optim.epochs=1",
    )  # fmt: skip
    Trainer(cfg).fit()
    record = json.loads((tmp_path / "log.jsonl").read_text())
    assert record["eval"]["benchmark"] == "hico_det"
    assert 0.0 <= record["eval"]["map"]["full"] <= 1.0


def test_training_from_a_detection_file_with_augmentation(tiny_world, tmp_path: Path) -> None:
    cfg = make_config(
        tiny_world, tmp_path, f"data.detections={tiny_world.train_detections['noisy']}",
        "data.augment=true", "runtime.max_steps=2",
    )  # fmt: skip
    trainer = Trainer(cfg)
    assert all(g["cache"] is None for g in trainer._groups)  # augmentation turns the cache off
    trainer.fit()
    assert len(trainer.history) == 2
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.history)


def test_accumulated_step_equals_one_large_batch(tiny_world, tmp_path: Path) -> None:
    # 2 micro-batches of 2 images must give the gradient of one batch of the same 4 images:
    # L_M is divided by the positives of the whole step (docs/method.md §5), not each micro-batch's.
    def first_step_grads(name: str, *overrides: str):
        cfg = make_config(
            tiny_world, tmp_path / name, "optim.epochs=1", "runtime.max_steps=1", "optim.clip_grad=0",
            "runtime.feature_cache=false", *overrides,
        )  # fmt: skip
        trainer = Trainer(cfg)
        grads: dict[str, torch.Tensor] = {}
        step = trainer._optimizer_step

        def record() -> None:
            grads.update(
                {
                    n: p.grad.clone()
                    for n, p in trainer.model.named_parameters()
                    if p.grad is not None
                }
            )
            step()

        trainer._optimizer_step = record
        trainer.fit()
        return grads, trainer.history[0]

    acc, stats_acc = first_step_grads("acc", "optim.batch_size=2", "optim.accumulate=2")
    one, stats_one = first_step_grads("one", "optim.batch_size=4", "optim.accumulate=1")
    assert stats_acc["positives"] == stats_one["positives"] > 0
    assert stats_acc["loss"] == pytest.approx(stats_one["loss"], rel=1e-5)
    assert acc.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(acc[name], one[name], rtol=1e-4, atol=1e-7, msg=name)
