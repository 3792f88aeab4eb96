"""A training script in wandb's style: only the import differs from one written for wandb.

Trains a small MLP on random "digits" (8x8 images, 10 classes) with torch; config from
argparse, log without step, nested dicts, define_metric, watch, Images with boxes, a
Table, Histograms and summary values. What it logged is written to --record (JSON) so a
test can compare it with what labtrack stored.
"""

import argparse
import json

import numpy as np
import torch
from torch import nn

import labtrack.wandb as wandb  # was: import wandb

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--record", required=True)
args = parser.parse_args()

run = wandb.init(project="digits", name="mlp-baseline", config={"epochs": args.epochs, "lr": args.lr},
                 tags=["mlp", "bridge"], notes="random digits, tiny MLP", group="sweep-1", job_type="train")
wandb.config.update({"hidden": 32})
wandb.config.batch_size = 32
config = wandb.config

torch.manual_seed(0)
rng = np.random.default_rng(0)
X = torch.randn(256, 64)
y = X[:, :10].argmax(dim=1)
Xv, yv = torch.randn(64, 64), None
yv = Xv[:, :10].argmax(dim=1)

model = nn.Sequential(nn.Linear(64, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 10))
wandb.watch(model, log="all", log_freq=4)
opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
loss_fn = nn.CrossEntropyLoss()

wandb.define_metric("epoch")
wandb.define_metric("val/*", step_metric="epoch", summary="max")
wandb.define_metric("train/loss", summary="min,mean")

logged = {"train/loss": [], "val/acc": [], "val/loss": []}
for epoch in range(config.epochs):
    model.train()
    for i in range(0, len(X), config.batch_size):
        xb, yb = X[i:i + config.batch_size], y[i:i + config.batch_size]
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        wandb.log({"train/loss": loss.item()})
        logged["train/loss"].append(loss.item())
    model.eval()
    with torch.no_grad():
        out = model(Xv)
        vloss = loss_fn(out, yv).item()
        acc = (out.argmax(1) == yv).float().mean().item()
    logged["val/acc"].append(acc)
    logged["val/loss"].append(vloss)
    digit = (Xv[0].reshape(8, 8) - Xv[0].min()) / (Xv[0].max() - Xv[0].min())
    wandb.log({
        "val": {"acc": acc, "loss": vloss},
        "epoch": epoch,
        "examples": [wandb.Image(digit.numpy(), caption=f"pred {int(out[0].argmax())}",
                                 boxes={"predictions": {
                                     "box_data": [{"position": {"minX": 0.25, "maxX": 0.75, "minY": 0.0, "maxY": 0.5},
                                                   "class_id": int(out[0].argmax()), "box_caption": "guess",
                                                   "scores": {"score": float(out[0].softmax(0).max())}}],
                                     "class_labels": {k: f"digit{k}" for k in range(10)}}}),
                     wandb.Image((Xv[1].reshape(8, 8) > 0).numpy())],
        "logits": wandb.Histogram(out.numpy().ravel(), num_bins=16),
    })

table = wandb.Table(columns=["id", "pred", "label"])
for k in range(5):
    table.add_data(k, int(out[k].argmax()), int(yv[k]))
wandb.log({"predictions": table})
run.summary["best_acc"] = max(logged["val/acc"])
wandb.summary["final_note"] = "done"

with open(args.record, "w") as f:
    json.dump({"id": run.id, "dir": run.dir, "logged": logged, "config": dict(wandb.config.items()),
               "batches": len(range(0, len(X), config.batch_size))}, f)
wandb.finish()
