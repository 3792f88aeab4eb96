"""Several `labtrack serve` processes over one bucket and one database, behind nginx.

Real components, started here: moto's S3 server, a throwaway PostgreSQL cluster
(`tests/pg.py`), two `labtrack serve --root s3://... --index postgresql://...` processes
and Debian's nginx balancing over them (`tests/cluster.py`, `tests/nginx.py`). Training
scripts are child processes logging through nginx while the servers are SIGKILLed and
restarted one at a time; the bucket must end byte-identical to each client's run directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from cluster import Cluster, child_env
from nginx import have_nginx
from pg import pg_db, postgres  # noqa: F401 - fixtures

pytest.importorskip("psycopg")
pytest.importorskip("s3fs")
pytest.importorskip("moto")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not have_nginx(), reason="nginx is not installed (make test)")]

HEADERS = {"X-Labtrack-Client": "test", "Content-Type": "application/octet-stream"}

CLIENT = r'''
import sys, time
import labtrack

root, url, n, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
run = labtrack.init(experiment="scale", root=root, remote=url, config={"client": tag},
                    capture_git=False, capture_console=False, flush_seconds=0.1)
print("RUNDIR", run.dir, flush=True)
for step in range(n):
    run.log({"loss": 1.0 / (step + 1), "acc": step / n, "lr": 0.1}, step=step)
    if step % 50 == 0:
        print("step", step, flush=True)
    time.sleep(0.01)
run.finish()
print("DONE", flush=True)
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[Cluster]:  # noqa: F811
    folder = tmp_path_factory.mktemp("scaleout")
    c = Cluster(folder, postgres.create_db(), n=2)
    try:
        c.start()
    except BaseException:
        out = c.output()
        c.stop()
        raise AssertionError(f"the cluster did not start:\n{out}") from None
    yield c
    c.stop()


def object_run(c: Cluster, experiment: str, run_id: str) -> Any:
    from labtrack._objstore.run import ObjectRun
    from labtrack._objstore.store import ObjectStore

    return ObjectRun(ObjectStore(c.root, fs=c.moto.fs()), experiment, run_id)


def bucket_files(c: Cluster, experiment: str, run_id: str) -> dict[str, bytes]:
    """Every file of a run as the bucket's manifest has it (segments joined)."""
    orun = object_run(c, experiment, run_id)
    out = {}
    for rel, f in orun.state().files.items():
        if f.append:
            out[rel] = b"".join(orun.read_range(rel, p, p[0], p[0] + p[1]) for p in f.pieces())
        else:
            out[rel] = orun.fs.cat_file(orun.path(rel))
    return out


def hello(url: str) -> None:
    r = httpx.post(url + "/api/v1/ingest/hello", json={"client": "test", "version": "0", "api": 1},
                   headers={"X-Labtrack-Client": "test"})
    assert r.status_code == 200, r.text


def batch(url: str, run: str, ops: list[tuple[dict[str, Any], bytes]]) -> list[dict[str, Any]]:
    head = json.dumps({"ops": [dict(o, length=len(d)) for o, d in ops]}).encode() + b"\n"
    r = httpx.post(f"{url}/api/v1/ingest/{run}/batch", content=head + b"".join(d for _o, d in ops),
                   headers=HEADERS, timeout=30)
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


def run_json(run_id: str, status: str = "running") -> bytes:
    return json.dumps({"format_version": 1, "id": run_id, "experiment": "direct", "name": run_id,
                       "status": status, "started": "2026-12-04T13:00:00Z", "pid": 1,
                       "host": "test"}).encode()


