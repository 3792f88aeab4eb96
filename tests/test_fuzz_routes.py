"""Every route of the app `labtrack serve` builds, with and without tokens, fuzzed with
hypothesis: path parameters, query parameters, headers and bodies. No answer may be a 5xx
(or an exception out of the app). In-process through a bare ASGI call, so the live stream
ends when the fuzzed client "disconnects"; a bounded budget per route keeps it under a minute.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

import labtrack
from labtrack._cli.remote import build_app
from labtrack._remote.wire import CLIENT_HEADER, Op, encode_batch
from labtrack._server.auth import COOKIE, create_token

EXAMPLES_PER_ROUTE = 40
QUERY_NAMES = ["path", "offset", "mtime_ns", "runs", "name", "names", "limit", "points", "xmin",
               "xmax", "x", "dir", "columns", "download", "experiment", "q", "sort", "status",
               "where", "step", "kind"]


class World:
    """A root with real runs, the two apps over it, and the names worth aiming at."""

    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        self.ids: list[str] = []
        self.experiments: list[str] = []
        for i in range(2):
            run = labtrack.Run(f"fuzz exp {i}", name=f"run {i}", root=self.root, config={"lr": 0.1, "n": i},
                               capture_git=False, capture_console=False)
            for step in range(20):
                run.log({"loss": 1 / (step + 1), "acc/top 1": step * 0.1, "ü/ñ": float("nan")}, step=step)
            run.log_text("notes", "hello", step=1)
            run.log_histogram("w", np.linspace(-1, 1, 30), step=2)
            run.log_image("img", np.zeros((4, 4, 3), dtype=np.uint8), step=3)
            run.log_markdown("doc", "# hi")
            run.finish()
            self.ids.append(run.dir.name)
            self.experiments.append(run.dir.parent.name)
        self.tokens = base / "tokens.json"
        self.admin = create_token(self.tokens, "admin", ["admin"])
        self.reader = create_token(self.tokens, "reader", ["read"])
        limits = {"max_batch_bytes": 1 << 20, "max_file_bytes": 1 << 20}
        self.apps = {"open": build_app(self.root, tokens=None, **limits),
                     "tokens": build_app(self.root, tokens=str(self.tokens), **limits)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("fuzz"))


def _routes() -> list[tuple[str, str, str]]:
    """(app, path template, method) of every route of both apps."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        tokens = Path(d) / "tokens.json"
        create_token(tokens, "x", ["read"])
        apps = {"open": build_app(Path(d) / "r", tokens=None, max_batch_bytes=1 << 20, max_file_bytes=1 << 20),
                "tokens": build_app(Path(d) / "r", tokens=str(tokens), max_batch_bytes=1 << 20,
                                    max_file_bytes=1 << 20)}
        out = []
        for kind, app in apps.items():
            for r in app.routes:
                assert isinstance(r, Route), f"a route kind this test does not know: {r!r}"
                for m in sorted(r.methods or {"GET"}):
                    out.append((kind, r.path, m))
                out.append((kind, r.path, "DELETE" if "DELETE" not in (r.methods or ()) else "PATCH"))
        return sorted(set(out))


ROUTES = _routes()

text = st.text(st.characters(codec="utf-8"), max_size=40)
nasty = st.sampled_from(["", ".", "..", "../..", "/", "%2e%2e", "a/../../b", "\x00", "\ud800", "run.json/x",
                         ".x.tmp", "media", "scalars/loss.csv", "console.log", "a" * 300, "é" * 130,
                         "-1", "1e400", str(10 ** 30), "NaN", "[]", "{}", "\\x"])
numbers = st.one_of(st.sampled_from(["0", "1", "-1", "-0", "1.5", "", "0x10", str(10 ** 30), str(2 ** 63),
                                     str(2 ** 63 - 1), "9" * 5000]),
                    st.integers(-(10 ** 30), 10 ** 30).map(str))


def _value(world: World) -> st.SearchStrategy[str]:
    real = st.sampled_from([*world.ids, *world.experiments, world.ids[0][:8], "loss", "acc/top 1",
                            "notes", "w", "img", "doc", "ü/ñ", "step", "time", "lr", "params.lr",
                            "summary.loss.last", "status = 'finished'", "loss,acc/top 1"])
    return st.one_of(real, nasty, numbers, text)


def _body(world: World) -> st.SearchStrategy[bytes]:
    ops = st.builds(Op, st.sampled_from(["append", "put", "delete"]),
                    st.one_of(st.sampled_from(["console.log", "scalars/loss.csv", "run.json", "media/0/a.png",
                                               "run.json/x", "a", "a/b"]), text.filter(bool)),
                    st.binary(max_size=64), st.integers(0, 200), st.one_of(st.none(), st.integers(0, 2 ** 63 - 1)))

    def batch(items: list[Op]) -> bytes:
        try:
            return encode_batch(items)
        except (UnicodeEncodeError, ValueError):
            return b""

    header = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text),
                          lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                 st.dictionaries(st.sampled_from(["op", "path", "length", "offset",
                                                                                  "mtime_ns", "ops", "api",
                                                                                  "token"]), kids, max_size=5)),
                          max_leaves=12)
    return st.one_of(
        st.binary(max_size=200),
        st.lists(ops, max_size=4).map(batch),
        header.map(lambda h: json.dumps(h).encode() + b"\n"),
        st.builds(lambda h, tail: json.dumps(h).encode() + b"\n" + tail, header, st.binary(max_size=50)),
        st.sampled_from([b'{"api": 1}', b'{"token": "lt_x"}', b"[" * 50_000, b"[" * 100_000 + b"\n", b'{"ops": []}\n',
                         b"token=abc", b"\xff\xfe"]),
    )


