"""linkhoi.io: atomic writes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from linkhoi.io import (
    InputError,
    OutputError,
    atomic_open,
    atomic_path,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    load_json,
)


def test_atomic_path_renames_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.png"  # the folder is created
    with atomic_path(target, suffix=".png") as tmp:
        assert tmp.parent == target.parent and tmp.exists() and not target.exists()
        assert tmp.name.startswith(".out.png.") and tmp.suffix == ".png"
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["out.png"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_atomic_path_error_leaves_target(tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"\x00old\xff")
    with pytest.raises(error), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise error("boom")
    assert target.read_bytes() == b"\x00old\xff"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_open_and_write_text(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_files_get_the_mode_a_plain_open_gives(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    # mkstemp alone would leave 0600; the result must match an ordinary file under this umask
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_gzip_json_written_and_read_by_name(tmp_path: Path) -> None:
    data = {"images": [{"file_name": "a.jpg", "boxes": [[1, 2, 3, 4]]}], "note": "héllo"}
    path = tmp_path / "d.json.GZ"  # the suffix decides, in any case
    with atomic_open(path) as fh:
        json.dump(data, fh)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip magic: really compressed
    assert json.loads(gzip.decompress(path.read_bytes())) == data
    assert load_json(path) == data
    plain = tmp_path / "d.json"
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    assert load_json(plain) == data


def test_gzip_json_truncated_or_not_gzip_is_one_error(tmp_path: Path) -> None:
    whole = gzip.compress(json.dumps({"images": list(range(1000))}).encode())
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"cut\.json\.gz.*not a complete gzip file"):
        load_json(cut)
    fake = tmp_path / "fake.json.gz"
    fake.write_text('{"images": []}')  # plain json under a .gz name
    with pytest.raises(InputError, match=r"fake\.json\.gz.*not a complete gzip file"):
        load_json(fake)


def test_outputs_that_cannot_be_written_are_refused_first(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    cases = [
        (folder, "it is a folder"),
        (a_file / "x.json", "is a file, not a folder"),
        (Path("/dev/null"), "not a regular file"),  # renaming over it would replace the device
    ]
    for target, message in cases:
        with pytest.raises(OutputError, match=message):
            atomic_write_text(target, "text")
        with pytest.raises(OutputError, match=message):
            check_output_file(target)
    assert a_file.read_text() == "keep" and Path("/dev/null").is_char_device()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder"]  # no .tmp left
    assert isinstance(OutputError("x"), OSError) and isinstance(OutputError("x"), ValueError)
    with pytest.raises(OutputError, match="as the output folder: it is a file"):
        check_output_dir(a_file)
    assert check_output_dir(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
