"""Exponential moving average of a model's weights, updated on the device with no host sync."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class EMA:
    """Shadow copies (float32, same device) of every floating parameter of ``model``; buffers are not
    averaged (they are taken from the model when the EMA weights are swapped in).

    ``update(model, step)`` moves each shadow towards the parameter by ``1 - d`` with
    ``d = min(decay, (1 + step) / (10 + step))``: early on the average follows the weights closely, so
    the EMA of a short run is not stuck at the initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow: dict[str, torch.Tensor] = {}
        self.sync_keys(model)

    def sync_keys(self, model: nn.Module) -> None:
        """Track the model's current floating parameters: start new ones (e.g. LoRA added at a stage
        change) from their current value, drop ones that are gone. Call it after changing which
        parameters train (the trainer does, after every stage change)."""
        params = dict(model.named_parameters())
        self.shadow = {k: v for k, v in self.shadow.items() if k in params}
        for name, p in params.items():
            if p.is_floating_point() and name not in self.shadow:
                self.shadow[name] = p.detach().float().clone()
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        if self._pairs is None:  # built once per stage: the step itself does no Python work per tensor
            params = dict(model.named_parameters())
            # Frozen weights do not move: their average is the weight itself.
            names = [k for k in self.shadow if params[k].requires_grad]
            self._pairs = ([self.shadow[k] for k in names], [params[k] for k in names])
        shadows, values = self._pairs
        if shadows:
            if any(v.dtype != torch.float32 for v in values):
                values = [v.float() for v in values]
            torch._foreach_lerp_(shadows, values, 1.0 - d)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        missing = sorted(set(self.shadow) - set(state["shadow"]))
        unexpected = sorted(set(state["shadow"]) - set(self.shadow))
        if missing or unexpected:
            raise KeyError(f"EMA state does not match the model: missing {missing[:8]}, unexpected {unexpected[:8]}")
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
        self._pairs = None

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Inside the block the model's parameters hold the EMA weights (swapped by reference: no copy,
        no extra memory for float32 parameters); on exit the training weights come back."""
        params = dict(model.named_parameters())
        swapped: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        try:
            with torch.no_grad():
                for name, s in self.shadow.items():
                    p = params[name]
                    if p.dtype == s.dtype:
                        old = p.data
                        p.data = s
                        swapped.append((p, old))
                    else:  # keep the parameter's dtype: copy instead of swapping
                        old = p.data.clone()
                        p.data.copy_(s)
                        swapped.append((p, old))
            yield model
        finally:
            for p, old in swapped:
                p.data = old
