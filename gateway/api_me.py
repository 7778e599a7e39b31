"""The phone page's routes: a watcher's own pages, replies, pairings and points (issue 7).

Placeholder: filled by its owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
