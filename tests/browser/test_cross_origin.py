"""A page on another origin can neither read nor write a tokenless `labtrack serve`, in Chromium.

The hostile page is served by a second HTTP server on another 127.0.0.1 port (another
origin). It tries what a page can do without the user's help: cross-origin reads of the API,
no-cors "simple" requests (text/plain, form bodies) that skip the CORS preflight, and JSON
requests that need one. The same batch sent by labtrack's own client is accepted (the
control), so the page's requests were refused for what they are, not for a bad body.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Server, start_server, stop_server

RUN_ID = "20261203-000000-attack"
CONTROL_ID = "20261203-000000-contrl"


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` and a hash of its bytes (hidden index files left out)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".labtrack" not in p.parts}


def _batch(run_id: str) -> bytes:
    meta = json.dumps({"format_version": 1, "id": run_id, "experiment": "evil", "status": "finished",
                       "started": "2026-12-03T00:00:00+00:00"}).encode()
    return json.dumps({"ops": [{"op": "put", "path": "run.json", "length": len(meta)}]}).encode() + b"\n" + meta


@pytest.fixture
def tokenless(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "runs"
    (root / "kept" / "20261203-000000-kept00").mkdir(parents=True)
    (root / "kept" / "20261203-000000-kept00" / "run.json").write_text(json.dumps(
        {"format_version": 1, "id": "20261203-000000-kept00", "experiment": "kept", "name": "SECRET-RUN",
         "status": "finished", "started": "2026-12-03T00:00:00+00:00",
         "ended": "2026-12-03T00:01:00+00:00"}))
    srv = start_server(root, tmp_path / "serve.log",
                       ["serve", "--root", str(root), "--host", "127.0.0.1", "--port", "0"])
    srv.root = root  # type: ignore[attr-defined]
    yield srv
    stop_server(srv)


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "attack.html").write_text("<!doctype html><title>another site</title><p>hello</p>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(site), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


ATTACK = """
async ([target, body, runId]) => {
  const out = {};
  const attempt = async (label, url, init) => {
    try {
      const r = await fetch(url, init);
      let text = "";
      try { text = await r.text(); } catch (e) { text = ""; }
      out[label] = {type: r.type, status: r.status, text};
    } catch (e) {
      out[label] = {error: String(e)};
    }
  };
  const batch = target + "/api/v1/ingest/evil/" + runId + "/batch";
  await attempt("read runs", target + "/api/v1/runs", {});
  await attempt("read runs no-cors", target + "/api/v1/runs", {mode: "no-cors"});
  await attempt("read run", target + "/api/v1/runs/20261203-000000-kept00", {credentials: "include"});
  await attempt("batch text/plain", batch, {method: "POST", mode: "no-cors", body,
                                            headers: {"Content-Type": "text/plain"}});
  await attempt("batch form", batch, {method: "POST", mode: "no-cors",
                                      body: new URLSearchParams({x: body})});
  await attempt("batch json", batch, {method: "POST", body,
                                      headers: {"Content-Type": "application/json", "X-Labtrack-Client": "1"}});
  await attempt("hello", target + "/api/v1/ingest/hello", {method: "POST", mode: "no-cors", body: "{}"});
  return out;
}
"""


def test_another_origin_can_neither_read_nor_write_a_tokenless_server(
        page: Any, tokenless: Server, other_origin: str) -> None:
    root: Path = tokenless.root  # type: ignore[attr-defined]
    before = _tree(root)
    page.goto(other_origin + "/attack.html")
    results = page.evaluate(ATTACK, [tokenless.url, _batch(RUN_ID).decode(), RUN_ID])
    for label, r in results.items():
        # Either the browser refused it (a CORS failure) or the answer is opaque: the page
        # learns nothing, not even the status.
        assert "error" in r or (r["type"] == "opaque" and r["status"] == 0 and r["text"] == ""), (label, r)
        assert "SECRET-RUN" not in json.dumps(r), (label, r)
    assert _tree(root) == before, "a request from another origin changed the root"
    assert not (root / "evil").exists()

    # The control: labtrack's own client (its header, a JSON body, no foreign Origin) writes
    # the same batch, so the page's requests were refused for where they came from.
    req = urllib.request.Request(tokenless.url + f"/api/v1/ingest/evil/{CONTROL_ID}/batch",
                                 data=_batch(CONTROL_ID), method="POST",
                                 headers={"Content-Type": "application/octet-stream", "X-Labtrack-Client": "test"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200, resp.read()
    assert (root / "evil" / CONTROL_ID / "run.json").is_file()
