"""Shared test set-up: every test writes its caches under a temporary folder; `tiny_world`."""

from __future__ import annotations

import os

import pytest
import torch

from linkhoi.data.synthetic import WorldPaths, generate_world


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Text-embedding and feature caches must never leak into the user's ~/.cache during tests.
    os.environ["LINKHOI_CACHE"] = str(tmp_path_factory.mktemp("linkhoi-cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> WorldPaths:
    """A synthetic world of 8 training and 4 test images at 192 px, one per test module (the
    training tests read it and never write into it)."""
    torch.set_num_threads(1)
    return generate_world(
        tmp_path_factory.mktemp("world"), num_train=8, num_test=4, image_size=(192, 192),
        progress=False,
    )  # fmt: skip
