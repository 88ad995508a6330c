"""The one model convention: a frozen config dataclass and ``Model(ModelMixin, nn.Module)`` built from it.

    @dataclass(frozen=True)
    class TinyConfig(ModelConfig):
        channels: int = 8
        def __post_init__(self): ...            # validate: name the field, the value, the range

    class Tiny(ModelMixin, nn.Module):
        config_class = TinyConfig
        def __init__(self, config: TinyConfig):
            super().__init__(config)              # sets self.config
            ...

    model.save_pretrained(folder, dtype="fp16")   # folder/config.json + folder/model.safetensors
    model = Tiny.from_pretrained(folder, device="cuda", dtype=torch.bfloat16)

Storage (``model.safetensors``, metadata ``{"format": "pt", "stdgen_dtype": ...}``):

- ``fp32`` / ``fp16``: every floating tensor of the state dict in that dtype; integer and bool buffers
  as they are.
- ``int8``: every floating tensor with >= 2 dimensions as int8 with one fp16 scale per output channel
  (dim 0) under ``"<name>.__scale__"`` (shape ``(C,)``; symmetric, ``w ~ q * scale``, ``|q| <= 127``);
  floating tensors with fewer dimensions in fp16. The worst-case element error is half a step,
  ``scale / 2 = absmax(row) / 254`` (plus fp16 rounding of the scale); :func:`int8_error` measures it.

Loading is strict: missing and unexpected keys, shape mismatches, a config of another class, missing
or unreadable files all raise :class:`~stdgen.errors.StdgenError` naming what was looked for where.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from stdgen.errors import StdgenError
from stdgen.utils.io import atomic_dir

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Storage dtypes of :meth:`ModelMixin.save_pretrained`.
STORAGE_DTYPES: tuple[str, ...] = ("fp32", "fp16", "int8")
SCALE_SUFFIX = ".__scale__"
_CLASS_KEY = "_class_name"
_DTYPE_NAMES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
                "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}

C = TypeVar("C", bound="ModelConfig")
M = TypeVar("M", bound="ModelMixin")


# ---------------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------------

def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    return value


def _from_jsonable(hint: Any, value: Any, where: str) -> Any:
    """Rebuild ``value`` (parsed JSON) to the annotated type ``hint``: nested dataclasses from dicts, tuples
    from lists (recursively); everything else is passed through for the dataclass's own validation."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        for a in args:  # the first arm that takes the value's JSON shape
            if isinstance(value, dict) and dataclasses.is_dataclass(a):
                return _from_jsonable(a, value, where)
            if isinstance(value, list) and typing.get_origin(a) in (tuple, list):
                return _from_jsonable(a, value, where)
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping for {hint.__name__}, got {type(value).__name__}")
        return dataclass_from_dict(hint, value, where=where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_jsonable(args[0], v, where) for v in value)
        if args and len(args) == len(value):
            return tuple(_from_jsonable(a, v, where) for a, v in zip(args, value))
        return tuple(value)
    if origin is list and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        return [_from_jsonable(args[0] if args else Any, v, where) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def dataclass_to_dict(obj: Any) -> dict:
    """A dataclass as plain JSON-able data: nested dataclasses -> dicts, tuples -> lists."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"expected a dataclass instance, got {type(obj).__name__}")
    return _to_jsonable(obj)


def dataclass_from_dict(cls: type, data: Mapping[str, Any], *, where: str | None = None) -> Any:
    """Strictly rebuild dataclass ``cls`` from :func:`dataclass_to_dict` output.

    An unknown key raises ``ValueError`` naming it and the known keys; nested dataclass fields and tuples
    are rebuilt from the annotations; ``"_class_name"`` is ignored. Missing keys take the field defaults.
    """
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(k for k in data if k not in fields and k != _CLASS_KEY)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _from_jsonable(hints.get(k, Any), v, f"{where}.{k}") for k, v in data.items() if k != _CLASS_KEY}
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """Base of every model config (subclass it as a frozen dataclass; validate in ``__post_init__``)."""

    def to_dict(self) -> dict:
        """JSON-able dict of the fields (tuples -> lists, nested dataclasses -> dicts)."""
        return dataclass_to_dict(self)

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """Strict inverse of :meth:`to_dict`: an unknown key is a ``ValueError`` naming it and the known
        keys; nested dataclass fields are rebuilt; the key ``"_class_name"`` is ignored."""
        return dataclass_from_dict(cls, d)


# ---------------------------------------------------------------------------------------------------------
# int8 storage
# ---------------------------------------------------------------------------------------------------------

def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``weight`` (C, ...) floating -> (q (C, ...) int8, scale (C,) fp16)
    with ``weight ~ q * scale`` and ``|q| <= 127``. All-zero channels get scale 1 (q = 0)."""
    w = weight.detach().float()
    absmax = w.reshape(w.shape[0], -1).abs().amax(dim=1)
    # The scale is rounded to fp16 first and q computed against the rounded scale, so storing it loses
    # nothing more; the clamp keeps tiny or huge rows inside fp16's range.
    scale = (absmax / 127.0).clamp(min=2.0**-24, max=65504.0).to(torch.float16)
    scale = torch.where(absmax > 0, scale, torch.ones_like(scale))
    shape = (-1,) + (1,) * (w.dim() - 1)
    q = torch.round(w / scale.float().view(shape)).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_int8`: (C, ...) int8, (C,) -> (C, ...) float32."""
    return q.float() * scale.float().view((-1,) + (1,) * (q.dim() - 1))


def int8_error(model: nn.Module) -> dict[str, float]:
    """Storage error of int8 over a model's floating >= 2-D tensors: ``{"max_abs", "max_rel"}`` where
    ``max_rel`` is the largest element error over its row's largest magnitude (bounded by 1/254 + fp16
    scale rounding)."""
    max_abs, max_rel = 0.0, 0.0
    for t in model.state_dict().values():
        if t.is_floating_point() and t.dim() >= 2 and t.numel():
            q, s = quantize_int8(t)
            err = (dequantize_int8(q, s) - t.detach().float().cpu()).abs()
            row = t.detach().float().cpu().reshape(t.shape[0], -1).abs().amax(1).clamp_min(1e-30)
            max_abs = max(max_abs, float(err.max()))
            max_rel = max(max_rel, float((err.reshape(t.shape[0], -1).amax(1) / row).max()))
    return {"max_abs": max_abs, "max_rel": max_rel}


def _storage_tensors(state: Mapping[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if name.endswith(SCALE_SUFFIX):
            raise ValueError(f"state dict key {name!r} ends with the reserved suffix {SCALE_SUFFIX!r}")
        # clone(): safetensors refuses tensors sharing storage (tied weights, views); loading copies
        # each key back, so ties survive the round trip.
        t = t.detach().to("cpu")
        if not t.is_floating_point():
            out[name] = t.contiguous().clone()
        elif dtype == "fp32":
            out[name] = t.to(torch.float32).contiguous().clone()
        elif dtype == "fp16" or t.dim() < 2 or t.numel() == 0:
            out[name] = t.to(torch.float16).contiguous().clone()
        else:
            out[name], out[name + SCALE_SUFFIX] = quantize_int8(t)
    return out


def load_state_dict_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a ``model.safetensors`` written by :meth:`ModelMixin.save_pretrained`: (state dict with int8
    tensors dequantised to float32, metadata). Unreadable or inconsistent files raise StdgenError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise StdgenError(f"{path}: weights file not found (looked for {WEIGHTS_NAME} in {path.parent})")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            raw = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for truncated / garbage files
        raise StdgenError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    stored = metadata.get("stdgen_dtype", "fp32")
    state: dict[str, torch.Tensor] = {}
    for k, t in raw.items():
        if k.endswith(SCALE_SUFFIX):
            base = k[: -len(SCALE_SUFFIX)]
            if base not in raw or raw[base].dtype != torch.int8:
                raise StdgenError(f"{path}: scale {k!r} has no int8 tensor {base!r}")
            continue
        if t.dtype == torch.int8 and k + SCALE_SUFFIX in raw:
            s = raw[k + SCALE_SUFFIX]
            if s.dim() != 1 or s.shape[0] != t.shape[0]:
                raise StdgenError(f"{path}: scale {k + SCALE_SUFFIX!r} has shape {tuple(s.shape)}, expected "
                                  f"({t.shape[0]},)")
            state[k] = dequantize_int8(t, s)
        elif t.dtype == torch.int8 and stored == "int8":
            raise StdgenError(f"{path}: int8 tensor {k!r} has no scale {k + SCALE_SUFFIX!r}")
        else:
            state[k] = t
    return state, metadata


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPE_NAMES:
        raise ValueError(f"dtype: expected a torch dtype or one of {sorted(_DTYPE_NAMES)}, got {dtype!r}")
    return _DTYPE_NAMES[dtype]


def _key_list(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_state_dict(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict key and shape comparison; raises StdgenError naming missing / unexpected / mismatched keys."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys {_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_key_list(unexpected)}")
    shapes = [f"{k} {tuple(got[k].shape)} vs {tuple(expected[k].shape)} expected" for k in sorted(expected)
              if k in got and tuple(got[k].shape) != tuple(expected[k].shape)]
    if shapes:
        problems.append(f"shape mismatches {_key_list(shapes, 5)}")
    if problems:
        raise StdgenError(f"{source}: weights do not match the model: " + "; ".join(problems))


def read_config(directory: str | Path) -> dict:
    """The parsed ``config.json`` of a weights folder (StdgenError when missing or unreadable)."""
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise StdgenError(f"{directory}: weights folder not found (looked for {CONFIG_NAME} and {WEIGHTS_NAME})")
    if not path.is_file():
        raise StdgenError(f"{path}: config file not found (a weights folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StdgenError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(data, dict):
        raise StdgenError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------------------------
# The mixin
# ---------------------------------------------------------------------------------------------------------

class ModelMixin:
    """Save / load for ``class Model(ModelMixin, nn.Module)``; the model is built from its config only.

    ``__init__(config)`` calls ``nn.Module.__init__`` and stores ``self.config`` (models may also call
    ``super().__init__()`` and set ``self.config`` themselves).
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    config: ModelConfig

    def __init__(self, config: ModelConfig | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if config is not None:
            if not isinstance(config, self.config_class):
                raise TypeError(f"{type(self).__name__}: config must be a {self.config_class.__name__}, "
                                f"got {type(config).__name__}")
            self.config = config

    def num_parameters(self, *, trainable_only: bool = False) -> int:
        """Number of parameter elements (only those with ``requires_grad`` when ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)  # type: ignore[attr-defined]

    def save_pretrained(self, directory: str | Path, *, dtype: str = "fp32") -> None:
        """Write ``directory/config.json`` and ``directory/model.safetensors`` (the folder is replaced whole,
        atomically). ``dtype``: ``"fp32"``, ``"fp16"`` or ``"int8"`` (see the module docstring)."""
        from safetensors.torch import save_file

        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"dtype: expected one of {STORAGE_DTYPES}, got {dtype!r}")
        config = getattr(self, "config", None)
        if not isinstance(config, ModelConfig):
            raise TypeError(f"{type(self).__name__}.config must be a ModelConfig, got {type(config).__name__}")
        tensors = _storage_tensors(self.state_dict(), dtype)  # type: ignore[attr-defined]
        cfg = {_CLASS_KEY: type(self).__name__, **config.to_dict()}
        with atomic_dir(directory) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
            save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "stdgen_dtype": dtype})

    @classmethod
    def load_config(cls, directory: str | Path) -> ModelConfig:
        """The model config stored in ``directory/config.json`` (strict; StdgenError on any problem)."""
        data = read_config(directory)
        name = data.get(_CLASS_KEY)
        if name is not None and name != cls.__name__:
            raise StdgenError(f"{Path(directory) / CONFIG_NAME}: weights of a {name}, not a {cls.__name__}")
        try:
            return cls.config_class.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise StdgenError(f"{Path(directory) / CONFIG_NAME}: {exc}") from None

    @classmethod
    def from_pretrained(cls: type[M], directory: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | str = torch.float32) -> M:
        """Build the model from ``directory/config.json`` and load ``directory/model.safetensors`` strictly
        (int8 dequantised), cast floating tensors to ``dtype``, move to ``device``; returned in eval mode."""
        directory = Path(directory)
        config = cls.load_config(directory)
        state, _ = load_state_dict_file(directory / WEIGHTS_NAME)
        with torch.device(device):  # initialise on the target device: faster for big models on CUDA
            model = cls(config)  # type: ignore[call-arg]
        load_weights_into(model, state, str(directory))  # type: ignore[arg-type]
        model.to(dtype=_dtype(dtype))  # type: ignore[attr-defined]
        return model.eval()  # type: ignore[attr-defined]


def load_weights_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``model`` (keys and shapes checked first, errors naming them)."""
    check_state_dict(model.state_dict(), state, source)
    model.load_state_dict(dict(state), strict=True)


def load_weights(model: nn.Module, directory: str | Path,
                 adapt: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> None:
    """Load a weights folder's tensors into an existing model (strict; the folder's config is read but only
    compared: a different config is logged, mismatched keys or shapes are an error). ``adapt`` maps the
    stored tensors first (an explicit, tested conversion, e.g. widening an input layer)."""
    directory = Path(directory)
    data = read_config(directory)
    config = getattr(model, "config", None)
    if isinstance(config, ModelConfig):
        stored = {k: v for k, v in data.items() if k != _CLASS_KEY}
        if stored != config.to_dict():
            diff = sorted(k for k in set(stored) | set(config.to_dict()) if stored.get(k) != config.to_dict().get(k))
            logger.warning("%s: config differs from the model's in %s", directory, diff)
    state, _ = load_state_dict_file(directory / WEIGHTS_NAME)
    if adapt is not None:
        state = adapt(dict(state))
    load_weights_into(model, state, str(directory))
