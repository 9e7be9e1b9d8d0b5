"""Cost of the input-size checks (issue 12, item 4): reading a json file through the
size-limited reader against a plain ``json.load``, and the ``.mat`` inflation count against
``scipy.io.loadmat`` of the same file.

Builds a detection-like json (``--records`` images with 30 boxes each; plain and gzipped)
and a compressed ``.mat`` holding a struct array like HICO-DET's ``anno_bbox.mat``, then
times each reader ``--repeats`` times (best time) and prints the overheads; the last line
is ``overhead=<worst ratio - 1>``.

    python benchmarks/input_limits.py [--records 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _best(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _plain_json(path: Path) -> object:
    with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as fh:
        return json.load(fh)


def main(argv: list[str] | None = None) -> int:
    import scipy.io

    from linkhoi.io import load_json
    from linkhoi.matfile import mat_content_size

    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        recs = [
            {"file_name": f"img_{i:08d}.jpg", "boxes": rng.uniform(0, 640, (30, 4)).round(2).tolist(),
             "labels": rng.integers(0, 80, 30).tolist(), "scores": rng.random(30).round(4).tolist()}
            for i in range(args.records)
        ]  # fmt: skip
        text = json.dumps(recs)
        for name in ("dets.json", "dets.json.gz"):
            path = root / name
            with (gzip.open if name.endswith(".gz") else open)(path, "wt") as fh:
                fh.write(text)
            plain = _best(lambda p=path: _plain_json(p), args.repeats)
            limited = _best(lambda p=path: load_json(p), args.repeats)
            ratios.append(limited / plain)
            print(f"{name}: {len(text) / 2**20:.1f} MB, json.load {plain:.3f} s, "
                  f"limited reader {limited:.3f} s, ratio {limited / plain:.3f}")  # fmt: skip
        struct = np.empty((1, args.records), dtype=[("filename", object), ("boxes", object)])
        for i in range(args.records):
            struct[0, i] = (f"img_{i:08d}.jpg", rng.uniform(0, 640, (8, 4)))
        mat = root / "anno_bbox.mat"
        scipy.io.savemat(mat, {"bbox_test": struct}, do_compression=True)
        load = _best(lambda: scipy.io.loadmat(mat, struct_as_record=False), args.repeats)
        count = _best(lambda: mat_content_size(mat), args.repeats)
        ratios.append(1 + count / load)
        print(f"{mat.name}: {mat.stat().st_size / 2**20:.1f} MB, loadmat {load:.3f} s, "
              f"size check {count:.4f} s ({100 * count / load:.1f}% of loadmat)")  # fmt: skip
    print(f"overhead={max(ratios) - 1:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
