"""Build the browser tests' fixture root with labtrack itself (run as a script).

    python make_fixture.py ROOT

Run it from inside a small git repository with an uncommitted change so the runs record a
commit, a dirty flag and a diff. Everything the dashboard shows has an instance here: runs
in two experiments, finished, failed and crashed runs, images with boxes, text with an
expected text, markdown carrying script that must never run, a table, histograms, timings,
console lines, an artifact, a checkpoint and one long series that the server downsamples.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np

import labtrack

MALICIOUS_MARKDOWN = """# Evaluation report

The model reaches **97.1%** on the held-out set; see the [paper](https://example.org/paper).

| split | accuracy |
| ----- | -------- |
| val   | 0.971    |
| test  | 0.968    |

<script>window.__pwned = "script";</script>
<img src="x" onerror="window.__pwned = 'onerror'">
[harmless looking link](javascript:window.__pwned='link')

- first point
- second point with `inline code`

![first sample](../media/0/samples/street.png)
"""

LONG_N = 100_000  # points in the long series: the server sends it downsampled with an envelope
SPIKE_AT = 61_234  # one outlier that downsampling must not hide

HOSTILE_COMMENT = '<img src=x onerror="window.__pwned=\'comment\'"> tuned <b>lr</b>'


def curve(step: int, lr: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed * 100_003 + step)
    loss = 2.3 * math.exp(-step * lr / 6.0) + 0.08 + 0.04 * float(rng.standard_normal())
    acc = 1.0 - 0.9 * math.exp(-step * lr / 5.0) - 0.02 * abs(float(rng.standard_normal()))
    return max(loss, 0.01), acc


def image(seed: int, step: int) -> np.ndarray:
    rng = np.random.default_rng(seed + step)
    h, w = 96, 128
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = (x * 2) % 256
    img[..., 1] = (y * 2 + step) % 256
    img[..., 2] = 120
    img = (img * 0.6 + rng.integers(0, 60, size=img.shape)).astype(np.uint8)
    img[20:70, 16:60] = (230, 200, 40)  # the "bird"
    img[40:90, 80:120] = (240, 120, 30)  # the "orange"
    return img


def full_run(root: Path, name: str, lr: float, seed: int, opt: str, tags: list[str], comment: str,
             steps: int = 300, rich: bool = False) -> str:
    cfg = {"lr": lr, "batch_size": 64 if lr > 0.02 else 128, "epochs": 3,
           "optimizer": {"name": opt, "momentum": 0.9 if opt == "sgd" else None, "betas": [0.9, 0.999]},
           "model": {"depth": 18 if rich else 34, "dropout": 0.1}}
    run = labtrack.Run("mnist", name, config=cfg, comment=comment, tags=tags, seed=seed, root=root,
                       capture_console=False, capture_git=rich)
    for step in range(steps):
        loss, acc = curve(step, lr, seed)
        run.log({"train/loss": loss, "val/acc": acc}, step=step)
        if step % 50 == 0:
            run.log({"timings/data": 0.8 + 0.01 * step / 50, "timings/forward": 2.1, "timings/backward": 3.3}, step=step)
        if rich and step % 100 == 0:
            run.log_image("samples/street", image(seed, step), step=step,
                          boxes=[{"xStart": 16, "yStart": 20, "xEnd": 60, "yEnd": 70,
                                  "className": "bird", "probability": 0.92},
                                 {"xStart": 80, "yStart": 40, "xEnd": 120, "yEnd": 90,
                                  "className": "orange", "probability": 0.55},
                                 {"xStart": 4, "yStart": 4, "xEnd": 30, "yEnd": 16,
                                  "className": "background", "probability": 0.1}],
                          classes=["bird", "orange", "background"], threshold=0.2)
            run.log_histogram("weights/conv1", np.random.default_rng(step).normal(step / 100, 1 + step / 300, 2000), step=step)
            run.println("step {} loss {:.4f}", step, loss)
    if rich:
        run.log_text("decoder/sample", "the quick brown fox jumpt over the lazy dog", step=100,
                     expected="the quick brown fox jumps over the lazy dog")
        run.log_text("decoder/sample", "the quick brown fox jumps over a lazy cat", step=299,
                     expected="the quick brown fox jumps over the lazy dog")
        run.log_markdown("report", MALICIOUS_MARKDOWN)
        run.log_table("eval/per_class", [{"class": "bird", "precision": 0.91, "recall": 0.88},
                                         {"class": "orange", "precision": 0.79, "recall": 0.83}])
        art = root.parent / "confusion.json"
        art.write_text(json.dumps([[50, 2], [3, 45]]))
        run.save_artifact(art, "eval/confusion.json")
        run.save_checkpoint({"w": [1, 2, 3]}, steps - 1, metric=0.12, mode="min")
        run.println("done: final loss {:.4f}", loss)
    run.finish()
    return run.id


def main() -> None:
    root = Path(sys.argv[1]).absolute()
    ids = {}
    ids["baseline"] = full_run(root, "baseline", 0.1, 1, "sgd", ["cnn", "baseline"], HOSTILE_COMMENT, rich=True)
    ids["lr-0.03"] = full_run(root, "lr-0.03", 0.03, 2, "sgd", ["cnn"], "smaller step")
    ids["lr-0.01"] = full_run(root, "lr-0.01", 0.01, 3, "adam", ["cnn", "adam"], "adam, tiny lr")
    ids["wide"] = full_run(root, "wide", 0.05, 4, "adam", ["wide"], "twice the channels", steps=200)

    failed = labtrack.Run("cifar", "resnet-diverged", config={"lr": 3.0, "optimizer": {"name": "sgd"}},
                          root=root, capture_console=False, capture_git=False)
    for step in range(40):
        failed.log({"train/loss": 2.0 + step * 0.5}, step=step)
    try:
        raise FloatingPointError("loss is NaN at step 40")
    except FloatingPointError as e:
        failed.finish("failed", error=e)
    ids["failed"] = failed.id

    crashed = labtrack.Run("cifar", "resnet-oom", config={"lr": 0.1, "optimizer": {"name": "sgd"}},
                           root=root, capture_console=False, capture_git=False)
    for step in range(60):
        crashed.log({"train/loss": 2.0 - step * 0.01}, step=step)
    crashed.flush()
    crashed_dir = crashed.dir
    crashed.finish()
    # What a SIGKILLed run leaves behind: status running, a pid that is gone, an old heartbeat.
    meta = json.loads((crashed_dir / "run.json").read_text())
    meta.update(status="running", ended=None, pid=2**22 + 17)
    tmp = crashed_dir / ".run.json.fixture.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, crashed_dir / "run.json")
    os.utime(crashed_dir / "heartbeat", (1_000_000_000, 1_000_000_000))
    ids["crashed"] = crashed.id

    long = labtrack.Run("cifar", "long-series", config={"lr": 0.02, "optimizer": {"name": "adam"}},
                        root=root, capture_console=False, capture_git=False)
    rng = np.random.default_rng(7)
    noise = rng.standard_normal(LONG_N)
    for step in range(LONG_N):
        long.log({"train/loss": 1.0 / (1 + step / 10_000) + 0.05 * noise[step] + (3.0 if step == SPIKE_AT else 0.0)},
                 step=step)
    long.finish()
    ids["long"] = long.id

    (root.parent / "ids.json").write_text(json.dumps(ids, indent=2))


if __name__ == "__main__":
    main()
