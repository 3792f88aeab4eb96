"""Export runs to TensorBoard event files and start TensorBoard on them.

Needs the `tensorboard` package (`pip install 'labtrack[tb]'`), not TensorFlow: events are
built from tensorboard's own protocol buffers and framed with its RecordWriter (scalars, the
bulk of the data, with the same framing checksummed in bulk).

What is exported, per run, into one folder (`<logdir>/<run-id>/<name>/` from `export_runs`):

* scalars (`scalars/*.csv`) as scalar summaries (TensorBoard keeps float32),
* images, figures and animations listed in media.jsonl as image summaries (the PNG or GIF
  bytes as stored; an image logged with boxes gets its boxes at or above the threshold
  drawn in, as TensorBoard has none of its own),
* histograms (`histograms/*.jsonl`) as histogram summaries (bucket edges and counts as
  stored; the sum and sum of squares, which labtrack does not keep, are estimated from the
  bin centres),
* text records (`text/*.jsonl`) for TensorBoard's text tab.

Example::

    from labtrack.integrations import tensorboard
    exported = tensorboard.export_runs([run_a.dir, run_b.dir], Path("tb"))
    proc = tensorboard.launch(exported, port=6006)
"""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from .._store.files import append_bytes, atomic_writer
from .._store.rundir import RunDir
from ..errors import LabtrackError, LabtrackValueError

__all__ = ["Exported", "LiveExport", "export_run", "export_runs", "launch", "logdir_spec", "require_tensorboard",
           "run_label"]

_EVENT_PREFIX = "events.out.tfevents."
_IMAGE_KINDS = ("image", "figure", "animation")
_COLORSPACE = {"L": 1, "1": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "RGB": 3, "P": 3, "CMYK": 3, "YCbCr": 3, "RGBA": 4, "PA": 4}


def require_tensorboard() -> None:
    """Raise a clear error when the tensorboard package is not installed.

    Raises:
        LabtrackError: tensorboard is missing, with the command that installs it.
    """
    if importlib.util.find_spec("tensorboard") is None:
        raise LabtrackError(
            "TensorBoard is not installed; install it with: pip install 'labtrack[tb]'"
        )


def export_run(run_dir: Path | RunDir, out_dir: Path, _tail: Tail | None = None) -> dict[str, int]:
    """Write one run's scalars, images, histograms and text as a TensorBoard event file.

    Event files left in `out_dir` by an earlier export are removed first, so exporting
    again shows each point once.

    Args:
        run_dir: the run directory (every file is read through its RunDir: a file that leads
            outside the run, through a symlink, is left out).
        out_dir: the folder for the event file (created if missing).

    Returns:
        How many points were written: `{"scalars", "images", "histograms", "text"}`.

    Raises:
        LabtrackError: tensorboard is not installed.

    Example:
        >>> export_run(run.dir, Path("tb") / run.id)
        {'scalars': 200, 'images': 3, 'histograms': 10, 'text': 0}
    """
    require_tensorboard()
    from tensorboard.compat.proto import event_pb2

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tail = _tail if _tail is not None else Tail(run, out_dir)
    # Written synchronously under a name TensorBoard ignores, then renamed into place: a
    # TensorBoard watching the folder never reads half a file. (tensorboard's own
    # EventFileWriter hands every event to a thread, several times slower for long series.)
    final = out_dir / f"{_EVENT_PREFIX}{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.labtrack"
    tail.file = final
    with atomic_writer(final) as f:
        f.write(_records([event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()]))
        data, counts = tail.new_events()
        f.write(data)
        # The events written before go just before the new file takes their place (the
        # temporary file's name starts with a dot, never with the prefix).
        for old in out_dir.iterdir():
            if old.name.startswith(_EVENT_PREFIX) and old.is_file():
                old.unlink()
    return counts


