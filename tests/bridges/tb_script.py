"""A small training script written for torch.utils.tensorboard, as people already have them.

tests/test_tb_summarywriter.py runs it twice: as it is (TensorBoard event files) and with
only the import line changed to `from labtrack.tensorboard import SummaryWriter`, then
compares both records with the manifest this script writes of what it logged.

Usage: python tb_script.py LOG_DIR MANIFEST.json
"""

import json
import sys
import time

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from torch.utils.tensorboard import SummaryWriter  # noqa: E402

log_dir, manifest_path = sys.argv[1], sys.argv[2]
T0 = 1_763_000_000.125  # the wall time of step 0 (walltime= is given for these points)
manifest: dict = {"scalars": {}, "auto": {}, "images": {}, "histograms": {}, "texts": {},
                  "hparams": {}, "metrics": {}, "started": time.time()}


def note(tag, step, value, walltime):
    manifest["scalars"].setdefault(tag, []).append([step, float(value), walltime])


torch.manual_seed(0)
x = torch.randn(128, 4)
y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(128, 1)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
hparams = {"lr": 0.05, "batch_size": 128, "optimizer": "sgd", "bias": True}

writer = SummaryWriter(log_dir)
for step in range(40):
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    wt = T0 + 0.25 * step
    writer.add_scalar("Loss/train", loss, step, walltime=wt)  # a 0-d tensor that needs grad
    note("Loss/train", step, loss.item(), wt)
    writer.add_scalar("lr", opt.param_groups[0]["lr"], step, walltime=wt)
    note("lr", step, opt.param_groups[0]["lr"], wt)
    w0, bias = model.weight[0, 0], model.bias  # bias: a tensor of shape (1,)
    writer.add_scalars("params", {"w0": w0, "bias": bias}, step, walltime=wt)
    note("params/w0", step, w0.item(), wt)
    note("params/bias", step, bias.item(), wt)
    if step % 10 == 0:
        writer.add_scalar("grad_norm", np.float32(model.weight.grad.norm().item()), step, walltime=wt)
        note("grad_norm", step, np.float32(model.weight.grad.norm().item()), wt)
        writer.add_histogram("weights", model.weight, step)
        flat = model.weight.detach().numpy().ravel()
        manifest["histograms"].setdefault("weights", []).append(
            [step, int(flat.size), float(flat.min()), float(flat.max())])
        writer.add_text("status", f"step {step}: loss {loss.item():.4f}", step)
        manifest["texts"].setdefault("status", []).append([step, f"step {step}: loss {loss.item():.4f}"])
    t = time.time()
    writer.add_scalar("epoch_seconds", t - manifest["started"])  # no global_step
    manifest["auto"].setdefault("epoch_seconds", []).append(t - manifest["started"])

img = torch.linspace(0, 1, 3 * 16 * 24).reshape(3, 16, 24)  # CHW floats in [0, 1]
writer.add_image("input/chw", img, 0)
manifest["images"]["input/chw"] = [0, 16, 24]
batch = (torch.arange(10 * 3 * 6 * 5) % 256).to(torch.uint8).reshape(10, 3, 6, 5)
writer.add_images("input/batch", batch, 0)  # 10 images: a grid of 8 + 2
manifest["images"]["input/batch"] = [0, 12, 40]
hwc = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
writer.add_image("input/hwc", hwc, 5, dataformats="HWC")
manifest["images"]["input/hwc"] = [5, 9, 7]
fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
ax.plot([r[1] for r in manifest["scalars"]["Loss/train"]])
writer.add_figure("loss_curve", fig, 39)
manifest["figure_closed"] = not plt.fignum_exists(fig.number)

final = torch.nn.functional.mse_loss(model(x), y).item()
writer.add_hparams(hparams, {"hparam/final_loss": final}, run_name="hp", global_step=39)
manifest["hparams"] = hparams
manifest["metrics"] = {"hparam/final_loss": [39, final]}
writer.flush()
writer.close()
manifest["ended"] = time.time()
with open(manifest_path, "w") as f:
    json.dump(manifest, f)
print("done", log_dir)
