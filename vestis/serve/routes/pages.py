"""The web page (``GET /``, ``/static/``) and the API documentation, ``/docs`` (Swagger UI) and
``/redoc``, whose scripts come from the ``fastapi-offline`` package: they work without internet."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
#: swagger-ui (Apache-2.0) and redoc (MIT) bundles, shipped by fastapi-offline (MIT).
DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_STATIC = "/static/docs"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page():
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/favicon.ico")
async def favicon():
    return Response(status_code=204)


@router.get("/docs")
async def swagger_ui(request: Request):
    app = request.app
    return get_swagger_ui_html(
        openapi_url=app.openapi_url, title=f"{app.title} · API", oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
    )  # fmt: skip


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect():
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request):
    app = request.app
    return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} · API", with_google_fonts=False,
                          redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
                          redoc_favicon_url=f"{DOCS_STATIC}/favicon.png")  # fmt: skip


def mount_pages(app: FastAPI) -> None:
    """The page's routes and static files (the documentation's assets before the page's own)."""
    app.include_router(router)
    app.mount(DOCS_STATIC, StaticFiles(directory=DOCS_ASSETS), name="docs-static")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def mounts(app: FastAPI) -> list[Mount]:
    return [r for r in app.routes if isinstance(r, Mount)]
