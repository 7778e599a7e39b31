"""The pages' files (HTML, scripts, styles, translations) served by the gateway itself, so that
the screens work with no internet: nothing is loaded from a CDN. Served by gateway/pages.py."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
