"""Tokens for `labtrack serve`: a JSON file of hashed tokens with scopes.

The tokens file (``tokens.json``)::

    {"format": 1,
     "tokens": [{"name": "alice", "scopes": ["write"], "created": "2026-11-21T14:15:03+00:00",
                 "sha256": "<hex digest of the token>"}]}

A token is 32 random bytes (``lt_`` + URL-safe base64); only its SHA-256 is stored, so the
file does not reveal tokens (a slow hash would add nothing to 256 random bits). Scopes:
``read``; ``write`` (implies read); ``admin`` (implies both). The server re-reads the file
when it changes, so a token created or revoked while it runs takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..errors import LabtrackValueError

SCOPES = ("read", "write", "admin")
_IMPLIES = {"read": {"read"}, "write": {"read", "write"}, "admin": {"read", "write", "admin"}}
TOKEN_PREFIX = "lt_"


class TokenFileError(LabtrackValueError):
    """A tokens file that cannot be read, or a token request that is not allowed."""


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, as stored in the tokens file."""
    # surrogatepass: a token sent with a lone surrogate is unknown, not a server error.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_tokens(path: Path) -> list[dict[str, Any]]:
    """The entries of a tokens file; a missing file has none.

    Raises:
        TokenFileError: the file is not a tokens file.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise TokenFileError(f"cannot read the tokens file {path}: {e}") from None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list) or not all(
            isinstance(t, dict) and isinstance(t.get("sha256"), str) and isinstance(t.get("name"), str)
            and isinstance(t.get("scopes"), list) for t in tokens):
        raise TokenFileError(f"{path} is not a labtrack tokens file (expected "
                             "{\"tokens\": [{\"name\", \"scopes\", \"sha256\"}, ...]})")
    return tokens


def _save(path: Path, tokens: list[dict[str, Any]]) -> None:
    from .._store.files import atomic_write_bytes

    data = json.dumps({"format": 1, "tokens": tokens}, indent=2) + "\n"
    atomic_write_bytes(Path(path), data.encode("utf-8"))
    os.chmod(path, 0o600)


def create_token(path: Path, name: str, scopes: list[str]) -> str:
    """Create a token, store its hash in `path` and return the token (shown only once).

    Raises:
        TokenFileError: the name is taken or empty, or a scope is unknown.

    Example:
        >>> token = create_token(Path("tokens.json"), "alice", ["write"])
    """
    if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
        raise TokenFileError(f"token name {name!r} is not allowed; use 1-100 printable characters")
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise TokenFileError(f"scopes {scopes!r} are not allowed; choose from {', '.join(SCOPES)}")
    tokens = load_tokens(path)
    if any(t["name"] == name for t in tokens):
        raise TokenFileError(f"a token named {name!r} already exists in {path}; revoke it "
                             "first (labtrack token revoke) or choose another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tokens.append({"name": name, "scopes": sorted(set(scopes)), "created": _now(),
                   "sha256": hash_token(token)})
    _save(path, tokens)
    return token


def revoke_token(path: Path, name: str) -> None:
    """Remove the token called `name` from `path`.

    Raises:
        TokenFileError: there is no such token.
    """
    tokens = load_tokens(path)
    kept = [t for t in tokens if t["name"] != name]
    if len(kept) == len(tokens):
        raise TokenFileError(f"no token named {name!r} in {path}")
    _save(path, kept)


class TokenAuth:
    """The `auth(request, scope)` callable of the server, backed by a tokens file.

    Raises starlette's HTTPException 401 for a missing or unknown token and 403 for a
    token without the scope. The file is re-read when its size or mtime changes (checked
    at most once a second).
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] | None = None) -> None:
        import time

        self.path = Path(path)
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = -1e9
        self._by_hash: dict[str, set[str]] = {}
        self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._checked < 1.0:
            return
        with self._lock:
            self._checked = now
            try:
                st = os.stat(self.path)
                stamp: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                stamp = None
            if stamp == self._stamp and not force:
                return
            by_hash: dict[str, set[str]] = {}
            for t in load_tokens(self.path):
                scopes: set[str] = set()
                for s in t["scopes"]:
                    scopes |= _IMPLIES.get(s, set())
                by_hash[t["sha256"]] = scopes
            self._by_hash = by_hash
            self._stamp = stamp

    def scopes_of(self, token: str) -> set[str] | None:
        """The scopes a token grants, or None for an unknown token."""
        try:
            self._reload()
        except TokenFileError:
            pass  # a half-edited file: keep the tokens loaded before
        digest = hash_token(token)
        for known, scopes in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return scopes
        return None

    def __call__(self, request: Request, scope: str) -> None:
        """Refuse the request unless it carries a token with `scope`.

        The token comes from ``Authorization: Bearer``; for reading (GET/HEAD) a browser may
        instead hold it in the login cookie (see :func:`login_routes`). A cookie never
        grants write or admin, so another site cannot make a browser write (no CSRF).
        """
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        token = token.strip() if kind.lower() == "bearer" else ""
        if not token and scope == "read" and request.method in ("GET", "HEAD"):
            token = request.cookies.get(COOKIE, "").strip()
        if not token and scope != "read":
            raise HTTPException(401, f"this server needs a token with the {scope!r} scope for "
                                "this: send 'Authorization: Bearer <token>' (the login cookie "
                                "grants reading only; create one with labtrack token create "
                                f"NAME --{scope})", headers={"WWW-Authenticate": "Bearer"})
        if not token:
            raise HTTPException(401, "this server needs a token: send 'Authorization: Bearer "
                                "<token>', or log in at /login in a browser (create a token "
                                "with labtrack token create)",
                                headers={"WWW-Authenticate": "Bearer"})
        scopes = self.scopes_of(token)
        if scopes is None:
            raise HTTPException(401, "the token is not known to this server (revoked, or "
                                "from another server's tokens file)",
                                headers={"WWW-Authenticate": "Bearer"})
        if scope not in scopes:
            raise HTTPException(403, f"the token lacks the {scope!r} scope; it has "
                                f"{', '.join(sorted(scopes)) or 'none'}")


