"""``/docs`` (Swagger UI) and ``/redoc`` served from files installed with the server, not from a CDN.

FastAPI's own pages load their scripts and styles from a CDN, so on a machine without internet (an
air-gapped cluster, a laptop on a train) ``/docs`` is a blank page. The same pages are built here with
FastAPI's ``get_swagger_ui_html`` / ``get_redoc_html``, pointed at the copies that the
``fastapi-offline`` package ships (maintained, MIT-licensed, only the asset files are used), mounted
under :data:`ASSETS`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))


def mount_docs(app: FastAPI) -> None:
    """The interactive API docs at ``/docs`` and ``/redoc``; the app must be built with both URLs set to None."""
    title = f"{app.title} - API docs"
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            oauth2_redirect_url=oauth2_redirect,
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    app.mount(ASSETS, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
