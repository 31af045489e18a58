"""Fixtures and paths shared by the test files.

Several files need the reference models of ../shared/models (beside the repository, or
wherever $MICROTVM_SHARED_MODELS points on a machine laid out differently, e.g. CI); they
take the one `SHARED_MODELS` defined here, so moving the models means changing one place.
Module-level names are importable (``from conftest import SHARED_MODELS``) because
parametrize lists are built at collection time, before any fixture exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The shared reference models: $MICROTVM_SHARED_MODELS, else ../shared/models.
SHARED_MODELS = Path(os.environ.get("MICROTVM_SHARED_MODELS", REPO_ROOT.parent / "shared" / "models"))


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """The shared reference models directory (see `SHARED_MODELS`)."""
    return SHARED_MODELS