COOKIE = "labtrack_token"
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labtrack: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px system-ui,sans-serif;max-width:28em;margin:4em auto;padding:0 1em}
input{font:inherit;width:100%;box-sizing:border-box;padding:.4em;margin:.5em 0}
.err{color:#b00020}</style><script src="login.js" defer></script></head>
<body><h1>labtrack</h1><p>This server needs a token with the read scope
(<code>labtrack token create NAME --read --tokens FILE</code>).</p>
<noscript><p class="err">Logging in needs JavaScript.</p></noscript>
<form id="login"><label>Token
<input name="token" type="password" autocomplete="current-password" autofocus required></label>
<input type="submit" value="Log in"></form><p class="err" id="err" role="alert"></p></body></html>
"""
# The form is sent by script, as JSON with the client header: the server takes no form posts
# (a page of another site could send one), see RequestGuard in app.py.
_SCRIPT = """"use strict";
document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = document.getElementById("err");
  err.textContent = "";
  const token = new FormData(ev.target).get("token");
  try {
    const r = await fetch("login", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-Labtrack-Client": "login-page"},
      body: JSON.stringify({token})});
    if (r.ok) { window.location.assign("./"); return; }
    const body = await r.json().catch(() => ({}));
    err.textContent = body.error || ("the server answered " + r.status);
  } catch (e) {
    err.textContent = "the server cannot be reached: " + e;
  }
});
"""
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; connect-src 'self'; "
                                "style-src 'unsafe-inline'; form-action 'none'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
}


def login_routes(auth: TokenAuth) -> list[Any]:
    """`GET /login` (a form), `POST /login` (sets the read cookie), `POST /logout`.

    `POST /login` takes `{"token": "..."}` as JSON (the login page's script sends it) and
    answers `{"ok": true}` with the cookie, or 401 with `{"error"}`. The cookie is HttpOnly
    and SameSite=Strict and holds the token itself; the server only keeps hashes, so there
    is no session state.

    Example:
        >>> create_app(root, auth=auth, extra_routes=[*login_routes(auth), *ingest])
    """
    import json

    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    def refuse(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status,
                            headers={"Cache-Control": "no-store"})

    async def login_form(request: Request) -> Response:
        return HTMLResponse(_PAGE, headers=_PAGE_HEADERS)

    async def login_script(request: Request) -> Response:
        return Response(_SCRIPT, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})

    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > 4096:
            return refuse("That is not a token (the body is too long).", 400)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str):
            return refuse('send the token as JSON: {"token": "lt_..."}', 400)
        token = token.strip()
        scopes = auth.scopes_of(token) if token else None
        if scopes is None or "read" not in scopes:
            return refuse("That token is not known to this server.", 401)
        r = JSONResponse({"ok": True}, headers={"Cache-Control": "no-store"})
        r.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                     secure=request.url.scheme == "https", max_age=30 * 24 * 3600)
        return r

    async def logout(request: Request) -> Response:
        r = JSONResponse({"ok": True}, headers={"Cache-Control": "no-store"})
        r.delete_cookie(COOKIE, path="/")
        return r

    return [Route("/login", login_form, methods=["GET"]), Route("/login", login, methods=["POST"]),
            Route("/login.js", login_script, methods=["GET"]),
            Route("/logout", logout, methods=["POST"])]
