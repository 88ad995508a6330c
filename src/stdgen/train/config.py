"""The trainer's knobs (:class:`TrainConfig`), the base of every task's preset (:class:`Preset`), and
``--set key=value`` overrides applied to a preset."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from stdgen.errors import StdgenError
from stdgen.models.modeling import ModelConfig, dataclass_to_dict


@dataclass
class TrainConfig:
    """Optimiser, schedule, precision, logging and checkpoint settings of one training run.

    ``lr`` peak learning rate of AdamW (per-group ``lr`` in a task's param groups overrides it);
    ``weight_decay`` AdamW's decoupled decay (the default param groups exempt 1-D tensors: norms, biases);
    ``betas`` AdamW's moment decays; ``warmup_steps`` linear warm-up from ``lr / warmup_steps``;
    ``max_steps`` length of the cosine decay (and the default last step); ``min_lr_ratio`` floor of the
    cosine as a fraction of ``lr``; ``grad_clip`` max global gradient norm (0: no clipping);
    ``ema_decay`` decay of the exponential moving average of the weights (0: no EMA; the effective decay
    ramps up as ``min(ema_decay, (1 + step) / (10 + step))``); ``bf16`` bf16 autocast (CUDA only: ignored on
    the CPU); ``log_every`` steps between log lines (the only steps that read losses back to the host);
    ``image_every`` steps between TensorBoard image grids (0: never); ``val_every`` steps between
    validations (0: never); ``ckpt_every_minutes`` wall-clock minutes between periodic checkpoints (0: only
    at the end); ``tensorboard`` write ``tb/`` (needs the tensorboard package; off in quick tests, whose
    start-up it dominates); ``seed`` seeds the model initialisation, the data stream and every rank's RNG.
    """

    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    max_steps: int = 100_000
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    bf16: bool = True
    log_every: int = 20
    image_every: int = 500
    val_every: int = 1000
    ckpt_every_minutes: float = 5.0
    tensorboard: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise ValueError(f"lr: expected 0 < lr <= 1, got {self.lr}")
        if not 0 <= self.weight_decay <= 1:
            raise ValueError(f"weight_decay: expected a value in [0, 1], got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas: expected two values in [0, 1), got {self.betas}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps: expected >= 0, got {self.warmup_steps}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps: expected >= 1, got {self.max_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio: expected a value in [0, 1], got {self.min_lr_ratio}")
        if not self.grad_clip >= 0:
            raise ValueError(f"grad_clip: expected >= 0 (0 = off), got {self.grad_clip}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay: expected a value in [0, 1) (0 = off), got {self.ema_decay}")
        if self.log_every < 1:
            raise ValueError(f"log_every: expected >= 1, got {self.log_every}")
        if self.image_every < 0 or self.val_every < 0:
            raise ValueError(f"image_every and val_every: expected >= 0 (0 = never), got {self.image_every}, "
                             f"{self.val_every}")
        if not self.ckpt_every_minutes >= 0:
            raise ValueError(f"ckpt_every_minutes: expected >= 0 (0 = only at the end), got {self.ckpt_every_minutes}")
        if not 0 <= self.seed < 2**31:
            raise ValueError(f"seed: expected a value in [0, 2**31), got {self.seed}")

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak lr for the update that makes step ``step + 1`` (``step`` counts the
        updates already made): linear warm-up, then cosine down to ``min_lr_ratio`` at ``max_steps``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.max_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass(kw_only=True)
class Preset:
    """Base of every task's preset (a plain dataclass; subclasses add task fields and call
    ``super().__post_init__()`` from their own). Fields are keyword-only, so subclasses may add fields
    with or without defaults.

    ``model`` the model config; ``train`` the trainer's settings; ``batch_size`` the global batch, split
    evenly over the DDP ranks (it must divide by the world size).
    """

    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    batch_size: int

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise ValueError(f"model: expected a ModelConfig, got {type(self.model).__name__}")
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train: expected a TrainConfig, got {type(self.train).__name__}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")

    def to_dict(self) -> dict:
        """JSON-able dict of every field (nested configs as dicts)."""
        return dataclass_to_dict(self)


# ---------------------------------------------------------------------------------------------------------
# --set key=value
# ---------------------------------------------------------------------------------------------------------

def _parse_value(text: str, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if text.lower() in ("none", "null") and len(args) < len(typing.get_args(hint)):
            return None
        errors = []
        for a in args:
            try:
                return _parse_value(text, a, key)
            except StdgenError as exc:
                errors.append(str(exc))
        raise StdgenError(errors[0] if errors else f"--set {key}: cannot parse {text!r}")
    if hint is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise StdgenError(f"--set {key}: expected true or false, got {text!r}")
    if hint is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise StdgenError(f"--set {key}: expected an integer, got {text!r}") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise StdgenError(f"--set {key}: expected a number, got {text!r}") from None
    if hint is str:
        return text
    if origin in (tuple, list):
        # JSON list ("[1, 2]") or comma-separated ("1,2"); elements parsed by their annotated type.
        s = text.strip()
        if s.startswith("["):
            try:
                items = [json.dumps(v) if not isinstance(v, str) else v for v in json.loads(s)]
            except json.JSONDecodeError:
                raise StdgenError(f"--set {key}: not a JSON list: {text!r}") from None
        else:
            items = [p.strip() for p in s.split(",") if p.strip()]
        args = typing.get_args(hint)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            elem = [args[0]] * len(items)
        elif origin is tuple and args:
            if len(args) != len(items):
                raise StdgenError(f"--set {key}: expected {len(args)} values, got {len(items)} in {text!r}")
            elem = list(args)
        else:
            elem = [args[0] if args else str] * len(items)
        vals = [_parse_value(t, h, key) for t, h in zip(items, elem)]
        return tuple(vals) if origin is tuple else vals
    try:  # anything else (Any, Literal ...): JSON if it parses, else the text
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _field(obj: Any, name: str, full: str, group: bool) -> Any:
    """The current value of field ``name`` of ``obj``; StdgenError if there is no such field, or if it is
    (not) a group of settings where ``group`` says the override wants one (is not)."""
    fields = {f.name for f in dataclasses.fields(obj) if f.init}
    if name not in fields:
        raise StdgenError(f"--set {full}: unknown key {name!r} in {type(obj).__name__}; known: "
                          f"{', '.join(sorted(fields))}")
    current = getattr(obj, name)
    if group and not dataclasses.is_dataclass(current):
        raise StdgenError(f"--set {full}: {name!r} is not a group of settings")
    if not group and dataclasses.is_dataclass(current):
        raise StdgenError(f"--set {full}: {name!r} is a group; set one of its fields ({name}.FIELD=VALUE)")
    return current


def _set(obj: Any, path: list[str], text: str, full: str) -> Any:
    name = path[0]
    current = _field(obj, name, full, group=len(path) > 1)
    if len(path) > 1:
        value = _set(current, path[1:], text, full)
    else:
        value = _parse_value(text, typing.get_type_hints(type(obj)).get(name, Any), full)
    try:
        return dataclasses.replace(obj, **{name: value})  # re-runs __post_init__: validation
    except (ValueError, TypeError) as exc:
        raise StdgenError(f"--set {full}: {exc}") from None


def apply_overrides(preset: Any, overrides: list[str] | dict[str, str] | None) -> Any:
    """A copy of ``preset`` with ``key=value`` overrides applied (``train.lr=1e-4``, ``batch_size=8``,
    ``model.channels=32``: dotted paths into the nested dataclasses; values parsed by the field's type;
    tuples as ``1,2`` or ``[1, 2]``). Unknown keys or invalid values raise StdgenError."""
    items = parse_overrides(overrides)
    try:
        for key, text in items.items():
            preset = _set(preset, key.split("."), text, f"{key}={text}")
        return preset
    except StdgenError as one_at_a_time:
        # Each override re-validates the whole preset, so settings that must change together
        # (use_normals with model.in_channels) fail one at a time: apply them all at once, one
        # dataclasses.replace per level, and keep the first error if that fails too.
        tree: dict[str, Any] = {}
        for key, text in items.items():
            *parents, leaf = key.split(".")
            node = tree
            for p in parents:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    raise one_at_a_time from None
            node[leaf] = (text, key)
        try:
            return _set_all(preset, tree)
        except (ValueError, TypeError):  # validation: the first error said what the user should fix
            raise one_at_a_time from None


def _set_all(obj: Any, tree: dict[str, Any]) -> Any:
    """``obj`` with every override in ``tree`` (nested names -> ``(text, full key)``) applied by one
    ``dataclasses.replace`` per dataclass, so validation sees them together. Unknown keys and
    unparsable values raise StdgenError; failed validation raises ValueError or TypeError."""
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for name, sub in tree.items():
        current = _field(obj, name, _first_key(sub), group=isinstance(sub, dict))
        if isinstance(sub, dict):
            changes[name] = _set_all(current, sub)
        else:
            text, key = sub
            changes[name] = _parse_value(text, hints.get(name, Any), f"{key}={text}")
    return dataclasses.replace(obj, **changes)


def _first_key(sub: Any) -> str:
    """The first ``key=text`` under a node of ``_set_all``'s tree, for error messages."""
    while isinstance(sub, dict):
        sub = next(iter(sub.values()))
    return f"{sub[1]}={sub[0]}"


def parse_overrides(overrides: list[str] | dict[str, str] | None) -> dict[str, str]:
    """``["a.b=1", ...]`` -> ``{"a.b": "1"}`` (later keys win); dicts pass through."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return {str(k): str(v) for k, v in overrides.items()}
    out: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StdgenError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out
