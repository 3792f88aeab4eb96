"""The read API never reads or lists anything a symlink leads to outside the root or the run.

Each run file the API reads (run.json, params.json, summary.json, env.json, options.json,
console.log, media.jsonl, series, texts, histograms, tables, markdown) is made a real
symlink to a file outside the root holding a marker; the marker must never appear in an
answer, in process (ASGI) and from a real `labtrack ui` on a free port. Runs reached through
a symlinked experiment or run folder do not exist for the API.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import labtrack
from labtrack._server.app import create_app
from test_server_api import _OPEN, Client, _close_apps, write_run  # noqa: F401 (an autouse fixture)
from test_server_live import UI, ui_factory  # noqa: F401 (a fixture)
from test_server_stream import Stream

MARKER = "MARKER-7f3a9c"
NUMBER = "987654321"  # a marker inside numbers: a series' or histogram's values
SAFE = "safe"
IDS = {"named": "20261121-141503-named0", "whole": "20261121-141503-whole0",
       "runjson": "20261121-141503-rjson0", "runout": "20261121-141503-rdout0",
       "expout": "20261121-141503-expou0"}


def _outside_file(outside: Path, name: str, text: str) -> Path:
    p = outside / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    os.symlink(target, link)


def build(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """A root with every kind of symlink out; returns (root, ids, outside folder)."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    ids = dict(IDS)
    # 1. a real run whose named files have symlinked siblings
    with labtrack.Run(experiment=SAFE, name="named", config={"lr": 0.1}, root=root,
                      capture_git=False, capture_console=False, system=False) as run:
        for step in range(5):
            run.log({"loss": 1.0 / (step + 1)}, step=step)
        run.log_text("note", "hello", step=0)
        run.log_histogram("w", np.array([0.1, 0.2, 0.3]), step=0)
        run.log_table("tab", [{"a": 1}])
        run.log_markdown("doc", "# hi")
        run.log_image("pic", np.zeros((4, 4, 3), dtype=np.uint8), step=0)
    d = run.dir
    ids["named"] = run.id
    csv = _outside_file(outside, "leak.csv", f"step,value,time\n0,{NUMBER}.5,1.0\n")
    _link(csv, d / "scalars" / "leak.csv")
    sub = outside / "subdir"
    _outside_file(sub, "x.csv", f"step,value,time\n0,{NUMBER}.25,1.0\n")
    _link(sub, d / "scalars" / "linked")
    _link(_outside_file(outside, "t.jsonl", json.dumps({"step": 0, "text": MARKER}) + "\n"),
          d / "text" / "leak.jsonl")
    _link(_outside_file(outside, "h.jsonl", json.dumps({"step": 0, "bins": [0, 1], "counts": [int(NUMBER)]}) + "\n"),
          d / "histograms" / "leak.jsonl")
    _link(_outside_file(outside, "tab.csv", f"col\n{MARKER}\n"), d / "tables" / "leak.csv")
    _link(_outside_file(outside, "doc.md", f"# {MARKER}\n"), d / "markdown" / "leak.md")
    _link(_outside_file(outside, "pic.png", MARKER), d / "media" / "0" / "leak.png")
    # 2. a run whose whole files are symlinks out
    w = write_run(root, ids["whole"], experiment=SAFE)
    for name, text in (("params.json", json.dumps({MARKER: 1})),
                       ("summary.json", json.dumps({MARKER: {"last": 1, "min": 1, "max": 1, "count": 1,
                                                              "step": 0, "time": 1}})),
                       ("env.json", json.dumps({"python": {"version": MARKER}})),
                       ("options.json", json.dumps({"flag": MARKER})),
                       ("console.log", f"{MARKER}\n"),
                       ("media.jsonl", json.dumps({"step": 0, "name": MARKER, "kind": "image",
                                                    "path": "media/0/x.png"}) + "\n")):
        _link(_outside_file(outside, "whole-" + name, text), w / name)
    # 3. a run whose run.json is a symlink out
    rj = write_run(root, ids["runjson"], experiment=SAFE)
    out_meta = json.loads((rj / "run.json").read_text())
    out_meta["comment"] = MARKER
    _link(_outside_file(outside, "run.json", json.dumps(out_meta)), rj / "run.json")
    # 4. a run folder that is a symlink out
    away = write_run(tmp_path / "elsewhere", ids["runout"], experiment=SAFE, comment=MARKER)
    _link(away, root / SAFE / ids["runout"])
    # 5. an experiment folder that is a symlink out
    write_run(tmp_path / "elsewhere", ids["expout"], experiment="far", comment=MARKER)
    _link(tmp_path / "elsewhere" / "far", root / "far")
    return root, ids, outside


