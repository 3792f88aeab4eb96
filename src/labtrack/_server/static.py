"""The built front end: hashed assets cached for good, index.html for every other page.

The build (`make frontend`, i.e. `cd frontend && npm ci && npm run build`) writes
`index.html` and `assets/<name>-<hash>.<ext>` into this package's `static/` folder. When it
is missing, every page answers an HTML message naming that command instead of a blank page.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

DEFAULT_DIR = Path(__file__).parent / "static"
BUILD_COMMAND = "make frontend"
BUILD_COMMAND_LONG = "cd frontend && npm ci && npm run build"

#: The page may run only its own scripts: logged markdown or names can never run a script.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
IMMUTABLE = "public, max-age=31536000, immutable"


def missing_page(static_dir: Path) -> str:
    """The page shown when the front end has not been built."""
    where = html.escape(str(static_dir))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labtrack: dashboard not built</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:4rem auto;padding:0 1rem}}
code{{background:#eee;padding:.1rem .3rem;border-radius:3px}}</style></head>
<body><h1>The labtrack dashboard is not built yet</h1>
<p>The server is running and its API answers under <code>/api/v1/</code>, but the web
front end has not been built into <code>{where}</code>.</p>
<p>Build it from the labtrack checkout with <code>{html.escape(BUILD_COMMAND)}</code>
(that is, <code>{html.escape(BUILD_COMMAND_LONG)}</code>), then reload this page.</p>
</body></html>
"""


def routes(static_dir: Path) -> list[BaseRoute]:
    """The catch-all route serving the front end from `static_dir`."""
    static_dir = Path(static_dir)

    async def page(request: Request) -> Response:
        real_dir = os.path.realpath(static_dir)
        index = os.path.join(real_dir, "index.html")
        if not os.path.isfile(index):
            return HTMLResponse(missing_page(static_dir), status_code=503, headers=PAGE_HEADERS)
        rel = request.path_params.get("path", "")
        if rel and "\x00" not in rel:
            target = os.path.realpath(os.path.join(real_dir, rel))
            if target.startswith(real_dir + os.sep) and os.path.isfile(target):
                if target.endswith((".html", ".htm")):
                    return FileResponse(target, headers=PAGE_HEADERS)  # /index.html too
                hashed = rel.startswith("assets/")
                headers = {"Cache-Control": IMMUTABLE if hashed else "no-cache",
                           "X-Content-Type-Options": "nosniff"}
                return FileResponse(target, headers=headers)
            nested = rel.rfind("/assets/")
            if nested > 0:
                # a page at /runs/x loading "./assets/..." (a relative base) asks for
                # /runs/assets/...: serve the same hashed asset
                inner = os.path.realpath(os.path.join(real_dir, rel[nested + 1 :]))
                if inner.startswith(real_dir + os.sep) and os.path.isfile(inner):
                    return FileResponse(inner, headers={"Cache-Control": IMMUTABLE,
                                                        "X-Content-Type-Options": "nosniff"})
            if rel.startswith("assets/") or nested > 0:
                # A missing hashed asset is a stale page asking for an old build: say so
                # instead of answering HTML the browser would try to run as a script.
                return Response(f"no asset {rel}; reload the page\n", status_code=404,
                                media_type="text/plain", headers={"Cache-Control": "no-store"})
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    return [Route("/{path:path}", page, methods=["GET", "HEAD"])]
