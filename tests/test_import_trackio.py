"""labtrack import trackio: a project database written by the real trackio, compared point for point.

trackio 0.43 (in the peers' side venv, tests/peers.py) writes the project into TRACKIO_DIR; the
test reads the same database with its own SQL for the wall times (trackio stamps each batch
of log calls when it writes it) and compares with what the script logged for the values.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import labtrack.importers
from labtrack.cli import main as cli
from labtrack.importers import SourceError
from peers import as_json, by_name, lines, peer_script, peers, series  # noqa: F401  (peers is a fixture)

pytestmark = pytest.mark.slow

WRITE_PROJECT = r"""
import json
import numpy as np
import trackio

rng = np.random.default_rng(0)
out = {}
trackio.init(project="speech", name="base", group="sweep-a", config={"lr": 0.01, "opt": {"name": "adam"}})
rows = []
for i in range(30):
    row = {"loss": 1.0 / (i + 1), "train/acc": i / 30}
    if i % 10 == 3:
        row["spectrogram"] = trackio.Image(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), caption=f"s{i}")
        row["preds"] = trackio.Table(columns=["x", "y"], data=[[i, "a"], [i + 1, "b"]])
        row["weights"] = trackio.Histogram(rng.normal(size=300))
    if i == 4:
        row["bad"] = float("nan")
        row["notes"] = trackio.Markdown("# halfway\n*fine*")
    trackio.log(row)
    rows.append({"step": i, "values": {k: v for k, v in row.items() if isinstance(v, float)}})
trackio.log_system({"cpu/utilization": 42.5, "gpu/0/utilization": 90.0, "gpu/0/temp": 61.0})
trackio.alert("loss plateau", text="no progress for 5 steps", level=trackio.AlertLevel.WARN)
trackio.finish()
out["base"] = rows

trackio.init(project="speech", name="big-lr", config={"lr": 0.5})
rows = []
for s in (0, 5, 9):
    trackio.log({"loss": s * 2.0}, step=s)
    rows.append({"step": s, "values": {"loss": s * 2.0}})
trackio.finish()
out["big-lr"] = rows
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def written(peers: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:  # noqa: F811
    """trackio's folder with the project `speech`, and what the script logged."""
    cwd = tmp_path_factory.mktemp("trackio-src")
    truth = as_json(peer_script(peers, WRITE_PROJECT, cwd=cwd))
    return cwd / ".trackio", truth


def same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


def test_every_point_step_and_wall_time_matches_the_database(written: tuple[Path, dict[str, Any]],
                                                             tmp_path: Path) -> None:
    folder, truth = written
    db = folder / "speech.db"
    ids = labtrack.importers.trackio(db, root=tmp_path / "lt")
    assert len(ids) == 2
    runs = by_name(tmp_path / "lt")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    for name, rows in truth.items():
        d = runs[name]
        run_id = json.loads((d / "run.json").read_text())["imported_from"]["source_id"]
        stamps = {step: datetime.fromisoformat(ts).timestamp() for step, ts in con.execute(
            "SELECT step, timestamp FROM metrics WHERE run_id = ?", (run_id,))}
        for key in {k for r in rows for k in r["values"]}:
            want = [(r["step"], r["values"][key]) for r in rows if key in r["values"]]
            got = series(d, key)
            assert [s for s, _, _ in got] == [s for s, _ in want], key
            assert all(same(v, w) for (_, v, _), (_, w) in zip(got, want)), key
            assert [t for _, _, t in got] == [round(stamps[s], 3) for s, _ in want], key
        meta = json.loads((d / "run.json").read_text())
        (created,) = con.execute("SELECT json_extract(config, '$._Created') FROM configs WHERE run_id = ?",
                                 (run_id,)).fetchone()
        assert datetime.fromisoformat(meta["started"]) == datetime.fromisoformat(created)
        assert datetime.fromisoformat(meta["ended"]).timestamp() == pytest.approx(max(stamps.values()), abs=1e-3)
        assert (meta["experiment"], meta["status"], meta["imported_from"]["tool"]) == ("speech", "finished", "trackio")
    base = runs["base"]
    assert json.loads((base / "params.json").read_text()) == {"lr": 0.01, "opt": {"name": "adam"}}
    assert json.loads((runs["big-lr"] / "params.json").read_text()) == {"lr": 0.5}
    assert json.loads((base / "run.json").read_text())["group"] == "sweep-a"
    media = lines(base / "media.jsonl")
    assert [m["step"] for m in media if m["kind"] == "image"] == [3, 13, 23]
    assert [m["caption"] for m in media if m["kind"] == "image"] == ["s3", "s13", "s23"]
    assert [m["step"] for m in media if m["kind"] == "table"] == [3, 13, 23]
    table = (base / [m["path"] for m in media if m["kind"] == "table"][0]).read_text()
    assert table.splitlines() == ["x,y", "3,a", "4,b"]
    hist = lines(base / "histograms" / "weights.jsonl")
    assert [h["step"] for h in hist] == [3, 13, 23] and all(h["count"] == 300 for h in hist)
    assert [v for _, v, _ in series(base, "system/cpu/percent")] == [42.5]
    assert [v for _, v, _ in series(base, "system/gpu/0/temperature_c")] == [61.0]
    assert [v for _, v, _ in series(base, "system/trackio/gpu/0/utilization")] == [90.0]
    assert [(m["step"], m["kind"]) for m in media if m["name"] == "notes"] == [(4, "markdown")]
    assert (base / [m["path"] for m in media if m["name"] == "notes"][0]).read_text() == "# halfway\n*fine*"
    alerts = lines(base / "text" / "trackio" / "alerts.jsonl")
    assert [a["text"] for a in alerts] == ["[warn] loss plateau\nno progress for 5 steps"]


def test_a_project_name_is_found_in_trackios_folder_and_reimport_writes_nothing(
        written: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = written
    monkeypatch.setenv("TRACKIO_DIR", str(folder))
    root = tmp_path / "lt"
    first = CliRunner().invoke(cli, ["import", "trackio", "speech", "--root", str(root)])
    assert first.exit_code == 0, first.output
    assert first.output.count("\n") == 1 and first.output.startswith("imported 2 runs from trackio (")
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    again = CliRunner().invoke(cli, ["import", "trackio", str(folder / "speech.db"), "--root", str(root), "--json"])
    out = json.loads(again.output)
    assert out["imported"] == [] and len(out["already_imported"]) == 2 and out["points"] == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before
    # the database was only read: trackio's files are as they were
    assert not (folder / "speech.db-journal").exists()


@pytest.mark.parametrize("damage", ["missing-db", "unknown-project", "not-sqlite", "other-sqlite", "folder"])
def test_a_bad_source_is_a_clear_error_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       damage: str) -> None:
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "tk"))
    (tmp_path / "tk").mkdir()
    target = str(tmp_path / "nope.db")
    words = [target, "does not exist"]
    if damage == "unknown-project":
        target, words = "nosuch", ["nosuch", str(tmp_path / "tk" / "nosuch.db")]
    elif damage == "not-sqlite":
        (tmp_path / "x.db").write_bytes(b"hello, not a database" * 100)
        target, words = str(tmp_path / "x.db"), [str(tmp_path / "x.db"), "not a trackio database"]
    elif damage == "other-sqlite":
        sqlite3.connect(tmp_path / "o.db").execute("CREATE TABLE t (a)").connection.commit()
        target, words = str(tmp_path / "o.db"), [str(tmp_path / "o.db"), "no metrics table"]
    elif damage == "folder":
        target, words = str(tmp_path / "tk"), [str(tmp_path / "tk"), "is a folder"]
    with pytest.raises(SourceError) as e:
        labtrack.importers.trackio(target, root=tmp_path / "lt")
    for w in words:
        assert w in str(e.value)
    r = CliRunner().invoke(cli, ["import", "trackio", target, "--root", str(tmp_path / "lt")])
    assert r.exit_code != 0 and "Traceback" not in r.output and words[0] in r.output


