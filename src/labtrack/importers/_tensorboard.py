"""`labtrack import tensorboard LOGDIR`: every run folder of a TensorBoard logdir, any writer.

Each folder under LOGDIR that holds event files (`*tfevents*`) is one run: its path relative
to LOGDIR is the run's source id and name ("." for LOGDIR itself), and its event files are read
in name order (how TensorBoard orders them) by `_tb_events`, which needs no TensorBoard.

What maps to what (docs/migrate.md, "TensorBoard"):

* scalars, both the old `simple_value` and the tensor form of the "scalars" plugin
  (torch.utils.tensorboard, tf2, tensorboard.summary.Writer): every point with its step and
  wall time; a float32 stays exactly the float32 that was stored.
* images (Summary.Image, and the "images" plugin's tensors): labtrack images at their step;
  a GIF (tensorboardX's add_video) becomes an animation.
* text (the "text" plugin): text records; histograms (HistogramProto and the "histograms"
  plugin): histograms with the same bucket edges and counts; audio: WAV files.
* the "hparams" plugin: the session's hyperparameters become params, its end status the
  run's status. Other plugins' values (graphs, PR curves, meshes) are counted in a note.
* start time: the first event's wall time; end time: the last.
"""

from __future__ import annotations

import io
import math
import os
import struct
from pathlib import Path
from typing import Any

from . import _tb_decode, _tb_events as ev
from ._sink import Import, ImportedRun, SourceError, check_source, fingerprint, still_image

_STATUS = {1: "finished", 2: "failed", 3: "finished"}  # hparams' SUCCESS, FAILURE, RUNNING


def is_event_file(name: str) -> bool:
    """TensorBoard's own test: a file whose name contains "tfevents"."""
    return "tfevents" in name


def discover(logdir: Path) -> dict[str, list[Path]]:
    """Run folder (relative to `logdir`, "." for itself) -> its event files in name order."""
    if logdir.is_file():
        return {".": [logdir]}
    runs: dict[str, list[Path]] = {}
    for folder, dirs, names in os.walk(logdir, followlinks=False):
        dirs.sort()
        found = sorted(n for n in names if is_event_file(n) and os.path.isfile(os.path.join(folder, n)))
        if found:
            rel = os.path.relpath(folder, logdir)
            runs[Path(rel).as_posix()] = [Path(folder, n) for n in found]
    return runs


def read_into(imp: Import, logdir: str | os.PathLike[str], experiment: str | None = None) -> None:
    """Import every run folder of `logdir` through `imp` (see the module's docstring).

    Raises:
        SourceError: `logdir` does not exist, holds no event files, or a file is damaged.
    """
    base = check_source(logdir, "TensorBoard logdir")
    runs = discover(base)
    if not runs:
        raise SourceError(f"TensorBoard logdir {str(logdir)!r} holds no event files "
                          "(files named like events.out.tfevents.*)")
    top = base.resolve()
    if top.is_file():
        top = top.parent
    exp = experiment or top.name or "tensorboard"
    for rel, files in runs.items():
        _one_run(imp, rel, files, exp, top)


