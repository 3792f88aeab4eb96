"""A script written for wandb, logging to labtrack: only the import line differs.

It fits a line to noisy points with numpy and logs what wandb users log: config, scalars,
an image with boxes, a sound, a video, a table and a histogram (`make demo` runs it).
"""

from __future__ import annotations

import argparse

import numpy as np

import labtrack.wandb as wandb  # was: import wandb


def frames(step: int, n: int = 12, size: int = 48) -> np.ndarray:
    """A square moving across the picture: (T, C, H, W) uint8, as wandb.Video takes it."""
    video = np.zeros((n, 3, size, size), dtype=np.uint8)
    for t in range(n):
        x = (t * 3 + step) % (size - 10)
        video[t, 1, 18:28, x:x + 10] = 255
    return video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=None, help="where runs go (default: LABTRACK_ROOT or ./labtrack)")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    if args.root:
        import os

        os.environ["LABTRACK_ROOT"] = args.root
    run = wandb.init(project="wandb-style", name="line-fit", config={"lr": 0.05, "noise": 0.3},
                     tags=["numpy", "bridge"], notes="a wandb script, one import changed",
                     group="demo", job_type="train")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 200)
    y = 2.0 * x + 0.5 + rng.normal(0, wandb.config.noise, 200)
    w = b = 0.0
    wandb.define_metric("loss", summary="min")
    for step in range(args.steps):
        err = w * x + b - y
        w -= wandb.config.lr * 2 * float(np.mean(err * x))
        b -= wandb.config.lr * 2 * float(np.mean(err))
        wandb.log({"loss": float(np.mean(err ** 2)), "params/w": w, "params/b": b}, step=step)
        if step % 20 == 0:
            picture = np.full((48, 64, 3), 30, dtype=np.uint8)
            picture[10:30, 12:40] = (200, 80, 40)
            box = {"position": {"minX": 12, "maxX": 40, "minY": 10, "maxY": 30}, "domain": "pixel",
                   "class_id": 1, "scores": {"score": 0.9}}
            tone = 0.3 * np.sin(2 * np.pi * (220 + 4 * step) * np.arange(8000) / 8000)
            wandb.log({
                "sample": wandb.Image(picture, caption=f"step {step}",
                                      boxes={"pred": {"box_data": [box], "class_labels": {1: "block"}}}),
                "tone": wandb.Audio(tone, sample_rate=8000, caption=f"{220 + 4 * step} Hz"),
                "motion": wandb.Video(frames(step), fps=6),
                "residuals": wandb.Histogram(err),
                "fit": wandb.Table(columns=["x", "y", "prediction"],
                                   data=[[float(x[i]), float(y[i]), float(w * x[i] + b)] for i in range(5)]),
            }, step=step)
    run.summary["w"] = w
    wandb.finish()


if __name__ == "__main__":
    main()
