"""What a test does when a service it needs is missing: skip outside CI, fail in CI.

In CI (`CI=true`) `.ci/run` installs and starts every service, so a missing one is a broken
setup that must not pass silently as a skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(service: str, why: str) -> NoReturn:
    """Fail (in CI) or skip (elsewhere) a test whose `service` is not available."""
    message = f"{service} is not available: {why}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(message)