def _first_wall(path: Path) -> float | None:
    """The wall time of a file's first event (the run's start), read without the rest."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12:
            return None
        length = struct.unpack("<Q", head[:8])[0]
        if length > 1 << 20:
            return None
        data = f.read(length)
    if len(data) >= 9 and data[0] == 0x09:
        return float(struct.unpack_from("<d", data, 1)[0])
    return None


def _one_run(imp: Import, rel: str, files: list[Path], experiment: str, top: Path) -> None:
    fp = fingerprint(files)
    started = _first_wall(files[0])
    name = rel if rel != "." else top.name
    if started is not None and imp.is_current(rel, started, fp):
        imp.run(rel, experiment=experiment, name=name, started=started, fingerprint=fp)
        return
    d = _tb_decode.Decoded()
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as e:
            raise SourceError(f"cannot read the event file {str(f)!r}: {e.strerror or e}") from None
        _tb_decode.decode(data, str(f), d)
    for path in d.truncated:
        imp.note(f"{path} ends in a record cut off mid-write (its writer was stopped); "
                 "the complete records before it were imported")
    if d.negative_steps:
        imp.note(f"{d.negative_steps} events with a negative step in {rel!r} were skipped "
                 "(labtrack's steps are >= 0)")
    hp = _hparams(d)
    r = imp.run(rel, experiment=experiment, name=name, started=started if started is not None else d.first,
                params=hp["params"], tags=[hp["group"]] if hp.get("group") else (), fingerprint=fp,
                extra={"path": str(files[0].parent), "files": [f.name for f in files],
                       # the event files' format ("brain.Event:2"); they do not say which writer's version
                       "file_version": sorted(d.file_versions)[-1] if d.file_versions else None})
    if r is None:
        return
    for tag, (steps, values, walls) in d.columns().items():
        r.series(tag, steps, values, walls)
    skipped: dict[str, int] = {}
    for _, step, wall, value, raw in d.values:
        if value.plugin == "hparams":
            continue
        if not _media(r, step, wall, value, raw):
            key = value.plugin or value.kind
            skipped[key] = skipped.get(key, 0) + 1
    if skipped:
        what = ", ".join(f"{n} of {k!r}" for k, n in sorted(skipped.items()))
        imp.note(f"values labtrack has no place for were skipped ({what})")
    ends = [t for t in (d.last, hp.get("ended")) if t]
    r.done(status=hp.get("status", "finished"), ended=max(ends) if ends else None)


def _media(r: ImportedRun, step: int, wall: float, value: Any, raw: bytes) -> bool:
    """Log one non-scalar value; False for a kind labtrack has no place for."""
    tag, span = value.tag, value.span
    run = r.run
    if value.kind == "image":
        _image(r, tag, ev.image(raw, span), step, wall)
        return True
    if value.kind == "histo":
        h = ev.histogram(raw, span)
        hist = _histogram(h["bucket_limit"], h["bucket"], h["min"], h["max"])
        if hist is not None:
            run.log({tag: hist}, step=step, time=wall)
        return True
    if value.kind == "audio":
        wav, _, _ = ev.audio(raw, span)
        _audio(r, tag, wav, step, wall)
        return True
    if value.kind != "tensor":
        return False
    t = ev.tensor(raw, span)
    if value.plugin == "text":
        run.log_text(tag, _text(t), step, time=wall)
        return True
    if value.plugin == "images":  # [width, height, image, image...]
        pics = t.strings[2:]
        for i, png in enumerate(pics):
            _image(r, tag if len(pics) == 1 else f"{tag}/{i}", png, step, wall)
        return True
    if value.plugin == "histograms":  # k x 3: left edge, right edge, count
        nums = ev.tensor_numbers(t)
        rows = [nums[i:i + 3] for i in range(0, len(nums) - 2, 3)]
        if rows:
            edges = [rows[0][0]] + [row[1] for row in rows]
            hist = _histogram(edges[1:], [row[2] for row in rows], edges[0], edges[-1])
            if hist is not None:
                run.log({tag: hist}, step=step, time=wall)
        return True
    if value.plugin == "audio":  # k x 2: encoded audio, label
        clips = t.strings[0::2] if len(t.shape) == 2 and t.shape[-1] == 2 else t.strings
        for i, wav in enumerate(clips):
            _audio(r, tag if len(clips) == 1 else f"{tag}/{i}", wav, step, wall)
        return True
    return False


def _text(t: ev.Tensor) -> str:
    """The text plugin's tensor as one text: a string, lines of a vector, a markdown table."""
    cells = [s.decode("utf-8", "replace") for s in t.strings]
    if len(t.shape) == 2 and t.shape[1] > 0 and len(cells) == t.shape[0] * t.shape[1]:
        w = t.shape[1]
        rows = ["| " + " | ".join(cells[i:i + w]) + " |" for i in range(0, len(cells), w)]
        return "\n".join(rows[:1] + ["|" + " --- |" * w] + rows[1:])
    return "\n".join(cells)


def _image(r: ImportedRun, tag: str, data: bytes, step: int, wall: float) -> None:
    import labtrack
    from PIL import Image as PILImage, ImageSequence, UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as im:
            if getattr(im, "n_frames", 1) > 1:  # tensorboardX's add_video writes a GIF
                frames = [f.convert("RGB").copy() for f in ImageSequence.Iterator(im)]
                ms = im.info.get("duration") or 250
                r.run.log_image(tag, frames, step=step, fps=min(100.0, 1000.0 / max(ms, 10)))
                return
    except (UnidentifiedImageError, OSError):
        pass  # still_image says what is wrong with it
    pic = still_image(data, f"the image {tag!r} at step {step}")
    r.run.log({tag: labtrack.Image(pic)}, step=step, time=wall)


def _audio(r: ImportedRun, tag: str, wav: bytes, step: int, wall: float) -> None:
    import labtrack
    from .._media import wav_info

    clip = labtrack.Audio.__new__(labtrack.Audio)  # the WAV as the source stored it
    info = wav_info(f"the audio {tag!r} at step {step}", wav)
    clip.wav, clip.sample_rate, clip.channels, clip.duration = (
        wav, info["sample_rate"], info["channels"], info["duration"])
    clip.caption = None
    r.run.log({tag: clip}, step=step, time=wall)


