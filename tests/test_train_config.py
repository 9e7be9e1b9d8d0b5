"""TrainConfig <-> YAML, typed dotted overrides, the packaged configs, feature cache, RNG states."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from linkhoi.train.checkpointing import rng_state, save_atomic, set_rng_state
from linkhoi.train.config import ConfigError, TrainConfig, apply_overrides, load_config, save_config
from linkhoi.train.feature_cache import FeatureCache, cached_features

PACKAGED = Path(__file__).resolve().parents[1] / "src" / "linkhoi" / "configs"


def test_yaml_round_trip_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "optim:\n  lr: 2.0e-4\n  lr_drop: [3]\ndistill:\n  map: false\nmodel:\n  backbone: tiny\n"
    )
    cfg = load_config(
        path, ["optim.lr=3e-4", "optim.epochs=4", "model.d_pair=64", "data.train={path: a.json}"]
    )
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.epochs == 4 and cfg.optim.lr_drop == [3]
    assert cfg.distill.map is False and cfg.distill.logit is True
    assert cfg.model == {"backbone": "tiny", "d_pair": 64}
    assert cfg.data.train == {"path": "a.json"}
    save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(tmp_path / "out" / "config.yaml")
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown key 'optim.lrr'"),
        ("optm.lr=1", "unknown key 'optm.lr'"),
        ("optim.epochs=1.5", "optim.epochs: expected int"),
        ("distill.map=3", "distill.map: expected bool"),
        ("optim.lr=fast", "optim.lr: expected float"),
        ("optim=3", "'optim' is a section"),
        ("optim.lr", "expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        apply_overrides(TrainConfig(), [override])


def test_bad_file_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("runtime:\n  sed: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'runtime.sed'"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_packaged_configs_load() -> None:
    from linkhoi.model import LinkConfig

    files = sorted(PACKAGED.glob("*.yaml"))
    names = {f.stem for f in files}
    for want in (
        "hico_det_teacher",
        "hico_det_student",
        "vcoco_teacher",
        "swig_hoi_student",
        "synthetic_teacher",
        "synthetic_student",
    ):
        assert want in names
    for split in ("rf_uc", "nf_uc", "uo", "uv"):
        assert {f"hico_det_{split}_teacher", f"hico_det_{split}_student"} <= names
    for f in files:
        cfg = load_config(f)
        LinkConfig.from_dict(cfg.model)  # every model section builds a valid LinkConfig
        assert yaml.safe_load(cfg.to_yaml()) == cfg.to_dict()
        if "_student" in f.stem:
            assert cfg.distill.logit and cfg.distill.query and cfg.distill.map
        if f.stem.startswith(("hico_det", "vcoco", "swig")):
            # Paper hyper-parameters (docs/method.md §7); global batch 16 with one process.
            assert cfg.optim.batch_size * cfg.optim.accumulate == 16
            assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.epochs) == (1e-4, 1e-4, 20)
            assert cfg.optim.lr_drop == [10] and cfg.optim.clip_grad == 0.1


def test_packaged_configs_by_bare_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import resources

    from linkhoi.train.config import packaged_configs

    assert set(packaged_configs()) == {f.stem for f in PACKAGED.glob("*.yaml")}
    assert {"synthetic_teacher", "hico_det_teacher", "vcoco_student"} <= set(packaged_configs())
    # Read through importlib.resources: what a pip-installed linkhoi ships (package data).
    for name in ("synthetic_teacher", "synthetic_student"):
        text = (resources.files("linkhoi") / "configs" / f"{name}.yaml").read_text()
        assert load_config(name).to_dict() == TrainConfig.from_dict(yaml.safe_load(text)).to_dict()
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    cfg = load_config("synthetic_teacher", ["optim.epochs=3"])
    assert cfg.model["backbone"] == "tiny" and cfg.optim.epochs == 3
    assert load_config("synthetic_student.yaml").distill.teachers  # the suffix is optional
    # The demo's values (a tiny random CLIP, a short run), not docs/method.md §7's.
    assert (cfg.optim.lr, cfg.optim.clip_grad, cfg.data.zero_shot) == (1e-3, 1.0, "unseen")
    # A file of that name wins over the packaged config; paths with folders are only paths.
    Path("synthetic_student.yaml").write_text("optim:\n  epochs: 9\n")  # as --show > NAME.yaml
    assert load_config("synthetic_student").optim.epochs == 9
    Path("synthetic_teacher").write_text("optim:\n  epochs: 7\n")
    assert load_config("synthetic_teacher").optim.epochs == 7
    with pytest.raises(ConfigError, match="not found.*synthetic_student"):
        load_config("sub/synthetic_student")
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_config")


def test_feature_cache_round_trip_and_invalidation(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(b"x" * 10)
    cache = FeatureCache(tmp_path / "cache", "ab" * 32, 64)
    calls = []

    def compute(indices):
        calls.append(list(indices))
        return torch.full((len(indices), 3, 2, 2), 7.0), torch.ones(len(indices), 3)

    f, g = cached_features(cache, [img, None], compute, torch.device("cpu"))
    assert f.shape == (2, 3, 2, 2) and g.shape == (2, 3) and calls == [[0, 1]]
    f2, _ = cached_features(cache, [img, None], compute, torch.device("cpu"))
    assert calls[-1] == [1] and torch.equal(f, f2)  # only the uncacheable image recomputed
    # Another backbone, another resolution or a changed file: a miss.
    assert FeatureCache(tmp_path / "cache", "cd" * 32, 64).get(img) is None
    assert FeatureCache(tmp_path / "cache", "ab" * 32, 96).get(img) is None
    img.write_bytes(b"y" * 11)
    assert cache.get(img) is None


def test_rng_state_round_trip(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_atomic({"rng": rng_state()}, tmp_path / "r.pt")
    first = (random.random(), np.random.rand(), torch.rand(2))
    set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    second = (random.random(), np.random.rand(), torch.rand(2))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])
    assert not list(tmp_path.glob("*.tmp"))


def test_train_cli_lists_and_shows_packaged_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from linkhoi.cli import main

    assert main(["train", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == sorted(f.stem for f in PACKAGED.glob("*.yaml"))
    assert main(["train", "--show", "hico_det_teacher"]) == 0
    shown = capsys.readouterr().out
    assert shown == (PACKAGED / "hico_det_teacher.yaml").read_text()
    copy = tmp_path / "mine.yaml"
    copy.write_text(shown)  # what `--show NAME > mine.yaml` gives: loads like the packaged one
    assert load_config(copy).to_dict() == load_config("hico_det_teacher").to_dict()
    assert main(["train", "--show", "hico_det"]) == 2
    assert "no packaged config of that name" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "give a CONFIG" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=.nan", r"optim.lr is nan; it must be > 0"),
        ("optim.lr=-1", r"optim.lr is -1.0; it must be > 0"),
        ("optim.batch_size=0", r"optim.batch_size is 0; it must be >= 1"),
        ("optim.accumulate=0", r"optim.accumulate is 0; it must be >= 1"),
        ("optim.epochs=-1", r"optim.epochs is -1; it must be >= 1"),
        ("data.format=nope", r"data.format is 'nope'; it must be one of"),
        ("data.train={path: null}", r"data.train needs a path"),
        ("runtime.seed=-1", r"runtime.seed is -1; it must be >= 0"),
    ],
)
def test_values_no_run_can_use(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("synthetic_teacher", [override])


def test_config_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.001\n", encoding="utf-16")
    with pytest.raises(ConfigError, match=r"c.yaml: not a UTF-8 YAML text file"):
        load_config(path)
