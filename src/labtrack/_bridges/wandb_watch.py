"""`wandb.watch(model)`: torch hooks that record parameter and gradient histograms.

A forward hook on the model counts its calls; on every `log_freq`-th call the parameters'
histograms are recorded, and the gradients that the next backward pass computes (one
tensor hook per parameter). They land at the bridge's current step, as
"parameters/<name>" and "gradients/<name>" (wandb's names).
"""

from __future__ import annotations

from typing import Any

from ..errors import LabtrackTypeError

__all__ = ["Watcher"]


class Watcher:
    """The hooks of one watched model; `remove()` takes them off."""

    def __init__(self, owner: Any, model: Any, log: str, log_freq: int) -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise LabtrackTypeError(f"watch() takes a torch.nn.Module, got {type(model).__name__}")
        self.owner = owner
        self.model = model
        self.log_freq = log_freq
        self.calls = 0
        self.grads_due = False
        self.params = log in ("parameters", "all")
        self.grads = log in ("gradients", "all")
        self.handles: list[Any] = [model.register_forward_hook(self._forward)]
        if self.grads:
            for name, p in model.named_parameters():
                if p.requires_grad:
                    self.handles.append(p.register_hook(self._grad_hook(name)))  # type: ignore[no-untyped-call]

    def _forward(self, module: Any, inputs: Any, output: Any) -> None:
        self.calls += 1
        due = self.calls % self.log_freq == 0
        self.grads_due = due and self.grads
        if due and self.params:
            run, step = self.owner.labtrack_run, self.owner.step
            for name, p in module.named_parameters():
                run.log_histogram(f"parameters/{name}", p.detach().float().cpu().numpy(), step)

    def _grad_hook(self, name: str) -> Any:
        def hook(grad: Any) -> None:
            if self.grads_due and not self.owner._finished:
                self.owner.labtrack_run.log_histogram(f"gradients/{name}", grad.detach().float().cpu().numpy(),
                                                      self.owner.step)
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
