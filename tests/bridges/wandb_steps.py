"""A script in wandb's style that logs with explicit steps, commit=False, a step that goes
back (wandb drops it with a warning), and every media type but audio and video.

Only the import differs from a script written for wandb. Writes what it logged to argv[1].
"""

import json
import sys
import warnings

import numpy as np
from PIL import Image as PILImage

import labtrack.wandb as wandb  # was: import wandb

record_path = sys.argv[1]
wandb.login()
assert wandb.run is None
run = wandb.init(project="steps", config={"opt": {"name": "adam", "betas": [0.9, 0.99]}}, notes="explicit steps")
wandb.config.update({"seed": 7})

for step in (0, 10, 20):
    wandb.log({"loss": 1.0 / (step + 1)}, step=step)
    wandb.log({"acc": step / 100.0}, step=step)          # same step: gathered with loss

wandb.log({"partial": 1.5}, commit=False)                 # gathered into step 20 ...
wandb.log({"partial2": 2.5})                              # ... committed with this one (step 20)
wandb.log({"after": 3.0})                                 # step 21
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    wandb.log({"loss": 99.0}, step=5)                     # lower than 22: dropped with a warning
went_back = [str(w.message) for w in caught]

rng = np.random.default_rng(1)
pixels = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
PILImage.fromarray(pixels).save("frame.png")
wandb.log({
    "img/array": wandb.Image(pixels, caption="array", boxes={
        "predictions": {"box_data": [
            {"position": {"minX": 5, "maxX": 25, "minY": 4, "maxY": 30}, "domain": "pixel", "class_id": 0,
             "scores": {"score": 0.8}},
            {"position": {"middle": [0.5, 0.5], "width": 0.2, "height": 0.5}, "class_id": 1,
             "scores": {"loss": 4.0}}],
            "class_labels": {0: "cat", 1: "dog"}}}),
    "img/pil": wandb.Image(PILImage.fromarray(pixels)),
    "img/path": wandb.Image("frame.png"),
    "table": wandb.Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]]),
    "hist/values": wandb.Histogram(rng.normal(size=500), num_bins=20),
    "hist/binned": wandb.Histogram(np_histogram=([1, 3, 2], [0.0, 1.0, 2.0, 3.0])),
    "report": wandb.Html("<h1>Report</h1><p>all good</p>"),
    "note": "a text value",
}, step=30)
run.summary["best"] = 0.95
run.summary.update({"epochs": 3})
with open(record_path, "w") as f:
    json.dump({"id": run.id, "went_back": went_back, "summary_loss": run.summary["loss"]}, f)
wandb.finish(exit_code=int(sys.argv[2]) if len(sys.argv) > 2 else 0)
