"""Test helpers live in modules beside the tests (builders, engine_support, api_support); markers are
registered in pyproject.toml."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
