"""Tables of issue 7 (board); created by its migration. Placeholder: filled by its owner."""

from __future__ import annotations
