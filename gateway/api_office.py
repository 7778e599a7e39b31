"""Routes for the staff's office screens (issue 7). Placeholder: filled by its owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
