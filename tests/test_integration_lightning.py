"""LabtrackLogger with a real lightning Trainer: params, metrics at global steps, checkpoints, status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")

import labtrack  # noqa: E402
from labtrack.errors import LabtrackTypeError, LabtrackValueError  # noqa: E402
from labtrack.integrations.lightning import LabtrackLogger  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    # Lightning's advice for real jobs (more dataloader workers, a small log interval ...).
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),  # lightning on torch 2.13
]

BATCHES = 8  # per epoch: 64 samples, batch 8


class Tiny(L.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 8, fail_at: int = -1, act: Any = torch.nn.ReLU) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), act(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.global_step == self.hparams.fail_at:
            raise RuntimeError("boom at step %d" % self.global_step)
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loaders() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x.sum(dim=1, keepdim=True)
    ds = torch.utils.data.TensorDataset(x, y)
    return (torch.utils.data.DataLoader(ds, batch_size=8), torch.utils.data.DataLoader(ds, batch_size=16))


def trainer(logger: LabtrackLogger, dirpath: Path | None = None, **kw: Any) -> Any:
    ckpt = L.callbacks.ModelCheckpoint(monitor="val_loss", mode="min", save_top_k=1, save_last=True,
                                       dirpath=dirpath)
    return L.Trainer(logger=logger, callbacks=[ckpt], max_epochs=2, accelerator="cpu", devices=1,
                     log_every_n_steps=2, enable_progress_bar=False, enable_model_summary=False, **kw), ckpt


def test_fit_records_params_metrics_checkpoints_and_status(tmp_path: Path) -> None:
    torch.manual_seed(0)
    logger = LabtrackLogger("lit", name="tiny", root=tmp_path, tags=["t"], config={"data": "random"},
                            capture_git=False)
    tr, ckpt = trainer(logger)
    model = Tiny(lr=0.05)
    tr.fit(model, *loaders())

    run = labtrack.open(tmp_path).runs()[0]
    assert (run.experiment, run.name, run.tags, run.status) == ("lit", "tiny", ["t"], "finished")
    # hyperparameters next to the config; a class becomes its dotted name, not a repr
    assert run.params["data"] == "random"
    assert run.params["lr"] == 0.05 and run.params["hidden"] == 8
    assert run.params["act"] == "torch.nn.modules.activation.ReLU"

    # train_loss every 2 global steps (log_every_n_steps=2); the steps are the trainer's
    train = run.scalars("train_loss")
    assert list(train.index) == [1, 3, 5, 7, 9, 11, 13, 15]
    val = run.scalars("val_loss")
    assert list(val.index) == [BATCHES - 1, 2 * BATCHES - 1]
    assert val["value"].min() == pytest.approx(float(ckpt.best_model_score))
    assert list(run.scalars("epoch")["value"])[-1] == 1.0

    # checkpoints: Lightning's files under the run, recorded at their global steps
    record = run.meta["checkpoints"]
    assert record["last"] == 16 and record["mode"] == "min"
    best_step = int(ckpt.best_model_path.rsplit("step=", 1)[1].split(".")[0])
    assert record["best"] == best_step
    assert record["metric"] == pytest.approx(float(ckpt.best_model_score))
    assert Path(ckpt.best_model_path).parent == run.dir / "artifacts" / "lightning" / "checkpoints"
    info = json.loads((run.dir / "checkpoints" / str(best_step) / "checkpoint.json").read_text())
    assert info["file"] is None and info["path"].startswith("artifacts/lightning/checkpoints/")
    assert info["origin"] == "lightning"
    best = run.load_checkpoint("best")
    assert best["global_step"] == best_step
    assert set(best["state_dict"]) == set(model.state_dict())
    last = run.load_checkpoint("last")
    assert last["global_step"] == 16
    assert all(torch.equal(last["state_dict"][k], v) for k, v in model.state_dict().items())
    # only what Lightning keeps is recorded (top 1 and last)
    assert sorted(record["steps"]) == sorted({best_step, 16})


def test_a_failing_training_step_leaves_the_run_failed(tmp_path: Path) -> None:
    logger = LabtrackLogger("lit", root=tmp_path, capture_git=False)
    tr, _ = trainer(logger)
    with pytest.raises(RuntimeError, match="boom at step 3"):
        tr.fit(Tiny(fail_at=3), *loaders())
    run = labtrack.open(tmp_path).runs()[0]
    assert run.status == "failed"
    assert run.meta["error"]["type"] == "RuntimeError" and "boom" in run.meta["error"]["message"]
    assert list(run.scalars("train_loss").index) == [1]


def test_copy_mode_and_test_after_fit_resume_the_run(tmp_path: Path) -> None:
    logger = LabtrackLogger("lit", root=tmp_path, capture_git=False, log_checkpoints="copy")
    tr, ckpt = trainer(logger, dirpath=tmp_path / "elsewhere")
    model = Tiny()
    tr.fit(model, *loaders())
    tr.validate(model, loaders()[1])
    run = labtrack.open(tmp_path).runs()[0]
    assert run.status == "finished" and len(run.meta["resumed"]) == 1
    # one copy per step: at step 16 the top-k file and last.ckpt hold the same state
    copied = list((run.dir / "checkpoints" / "16").glob("*.ckpt"))
    assert len(copied) == 1 and json.loads((copied[0].parent / "checkpoint.json").read_text())["file"] == copied[0].name
    assert not (run.dir / "artifacts").exists()  # Lightning's own files are in its dirpath
    # the copy does not change when Lightning rewrites its own file
    Path(ckpt.last_model_path).write_bytes(b"overwritten")
    assert run.load_checkpoint("last")["global_step"] == 16


def test_a_given_run_is_used_and_not_finished(tmp_path: Path) -> None:
    with labtrack.Run("mine", root=tmp_path, capture_git=False) as own:
        logger = LabtrackLogger(run=own, log_checkpoints=False)
        assert logger.experiment is own
        tr, _ = trainer(logger)
        tr.fit(Tiny(), *loaders())
        assert own.status == "running"
        own.log({"after": 1.0})
    run = labtrack.open(tmp_path).runs()[0]
    assert run.status == "finished" and "after" in run.series() and "train_loss" in run.series()
    assert "checkpoints" not in [p.name for p in run.dir.iterdir()]


def test_misuse_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(LabtrackValueError, match="log_checkpoints='always'"):
        LabtrackLogger(root=tmp_path, log_checkpoints="always")  # type: ignore[arg-type]
    with labtrack.Run("x", root=tmp_path, capture_git=False) as own:
        with pytest.raises(LabtrackTypeError, match="either run="):
            LabtrackLogger("other", run=own)
        LabtrackLogger(run=own).log_graph(torch.nn.Linear(1, 1))  # Lightning calls it: a no-op
        with pytest.raises(LabtrackTypeError, match="got list"):
            LabtrackLogger(run=own).log_hyperparams([1, 2])  # type: ignore[arg-type]


def test_non_zero_ranks_record_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labtrack.integrations.lightning import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = LabtrackLogger("lit", root=tmp_path, capture_git=False)
    logger.log_hyperparams({"a": 1})
    logger.log_metrics({"loss": 1.0}, step=0)
    assert logger.save_dir is None
    assert not isinstance(logger.experiment, labtrack.Run)
    assert not any(tmp_path.iterdir())
