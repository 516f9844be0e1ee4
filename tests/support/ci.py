"""Missing components fail loudly in CI; a skipped test is not a passing test."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """A component this test needs cannot be reached: fail under CI=true, skip on a laptop."""
    if in_ci():
        pytest.fail(f"required component unavailable (CI=true, so this fails): {reason}", pytrace=False)
    pytest.skip(f"component unavailable: {reason}")