LEAKED = [
    "scalars/leak.csv", "scalars/linked/x.csv", "text/leak.jsonl", "histograms/leak.jsonl",
    "tables/leak.csv", "markdown/leak.md", "media/0/leak.png",
]
WHOLE = ["params.json", "summary.json", "env.json", "options.json", "console.log", "media.jsonl"]


def _assert_clean(url: str, text: str) -> None:
    assert MARKER not in text and NUMBER not in text, f"{url} answered what lies outside: {text[:500]}"


def crawl(get: Any, ids: dict[str, str]) -> dict[str, tuple[int, str]]:
    """Every read route over the runs; `get(url, params)` answers (status, text)."""
    named, whole = ids["named"], ids["whole"]
    answers: dict[str, tuple[int, str]] = {}

    def ask(url: str, **params: str) -> tuple[int, str]:
        key = url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
        answers[key] = get(url, params)
        return answers[key]

    ask("/api/v1/runs")
    ask("/api/v1/columns")
    for rid in (named, whole):
        ask(f"/api/v1/runs/{rid}")
        ask(f"/api/v1/runs/{rid}/files")
        ask(f"/api/v1/runs/{rid}/console")
        ask(f"/api/v1/runs/{rid}/media")
    for p in LEAKED:
        ask(f"/api/v1/runs/{named}/file", path=p)
        ask(f"/api/v1/runs/{named}/file", path=p, offset="0")
    for p in WHOLE:
        ask(f"/api/v1/runs/{whole}/file", path=p)
    for name in ("leak", "linked/x"):
        ask(f"/api/v1/runs/{named}/scalars", name=name)
    ask(f"/api/v1/runs/{named}/scalars", path="scalars/leak.csv")
    ask(f"/api/v1/runs/{named}/text", name="leak")
    ask(f"/api/v1/runs/{named}/histograms", name="leak")
    for key in ("runjson", "runout", "expout"):
        rid = ids[key]
        for sub in ("", "/files", "/console", "/media"):
            ask(f"/api/v1/runs/{rid}{sub}")
        ask(f"/api/v1/runs/{rid}/file", path="run.json")
        ask(f"/api/v1/runs/{rid}/scalars", name="loss")
    return answers


def assert_crawl_clean(answers: dict[str, tuple[int, str]], ids: dict[str, str]) -> None:
    for url, (status, text) in answers.items():
        _assert_clean(url, text)
        assert status < 500, (url, status, text)
    for key in ("runjson", "runout", "expout"):
        rid = ids[key]
        for url, (status, _) in answers.items():
            if f"/runs/{rid}" in url:
                assert status == 404, (url, status)
    listed = json.loads(answers["/api/v1/runs"][1])
    assert sorted(r["id"] for r in listed["runs"]) == sorted([ids["named"], ids["whole"]])
    for p in LEAKED:
        status, text = answers[f"/api/v1/runs/{ids['named']}/file?path={p}"]
        assert status in (400, 404), (p, status)
        assert "outside" in json.loads(text)["error"]
    # what is inside is still served
    detail = json.loads(answers[f"/api/v1/runs/{ids['named']}"][1])
    assert detail["names"]["scalars"] == ["loss"]
    assert detail["names"]["text"] == ["note"] and detail["names"]["tables"] == ["tab"]
    files = {f["path"] for f in json.loads(answers[f"/api/v1/runs/{ids['named']}/files"][1])["files"]}
    assert "scalars/loss.csv" in files and not files & set(LEAKED)
    whole = json.loads(answers[f"/api/v1/runs/{ids['whole']}"][1])
    assert whole["params"] == {} and whole["summary"] == {} and whole["env"] is None
    assert json.loads(answers[f"/api/v1/runs/{ids['whole']}/console"][1])["text"] == ""
    assert json.loads(answers[f"/api/v1/runs/{ids['whole']}/media"][1])["media"] == []


def test_in_process_nothing_outside_is_read_or_listed(tmp_path: Path) -> None:
    root, ids, _ = build(tmp_path)
    c = Client(create_app(root))

    def get(url: str, params: dict[str, str]) -> tuple[int, str]:
        r = c.get(url, params=params)
        return r.status_code, r.text

    assert_crawl_clean(crawl(get, ids), ids)