def wait_for(cond: Any, what: str, c: Cluster, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{c.output()}")
        time.sleep(0.1)


def test_a_retry_on_the_other_server_is_accepted_once_and_a_wrong_offset_gets_409(
        cluster: Cluster) -> None:
    a, b = cluster.servers[0].url, cluster.servers[1].url
    run = "direct/20261204-130000-retry1"
    lines = b"step,value,time\n0,1.0,1.5\n"
    hello(a)
    first = batch(a, run, [({"op": "put", "path": "run.json", "mtime_ns": 10**18}, run_json("20261204-130000-retry1")),
                           ({"op": "append", "path": "scalars/loss.csv", "offset": 0}, lines)])
    assert [r["status"] for r in first] == [200, 200]
    assert first[1]["size"] == len(lines)
    # The same append again (a retry whose answer was lost), sent to the other process:
    # the ledger already holds it, so it answers 409 with the committed size.
    again = batch(b, run, [({"op": "append", "path": "scalars/loss.csv", "offset": 0}, lines)])
    assert again == [{"path": "scalars/loss.csv", "size": len(lines), "status": 409}]
    # The single-op route agrees, and a wrong offset is 409 with the size too.
    r = httpx.put(f"{b}/api/v1/ingest/{run}/append", params={"path": "scalars/loss.csv", "offset": 3},
                  content=b"1,2.0,2.5\n", headers=HEADERS)
    assert (r.status_code, r.json()) == (409, {"size": len(lines)})
    # B's sizes come from the shared state, whatever its mirror has seen.
    sizes = httpx.get(f"{b}/api/v1/ingest/{run}/sizes", headers=HEADERS).json()["files"]
    assert sizes["scalars/loss.csv"]["size"] == len(lines)
    more = b"1,0.5,2.5\n"
    r = httpx.put(f"{b}/api/v1/ingest/{run}/append", params={"path": "scalars/loss.csv",
                                                          "offset": len(lines)},
                  content=more, headers=HEADERS)
    assert (r.status_code, r.json()) == (200, {"size": len(lines) + len(more)})
    files = bucket_files(cluster, "direct", "20261204-130000-retry1")
    assert files["scalars/loss.csv"] == lines + more  # once each, in order
    assert files["run.json"] == run_json("20261204-130000-retry1")
    # Both mirrors end with the same bytes (A learns B's append through NOTIFY).
    for s in cluster.servers:
        path = s.mirror / run / "scalars/loss.csv"
        wait_for(lambda: path.exists() and path.read_bytes() == lines + more,
                 f"the append in {s.name}'s mirror", cluster)


def test_bad_paths_are_refused_before_anything_is_stored(cluster: Cluster) -> None:
    a = cluster.servers[0].url
    run = "direct/20261204-130000-bad001"
    for path in ("../escape.csv", "/abs.csv", ".labtrack/manifest.json", "a\x01b.csv"):
        r = httpx.put(f"{a}/api/v1/ingest/{run}/append", params={"path": path, "offset": 0},
                      content=b"x\n", headers=HEADERS)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
    assert bucket_files(cluster, "direct", "20261204-130000-bad001") == {}


def read_events(url: str, run_id: str, found: list[dict[str, Any]], stop: threading.Event) -> None:
    """A browser's side of the live stream: parse SSE `scalars` events into `found`."""
    try:
        with httpx.stream("GET", f"{url}/api/v1/stream", params={"runs": run_id}, timeout=30) as r:
            kind = None
            for line in r.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "scalars":
                    found.append(json.loads(line[6:]))
    except httpx.HTTPError:
        return  # the server stopped at the end of the tests


def test_a_stream_on_one_server_receives_a_point_logged_through_the_other(cluster: Cluster) -> None:
    a, b = cluster.servers[0], cluster.servers[1]
    rid = "20261204-130000-stream"
    run = f"direct/{rid}"
    header = b"step,value,time\n"
    batch(a.url, run, [({"op": "put", "path": "run.json", "mtime_ns": 10**18}, run_json(rid)),
                       ({"op": "append", "path": "scalars/loss.csv", "offset": 0}, header)])
    # B learns of the run through NOTIFY and the bucket (nothing was sent to it).
    wait_for(lambda: (b.mirror / run / "scalars/loss.csv").exists(), "the run in B's mirror", cluster)
    found: list[dict[str, Any]] = []
    stop = threading.Event()
    reader = threading.Thread(target=read_events, args=(b.url, rid, found, stop), daemon=True)
    reader.start()
    time.sleep(1.0)  # the stream starts at the files' current ends
    batch(a.url, run, [({"op": "append", "path": "scalars/loss.csv", "offset": len(header)},
                        b"7,0.25,3.5\n")])
    wait_for(lambda: bool(found), "a scalars event on B's stream", cluster, timeout=15)
    stop.set()
    reader.join(20)
    assert found[0]["run"] == rid and found[0]["step"] == [7] and found[0]["value"] == [0.25]


def run_ids(url: str) -> list[str]:
    r = httpx.get(url + "/api/v1/runs", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return sorted(x["id"] for x in r.json()["runs"])


def test_clients_log_through_server_kills_and_the_bucket_ends_byte_identical(
        cluster: Cluster, tmp_path: Path) -> None:
    from labtrack._remote.upload import scan_files

    script = tmp_path / "train.py"
    script.write_text(CLIENT)
    env = child_env({"LABTRACK_SYNC_TIMEOUT": "60"})
    clients = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"client{i}"),
                                 cluster.url, "300", str(i)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=tmp_path) for i in range(3)]
    try:
        time.sleep(1.5)
        for s in cluster.servers:  # one at a time: the other keeps serving through nginx
            s.kill()
            time.sleep(1.0)
            s.start()
            time.sleep(0.5)
        outs = [p.communicate(timeout=90) for p in clients]
    finally:
        for p in clients:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(clients, outs):
        assert p.returncode == 0 and "DONE" in out, f"{out}\n{err}\n{cluster.output()}"
        assert "not yet fully on the server" not in err, f"{err}\n{cluster.output()}"
    # Both processes took ingest requests (nginx spread them), through the kills.
    log = cluster.nginx.access_log()
    for s in cluster.servers:
        assert f"127.0.0.1:{s.port} 200" in log, log[-3000:]
    ids = []
    for out, _err in outs:
        run_dir = Path(next(line[7:] for line in out.splitlines() if line.startswith("RUNDIR ")))
        ids.append(run_dir.name)
        local = scan_files(run_dir)
        remote = bucket_files(cluster, run_dir.parent.name, run_dir.name)
        assert sorted(remote) == sorted(local), cluster.output()
        for rel in local:
            assert remote[rel] == (run_dir / rel).read_bytes(), rel
        assert remote["scalars/loss.csv"].count(b"\n") == 301  # header + 300 points, none twice
        # Every server's mirror catches up with the bucket too.
        for s in cluster.servers:
            m = s.mirror / run_dir.parent.name / run_dir.name
            wait_for(lambda: (m / "scalars/loss.csv").exists()
                     and (m / "scalars/loss.csv").read_bytes() == remote["scalars/loss.csv"],
                     f"{run_dir.name} in {s.name}'s mirror", cluster)
    # The runs listed through either server (and nginx) agree.
    for url in [s.url for s in cluster.servers] + [cluster.url]:
        wait_for(lambda: set(ids) <= set(run_ids(url)), f"the runs listed by {url}", cluster)
    assert run_ids(cluster.servers[0].url) == run_ids(cluster.servers[1].url)