class Tail:
    """What of one run is exported so far, so that a live run's new points are appended to
    its event file (TensorBoard reads a growing event file as it grows; a rewritten one it
    would read from its old offset)."""

    def __init__(self, run: RunDir, out_dir: Path) -> None:
        self.run = run
        self.out_dir = out_dir
        self.file: Path | None = None
        self.done: dict[tuple[str, str], int] = {}  # (kind, name) -> points or records exported

    def new_events(self) -> tuple[bytes, dict[str, int]]:
        """The framed events of what the run recorded since the last call (all, the first
        time), and how many of each kind."""
        import io

        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        from .._store.scalars import read_columns

        run, done = self.run, self.done
        counts = {"scalars": 0, "images": 0, "histograms": 0, "text": 0}
        out = io.BytesIO()
        records = RecordWriter(out)

        def emit(tag: str, step: int, wall: float, value: Any) -> None:
            value.tag = tag
            event = event_pb2.Event(wall_time=wall, step=step)
            event.summary.value.append(value)
            records.write(event.SerializeToString())

        # Scalars are most of the data: one event object reused per point, and the
        # records' checksums computed for the whole series at once.
        event = event_pb2.Event()
        scalar = event.summary.value.add()
        for name, rel in run.named("scalars"):
            steps, values, times = read_columns(run.path / rel)
            start = done.get(("scalars", name), 0)
            scalar.tag = name
            payloads = []
            for step, v, t in zip(steps[start:], values[start:], times[start:]):
                event.step, event.wall_time, scalar.simple_value = step, t, v
                payloads.append(event.SerializeToString())
            out.write(_records(payloads))
            done[("scalars", name)] = len(steps)
            counts["scalars"] += len(payloads)
        media = run.media()
        for entry in media[done.get(("media", ""), 0):]:
            if entry.get("kind") not in _IMAGE_KINDS or not isinstance(entry.get("path"), str):
                continue
            path = _inside(run, entry["path"])
            if path is None or not path.is_file():
                continue
            boxes_rel = entry.get("boxes")
            boxes_path = _inside(run, boxes_rel) if isinstance(boxes_rel, str) else None
            boxes = _read_json(boxes_path) if boxes_path is not None else None
            emit(str(entry["name"]), int(entry["step"]), float(entry.get("time", 0.0)), _image(path, boxes))
            counts["images"] += 1
        done[("media", "")] = len(media)
        for name, rel in run.named("histograms"):
            recs = run.read_jsonl(rel)
            for rec in recs[done.get(("histograms", name), 0):]:
                value = _histogram(rec)
                if value is not None:
                    emit(name, int(rec["step"]), float(rec.get("time", 0.0)), value)
                    counts["histograms"] += 1
            done[("histograms", name)] = len(recs)
        for name, rel in run.named("text"):
            recs = run.read_jsonl(rel)
            for rec in recs[done.get(("text", name), 0):]:
                emit(name, int(rec.get("step", 0)), float(rec.get("time", 0.0)), _text(rec))
                counts["text"] += 1
            done[("text", name)] = len(recs)
        return out.getvalue(), counts

    def append_new(self) -> int:
        """Append the events recorded since the last export; returns how many."""
        data, counts = self.new_events()
        if data and self.file is not None:
            append_bytes(self.file, data)
        return sum(counts.values())

    def live(self) -> bool:
        """True while the run is running (a crashed run is not live)."""
        return self.run.meta().get("status") == "running"


class Exported(NamedTuple):
    """One exported run: TensorBoard shows it as `label` (`group/<folder below spec_dir>`)."""

    label: str
    group: str
    spec_dir: Path
    events_dir: Path


def _clean(text: str) -> str:
    """Text safe in a `--logdir_spec` group name and as a folder name (no separators)."""
    out = "".join("-" if ch in ",:" or ord(ch) < 32 or ord(ch) == 127 else ch for ch in text)
    return out


def run_label(meta: dict[str, Any]) -> tuple[str, str]:
    """A run's name in TensorBoard as `(experiment, name)`: the run's name, or its id.

    Commas and colons, which `--logdir_spec` cannot carry, and control characters become
    `-`; `/` in the name makes TensorBoard groups, empty, `.` and `..` parts are dropped.

    Example:
        >>> run_label({"experiment": "mnist", "name": "lr: 0.1", "id": "2026..."})
        ('mnist', 'lr- 0.1')
    """
    group = _clean(str(meta.get("experiment") or "default")).lstrip("/") or "default"
    name = str(meta.get("name") or meta.get("id") or "run")
    parts = [p for p in _clean(name).split("/") if p not in ("", ".", "..")]
    return group, "/".join(parts) or str(meta.get("id") or "run")


