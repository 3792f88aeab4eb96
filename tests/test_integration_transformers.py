"""LabtrackCallback with a real transformers Trainer on a tiny BERT built from a config."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import labtrack  # noqa: E402
from labtrack.errors import LabtrackValueError  # noqa: E402
from labtrack.integrations.transformers import LabtrackCallback, metric_name  # noqa: E402

pytestmark = [pytest.mark.slow]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing may reach the Hub: the model comes from a config, the data from torch.randint.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


class Tokens(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 64, (n, 12), generator=g)
        self.labels = (self.ids[:, 0] > 32).long()  # learnable from the first token

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": self.labels[i]}


def tiny_bert() -> Any:
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=37, max_position_embeddings=16, num_labels=2)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def train(tmp_path: Path, callback: LabtrackCallback, **kw: Any) -> Any:
    options: dict[str, Any] = dict(
        output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, disable_tqdm=True,
        max_steps=12, per_device_train_batch_size=8, per_device_eval_batch_size=16, learning_rate=1e-3,
        logging_steps=2, eval_strategy="steps", eval_steps=4, save_strategy="steps", save_steps=4,
        save_total_limit=2, metric_for_best_model="loss", greater_is_better=False, load_best_model_at_end=True,
        dataloader_num_workers=0, seed=0)
    args = transformers.TrainingArguments(**{**options, **kw})
    trainer = transformers.Trainer(model=tiny_bert(), args=args, train_dataset=Tokens(64, 1),
                                   eval_dataset=Tokens(32, 2), callbacks=[callback])
    trainer.train()
    return trainer


def test_train_records_args_model_metrics_checkpoints_and_status(tmp_path: Path) -> None:
    trainer = train(tmp_path, LabtrackCallback("hf", name="bert-tiny", root=tmp_path / "lt", tags=["tiny"],
                                               config={"data": "random"}, capture_git=False))
    run = labtrack.open(tmp_path / "lt").runs()[0]
    assert (run.experiment, run.name, run.tags, run.status) == ("hf", "bert-tiny", ["tiny"], "finished")

    # params: the TrainingArguments and the model config, nested under "args" and "model"
    p = run.params
    assert p["data"] == "random"
    assert p["args"]["learning_rate"] == 1e-3 and p["args"]["max_steps"] == 12
    assert p["args"]["eval_strategy"] == "steps" and p["args"]["output_dir"] == str(tmp_path / "out")
    assert p["model"]["hidden_size"] == 32 and p["model"]["num_hidden_layers"] == 2
    assert p["model"]["class"] == "BertForSequenceClassification"
    assert run.flat_params["model.vocab_size"] == 64

    # every on_log at the global step, named as transformers names them
    loss = run.scalars("train/loss")
    assert list(loss.index) == [2, 4, 6, 8, 10, 12]
    expected = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert list(loss["value"]) == pytest.approx(expected)
    assert "train/learning_rate" in run.series() and "train/grad_norm" in run.series()
    eval_loss = run.scalars("eval/loss")
    assert list(eval_loss.index) == [4, 8, 12]
    assert list(eval_loss["value"]) == pytest.approx([h["eval_loss"] for h in trainer.state.log_history
                                                      if "eval_loss" in h])
    assert "train/train_runtime" in run.series()  # the end-of-training summary log

    # checkpoints: references to the folders transformers keeps (save_total_limit=2, best kept)
    record = run.meta["checkpoints"]
    kept = sorted(int(d.name.split("-")[1]) for d in (tmp_path / "out").iterdir() if d.name.startswith("checkpoint-"))
    assert sorted(record["steps"]) == kept and record["last"] == 12
    best_dir = Path(trainer.state.best_model_checkpoint)
    assert record["best"] == int(best_dir.name.split("-")[1]) and record["mode"] == "min"
    assert record["metric"] == pytest.approx(trainer.state.best_metric)
    info = json.loads((run.dir / "checkpoints" / str(record["best"]) / "checkpoint.json").read_text())
    assert info["file"] is None and Path(info["path"]) == best_dir.absolute()
    assert info["format"] == "folder" and info["origin"] == "transformers"
    with pytest.raises(labtrack.errors.FormatError, match="from_pretrained"):
        run.load_checkpoint("best")
    from labtrack._checkpoints import checkpoint_path

    reloaded = transformers.BertForSequenceClassification.from_pretrained(checkpoint_path(run.dir, "best"))
    assert reloaded.config.hidden_size == 32

    # the trainer's end state, as transformers writes it
    state = json.loads((run.dir / "artifacts" / "trainer_state.json").read_text())
    assert state["global_step"] == 12 and state["best_model_checkpoint"] == trainer.state.best_model_checkpoint


def test_copy_mode_and_a_given_run(tmp_path: Path) -> None:
    with labtrack.Run("mine", root=tmp_path / "lt", capture_git=False) as own:
        train(tmp_path, LabtrackCallback(run=own, log_checkpoints="copy"), save_total_limit=None,
              load_best_model_at_end=False)
        assert own.status == "running"  # the owner finishes it
    run = labtrack.open(tmp_path / "lt").runs()[0]
    assert run.status == "finished" and run.params["args"]["seed"] == 0
    assert run.meta["checkpoints"]["steps"] == [4, 8, 12]
    copied = run.dir / "checkpoints" / "8" / "checkpoint-8"
    assert (copied / "config.json").is_file() and (copied / "trainer_state.json").is_file()


def test_other_processes_record_nothing(tmp_path: Path) -> None:
    cb = LabtrackCallback("hf", root=tmp_path / "lt", capture_git=False)
    state = transformers.TrainerState(is_world_process_zero=False, global_step=3)
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True)
    control = transformers.TrainerControl()
    cb.on_train_begin(args, state, control, model=tiny_bert())
    cb.on_log(args, state, control, logs={"loss": 1.0})
    cb.on_train_end(args, state, control)
    assert cb.run is None and not (tmp_path / "lt").exists()


def test_names_and_misuse() -> None:
    assert [metric_name(k) for k in ("loss", "eval_loss", "eval_accuracy", "test_f1", "learning_rate")] == [
        "train/loss", "eval/loss", "eval/accuracy", "test/f1", "train/learning_rate"]
    with pytest.raises(LabtrackValueError, match="log_checkpoints='yes'"):
        LabtrackCallback(log_checkpoints="yes")  # type: ignore[arg-type]


def test_an_exception_in_train_fails_the_run_in_a_with_block(tmp_path: Path) -> None:
    class Boom(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:
                raise RuntimeError("boom at step 3")

    cb = LabtrackCallback("hf", root=tmp_path / "lt", capture_git=False)
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True,
                                          disable_tqdm=True, max_steps=6, logging_steps=1,
                                          per_device_train_batch_size=8, save_strategy="no")
    trainer = transformers.Trainer(model=tiny_bert(), args=args, train_dataset=Tokens(64, 1), callbacks=[cb, Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        with cb:
            trainer.train()
    run = labtrack.open(tmp_path / "lt").runs()[0]
    assert run.status == "failed" and run.meta["error"]["message"] == "boom at step 3"
    assert list(run.scalars("train/loss").index) == [1, 2]
    assert "checkpoints" not in [p.name for p in run.dir.iterdir()]