def test_a_batch_is_one_object_and_the_next_one_on_the_other_server_lands_after_it(
        cluster: Cluster) -> None:
    a, b = cluster.servers[0].url, cluster.servers[1].url
    rid = "20261204-130000-packed"
    run = f"direct/{rid}"
    hello(a)
    batch(a, run, [({"op": "put", "path": "run.json", "mtime_ns": 10**18}, run_json(rid))])
    assert cluster.moto is not None
    fs = cluster.moto.fs()
    orun = object_run(cluster, "direct", rid)
    before = set(fs.find(orun.path("")))
    files = [f"scalars/m{i:02d}.csv" for i in range(20)]
    one, two = b"step,value,time\n0,1.0,1.5\n", b"1,2.0,2.5\n"
    first = batch(a, run, [({"op": "append", "path": f, "offset": 0}, one) for f in files])
    assert {r["status"] for r in first} == {200}
    new = set(fs.find(orun.path(""))) - before
    # Twenty files' appends and their manifest delta: one object, one PUT.
    assert len(new) == 1 and next(iter(new)).endswith(".pack"), new
    # The next batch reaches the other process at once, before (or after) the notification
    # of the first: its mirror holds the bytes until what comes before them is there.
    second = batch(b, run, [({"op": "append", "path": f, "offset": len(one)}, two) for f in files])
    assert {r["status"] for r in second} == {200}

    def mirrored() -> bool:
        try:
            return all((s.mirror / "direct" / rid / f).read_bytes() == one + two
                       for s in cluster.servers for f in files)
        except FileNotFoundError:
            return False

    wait_for(mirrored, "both mirrors to hold both batches, in order", cluster, timeout=20)
    assert bucket_files(cluster, "direct", rid)["scalars/m07.csv"] == one + two


