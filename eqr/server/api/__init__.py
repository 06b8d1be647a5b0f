"""The HTTP API (FastAPI): ``create_app`` builds it; routers, schemas and errors live beside it."""

from eqr.server.api.app import create_app, drain

__all__ = ["create_app", "drain"]
