"""Shared test set-up: every test writes its caches under a temporary folder."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Text-embedding and feature caches must never leak into the user's ~/.cache during tests.
    os.environ["LINKHOI_CACHE"] = str(tmp_path_factory.mktemp("linkhoi-cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")
