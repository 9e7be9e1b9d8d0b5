"""Issue 12 items about names that become paths and about what `linkhoi detect` reads:
label-space names and image names never leave their folder (2), a symlinked OUT/images is
refused (3), non-finite float TIFF pixels are refused naming the file (16), an empty input
folder is reported before the checkpoint is read (20)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import linkhoi.labels as labels
from linkhoi.data import ImageError, load_image
from linkhoi.detections import write_detections
from linkhoi.infer import cli
from linkhoi.io import OutputError
from linkhoi.model import LinkConfig, create_model
from linkhoi.model import text as text_module
from linkhoi.model.backbone import load_clip
from linkhoi.model.checkpoint import model_payload, save_checkpoint
from linkhoi.paths import join_under, relative_name, safe_component

SMALL = dict(backbone="tiny", d_model=32, d_pair=48, d_latent=32, num_heads=4, pe_dims=16)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("safety-detect")
    torch.manual_seed(0)
    model = create_model(LinkConfig(**SMALL), "synthetic", device="cpu")
    ckpt = save_checkpoint(root / "tiny.pt", model_payload(model))
    imgs = root / "imgs"
    imgs.mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)
    Image.fromarray(noise).save(imgs / "rgb.png")
    boxes = [[5, 5, 40, 75], [50, 10, 95, 60]]
    records = [{"file_name": "rgb.png", "detections": [
        {"box": b, "label": lab, "score": 0.9} for b, lab in zip(boxes, ["person", "horse"], strict=True)
    ]}]  # fmt: skip
    dets = write_detections(root / "dets.json", records, labels.load("synthetic"))
    return {"root": root, "ckpt": ckpt, "imgs": imgs, "dets": dets}


def _detect(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_item02_label_space_name_never_leaves_the_cache(tmp_path: Path) -> None:
    clip_model, info = load_clip("tiny", None, device="cpu")
    cache = tmp_path / "cache"
    for name in ("../../escaped", str(tmp_path / "absolute"), "a/b", ".hidden"):
        space = labels.label_space_from_user_dict({
            "name": name, "verbs": ["ride", "no_interaction"], "objects": ["person", "horse"],
            "hois": [{"verb": "ride", "object": "horse"}, {"verb": "no_interaction", "object": "horse"}],
        })  # fmt: skip
        text_module.text_embeddings(clip_model, info, space, cache_dir=cache)
    written = _files_under(tmp_path)
    assert written and all(p.parent == cache / "text" for p in written), written
    assert not any(p.name.startswith(".") for p in written)
    # Sanitised names stay distinct: the hash of the raw name is part of the component.
    assert safe_component("a/b") != safe_component("a_b") and safe_component("toy") == "toy"


def test_item02_image_names_are_checked_before_joining(tmp_path: Path) -> None:
    assert join_under(tmp_path, "a/b.png", "image") == tmp_path / "a" / "b.png"
    for bad in ("../x.png", "/etc/x.png", "a/../../x.png", "", "a//b.png", "C:x.png"):
        with pytest.raises(OutputError, match="cannot be used as a file name"):
            relative_name(bad, "annotated image")
    (tmp_path / "real").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").symlink_to(tmp_path / "real")
    with pytest.raises(OutputError, match="symbolic link"):
        join_under(tmp_path / "out", "sub/x.png", "annotated image")


def test_item03_symlinked_out_images_is_refused(world: dict, tmp_path: Path, capsys) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").symlink_to(target)
    argv = [str(world["imgs"]), "--checkpoint", str(world["ckpt"]), "--detections",
            str(world["dets"]), "--out", str(out)]  # fmt: skip
    assert _detect(argv) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and str(out / "images") in err
    assert not list(target.iterdir()) and not (out / "triplets.json").exists()
    assert _detect([*argv, "--no-draw"]) == 0  # nothing is drawn: the link is not used


def test_item16_non_finite_float_tiff_is_refused(world: dict, tmp_path: Path, capsys) -> None:
    data = np.linspace(0, 1, 80 * 100, dtype=np.float32).reshape(80, 100)
    data[3, 7] = np.nan
    path = tmp_path / "imgs" / "depth.tif"
    path.parent.mkdir()
    Image.fromarray(data, mode="F").save(path)
    with pytest.raises(ImageError, match=r"depth\.tif.*1 non-finite \(NaN or infinite\) pixel"):
        load_image(path)
    data[3, 7] = np.inf
    Image.fromarray(data, mode="F").save(path)
    with pytest.raises(ImageError, match="non-finite"):
        load_image(path)
    data[3, 7] = 0.5  # finite: loads with its range, not black
    Image.fromarray(data, mode="F").save(path)
    assert np.asarray(load_image(path)).max() == 255
    data[3, 7] = np.nan
    Image.fromarray(data, mode="F").save(path)
    argv = [str(path), str(world["imgs"] / "rgb.png"), "--checkpoint", str(world["ckpt"]),
            "--detections", str(world["dets"]), "--out", str(tmp_path / "o"), "--no-draw"]  # fmt: skip
    assert _detect(argv) == 0  # the readable image is done; the NaN one is skipped, named
    err = capsys.readouterr().err
    assert "depth.tif" in err and "non-finite" in err


def test_item20_empty_folder_is_reported_before_the_checkpoint(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    argv = [str(empty), "--checkpoint", str(tmp_path / "missing.pt"), "--detections",
            str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]  # fmt: skip
    assert _detect(argv) == 2
    err = capsys.readouterr().err
    assert f"no image files in {empty}" in err and "missing.pt" not in err
    assert len(err.strip().splitlines()) == 1
