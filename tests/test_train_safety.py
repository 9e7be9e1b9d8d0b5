"""Training runs that cannot overwrite or mix each other, and stop cleanly anywhere (issue 12
items 7-14, 17; issue 14 items 5 and 7). A tiny synthetic world and a tiny random CLIP."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from linkhoi.train.config import ConfigError, TrainConfig, apply_overrides
from linkhoi.train.trainer import Trainer

TINY = (
    "model={backbone: tiny, d_model: 16, d_pair: 16, d_latent: 16, num_heads: 2, pe_dims: 8, "
    "spatial_hidden: [16, 16], dropout: 0.0}"
)


def overrides(tiny_world, out: Path, *extra: str) -> list[str]:
    return [
        f"data.train={{path: {tiny_world.train}}}", f"data.image_root={tiny_world.images}",
        "data.label_space=synthetic", TINY, "optim.batch_size=4", "optim.lr=1e-3",
        "optim.epochs=1", f"runtime.out_dir={out}", "runtime.progress=false", *extra,
    ]  # fmt: skip


def config(tiny_world, out: Path, *extra: str) -> TrainConfig:
    return apply_overrides(TrainConfig(), overrides(tiny_world, out, *extra))


def yaml_config(tiny_world, tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"data:\n  train: {{path: {tiny_world.train}}}\n  image_root: {tiny_world.images}\n"
        f"  label_space: synthetic\n{TINY.replace('model=', 'model: ')}\n"
        "optim: {batch_size: 4, epochs: 2, lr: 0.001}\nruntime: {progress: false}\n"
        + "".join(f"{line}\n" for line in lines)
    )
    return str(path)


def log_epochs(out: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_item07_train_refuses_existing_run(tiny_world, tmp_path: Path, capsys) -> None:
    from linkhoi.cli import main

    cfg, out = yaml_config(tiny_world, tmp_path), tmp_path / "run"
    assert main(["train", cfg, "--out", str(out), "optim.epochs=1"]) == 0
    before = (out / "last.pt").read_bytes(), (out / "log.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", cfg, "--out", str(out), "runtime.max_steps=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--resume" in err[0]
    assert ((out / "last.pt").read_bytes(), (out / "log.jsonl").read_text()) == before
    old_events = sorted((out / "tensorboard").glob("events.out.tfevents.*"))
    assert old_events
    # --force replaces the run: a fresh log, a new checkpoint, only the new run's curves.
    assert main(["train", cfg, "--out", str(out), "runtime.max_steps=1", "--force"]) == 0
    assert not (out / "log.jsonl").exists()  # stopped mid-epoch 1: no epoch line yet
    events = sorted((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0] not in old_events
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1


def test_item08_two_trainings_cannot_share_a_folder(tiny_world, tmp_path: Path) -> None:
    from linkhoi.io import OutputError
    from linkhoi.outputs import output_lock

    out = tmp_path / "run"
    with output_lock(out, command="linkhoi train other.yaml"):  # another run writes here
        trainer = Trainer(config(tiny_world, out))
        with pytest.raises(
            OutputError, match=rf"in use by another linkhoi run \(pid {os.getpid()}"
        ):
            trainer.fit()
        assert sorted(p.name for p in out.iterdir()) == [".linkhoi.lock"]  # nothing written
    assert not (out / ".linkhoi.lock").exists()  # released and removed
    assert trainer.fit()["status"] == "finished"


def test_item09_resume_with_another_batch_size_skips_no_image(tiny_world, tmp_path: Path) -> None:
    seen: list[int] = []

    def recording(trainer: Trainer) -> Trainer:
        prepare = trainer.data.prepare
        trainer.data.prepare = lambda items, epoch: (
            seen.extend(i for i, *_ in items) or prepare(items, epoch)
        )
        return trainer

    out = tmp_path / "run"
    first = recording(Trainer(config(tiny_world, out, "optim.batch_size=2", "runtime.max_steps=1")))
    assert first.fit()["status"] == "stopped" and len(seen) == 2
    with pytest.warns(UserWarning, match="optim.batch_size: 2 -> 4"):
        resumed = recording(Trainer(config(tiny_world, out, "optim.batch_size=4"), resume=True))
    assert resumed.images_in_epoch == 2
    assert resumed.fit()["status"] == "finished"
    assert sorted(seen) == list(range(8))  # every image once: 2 + 6, none skipped


@pytest.mark.filterwarnings("ignore:.*differs from the checkpoint")
def test_item10_log_line_after_checkpoint_and_whole_epoch_means(
    tiny_world, tmp_path: Path, monkeypatch
) -> None:
    from linkhoi.train import run_folder

    full = Trainer(config(tiny_world, tmp_path / "full", "optim.batch_size=2", "optim.epochs=2"))
    full.fit()
    expected = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").open()]
    out = tmp_path / "run"
    common = ("optim.batch_size=2", "optim.epochs=2")
    Trainer(config(tiny_world, out, *common, "runtime.max_steps=1")).fit()  # stop mid-epoch 1

    class Killed(BaseException):
        pass

    # Killed while the epoch-end checkpoint is written: no log line may exist for it.
    resumed = Trainer(config(tiny_world, out, *common), resume=True)

    def killed_save():
        raise Killed

    resumed.save = killed_save
    with pytest.raises(Killed):
        resumed.fit()
    assert not (out / "log.jsonl").exists()
    # Killed after the checkpoint, before the log line: the resumed run writes it once.
    real_append = run_folder.append_log

    def killed_append(*args):
        raise Killed

    monkeypatch.setattr(run_folder, "append_log", killed_append)
    with pytest.raises(Killed):
        Trainer(config(tiny_world, out, *common), resume=True).fit()
    monkeypatch.setattr(run_folder, "append_log", real_append)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    assert Trainer(config(tiny_world, out, *common), resume=True).fit()["status"] == "finished"
    got = [json.loads(line) for line in (out / "log.jsonl").open()]
    assert [r["epoch"] for r in got] == [1, 2]
    for a, b in zip(expected, got, strict=True):  # means over the whole epoch, resumed or not
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)


def test_item11_sigterm_during_validation_is_honoured(tiny_world, tmp_path: Path) -> None:
    val = (f"data.val={{path: {tiny_world.test}}}", f"data.val_image_root={tiny_world.images}")
    trainer = Trainer(config(tiny_world, tmp_path, *val))
    items = trainer.data.val_items
    validated: list[str] = []

    def val_items():
        for item in items():
            validated.append(item[0])
            if len(validated) == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            yield item

    trainer.data.val_items = val_items
    assert trainer.fit() == {"status": "interrupted", "epoch": 1, "step": 2}
    assert len(validated) <= 2  # not the whole validation set (4 images)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1  # epoch kept
    assert not (tmp_path / "log.jsonl").exists()
    # Resuming validates the epoch and writes its line.
    assert Trainer(config(tiny_world, tmp_path, *val), resume=True).fit()["status"] == "finished"
    (record,) = [json.loads(line) for line in (tmp_path / "log.jsonl").open()]
    assert record["epoch"] == 1 and "map" in record["eval"]


def test_item12_stale_temporaries_resume_without_checkpoint_durable_writes(
    tiny_world, tmp_path: Path, monkeypatch
) -> None:
    import linkhoi.io

    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".last.pt.k3j4h5.tmp"  # a kill during the first checkpoint write
    stale.write_bytes(b"half a checkpoint")
    with pytest.warns(UserWarning, match="no checkpoint to resume from; starting a new run"):
        trainer = Trainer(config(tiny_world, out, "runtime.max_steps=1"), resume=True)
    synced: list[str] = []
    real = linkhoi.io.os.fsync
    monkeypatch.setattr(
        linkhoi.io.os,
        "fsync",
        lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd),
    )
    assert trainer.fit()["status"] == "stopped"
    assert not stale.exists() and (out / "last.pt").is_file()
    assert any(p.startswith(str(out / ".last.pt.")) for p in synced)  # the file, before rename
    assert str(out) in synced  # the folder, after it


def test_item13_ctrl_c_twice_and_during_start_up_one_line(
    tiny_world, tmp_path: Path, monkeypatch, capsys
) -> None:
    from linkhoi.cli import main
    from linkhoi.train import trainer as trainer_module

    cfg = yaml_config(tiny_world, tmp_path)
    step = Trainer._optimizer_step

    def step_then_two_interrupts(self) -> None:
        step(self)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Trainer, "_optimizer_step", step_then_two_interrupts)
    before = signal.getsignal(signal.SIGINT)
    assert main(["train", cfg, "--out", str(tmp_path / "run")]) == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [
        f"linkhoi train: stopped at once by a second signal; {tmp_path / 'run' / 'last.pt'} "
        "is the last checkpoint"
    ]
    assert signal.getsignal(signal.SIGINT) == before
    assert not (tmp_path / "run" / ".linkhoi.lock").exists()

    def interrupted_start(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "__init__", interrupted_start)
    assert main(["train", cfg, "--out", str(tmp_path / "run2")]) == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["linkhoi train: interrupted"]


def test_item14_full_disk_train_one_line_checkpoint_intact(
    tiny_world, tmp_path: Path, monkeypatch, capsys
) -> None:
    from linkhoi.cli import main

    cfg, out = yaml_config(tiny_world, tmp_path), tmp_path / "run"
    assert main(["train", cfg, "--out", str(out), "runtime.max_steps=1"]) == 130 - 130
    good = (out / "last.pt").read_bytes()
    capsys.readouterr()
    real_save = torch.save

    def full_disk_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk_save)
    assert main(["train", cfg, "--out", str(out), "--resume"]) == 2
    monkeypatch.setattr(torch, "save", real_save)
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and str(out / "last.pt") in err[0] and "no space left" in err[0]
    assert (out / "last.pt").read_bytes() == good
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == []


def test_issue14_item05_one_summary_line_per_epoch_1_based(
    tiny_world, tmp_path: Path, monkeypatch, capsys
) -> None:
    from linkhoi.cli import main

    cfg, out = yaml_config(tiny_world, tmp_path), tmp_path / "run"
    step = Trainer._optimizer_step

    def step_then_interrupt(self) -> None:  # Ctrl-C in the middle of epoch 2 of 2
        step(self)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Trainer, "_optimizer_step", step_then_interrupt)
    assert main(["train", cfg, "--out", str(out), "runtime.progress=true"]) == 130
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("epoch 1/2: loss ") and "images/s" in lines[0]
    assert lines[1].startswith("teacher interrupted in epoch 2/2, step 3;")
    assert "epoch 1/2: 100%" in captured.err and "8/8" in captured.err  # the bar ends full
    monkeypatch.setattr(Trainer, "_optimizer_step", step)
    assert main(["train", cfg, "--out", str(out), "--resume"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "resuming from epoch 2/2, step 3 (image 4 of the epoch)"
    assert lines[1].startswith("epoch 2/2: loss ")
    assert lines[2].startswith("teacher finished at epoch 2/2, step 4;")


def test_issue14_item07_nothing_created_before_validation(
    tiny_world, tmp_path: Path, capsys
) -> None:
    from linkhoi.cli import main

    cfg, out = yaml_config(tiny_world, tmp_path), tmp_path / "run"
    assert main(["train", cfg, "--out", str(out), f"data.image_root={tmp_path / 'nope'}"]) == 2
    assert "data.image_root" in capsys.readouterr().err
    assert not out.exists()


def test_item17_zero_area_ground_truth_refused_or_warned(tiny_world, tmp_path: Path) -> None:
    data = json.loads(Path(tiny_world.train).read_text())
    data["image_root"] = str(tiny_world.images)
    good = json.loads(json.dumps(data))
    for rec in data["images"]:
        for b in rec["boxes"]:
            b["box"][2], b["box"][3] = b["box"][0], b["box"][1]  # zero width and height
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="every ground-truth pair has a zero-area"):
        Trainer(config(tiny_world, tmp_path / "a", f"data.train={{path: {flat}}}"))
    # Only the first image broken: a warning naming it; training goes on.
    first = data["images"][0]
    good["images"][0] = first
    some = tmp_path / "some.json"
    some.write_text(json.dumps(good))
    match = rf"1 of 8 images have only pairs with a zero-area box .*{first['file_name']}"
    with pytest.warns(UserWarning, match=match):
        Trainer(config(tiny_world, tmp_path / "b", f"data.train={{path: {some}}}"))
