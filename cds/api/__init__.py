"""The HTTP service around the engine (CDS Hooks 2.0)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from cds.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, **kwargs: Any) -> FastAPI:
    from cds.api.app import create_app as _create_app

    return _create_app(settings, **kwargs)
