"""Issue 12 items about checkpoint files: a model_config that disagrees with the weights is
refused before anything is built (6); pickles holding code or objects are refused in one line
that does not advise switching the protection off, and torch's warnings stay quiet (18)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pytest
import torch

from linkhoi.infer import cli
from linkhoi.model import LinkConfig, create_model
from linkhoi.model.checkpoint import CheckpointError, load_model, model_payload
from linkhoi.train.checkpointing import CheckpointError as TrainCheckpointError
from linkhoi.train.checkpointing import load_training_checkpoint

SMALL = dict(backbone="tiny", d_model=32, d_pair=48, d_latent=32, num_heads=4, pe_dims=16)


class _Code:
    """Pickles as a call of print: what a crafted file runs under plain ``torch.load``."""

    def __reduce__(self):
        return (print, ("this ran",))


@pytest.fixture(scope="module")
def payload() -> dict:
    torch.manual_seed(0)
    return model_payload(create_model(LinkConfig(**SMALL), "synthetic", device="cpu"))


def test_item06_config_sizes_checked_against_weights_before_building(
    payload: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import linkhoi.model.checkpoint as checkpoint

    real_builds = []
    real = checkpoint.LinkModel

    def guarded(*args, **kwargs):
        if torch.empty(0).device.type != "meta":  # a build that allocates memory
            real_builds.append(args[0])
            if args[0].d_model == 60000:
                raise AssertionError("the 43 GB head was built before any check")
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "LinkModel", guarded)
    bad = {**payload, "model_config": {**payload["model_config"], "d_model": 60000}}
    with pytest.raises(CheckpointError) as err:
        load_model(bad)
    text = str(err.value)
    assert "model_config" in text and "d_model=60000" in text and "has shape" in text
    assert not real_builds  # refused before any layer of the head took memory
    assert load_model(payload) is not None and real_builds  # a consistent payload still loads


def _detect(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_item18_refused_pickles_one_line_without_unsafe_advice(
    payload: dict, tmp_path: Path, capsys
) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({**payload, "extra": _Code()}, evil)
    script = tmp_path / "script.pt"
    with warnings.catch_warnings():  # torch marks jit.script deprecated
        warnings.simplefilter("ignore")
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(script))
    (tmp_path / "img.png").write_bytes(b"")
    for path in (evil, script):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with pytest.raises(CheckpointError) as err:
                load_model(path)
            with pytest.raises(TrainCheckpointError) as train_err:
                load_training_checkpoint(path)
        assert not [w for w in seen if issubclass(w.category, UserWarning)], seen
        for message in (str(err.value), str(train_err.value)):
            assert len(message.splitlines()) == 1 and str(path) in message
            assert "weights_only" not in message and "likely succeed" not in message
    assert "holds code or Python objects (print) that linkhoi does not load" in str(
        err.value
    ) or "TorchScript" in str(err.value)
    rc = _detect([str(tmp_path / "img.png"), "--checkpoint", str(evil), "--no-draw",
                  "--detections", str(tmp_path / "d.json"), "--out", str(tmp_path / "o")])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 2 and "this ran" not in captured.out
    assert "holds code or Python objects (print)" in captured.err
    assert "re-save" in captured.err and len(captured.err.strip().splitlines()) == 1