def _headers(world: World, kind: str) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    token = world.admin if kind == "tokens" else "lt_none"
    choices = {
        "host": st.sampled_from(["127.0.0.1:8765", "localhost", "[::1]:1", "evil.example:8765", "", "::::"]),
        "origin": st.sampled_from(["http://127.0.0.1:8765", "http://evil.example", "null", "", "::", "http://"]),
        "content-type": st.sampled_from(["application/json", "application/octet-stream", "text/plain",
                                         "multipart/form-data; boundary=x", "", ";;", "application/json; x"]),
        CLIENT_HEADER.lower(): st.sampled_from(["fuzz", ""]),
        "authorization": st.sampled_from([f"Bearer {token}", f"Bearer {world.reader}", "Bearer", "Basic x",
                                          "bearer  lt_x ", ""]),
        "cookie": st.sampled_from([f"{COOKIE}={token}", f"{COOKIE}=", "a=b; =c", "\x7f"]),
        "content-length": st.one_of(numbers, st.just("abc")),
        "range": st.sampled_from(["bytes=0-10", "bytes=-5", "bytes=99999999-", "junk"]),
        "last-event-id": numbers,
        "accept-encoding": st.sampled_from(["gzip", "br", "*"]),
    }
    pairs = st.lists(st.sampled_from(sorted(choices)), unique=True, max_size=6).flatmap(
        lambda keys: st.tuples(*(choices[k].map(lambda v, k=k: (k, v)) for k in keys)))
    return pairs.map(lambda items: [(k.encode("latin-1"), v.encode("utf-8", "surrogatepass")) for k, v in items])


async def call(app: Any, method: str, raw_path: str, query: str, headers: list[tuple[bytes, bytes]],
               body: bytes) -> int:
    """One request through the bare ASGI interface; the status answered (the client leaves
    right after the body, so a stream ends)."""
    if not any(k == b"host" for k, _ in headers):
        headers = [(b"host", b"127.0.0.1:8765"), *headers]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": unquote(raw_path), "raw_path": raw_path.encode("ascii"),
             "query_string": query.encode("latin-1"), "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8765), "state": {}}
    sent = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await asyncio.wait_for(app(scope, receive, send), timeout=20)
    assert status, "the app answered nothing"
    return status[0]


def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], template)


@pytest.mark.parametrize("kind,template,method", ROUTES, ids=[f"{k}-{m}-{t}" for k, t, m in ROUTES])
def test_no_route_answers_bad_input_with_a_5xx(world: World, kind: str, template: str, method: str) -> None:
    app = world.apps[kind]
    names = re.findall(r"\{(\w+)(?::\w+)?\}", template)
    value = _value(world)
    real = {"experiment": world.experiments, "run_id": world.ids, "id": world.ids}
    # Mostly real names (else nearly every example stops at the name check), sometimes anything.
    params = st.fixed_dictionaries({n: st.one_of(*[st.sampled_from(real.get(n) or ["x"])] * 3, value).map(
        lambda v: quote(v.encode("utf-8", "surrogatepass"), safe="/") if v else "x") for n in names})
    # Half the examples aim at the parameters the route reads (path, offset, mtime_ns for
    # ingest), the rest are anything.
    paths = st.one_of(st.sampled_from(["scalars/loss.csv", "console.log", "run.json", "run.json/x",
                                       "media/3/img.png", "media", "a/b", "x.bin"]), value)
    if "ingest" in template:
        focused = st.fixed_dictionaries({"path": paths}, optional={"offset": numbers, "mtime_ns": numbers}
                                        ).map(lambda d: list(d.items()))
    else:
        focused = st.lists(st.tuples(st.sampled_from(QUERY_NAMES), st.one_of(value, numbers)),
                           min_size=1, max_size=3, unique_by=lambda kv: kv[0])
    query = st.one_of(focused, st.lists(st.tuples(st.one_of(st.sampled_from(QUERY_NAMES), text), value),
                                        max_size=5))
    loop = asyncio.new_event_loop()

    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(params=params, query=query, headers=_headers(world, kind), body=_body(world))
    def fuzz(params: dict[str, str], query: list[tuple[str, str]], headers: list[tuple[bytes, bytes]],
             body: bytes) -> None:
        path = _fill(template, params)
        qs = urlencode([(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                        for k, v in query])
        status = loop.run_until_complete(call(app, method, path, qs, headers, body))
        assert status < 500, (method, path, qs, headers, body[:200], status)

    try:
        fuzz()
    finally:
        loop.close()