def test_the_stream_tails_nothing_outside(tmp_path: Path) -> None:
    root, ids, outside = build(tmp_path)
    app = create_app(root)
    _OPEN.append(app)  # closed by the autouse fixture

    async def main() -> None:
        s = Stream(app, f"runs={ids['named']},{ids['whole']}")
        task = asyncio.get_running_loop().create_task(s.run())
        await s.wait_for(lambda e: sum(k == "run" for k, _ in e) >= 2, 5)
        # the outside files grow while the stream watches; an inside series too
        with open(outside / "whole-console.log", "a") as f:
            f.write(f"{MARKER} again\n")
        with open(outside / "leak.csv", "a") as f:
            f.write(f"1,{NUMBER}.75,2.0\n")
        with open(outside / "subdir" / "x.csv", "a") as f:
            f.write(f"1,{NUMBER}.75,2.0\n")
        named_dir = next(p for p in (root / SAFE).iterdir() if p.name == ids["named"])
        with open(named_dir / "scalars" / "loss.csv", "a") as f:
            f.write("5,0.1,9.0\n")
        await s.wait_for(lambda e: any(k == "scalars" for k, _ in e), 5)
        await asyncio.sleep(1.5)  # a few more polls: nothing from outside may follow
        s.gone.set()
        await asyncio.wait_for(task, timeout=3)
        _assert_clean("/api/v1/stream", s.body.decode())
        evs = s.events()
        assert [v["name"] for k, v in evs if k == "scalars"] == ["loss"]
        assert not [v for k, v in evs if k == "console"]

    asyncio.run(main())


def test_a_cached_series_replaced_by_a_symlink_out_is_not_served(tmp_path: Path) -> None:
    root, ids, outside = build(tmp_path)
    app = create_app(root)
    c = Client(app)
    url = f"/api/v1/runs/{ids['named']}/scalars"
    assert c.json(url, params={"name": "loss"})["total"] == 5  # parsed and cached
    d = root / SAFE / ids["named"]
    _link(outside / "leak.csv", d / "scalars" / "loss.csv")
    r = c.get(url, params={"name": "loss"})
    _assert_clean(url, r.text)
    assert r.status_code in (400, 404)


def test_a_real_ui_reads_nothing_outside(tmp_path: Path, ui_factory: Any) -> None:  # noqa: F811
    root, ids, _ = build(tmp_path)
    ui = ui_factory(root)
    url = ui.wait_ready()
    with httpx.Client(base_url=url, timeout=20) as client:
        def get(path: str, params: dict[str, str]) -> tuple[int, str]:
            r = client.get(path, params=params)
            return r.status_code, r.text

        try:
            assert_crawl_clean(crawl(get, ids), ids)
            with client.stream("GET", "/api/v1/stream", params={"runs": f"{ids['named']},{ids['whole']}"}) as r:
                got = b""
                for chunk in r.iter_bytes():
                    got += chunk
                    if got.count(b"event: run") >= 2:
                        break
            _assert_clean("/api/v1/stream", got.decode())
        except AssertionError:
            print(ui.output)
            raise


@pytest.mark.parametrize("key", ["runjson", "runout", "expout"])
def test_runs_out_of_the_root_do_not_exist(tmp_path: Path, key: str) -> None:
    root, ids, _ = build(tmp_path)
    c = Client(create_app(root))
    body = c.json(f"/api/v1/runs/{ids[key]}", status=404)
    assert ids[key] in body["error"]
    body = c.json(f"/api/v1/stream?runs={ids[key]}", status=404)
    assert MARKER not in json.dumps(body)


def test_a_known_run_whose_folder_turns_into_a_symlink_out_is_gone(tmp_path: Path) -> None:
    import shutil

    root, ids, _ = build(tmp_path)
    c = Client(create_app(root))
    rid = ids["whole"]
    assert c.json(f"/api/v1/runs/{rid}")["id"] == rid  # found and remembered
    d = root / SAFE / rid
    away = tmp_path / "moved" / rid
    away.parent.mkdir()
    shutil.move(str(d), str(away))
    meta = json.loads((away / "run.json").read_text())
    meta["comment"] = MARKER
    (away / "run.json").write_text(json.dumps(meta))
    os.symlink(away, d)
    for sub in ("", "/files", "/console"):
        r = c.get(f"/api/v1/runs/{rid}{sub}")
        assert r.status_code == 404 and MARKER not in r.text, (sub, r.text)
