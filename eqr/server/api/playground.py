"""The web playground: static HTML/JS/CSS shipped inside the package, served at ``/``.

No build step and no template engine: ``/`` answers ``index.html`` and ``/static`` the files beside
it. ``/static`` is a mount rather than a catch-all at ``/`` so unknown API paths keep their JSON 404s.
The page talks to the same API a client would (``POST /v1/solve`` with ``stream``), so it needs no
endpoint of its own.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")


def mount_playground(app: FastAPI) -> None:
    """Serve the playground page at ``/`` and its assets under ``/static``."""

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
