"""Cross-origin access (off unless origins are configured) and gzip for large responses.

CORS is off by default: the playground and ``/docs`` are same-origin, and a server that answers any
origin lets every web page a user visits call it with that user's network position. Listing origins
(``EQR_CORS_ORIGINS``) lets those pages call ``/v1`` with an API key, read the error bodies and the
``X-Request-Id``, ``Retry-After`` and ``Location`` headers. A refused preflight answers in the one
JSON error shape like every other failure.

Gzip pays for ``/metrics``, ``/openapi.json`` and batch results (tens to hundreds of KB of repetitive
text). Starlette's middleware already passes ``text/event-stream`` through untouched, so a stream's
events still leave one by one (``tests/e2e/test_http_conventions.py`` checks it over a socket).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response

from eqr.server.api.errors import ApiError, error_response
from eqr.server.api.request_id import HEADER as REQUEST_ID
from eqr.server.settings import Settings

ALLOWED_HEADERS = ["authorization", "content-type", REQUEST_ID.lower()]
EXPOSED_HEADERS = [REQUEST_ID, "Retry-After", "Location"]


class JsonErrorCORS(CORSMiddleware):
    """Starlette's CORS, with a refused preflight (origin, method or header not allowed) as JSON."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        error = error_response(ApiError(400, "cors_rejected", f"CORS preflight refused: {response.body.decode()}"))
        for name in ("vary", "access-control-allow-methods", "access-control-max-age"):
            if name in response.headers:
                error.headers[name] = response.headers[name]
        return error


def install_gzip(app: FastAPI, settings: Settings) -> None:
    if settings.gzip_min_bytes:
        app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes, compresslevel=6)


def install_cors(app: FastAPI, settings: Settings) -> None:
    """Outside the API-key guard: a browser's preflight carries no key, and a refusal needs CORS headers too."""
    if settings.cors_origin_list:
        app.add_middleware(
            JsonErrorCORS,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
