"""The HTML pages and their static files (issue 7). Placeholder: filled by its owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
