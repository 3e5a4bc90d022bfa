"""The console's pages (filled in below)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ivr.web.routes import Route

STATIC = Path(__file__).resolve().parent / "static"
ROUTES: tuple[Route, ...] = ()


def add_static(app: web.Application) -> None:
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
