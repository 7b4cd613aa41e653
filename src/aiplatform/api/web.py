"""The web UI at `/`: the bundle built from `web/` ships inside the package, so an install with
only Python serves it. Hashed assets are cached forever; any other path outside the API answers
with `index.html`, so a deep link into a client-side route loads the app."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any

from litestar import Router, get
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.params import PathParameter
from litestar.response import File
from litestar.static_files import create_static_files_router

from aiplatform.auth.permissions import PUBLIC

BUNDLE_DIR = Path(__file__).resolve().parent.parent / "web_static"
# Paths that belong to the server: an unknown one is a 404, never the app's page.
SERVER_PREFIXES = ("api", "schema", "health", "ready", "metrics", "assets")
# Vite names every file under assets/ by its content hash: a changed file is a new URL.
IMMUTABLE = CacheControlHeader(public=True, max_age=365 * 24 * 3600, immutable=True)
# index.html names the current hashes, so a browser must ask for it again each time.
REVALIDATE = CacheControlHeader(no_cache=True)


def _answer(bundle: Path, relative: str) -> File:
    if relative.split("/", 1)[0] in SERVER_PREFIXES:
        raise NotFoundException(f"no route /{relative}")
    index = bundle / "index.html"
    if not index.is_file():
        raise NotFoundException(
            "the web UI is not built into this install: run `npm ci && npm run build` in web/"
        )
    # Top-level files of the bundle (the icon) by name; everything else is a client route.
    named = bundle / relative
    if relative and "/" not in relative and named.is_file():
        media_type = mimetypes.guess_type(named.name)[0] or "application/octet-stream"
        return File(named, content_disposition_type="inline", media_type=media_type)
    return File(index, content_disposition_type="inline", media_type="text/html")


def _pages(bundle: Path) -> list[HTTPRouteHandler]:
    options: dict[str, Any] = {
        "opt": {"permission": PUBLIC},
        "include_in_schema": False,
        "cache_control": REVALIDATE,
        "sync_to_thread": False,
    }

    @get("/", name="web_root", **options)
    def root() -> File:
        return _answer(bundle, "")

    @get("/{path:path}", name="web_route", **options)
    def route(path: Annotated[Path, PathParameter()]) -> File:
        return _answer(bundle, str(path).strip("/"))

    return [root, route]


def web_routes(bundle: Path = BUNDLE_DIR) -> list[HTTPRouteHandler | Router]:
    assets = create_static_files_router(
        path="/assets",
        directories=[bundle / "assets"],
        cache_control=IMMUTABLE,
        opt={"permission": PUBLIC},
        include_in_schema=False,
        name="web_assets",
    )
    return [assets, *_pages(bundle)]
