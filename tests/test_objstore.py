"""Object storage (labtrack._objstore): keys, manifests, ObjectRun, the Mirror, against a real
moto S3 server in a child process (tests/s3.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from labtrack._objstore import manifest as mf
from labtrack._objstore.mirror import Mirror
from labtrack._objstore.run import ObjectRun
from labtrack._objstore.store import ObjectStore, check_run_relpath, parse_url
from labtrack.errors import LabtrackNameError, LabtrackValueError, MissingDependencyError
from s3 import MotoS3, s3  # noqa: F401  (s3 is a fixture)


@pytest.mark.parametrize("url", ["s3://", "s3:///x", "s3://b/../x", "s3://b/a//c", "s4://b/x",
                                 "s3://b/x?y=1", "s3://b/a\x01"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(LabtrackValueError):
        parse_url(url)


def test_url_parts() -> None:
    u = parse_url("s3://lab-runs/team/a/")
    assert (u.scheme, u.bucket, u.prefix, u.base) == ("s3", "lab-runs", "team/a", "lab-runs/team/a")


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../b", "a\x00b", "a\\b", "",
                                 ".labtrack/manifest.json", "scalars/.loss.csv.abc.tmp"])
def test_run_relpaths_from_outside_are_checked(rel: str) -> None:
    with pytest.raises(LabtrackNameError):
        check_run_relpath(rel)


def test_a_hostile_delta_is_skipped_entry_by_entry() -> None:
    state = mf.RunState()
    mf.apply_delta(state, mf.delta_name(1, "w"), {
        "format": 1,
        "segments": {"../../escape.csv": [[0, 5]], "scalars/ok.csv": [[0, 4], [-1, 3], ["x", 1]],
                     "/abs.csv": [[0, 1]]},
        "files": {"run.json": [2, 7], "a/../../b": [1, 1], "params.json": ["big", 0]},
        "deleted": ["../x"],
    })
    assert sorted(state.files) == ["run.json", "scalars/ok.csv"]
    assert state.files["scalars/ok.csv"].segments == {0: 4}
    assert len(state.problems) == 7, state.problems


def test_missing_s3fs_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    def no_backend(*a: object, **k: object) -> None:
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec, "filesystem", no_backend)
    with pytest.raises(MissingDependencyError, match=r"pip install labtrack\[s3\]"):
        ObjectStore("s3://bucket/x")


def test_segments_deltas_and_compaction(s3: MotoS3) -> None:
    store = ObjectStore(s3.url())
    run = ObjectRun(store, "mnist", "20261121-141503-k3f9qz", writer="w1")
    rel = "scalars/loss.csv"
    chunks = [b"step,value,time\n", b"0,1.0,5\n1,0.5,6\n", b"2,0.25,7\n"]
    off = 0
    for c in chunks:
        run.put_segment(rel, off, c)
        run.write_manifest_delta({rel: [(off, len(c))]})
        off += len(c)
    run.put_whole("run.json", b'{"id": 1}')
    run.write_manifest_delta(files={"run.json": (9, 123)})
    run.put_segment(rel, off, b"never published\n")  # a writer that died before its delta
    st = run.state()
    assert st.files[rel].end == off and st.sizes()["run.json"] == (9, 123)
    report = run.compact()
    assert report.files == 1 and report.bytes_uploaded == off
    fs = s3.fs()
    base = f"{s3.bucket}/runs/mnist/20261121-141503-k3f9qz"
    assert fs.cat_file(f"{base}/{rel}") == b"".join(chunks)
    assert not fs.ls(f"{base}/.labtrack/manifest") if fs.exists(f"{base}/.labtrack/manifest") else True
    published = [p for p in fs.find(base) if "/segments/" in p]
    assert published == [f"{base}/.labtrack/segments/{rel}/{off:020d}"]  # only the unpublished one
    st2 = run.state()
    assert st2.files[rel].end == off and not st2.files[rel].segments
    # Appending after compaction (a resumed run): the plain object is the base.
    run.put_segment(rel, off, b"3,0.1,8\n")
    run.write_manifest_delta({rel: [(off, 8)]})
    assert run.state().files[rel].end == off + 8
    run.compact()
    assert fs.cat_file(f"{base}/{rel}") == b"".join(chunks) + b"3,0.1,8\n"


def test_a_single_segment_is_compacted_by_a_server_side_copy(s3: MotoS3) -> None:
    run = ObjectRun(ObjectStore(s3.url()), "e", "r1")
    run.put_segment("console.log", 0, b"hello\n")
    run.write_manifest_delta({"console.log": [(0, 6)]})
    report = run.compact()
    assert (report.bytes_uploaded, report.bytes_copied) == (0, 6)
    assert s3.fs().cat_file(f"{s3.bucket}/runs/e/r1/console.log") == b"hello\n"


def test_compressed_segments_read_back_and_compact_to_plain_objects(s3: MotoS3, tmp_path: Path) -> None:
    run = ObjectRun(ObjectStore(s3.url()), "e", "r1")
    rel = "scalars/loss.csv"
    rows = [b"".join(b"%d,%r,1796531634.060\n" % (i, 1.0 / (i + 1)) for i in range(k, k + 200))
            for k in range(0, 1000, 200)]
    tiny = b"1000,0.5,7\n"  # below GZ_MIN: stored as it is
    off, sent = 0, 0
    for c in rows + [tiny]:
        [(o, n, gz)] = run.put_segments([(rel, off, c)], compress=True)
        # the first segment stays plain (compaction copies a lone one server-side)
        assert (o, n, gz) == (off, len(c), c is not tiny and off > 0)
        run.write_manifest_delta({rel: [(o, n, gz)]})
        off += len(c)
    sent = run.bytes_put
    whole = b"".join(rows) + tiny
    fs = s3.fs()
    base = f"{s3.bucket}/runs/e/r1/.labtrack/segments/{rel}"
    keys = sorted(p.rsplit("/", 1)[-1] for p in fs.find(base))
    assert [k for k in keys if not k.endswith(".gz")] == [f"{0:020d}", f"{off - len(tiny):020d}"], keys
    assert len(keys) == 6, keys
    assert sent < 0.6 * len(whole)  # gzip: about a third of a CSV
    st = run.state()
    assert st.files[rel].end == off and len(st.files[rel].gz) == 4
    # A reader (the mirror) inflates them; a new ObjectRun reads the state from the bucket.
    Mirror(s3.url(), tmp_path / "m").sync()
    assert (tmp_path / "m/e/r1" / rel).read_bytes() == whole
    # Compaction writes the plain object (never a copy of gzip bytes) and deletes every segment.
    report = ObjectRun(ObjectStore(s3.url()), "e", "r1").compact()
    assert report.bytes_copied == 0 and report.bytes_uploaded == len(whole)
    assert fs.cat_file(f"{s3.bucket}/runs/e/r1/{rel}") == whole
    assert not fs.exists(base) or not fs.find(base)


def test_gzip_compaction_writes_one_gz_object_readers_inflate(s3: MotoS3, tmp_path: Path) -> None:
    import gzip

    run = ObjectRun(ObjectStore(s3.url()), "e", "r1")
    rel = "scalars/loss.csv"
    rows = [b"".join(b"%d,%r,1796531634.060\n" % (i, 1.0 / (i + 1)) for i in range(k, k + 300))
            for k in range(0, 1500, 300)]
    run.put_whole("run.json", b'{"status": "finished"}')
    run.write_manifest_delta(files={"run.json": (22, 1)})
    off = 0
    for c in rows:
        run.write_manifest_delta({rel: run.put_segments([(rel, off, c)], compress=True)})
        off += len(c)
    whole = b"".join(rows)
    report = run.compact(gzip=True)
    fs = s3.fs()
    base = f"{s3.bucket}/runs/e/r1"
    assert gzip.decompress(fs.cat_file(f"{base}/{rel}.gz")) == whole  # gunzip reads it
    assert report.bytes_uploaded < 0.5 * len(whole) and not fs.exists(f"{base}/{rel}")
    st = ObjectRun(ObjectStore(s3.url()), "e", "r1").state()
    assert st.files[rel].gzbase and st.files[rel].end == len(whole) and rel + ".gz" not in st.files
    Mirror(s3.url(), tmp_path / "m").sync()
    assert (tmp_path / "m/e/r1" / rel).read_bytes() == whole
    # A resumed run appends; compacting plain now replaces the .gz object with the plain one.
    more = b"1500,0.1,1796531635.000\n"
    run2 = ObjectRun(ObjectStore(s3.url()), "e", "r1")
    run2.write_manifest_delta({rel: run2.put_segments([(rel, off, more)], compress=True)})
    Mirror(s3.url(), tmp_path / "m").sync()
    assert (tmp_path / "m/e/r1" / rel).read_bytes() == whole + more
    run2.compact(gzip=False)
    assert fs.cat_file(f"{base}/{rel}") == whole + more and not fs.exists(f"{base}/{rel}.gz")
    fresh = tmp_path / "m2"
    Mirror(s3.url(), fresh).sync()
    assert (fresh / "e/r1" / rel).read_bytes() == whole + more


def test_a_corrupt_compressed_segment_is_refused_not_used(s3: MotoS3, tmp_path: Path) -> None:
    run = ObjectRun(ObjectStore(s3.url()), "e", "r1")
    run.put_whole("run.json", b'{"status": "running"}')
    good = b"step,value,time\n"
    run.put_segment("console.log", 0, good)
    run.write_manifest_delta({"console.log": [(0, len(good))]}, {"run.json": (21, 1)})
    s3.fs().pipe_file(run.path(mf.segment_key("console.log", len(good), True)), b"not gzip at all")
    run.write_manifest_delta({"console.log": [(len(good), 500, True)]})
    stats = Mirror(s3.url(), tmp_path / "m").sync()
    assert any("is not a gzip object" in r for r in stats.refused), stats.refused
    assert (tmp_path / "m/e/r1/console.log").read_bytes() == good  # what is sound, nothing made up


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".labtrack" not in p.relative_to(root).parts}


def test_mirror_fetches_only_what_is_new(s3: MotoS3, tmp_path: Path) -> None:
    run = ObjectRun(ObjectStore(s3.url()), "e", "r1")
    run.put_whole("run.json", b'{"status": "running"}')
    run.put_segment("console.log", 0, b"a" * 1000)
    run.write_manifest_delta({"console.log": [(0, 1000)]}, {"run.json": (21, 1)})
    mirror = Mirror(s3.url(), tmp_path / "m")
    first = mirror.sync()
    assert first.runs == 1 and first.bytes_fetched >= 1021
    assert (tmp_path / "m/e/r1/console.log").read_bytes() == b"a" * 1000
    again = mirror.sync()
    assert (again.objects_fetched, again.bytes_fetched, again.runs_changed) == (0, 0, 0)
    run.put_segment("console.log", 1000, b"b" * 50)
    delta = run.write_manifest_delta({"console.log": [(1000, 50)]})
    third = Mirror(s3.url(), tmp_path / "m").sync()  # a new Mirror: its state is on disk
    delta_bytes = len(s3.fs().cat_file(run.path(f"{mf.DELTAS}/{delta}")))
    assert third.bytes_fetched == 50 + delta_bytes, third
    assert (tmp_path / "m/e/r1/console.log").read_bytes() == b"a" * 1000 + b"b" * 50
    run.compact()  # now the segments are gone: the mirror reads the plain object
    (tmp_path / "m/e/r1/console.log").write_bytes(b"a" * 10)
    Mirror(s3.url(), tmp_path / "m").sync()
    assert (tmp_path / "m/e/r1/console.log").read_bytes() == b"a" * 1000 + b"b" * 50


def test_mirror_refuses_a_hostile_manifest(s3: MotoS3, tmp_path: Path) -> None:
    fs = s3.fs()
    base = f"{s3.bucket}/runs/e/r1"
    fs.pipe_file(f"{base}/run.json", b"{}")
    fs.pipe_file(f"{base}/.labtrack/segments/scalars/ok.csv/{0:020d}", b"ok\n")
    for name in ("escape.csv", "passwd"):
        fs.pipe_file(f"{s3.bucket}/runs/{name}", b"evil\n")
    hostile = {
        "format": 1,
        "segments": {"../../escape.csv": [[0, 5, "../../escape.csv"]],
                     "scalars/ok.csv": [[0, 3, "../../../passwd"]]},
        "files": {"run.json": [2, 0], "/etc/passwd": [5, 0], "../../../passwd": [5, 0],
                  "media/../../../../x": [5, 0], "a\x1b[31m": [5, 0]},
        "deleted": [],
    }
    fs.pipe_file(f"{base}/.labtrack/manifest/{mf.delta_name(1, 'evil')}", json.dumps(hostile).encode())
    fs.pipe_file(f"{base}/.labtrack/manifest.json", b'{"format": 1, "files": {"../up": {"size": 1}}}')
    cache = tmp_path / "deep" / "cache"
    stats = Mirror(s3.url(), cache).sync()
    assert len(stats.refused) >= 5, stats.refused
    # Only the good entries landed, inside the cache; the key named in the delta was ignored.
    assert _tree(cache) == {"e/r1/run.json": b"{}", "e/r1/scalars/ok.csv": b"ok\n"}
    outside = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert all(p.startswith("deep/cache/") for p in outside), outside
    assert not any(n in ("escape.csv", "passwd", "x") for n in os.listdir(tmp_path))


def test_a_long_run_folds_its_deltas_into_the_manifest(s3: MotoS3, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    from labtrack._objstore import client as client_mod
    from labtrack._remote.wire import Op

    monkeypatch.setattr(client_mod, "FOLD_EVERY", 5)
    c = client_mod.ObjectClient(ObjectStore(s3.url()))
    c.sizes("e", "r1")
    data = b""
    for i in range(12):
        line = f"{i},{i * 0.5},{i}\n".encode()
        ops = [Op("append", "scalars/x.csv", line, offset=len(data)), Op("put", "run.json", b'{"i": %d}' % i, mtime_ns=i + 1)]
        assert [r.status for r in c.batch("e", "r1", ops)] == [200, 200]
        data += line
    run = c.run("e", "r1")
    assert len(run.delta_names()) == 2  # 12 batches: folded after the 5th and the 10th
    fresh = ObjectRun(ObjectStore(s3.url()), "e", "r1")  # a reader or a resuming writer
    st = fresh.state()
    assert st.files["scalars/x.csv"].end == len(data) and st.sizes()["run.json"] == (9, 12)
    Mirror(s3.url(), tmp_path / "m").sync()
    assert (tmp_path / "m/e/r1/scalars/x.csv").read_bytes() == data
    assert (tmp_path / "m/e/r1/run.json").read_bytes() == b'{"i": 11}'


def test_multipart_plan_keeps_every_part_but_the_last_at_5_mib() -> None:
    from labtrack._objstore.run import _plan_parts

    M = 1 << 20
    for pieces in ([(0, M, None), (M, 10 * M, "s"), (11 * M, M, "s")],
                   [(0, M, "s"), (M, 6 * M, "s"), (7 * M, M, "s")],
                   [(0, 6 * M, None), (6 * M, M, "s"), (7 * M, 6 * M, "s")],
                   [(0, M, "s"), (M, 5 * M, "s")]):
        parts = _plan_parts(pieces, 5 * M)
        assert parts[0][2] == 0 and all(a[3] == b[2] for a, b in zip(parts, parts[1:]))
        assert parts[-1][3] == pieces[-1][0] + pieces[-1][1]
        assert all(p[3] - p[2] >= 5 * M for p in parts[:-1]), parts
        for kind, i, a, b in parts:
            if kind == "copy":
                assert pieces[i][0] <= a < b <= pieces[i][0] + pieces[i][1]
    assert [p[0] for p in _plan_parts([(0, M, None), (M, 10 * M, "s"), (11 * M, M, "s")], 5 * M)] == \
        ["send", "copy", "send"]


def test_big_segments_are_compacted_by_server_side_copy(s3: MotoS3, tmp_path: Path) -> None:
    run = ObjectRun(ObjectStore(s3.url()), "e", "r1")
    chunks = [b"a" * 1000 + b"\n", os.urandom(11 << 20) + b"\n", b"tail\n"]
    off = 0
    for c in chunks:
        run.put_segment("console.log", off, c)
        run.write_manifest_delta({"console.log": [(off, len(c))]})
        off += len(c)
    report = run.compact()  # no spool: the sent bytes are read back from the segments
    assert report.bytes_copied > (1 << 20) and report.bytes_uploaded == off - report.bytes_copied
    assert report.bytes_uploaded <= (5 << 20) + 10
    assert s3.fs().cat_file(f"{s3.bucket}/runs/e/r1/console.log") == b"".join(chunks)


def _read(run: ObjectRun, rel: str) -> bytes:
    f = run.state().files[rel]
    return b"".join(run.read_range(rel, p, p[0], p[0] + p[1]) for p in f.pieces())


def test_a_packed_delta_holds_a_batch_and_a_longer_killed_attempt_is_cut(s3: MotoS3, tmp_path: Path) -> None:
    fs = s3.fs()
    run = ObjectRun(ObjectStore(s3.url()), "e", "packed", writer="srv-a")
    a, b = "scalars/a.csv", "scalars/b.csv"
    full_a = b"step,value,time\n0,1,5\n1,2,6\n2,3,7\n3,4,8\n"
    full_b = b"step,value,time\n0,9,5\n"
    # One batch, two files, one whole file: the whole file is its own object, the appends
    # and the delta one packed delta.
    run.put_whole("run.json", b"{}")
    name, body, where = run.pack([(a, 0, full_a[:22]), (b, 0, full_b)])
    delta = run.write_manifest_delta(None, {"run.json": (2, 7)}, packed=(name, where, body))
    assert delta == name + mf.PACKED
    listed = sorted(p.rsplit("/", 1)[-1] for p in fs.find(run.path(".labtrack")))
    assert listed == [delta]
    st = ObjectRun(ObjectStore(s3.url()), "e", "packed").state()  # a fresh reader: from the tail
    assert st.files[a].end == 22 and st.files[b].end == len(full_b) and st.sizes()["run.json"] == (2, 7)
    assert _read(run, a) == full_a[:22] and _read(run, b) == full_b
    # An attempt killed after its delta (not committed) named more bytes from offset 22
    # than the retry that was acknowledged; the next append goes on from the retry's end.
    for chunk in (full_a[22:34], full_a[22:28], full_a[28:]):
        start = full_a.index(chunk)
        n, bd, w = run.pack([(a, start, chunk)])
        run.write_manifest_delta(None, packed=(n, w, bd))
    assert _read(run, a) == full_a  # nothing doubled: the overlap is cut
    # The mirror (a notebook's reader) agrees, and compaction leaves the plain objects.
    Mirror(s3.url(), tmp_path / "m").sync()
    assert (tmp_path / "m/e/packed" / a).read_bytes() == full_a
    run.compact()
    assert fs.cat_file(run.path(a)) == full_a and fs.cat_file(run.path(b)) == full_b
    assert not [p for p in fs.find(run.path(".labtrack")) if p.endswith(mf.PACKED)]


def test_a_hostile_pack_reference_is_skipped() -> None:
    st = mf.RunState()
    mf.apply_delta(st, "00000000000000000001-w.json", {"format": 1, "segments": {
        "scalars/x.csv": [[0, 5, "../../../other/run", 0], [0, 5, "00000000000000000001-w/x", 0],
                          [0, 5, "00000000000000000001-w", -1]],
        "scalars/ok.csv": [[0, 5, "00000000000000000001-w", 3]]}})
    assert "scalars/x.csv" not in st.files or not st.files["scalars/x.csv"].segments
    assert len(st.problems) == 3
    assert st.files["scalars/ok.csv"].pieces() == [(0, 5, "pack:00000000000000000001-w", -3)]
    with pytest.raises(LabtrackNameError):
        mf.pack_key("../x")
    # A truncated or garbled packed delta reads as nothing, never as bytes elsewhere.
    assert mf.packed_head(b"garbage", True) == (None, 0)
    assert mf.packed_head(b"x" * 10 + b"%020d" % 500, False) == (None, 520)
    assert mf.packed_head(b"x" * 10 + b"%020d" % 500, True) == (None, 0)


def test_the_shared_mirror_holds_bytes_after_a_gap_until_it_is_filled(s3: MotoS3, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    from labtrack._server.shared import SharedStorage

    store = ObjectStore(s3.url())
    shared = SharedStorage(tmp_path / "mirror", store, db=None)
    rel, target = "scalars/a.csv", tmp_path / "mirror/e/r1/scalars/a.csv"
    target.parent.mkdir(parents=True)
    # Committed bytes after a gap (the batch before went to another process, whose
    # notification has not arrived): held, not written, not fetched.
    shared._mirror_append("e/r1", rel, target, 10, b"0123456789")
    assert target.read_bytes() == b"" and shared._held
    shared._mirror_append("e/r1", rel, target, 0, b"abcdefghij")  # the notification
    assert target.read_bytes() == b"abcdefghij0123456789" and not shared._held
    # A gap no notification fills: after HOLD_SECONDS the worker reads it from the bucket.
    orun = ObjectRun(store, "e", "r1")
    name, body, where = orun.pack([(rel, 0, b"abcdefghij0123456789KLMNO")])
    orun.write_manifest_delta(None, packed=(name, where, body))
    shared._mirror_append("e/r1", rel, target, 25, b"PQ")
    assert shared._fill_held(older_than=60.0) == 0 and target.stat().st_size == 20
    assert shared._fill_held(older_than=0.0) == 1
    assert target.read_bytes() == b"abcdefghij0123456789KLMNOPQ" and not shared._held
