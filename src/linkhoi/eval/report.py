"""Presenting an EvalResult: terminal table (percent), per-class CSV, per-class AP chart."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from linkhoi.eval.base import EvalResult
from linkhoi.io import atomic_path, atomic_write_text


def _means(summary: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(label, fraction) rows of the headline numbers of any benchmark's summary."""
    rows: list[tuple[str, float]] = []
    if "map" in summary:
        rows += [(f"mAP {k}", float(v)) for k, v in summary["map"].items()]
    if "agent_ap" in summary:
        rows.append(("agent AP (mean)", float(summary["agent_ap"]["mean"])))
    for scen, block in summary.get("role_ap", {}).items():
        rows.append((f"role AP {scen} (24-class mean)", float(block["mean"])))
        if "mean_25" in block:
            rows.append((f"role AP {scen} (official 25-class mean)", float(block["mean_25"])))
    return rows


def format_table(result: EvalResult) -> str:
    """The headline numbers in percent, then the protocol and the notes."""
    rows = _means(result.summary)
    width = max([len(r[0]) for r in rows] + [10])
    lines = [f"{result.benchmark} evaluation", "-" * (width + 12)]
    lines += [f"{label:<{width}}  {100.0 * value:8.2f} %" for label, value in rows]
    lines.append("-" * (width + 12))
    if result.protocol:
        lines.append("protocol:")
        key_w = max(len(k) for k in result.protocol)
        lines += [f"  {k:<{key_w}}  {v}" for k, v in result.protocol.items()]
    if result.notes:
        lines.append("notes:")
        lines += [f"  - {n}" for n in result.notes]
    return "\n".join(lines)


def write_per_class_csv(
    path: str | os.PathLike[str],
    per_class: Mapping[str, float],
    names: Mapping[str, str] | None = None,
) -> Path:
    """Write ``class,name,ap`` rows (AP as a fraction, full precision), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["class", "name", "ap"])
    for key, ap in per_class.items():
        writer.writerow([key, (names or {}).get(key, ""), repr(float(ap))])
    path = Path(path)
    atomic_write_text(path, buf.getvalue())
    return path


def best_and_worst(
    per_class: Mapping[str, float], names: Mapping[str, str] | None = None, k: int = 3
) -> tuple[str, str]:
    """``"name 95.1 %, ..."`` of the ``k`` best and the ``k`` worst classes (NaN APs left out;
    ties keep the class order)."""
    items = [(key, float(v)) for key, v in per_class.items() if v == v]
    ranked = sorted(items, key=lambda kv: -kv[1])

    def show(rows: list[tuple[str, float]]) -> str:
        return ", ".join(f"{(names or {}).get(key, key)} {100.0 * v:.1f} %" for key, v in rows)

    worst = sorted(items, key=lambda kv: kv[1])[:k]
    return show(ranked[:k]), show(worst)


def plot_per_class(
    path: str | os.PathLike[str],
    result: EvalResult,
    names: Mapping[str, str] | None = None,
    ranked: Mapping[str, float] | None = None,
) -> tuple[Path, str, str]:
    """Per-class AP chart (PNG, percent): classes sorted by AP, with the mean as a line and
    the best and worst classes of ``ranked`` (default: every class) named. Returns (path,
    best, worst) as :func:`best_and_worst`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(result.per_class.items(), key=lambda kv: kv[1], reverse=True)
    values = [100.0 * float(v) for _, v in items]
    n = len(values)
    best, worst = best_and_worst(result.per_class if ranked is None else ranked, names)
    fig, ax = plt.subplots(figsize=(min(max(6.0, 0.12 * n), 16.0), 4.5), dpi=100)
    ax.bar(range(n), values, width=1.0, color="tab:blue")
    if n:
        mean = sum(values) / n
        ax.axhline(mean, color="tab:red", lw=1, label=f"mean {mean:.2f}")
        ax.legend(loc="upper right")
        ax.text(0.99, 0.80, f"best: {best}\nworst: {worst}", transform=ax.transAxes,
                ha="right", va="top", fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})  # fmt: skip
    if n <= 60:  # readable labels only for small class sets
        labels = [(names or {}).get(k, k) for k, _ in items]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    else:
        ax.set_xlabel(f"{n} classes, sorted by AP")
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.5, max(n, 1) - 0.5)
    ax.set_title(f"{result.benchmark}: per-class AP")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path, best, worst
