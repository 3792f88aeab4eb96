"""A small two-layer network on synthetic spiral data, in numpy, logged with labtrack.

    python examples/train_mlp.py --lr 0.5 --hidden 32 --epochs 200

Logs scalars (loss, accuracy), the command-line options, a histogram of the weights, a
matplotlib figure of the decision regions, images of synthetic "detections" with boxes,
a text with its expected text, markdown notes, a predictions table, and a checkpoint.
"""

from __future__ import annotations

import argparse

import numpy as np

import labtrack


def spiral(n: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, n)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n) + rng.normal(0, 0.25, n)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(n, c))
    return np.concatenate(xs), np.concatenate(ys)


def detection_image(rng: np.random.Generator, size: int = 96) -> tuple[np.ndarray, list[dict]]:
    """A synthetic scene with coloured rectangles and the 'detections' of a pretend model."""
    img = np.full((size, size, 3), 235, np.uint8)
    boxes = []
    names = ["bird", "orange", "background"]
    colours = {"bird": (60, 90, 200), "orange": (240, 140, 20), "background": (120, 120, 120)}
    for _ in range(3):
        cls = names[int(rng.integers(0, 3))]
        x0, y0 = int(rng.integers(0, size - 30)), int(rng.integers(0, size - 30))
        w, h = int(rng.integers(12, 30)), int(rng.integers(12, 30))
        img[y0:y0 + h, x0:x0 + w] = colours[cls]
        boxes.append({"xStart": x0, "yStart": y0, "xEnd": x0 + w, "yEnd": y0 + h,
                      "className": cls, "probability": round(float(rng.uniform(0.1, 1.0)), 2)})
    return img, boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()

    run = labtrack.init(experiment="spiral-mlp", name=args.name, config=args, seed=args.seed,
                        comment=f"lr={args.lr} hidden={args.hidden}", tags=["numpy", "demo"],
                        root=args.root)
    run.log_command(parser, args)
    rng = np.random.default_rng(args.seed)

    with labtrack.section("Make data"):
        x, y = spiral(200, 3, rng)
        perm = rng.permutation(len(x))
        x, y = x[perm], y[perm]
        split = int(0.8 * len(x))
        xtr, ytr, xva, yva = x[:split], y[:split], x[split:], y[split:]

    w1 = rng.normal(0, 1.0, (2, args.hidden))
    b1 = np.zeros(args.hidden)
    w2 = rng.normal(0, 1.0 / np.sqrt(args.hidden), (args.hidden, 3))
    b2 = np.zeros(3)

    def forward(inp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.maximum(0, inp @ w1 + b1)
        z = h @ w2 + b2
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return h, p / p.sum(axis=1, keepdims=True)

    for epoch in labtrack.loop(range(args.epochs)):
        with labtrack.section("train"):
            h, p = forward(xtr)
            loss = float(-np.log(p[np.arange(len(ytr)), ytr] + 1e-12).mean())
            g = p.copy()
            g[np.arange(len(ytr)), ytr] -= 1
            g /= len(ytr)
            gw2, gb2 = h.T @ g, g.sum(0)
            gh = g @ w2.T * (h > 0)
            gw1, gb1 = xtr.T @ gh, gh.sum(0)
            for param, grad in ((w1, gw1), (b1, gb1), (w2, gw2), (b2, gb2)):
                param -= args.lr * grad
        with labtrack.section("validate"):
            _, pv = forward(xva)
            val_acc = float((pv.argmax(1) == yva).mean())
            val_loss = float(-np.log(pv[np.arange(len(yva)), yva] + 1e-12).mean())
        train_acc = float((p.argmax(1) == ytr).mean())
        run.log({"train/loss": loss, "train/acc": train_acc, "val/loss": val_loss,
                 "val/acc": val_acc, "lr": args.lr}, step=epoch)
        if epoch % 20 == 0 or epoch == args.epochs - 1:
            run.log_histogram("weights/w1", w1, step=epoch)
            img, boxes = detection_image(rng)
            run.log_image("detections/scene", img, step=epoch, boxes=boxes,
                          classes=["bird", "orange", "background"], threshold=0.3)
            run.save_checkpoint({"w1": w1, "b1": b1, "w2": w2, "b2": b2}, step=epoch,
                                metric=val_loss, mode="min", keep_last=2)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gx, gy = np.meshgrid(np.linspace(-1.1, 1.1, 120), np.linspace(-1.1, 1.1, 120))
    _, grid = forward(np.stack([gx.ravel(), gy.ravel()], 1))
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.contourf(gx, gy, grid.argmax(1).reshape(gx.shape), alpha=0.3, levels=2)
    ax.scatter(xva[:, 0], xva[:, 1], c=yva, s=8)
    ax.set_title(f"decision regions, val acc {val_acc:.2f}")
    run.log_figure("decision_regions", fig, step=args.epochs - 1)
    plt.close(fig)

    words = ["the", "bird", "sees", "an", "orange"]
    expected = " ".join(words)
    predicted = " ".join(w if rng.uniform() < val_acc else w[::-1] for w in words)
    run.log_text("captions/sample", predicted, step=args.epochs - 1, expected=expected)
    run.log_table("predictions", [{"x": float(a), "y": float(b), "label": int(t), "predicted": int(q)}
                                  for (a, b), t, q in zip(xva[:20], yva[:20], pv.argmax(1)[:20])])
    run.log_markdown("notes", f"# Spiral MLP\n\nHidden units: **{args.hidden}**, learning rate "
                              f"`{args.lr}`.\n\n| metric | value |\n| --- | --- |\n"
                              f"| val acc | {val_acc:.3f} |\n| val loss | {val_loss:.3f} |\n")
    run.println("final val acc {:.3f} (loss {loss:.3f})", val_acc, loss=val_loss)
    run.finish()


if __name__ == "__main__":
    main()