def test_a_dashboard_edit_on_one_server_reaches_the_bucket_and_the_other(cluster: Cluster) -> None:
    a, b = cluster.servers[0], cluster.servers[1]
    rid = "20261204-130000-edited"
    run = f"direct/{rid}"
    batch(a.url, run, [({"op": "put", "path": "run.json", "mtime_ns": 10**18}, run_json(rid, "finished"))])
    wait_for(lambda: (b.mirror / run / "run.json").exists(), "the run in B's mirror", cluster)
    wait_for(lambda: rid in run_ids(a.url), "the run in A's index", cluster)
    r = httpx.patch(f"{a.url}/api/v1/runs/{rid}/meta", json={"comment": "stride fix", "notes": "# Why\n"},
                    headers={"X-Labtrack-Client": "test"}, timeout=30)
    assert r.status_code == 200, r.text
    files = bucket_files(cluster, "direct", rid)
    assert json.loads(files["run.json"])["comment"] == "stride fix" and files["notes.md"] == b"# Why\n"
    wait_for(lambda: (b.mirror / run / "notes.md").exists()
             and json.loads((b.mirror / run / "run.json").read_bytes()).get("comment") == "stride fix",
             "the edit in B's mirror", cluster)
    # Clearing the notes removes them everywhere.
    r = httpx.patch(f"{b.url}/api/v1/runs/{rid}/meta", json={"notes": ""},
                    headers={"X-Labtrack-Client": "test"}, timeout=30)
    assert r.status_code == 200, r.text
    assert "notes.md" not in bucket_files(cluster, "direct", rid)
    wait_for(lambda: not (a.mirror / run / "notes.md").exists(), "the notes gone from A's mirror", cluster)


def test_an_emptied_ledger_is_refilled_from_the_bucket(cluster: Cluster) -> None:
    import psycopg

    a, b = cluster.servers[0].url, cluster.servers[1].url
    rid = "20261204-130000-ledger"
    run = f"direct/{rid}"
    lines = b"step,value,time\n0,1.0,1.5\n"
    batch(a, run, [({"op": "put", "path": "run.json", "mtime_ns": 10**18}, run_json(rid)),
                   ({"op": "append", "path": "scalars/loss.csv", "offset": 0}, lines)])

    def forget() -> None:  # the database lost the run's rows (restored from an old dump, say)
        with psycopg.connect(cluster.index, autocommit=True) as conn:
            conn.execute("DELETE FROM ingest_ledger WHERE run = %s", (run,))

    forget()
    # A resuming client asks for the sizes: they come from the bucket's manifest, not 0.
    sizes = httpx.get(f"{b}/api/v1/ingest/{run}/sizes", headers=HEADERS).json()["files"]
    assert sizes["scalars/loss.csv"]["size"] == len(lines)
    forget()
    # An append at the size the client knows is accepted (the ledger takes the bucket's
    # word), a stale one is 409 with that size; the bucket holds every byte once.
    more = b"1,0.5,2.5\n"
    r = batch(a, run, [({"op": "append", "path": "scalars/loss.csv", "offset": len(lines)}, more)])
    assert r == [{"path": "scalars/loss.csv", "size": len(lines) + len(more), "status": 200}]
    forget()
    r = batch(b, run, [({"op": "append", "path": "scalars/loss.csv", "offset": 3}, b"x,y,z\n")])
    assert r == [{"path": "scalars/loss.csv", "size": len(lines) + len(more), "status": 409}]
    assert bucket_files(cluster, "direct", rid)["scalars/loss.csv"] == lines + more
