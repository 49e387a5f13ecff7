"""The HTTP service around the engine (CDS Hooks 2.0): ``create_app`` builds it, ``server.run`` serves it."""

from __future__ import annotations

from cds.api.app import create_app

__all__ = ["create_app"]
