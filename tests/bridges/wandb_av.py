"""wandb.Audio and wandb.Video in wandb's style (only the import differs). argv[1]: record path."""

import json
import sys

import numpy as np

import labtrack.wandb as wandb  # was: import wandb

run = wandb.init(project="av")
t = np.linspace(0, 1, 8000, endpoint=False)
tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
frames = (np.random.default_rng(0).random((6, 3, 16, 24)) * 255).astype(np.uint8)  # (T, C, H, W)
wandb.log({"tone": wandb.Audio(tone, sample_rate=8000, caption="440 Hz"),
           "clip": wandb.Video(frames, fps=5, caption="noise")}, step=3)
with open(sys.argv[1], "w") as f:
    json.dump({"id": run.id}, f)
wandb.finish()