def export_runs(run_dirs: Sequence[Path | RunDir], logdir: Path, *,
                _tails: list[Tail] | None = None) -> list[Exported]:
    """Export several runs under `logdir` and name each `experiment/name` for TensorBoard.

    The events of a run go to `<logdir>/<run-id>/<name>/`; TensorBoard is pointed at
    `<logdir>/<run-id>` under the group name `<experiment>`, so it shows the run as
    `experiment/name`. Runs with the same experiment and name get their id appended.

    Args:
        run_dirs: the run directories.
        logdir: the folder for the event files (created if missing).

    Returns:
        One :class:`Exported` per run, in order.

    Raises:
        LabtrackError: tensorboard is not installed.

    Example:
        >>> [e.label for e in export_runs([a.dir, b.dir], Path("tb"))]
        ['mnist/baseline', 'mnist/wide']
    """
    require_tensorboard()
    runs = [d if isinstance(d, RunDir) else RunDir(d) for d in run_dirs]
    metas = [r.meta() for r in runs]
    labels = [run_label(m) for m in metas]
    out: list[Exported] = []
    for d, meta, (group, name) in zip(runs, metas, labels):
        run_id = str(meta.get("id") or d.id)
        if labels.count((group, name)) > 1:
            name = f"{name}-{run_id}"
        spec_dir = Path(logdir).resolve() / run_id
        if spec_dir.is_dir():  # an earlier export, perhaps under an older name
            for old in spec_dir.rglob(_EVENT_PREFIX + "*"):
                old.unlink()
        events = spec_dir.joinpath(*name.split("/"))
        tail = Tail(d, events)
        export_run(d, events, tail)
        if _tails is not None:
            _tails.append(tail)
        out.append(Exported(f"{group}/{name}", group, spec_dir, events))
    return out


class LiveExport:
    """Export runs, then, while any of them is live, append their new points on `refresh()`
    (Lab's TensorBoard on running trials).

    Example:
        >>> live = LiveExport([run.dir], Path("tb"))
        >>> while live.live():
        ...     time.sleep(5); live.refresh()
    """

    def __init__(self, run_dirs: Sequence[Path | RunDir], logdir: Path) -> None:
        self.tails: list[Tail] = []
        self.exported = export_runs(run_dirs, logdir, _tails=self.tails)

    def live(self) -> bool:
        """True while any of the runs is running."""
        return any(t.live() for t in self.tails)

    def refresh(self) -> int:
        """Append what the live runs recorded since the last export; returns how many
        points. A run that has ended gets its last points once more, then is left alone."""
        added = 0
        for tail in list(self.tails):
            running = tail.live()
            added += tail.append_new()
            if not running:
                self.tails.remove(tail)
        return added


def logdir_spec(exported: Sequence[Exported]) -> str:
    """The `--logdir_spec` value for exported runs: `group:folder,...`.

    Raises:
        LabtrackValueError: a folder path contains a comma (the spec's separator).
    """
    parts = []
    for e in exported:
        path = str(e.spec_dir.resolve())
        if "," in path:
            raise LabtrackValueError(
                f"TensorBoard cannot take the folder {path!r}: its --logdir_spec is comma-separated; "
                "choose a --logdir without commas"
            )
        parts.append(f"{e.group}:{path}")
    return ",".join(parts)