def _histogram(limits: list[float], counts: list[float], lo: float, hi: float) -> Any:
    """A labtrack.Histogram from TensorBoard's buckets (bucket i ends at limits[i] and starts
    where bucket i-1 ended; the first starts at the data's minimum). TensorFlow's own writer
    ends the last bucket at DBL_MAX: there the data's maximum takes its place. Empty leading
    and trailing buckets are kept; None when the histogram holds no buckets."""
    import labtrack

    if not limits or len(limits) != len(counts):
        return None
    edges = [lo] + [float(x) for x in limits]
    big = 1e300
    if not math.isfinite(edges[-1]) or abs(edges[-1]) >= big:
        edges[-1] = hi if math.isfinite(hi) and hi > edges[-2] else edges[-2] + 1.0
    if not math.isfinite(edges[0]) or abs(edges[0]) >= big or edges[0] >= edges[1]:
        width = edges[2] - edges[1] if len(edges) > 2 and edges[2] > edges[1] else 1.0
        edges[0] = edges[1] - width
    keep_edges, keep_counts = [edges[0]], []
    for e, c in zip(edges[1:], counts):  # merge a bucket whose edge does not move on
        if e > keep_edges[-1] and math.isfinite(e) and abs(e) < big:
            keep_edges.append(e)
            keep_counts.append(c)
        elif keep_counts:
            keep_counts[-1] += c
        else:
            keep_edges[0] = min(keep_edges[0], e) if math.isfinite(e) else keep_edges[0]
    if not keep_counts:
        return None
    whole = [float(round(c)) if math.isfinite(c) and c >= 0 else 0.0 for c in keep_counts]
    return labtrack.Histogram(np_histogram=(whole, keep_edges))


def _hparams(d: _tb_decode.Decoded) -> dict[str, Any]:
    """params, group, status and end time from the hparams plugin's session summaries."""
    out: dict[str, Any] = {"params": {}}
    for _, _, _, value, _ in d.values:
        if value.plugin != "hparams" or not value.plugin_content:
            continue
        b = value.plugin_content
        try:
            for num, _, span in ev.fields(b, 0, len(b)):
                if num == 3:
                    _session_start(b, span, out)
                elif num == 4:
                    for n2, wt, v in ev.fields(b, *span):
                        if n2 == 1:
                            out["status"] = _STATUS.get(v, "finished")
                        elif n2 == 2 and wt == 1:
                            out["ended"] = struct.unpack("<d", v)[0] or None
        except (ev.WireError, IndexError, struct.error):
            raise SourceError(f"the hparams summary {value.tag!r} is damaged") from None
    return out


def _session_start(b: bytes, span: tuple[int, int], out: dict[str, Any]) -> None:
    for num, _, v in ev.fields(b, *span):
        if num == 1:  # map<string, google.protobuf.Value>
            key, val = "", None
            for n2, _, v2 in ev.fields(b, *v):
                if n2 == 1:
                    key = b[v2[0]:v2[1]].decode("utf-8", "replace")
                elif n2 == 2:
                    val = _pb_value(b, v2)
            out["params"][key] = val
        elif num == 4:
            group = b[v[0]:v[1]].decode("utf-8", "replace")
            if group:
                out["group"] = group


def _pb_value(b: bytes, span: tuple[int, int]) -> Any:
    """google.protobuf.Value: null, number, string, bool, struct or list."""
    for num, wt, v in ev.fields(b, *span):
        if num == 1:
            return None
        if num == 2 and wt == 1:
            x = struct.unpack("<d", v)[0]
            return int(x) if x.is_integer() and abs(x) < 2 ** 53 else x
        if num == 3:
            return b[v[0]:v[1]].decode("utf-8", "replace")
        if num == 4:
            return bool(v)
        if num == 5:  # Struct: map<string, Value> fields = 1
            d: dict[str, Any] = {}
            for n2, _, v2 in ev.fields(b, *v):
                if n2 == 1:
                    k, x2 = "", None
                    for n3, _, v3 in ev.fields(b, *v2):
                        if n3 == 1:
                            k = b[v3[0]:v3[1]].decode("utf-8", "replace")
                        elif n3 == 2:
                            x2 = _pb_value(b, v3)
                    d[k] = x2
            return d
        if num == 6:  # ListValue: repeated Value values = 1
            return [_pb_value(b, v2) for n2, _, v2 in ev.fields(b, *v) if n2 == 1]
    return None
