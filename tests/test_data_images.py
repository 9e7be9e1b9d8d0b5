"""Image loading: every pixel format becomes upright 8-bit RGB; bad files give ImageError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from linkhoi.data import HOIDataset, ImageError, Sample, collate, image_size, load_image


def _pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def test_modes_convert_to_rgb(tmp_path: Path) -> None:
    Image.new("L", (4, 3), 77).save(tmp_path / "gray.png")
    assert (_pixels(load_image(tmp_path / "gray.png")) == 77).all()

    pal = Image.new("P", (4, 3), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    assert (_pixels(load_image(tmp_path / "pal.png")) == [10, 20, 30]).all()

    rgba = Image.new("RGBA", (4, 3), (200, 100, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent -> white background
    rgba.save(tmp_path / "rgba.png")
    px = _pixels(load_image(tmp_path / "rgba.png"))
    assert px[0, 0].tolist() == [255, 255, 255] and px[1, 1].tolist() == [200, 100, 0]

    # 16-bit grayscale: 65535 -> 255, 32896 -> 128 (not clipped at 255 as convert("RGB") does)
    data16 = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(data16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert _pixels(load_image(tmp_path / "g16.png"))[0, :, 0].tolist() == [0, 128, 255]

    data32 = np.array([[0, 1000, 4000]], dtype=np.int32)  # "I" mode beyond 8 bits
    Image.fromarray(data32, mode="I").save(tmp_path / "i32.tif")
    got = _pixels(load_image(tmp_path / "i32.tif"))[0, :, 0].tolist()
    assert got == [0, round(1000 / 65535 * 255), round(4000 / 65535 * 255)]

    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red
    cmyk.save(tmp_path / "cmyk.jpg", quality=100)
    r, g, b = _pixels(load_image(tmp_path / "cmyk.jpg"))[0, 0].tolist()
    assert r > 240 and g < 15 and b < 15


def test_exif_orientation_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (12, 4), (0, 0, 0))
    im.paste((255, 0, 0), (0, 0, 4, 4))  # the left third is red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    im.save(tmp_path / "rot.png", exif=exif)
    out = load_image(tmp_path / "rot.png")
    assert out.size == (4, 12) and image_size(tmp_path / "rot.png") == (4, 12)
    px = np.asarray(out)
    assert (px[:4, :, 0] == 255).all() and (px[4:, :, 0] == 0).all()  # the left became the top


def test_bad_files_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageError, match="notes.txt"):
        load_image(tmp_path / "notes.txt")
    with pytest.raises(ImageError, match="missing.png.*not found"):
        load_image(tmp_path / "missing.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="notes.txt"):
        image_size(tmp_path / "notes.txt")
    # A decompression bomb (past PIL's pixel limit, here lowered) is one ImageError too.
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100 // 2)  # x2 of this raises
    for fn in (load_image, image_size):
        with pytest.raises(ImageError, match="big.png.*too large|big.png.*exceeds limit"):
            fn(tmp_path / "big.png")


def test_dataset_and_collate(tmp_path: Path) -> None:
    Image.new("RGB", (8, 6), (9, 9, 9)).save(tmp_path / "a.png")
    Image.new("L", (5, 7), 3).save(tmp_path / "b.png")
    samples = [
        Sample("a.png", tmp_path / "a.png", 8, 6, np.zeros((0, 4)), np.zeros(0), []),
        Sample("b.png", None, 5, 7, [[0, 0, 1, 1]], [0], []),
    ]
    assert samples[1].boxes.dtype == np.float64 and samples[1].unannotated.tolist() == [False]
    with pytest.raises(ValueError, match="b.png"):
        HOIDataset(samples)[1]
    ds = HOIDataset(samples, image_root=tmp_path)
    assert len(ds) == 2
    images, batch = collate([ds[0], ds[1]])
    assert [im.size for im in images] == [(8, 6), (5, 7)] and batch == samples
    assert all(im.mode == "RGB" for im in images)