def launch(
    exported: Sequence[Exported],
    *,
    port: int = 6006,
    host: str = "127.0.0.1",
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start TensorBoard on exported runs; the caller stops it (`terminate()`, `wait()`).

    Args:
        exported: what :func:`export_runs` returned.
        port: the port to listen on.
        host: the address to bind (default only this machine).
        log_file: a file for TensorBoard's own output (default: this process's stdout
            and stderr).

    Returns:
        The TensorBoard process.

    Raises:
        LabtrackError: tensorboard is not installed.
        LabtrackValueError: a bad or busy port, or no runs.

    Example:
        >>> proc = launch(export_runs([run.dir], Path("tb")), port=6006)
    """
    require_tensorboard()
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise LabtrackValueError(f"port {port!r} is not allowed; use a whole number from 1 to 65535")
    if not exported:
        raise LabtrackValueError("no runs to show in TensorBoard; name at least one run")
    with socket.socket() as probe:  # TensorBoard's own message for a busy port is easy to miss
        try:
            probe.bind((host, port))
        except OSError as e:
            raise LabtrackValueError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port") from None
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir_spec", logdir_spec(exported),
           "--port", str(port), "--host", host]
    if log_file is None:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    with open(log_file, "ab") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


# -- building summaries (pure) ------------------------------------------------------------


def _image(path: Path, boxes: dict[str, Any] | None = None) -> Any:
    """An image summary of the stored file; with `boxes`, drawn onto a copy of it."""
    from PIL import Image
    from tensorboard.compat.proto import summary_pb2

    data = path.read_bytes()
    with Image.open(path) as img:
        width, height = img.size
        colorspace = _COLORSPACE.get(img.mode, 3)
        if boxes is not None:
            data, colorspace = _draw_boxes(img, boxes), 3
    return summary_pb2.Summary.Value(image=summary_pb2.Summary.Image(
        height=height, width=width, colorspace=colorspace, encoded_image_string=data))


# distinct, readable on light and dark images; the class's index in "classes" picks one
_BOX_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128)]


def _crc32c_table() -> Any:
    import numpy as np

    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # CRC-32C, reflected
        table[i] = crc
    return table


def _masked_crc32c(rows: Any) -> Any:
    """The TFRecord checksum (masked CRC-32C) of each row of a uint8 matrix, vectorised."""
    import numpy as np

    table = _crc32c_table()
    crc = np.full(rows.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for j in range(rows.shape[1]):
        crc = table[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)  # wraps modulo 2**32


def _records(payloads: list[bytes]) -> bytes:
    """TFRecord framing of `payloads`, in order (length, its checksum, data, its checksum).

    Equal to tensorboard's RecordWriter, whose pure-Python checksum costs about 30 us per
    scalar point; here rows of equal length are checksummed together with numpy.
    """
    import numpy as np

    by_length: dict[int, list[int]] = {}
    for i, data in enumerate(payloads):
        by_length.setdefault(len(data), []).append(i)
    framed: list[bytes] = [b""] * len(payloads)
    for length, indices in by_length.items():
        header = struct.pack("<Q", length)
        header_crc = struct.pack("<I", int(_masked_crc32c(np.frombuffer(header, np.uint8).reshape(1, 8))[0]))
        rows = np.frombuffer(b"".join(payloads[i] for i in indices), np.uint8).reshape(len(indices), length)
        for i, crc in zip(indices, _masked_crc32c(rows).astype("<u4").tolist()):
            framed[i] = header + header_crc + payloads[i] + struct.pack("<I", crc)
    return b"".join(framed)


def _draw_boxes(img: Any, spec: dict[str, Any]) -> bytes:
    """PNG bytes of `img` with the boxes at or above the threshold drawn and labelled.

    TensorBoard has no boxes of its own, so they are burnt into the exported copy (the
    stored image stays as it was).
    """
    import io

    from PIL import ImageDraw

    canvas = img.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    classes = [str(c) for c in spec.get("classes") or []]
    threshold = spec.get("threshold")
    for box in spec.get("boxes") or []:
        prob = box.get("probability")
        if isinstance(threshold, (int, float)) and isinstance(prob, (int, float)) and prob < threshold:
            continue
        cls = box.get("className")
        # a class missing from "classes" still gets the same colour every time
        index = classes.index(cls) if cls in classes else zlib.crc32(str(cls).encode("utf-8"))
        colour = _BOX_COLOURS[index % len(_BOX_COLOURS)]
        x0, y0, x1, y1 = (float(box[k]) for k in ("xStart", "yStart", "xEnd", "yEnd"))
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=1)
        label = " ".join(p for p in (str(cls) if cls else "", f"{prob:.2f}" if isinstance(prob, (int, float)) else "") if p)
        if label:
            draw.text((x0 + 2, y0 + 1), label, fill=colour)
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def _histogram(rec: dict[str, Any]) -> Any:
    from tensorboard.compat.proto import summary_pb2

    edges = [float(e) for e in rec.get("bins", [])]
    counts = [float(c) for c in rec.get("counts", [])]
    if len(edges) != len(counts) + 1 or not counts:
        return None
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
    total = sum(counts)
    histo = summary_pb2.HistogramProto(
        min=float(rec.get("min", edges[0])),
        max=float(rec.get("max", edges[-1])),
        num=float(rec.get("count", total)),
        sum=sum(c * x for c, x in zip(counts, centres)),
        sum_squares=sum(c * x * x for c, x in zip(counts, centres)),
        bucket_limit=edges[1:],
        bucket=counts,
    )
    return summary_pb2.Summary.Value(histo=histo)


def _text(rec: dict[str, Any]) -> Any:
    from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

    text = str(rec.get("text", ""))
    if "expected" in rec:
        text += f"\n\nexpected: {rec['expected']}"
    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode("utf-8")],
                                    tensor_shape=tensor_shape_pb2.TensorShapeProto())
    return summary_pb2.Summary.Value(metadata=meta, tensor=tensor)


def _read_json(path: Path) -> dict[str, Any] | None:
    from .._store.reader import read_json

    data = read_json(path)
    return data if isinstance(data, dict) else None


def _inside(run: RunDir, rel: str) -> Path | None:
    """The resolved path of `rel` when it stays inside the run (media.jsonl is data, not
    trusted paths), else None."""
    from .._store.contain import real

    try:
        return Path(real(run.file(rel)))
    except LabtrackValueError:
        return None
