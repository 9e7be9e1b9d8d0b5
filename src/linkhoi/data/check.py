"""``linkhoi data check``: find a dataset's files in the documented layout, read them, report.

The layouts are in docs/datasets.md. Every reader error, missing image and count that
differs from a published one is a *problem* (exit code 1); differences that a format is
known or suspected to have (PPDM json files may omit images) are *notes*.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from linkhoi.data.images import ImageError
from linkhoi.data.sample import DatasetError, Sample

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# Published image counts (HICO-DET: Chao et al. 2018; V-COCO: Gupta & Malik 2015 splits).
PUBLISHED = {
    "hico_det": {"train": 38118, "test": 9658},
    "vcoco": {"train": 2533, "val": 2867, "trainval": 5400, "test": 4946},
    "swig_hoi": {},  # no exact per-split image count is published; counts are reported only
}
DATASETS = tuple(PUBLISHED)


@dataclass
class CheckReport:
    """What `check_dataset` found: printable lines, problems (fatal) and notes."""

    dataset: str
    root: Path
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        out = [f"linkhoi data check: {self.dataset} at {self.root}", *self.lines]
        if self.notes:
            out += [f"notes ({len(self.notes)}):", *(f"  - {n}" for n in self.notes)]
        if self.problems:
            out += [f"problems ({len(self.problems)}):", *(f"  - {p}" for p in self.problems)]
        out.append("OK" if self.ok else f"FAILED: {len(self.problems)} problem(s)")
        return "\n".join(out)


def _images_on_disk(folder: Path) -> set[str]:
    with os.scandir(folder) as it:
        return {e.name for e in it if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES}


def _count_line(
    report: CheckReport, what: str, count: int, published: int | None, fatal: bool = True
) -> None:
    if published is None:
        report.lines.append(f"  {what}: {count:,}")
        return
    mark = "ok" if count == published else "DIFFERS"
    report.lines.append(f"  {what}: {count:,} (published {published:,}: {mark})")
    if count != published:
        msg = f"{what}: {count:,}, published {published:,}"
        if fatal:
            report.problems.append(msg)
        else:
            report.notes.append(msg + " (this format may omit images; not counted as a problem)")


def _read(
    report: CheckReport, label: str, reader: Callable[[], list[Sample]]
) -> list[Sample] | None:
    try:
        return reader()
    except (DatasetError, ImageError, OSError, ValueError) as err:
        report.problems.append(f"{label}: {err}")
        return None


def _summarise(
    report: CheckReport,
    label: str,
    samples: list[Sample],
    split: str,
    published: int | None,
    fatal: bool,
    disk: dict[str, set[str]],
) -> None:
    pairs = sum(len(s.pairs) for s in samples)
    empty = sum(1 for s in samples if not s.pairs)
    report.lines.append(f"  {label} ({split}): {pairs:,} pairs, {empty:,} images without pairs")
    _count_line(report, f"{label} annotated images", len(samples), published, fatal)
    missing = []
    for s in samples:
        path = s.image_path
        if path is None:
            continue
        names = disk.get(str(path.parent))
        if names is None:
            names = disk[str(path.parent)] = (
                _images_on_disk(path.parent) if path.parent.is_dir() else set()
            )
        if path.name not in names:
            missing.append(s.file_name)
    if missing:
        report.problems.append(
            f"{label}: {len(missing):,} annotated images not on disk (first: {missing[:3]})"
        )


def _image_dirs(report: CheckReport, dirs: dict[str, Path], published: dict[str, int]) -> None:
    report.lines.append("images:")
    for split, folder in dirs.items():
        if not folder.is_dir():
            report.problems.append(f"image folder {folder} not found")
            report.lines.append(f"  {folder}: missing")
            continue
        _count_line(
            report,
            str(folder.relative_to(report.root)),
            len(_images_on_disk(folder)),
            published.get(split),
        )


def _check_hico(report: CheckReport) -> None:
    from linkhoi.data.hico import read_hico_instances, read_hico_json, read_hico_mat

    root, pub = report.root, PUBLISHED["hico_det"]
    dirs = {s: root / "images" / f"{s}2015" for s in ("train", "test")}
    _image_dirs(report, dirs, pub)
    sources = []  # (label, split, reader, fatal count)
    for split, name in (("train", "trainval_hico.json"), ("test", "test_hico.json")):
        for path in (root / "annotations" / name, root / name):
            if path.is_file():
                sources.append(
                    (path, split, lambda p=path, s=split: read_hico_json(p, dirs[s]), False)
                )
                break
    for split in ("train", "test"):
        for path in (
            root / f"instances_{split}2015.json",
            root / "annotations" / f"instances_{split}2015.json",
        ):
            if path.is_file():
                sources.append(
                    (path, split, lambda p=path, s=split: read_hico_instances(p, dirs[s]), True)
                )
                break
    if (root / "anno_bbox.mat").is_file():
        for split in ("train", "test"):
            path = root / "anno_bbox.mat"
            sources.append(
                (path, split, lambda p=path, s=split: read_hico_mat(p, s, dirs[s]), True)
            )
    _read_sources(
        report,
        sources,
        pub,
        "trainval_hico.json/test_hico.json, instances_*2015.json or anno_bbox.mat",
    )


def _read_sources(report: CheckReport, sources: list, pub: dict[str, int], expected: str) -> None:
    report.lines.append("annotations:")
    if not sources:
        report.problems.append(
            f"no annotation file found under {report.root} (looked for {expected})"
        )
        return
    disk: dict[str, set[str]] = {}
    for path, split, reader, fatal in tqdm(
        sources, desc="reading annotations", unit="file", leave=False
    ):
        label = str(path.relative_to(report.root))
        samples = _read(report, f"{label} ({split})", reader)
        if samples is not None:
            _summarise(report, label, samples, split, pub.get(split), fatal, disk)


def _check_vcoco(report: CheckReport) -> None:
    from linkhoi.data.vcoco import read_vcoco
    from linkhoi.labels.packaged import data_dir

    root, pub = report.root, PUBLISHED["vcoco"]
    image_root = next((p for p in (root / "coco" / "images", root / "images") if p.is_dir()), None)
    report.lines.append("images:")
    if image_root is None:
        report.problems.append(
            f"no COCO image folder ({root / 'coco/images'} or {root / 'images'})"
        )
    else:
        for sub in ("train2014", "val2014"):
            if (image_root / sub).is_dir():
                n = len(_images_on_disk(image_root / sub))
                report.lines.append(f"  {(image_root / sub).relative_to(root)}: {n:,}")
            else:
                report.problems.append(f"image folder {image_root / sub} not found")
    instances = root / "data" / "instances_vcoco_all_2014.json"
    sources = []
    if not instances.is_file():
        report.problems.append(
            f"{instances} not found (made by v-coco's script_pick_annotations.py)"
        )
    else:
        for split in ("train", "val", "trainval", "test"):
            vjson = root / "data" / "vcoco" / f"vcoco_{split}.json"
            if not vjson.is_file():
                continue
            ids = root / "data" / "splits" / f"vcoco_{split}.ids"
            if not ids.is_file():
                ids = Path(str(data_dir() / "vcoco" / "splits" / f"vcoco_{split}.ids"))
                report.notes.append(
                    f"{ids.name}: not under {root / 'data/splits'}, used the packaged copy"
                )
            sources.append(
                (
                    vjson,
                    split,
                    lambda v=vjson, i=ids, s=split: read_vcoco(
                        v, instances, i, image_root, sort_ids=s != "test"
                    ),
                    True,
                )
            )
    _read_sources(report, sources, pub, "data/vcoco/vcoco_{split}.json")


def _check_swig(report: CheckReport) -> None:
    from linkhoi.data.swig import read_swig

    root = report.root
    images = root / "images_512"
    _image_dirs(report, {"all": images}, {})
    sources = []
    for split in ("train", "dev", "test", "trainval"):
        for path in (
            root / "annotations" / f"swig_{split}_1000.json",
            root / f"swig_{split}_1000.json",
        ):
            if path.is_file():
                sources.append((path, split, lambda p=path: read_swig(p, images), True))
                break
    _read_sources(report, sources, {}, "annotations/swig_{train,dev,test}_1000.json")


def check_dataset(dataset: str, root: str | Path) -> CheckReport:
    """Look for `dataset` under `root` in the documented layout; read and count everything."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    report = CheckReport(dataset, Path(root))
    if not report.root.is_dir():
        why = "is a file, not a folder" if report.root.exists() else "does not exist"
        report.problems.append(f"root folder {report.root} {why}")
        return report
    {"hico_det": _check_hico, "vcoco": _check_vcoco, "swig_hoi": _check_swig}[dataset](report)
    return report