BIG_PROJECT = r"""
import trackio
trackio.init(project="big", name="long", config={"n": 1})
for i in range(12000):
    trackio.log({f"m{j}": i * 0.5 + j for j in range(8)})
trackio.finish()
"""


def test_an_import_killed_half_way_is_completed_by_the_next(peers: Path, tmp_path: Path) -> None:  # noqa: F811
    peer_script(peers, BIG_PROJECT, cwd=tmp_path)
    db, root = tmp_path / ".trackio" / "big.db", tmp_path / "lt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRACK_")}
    env.update({"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "LABTRACK_SYSTEM": "0"})
    code = f"import labtrack.importers as i; i.trackio({str(db)!r}, root={str(root)!r})"
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    killed_half_way = False
    while time.monotonic() < deadline and child.poll() is None:
        metas = list(root.glob("*/*/run.json"))
        if metas and list(root.glob("*/*/scalars/m0.csv")):
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed_half_way = not json.loads(metas[0].read_text())["imported_from"]["complete"]
            break
        time.sleep(0.005)
    assert killed_half_way, "the import finished before it could be killed; make BIG_PROJECT bigger"
    ids = labtrack.importers.trackio(db, root=root)
    d = next(root.glob("*/*/run.json")).parent
    assert d.name == ids[0] and json.loads((d / "run.json").read_text())["imported_from"]["complete"]
    for j in range(8):
        assert [(s, v) for s, v, _ in series(d, f"m{j}")] == [(i, i * 0.5 + j) for i in range(12000)]


def test_a_database_of_trackio_before_0_24_names_runs_by_their_name(tmp_path: Path) -> None:
    """Before 0.24 trackio had no run_id column (its own migration adds one when it opens the
    file; the import reads the file as it is, without changing it)."""
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL,
                              run_name TEXT NOT NULL, step INTEGER NOT NULL, metrics TEXT NOT NULL);
        CREATE TABLE configs (id INTEGER PRIMARY KEY AUTOINCREMENT, run_name TEXT NOT NULL,
                              config TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE(run_name));
        INSERT INTO configs (run_name, config, created_at)
            VALUES ('r1', '{"lr": 0.1, "_Created": "2025-01-02T03:04:05+00:00"}', '2025-01-02T03:04:05+00:00');
        INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES
            ('2025-01-02T03:04:06.250000+00:00', 'r1', 0, '{"loss": 1.5}'),
            ('2025-01-02T03:04:07.500000+00:00', 'r1', 1, '{"loss": "Infinity"}');
    """)
    con.commit()
    con.close()
    before = db.read_bytes()
    ids = labtrack.importers.trackio(db, root=tmp_path / "lt", experiment="legacy")
    d = next((tmp_path / "lt" / "legacy").glob("*/run.json")).parent
    assert d.name == ids[0] and ids[0].startswith("20250102-030405-")
    meta = json.loads((d / "run.json").read_text())
    assert (meta["name"], meta["imported_from"]["source_id"]) == ("r1", "r1")
    assert series(d, "loss") == [(0, 1.5, 1735787046.25), (1, float("inf"), 1735787047.5)]
    assert json.loads((d / "params.json").read_text()) == {"lr": 0.1}
    assert db.read_bytes() == before
