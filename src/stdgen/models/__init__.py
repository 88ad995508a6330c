"""The networks: one convention for all of them (diffusers' idiom), in :mod:`stdgen.models.modeling`.

    @dataclass(frozen=True)
    class SLRMConfig(ModelConfig):       # every field documented, validated in __post_init__
        channels: int = 64               # (messages name the field, the value, the allowed range)

    class SLRM(ModelMixin, nn.Module):   # built from its config only; no .cuda(), no I/O at import
        config_class = SLRMConfig
        def __init__(self, config): super().__init__(config); ...
        def forward(self, ...) -> SLRMOutput:     # an output dataclass; shapes in the docstring

    model.save_pretrained(dir, dtype="fp32" | "fp16" | "int8")   # dir/config.json + dir/model.safetensors
    model = SLRM.from_pretrained(find_weights("slrm", weights_dir), device="cuda", dtype=torch.bfloat16)

- ``config.json``: ``{"_class_name": "SLRM", **config.to_dict()}``; ``from_dict`` is strict (an unknown key
  is an error naming the known ones). ``model.safetensors``: fp32, fp16, or int8 with one fp16 scale per
  output channel (``"<name>.__scale__"``), dequantised on load.
- ``from_pretrained`` is strict: missing / unexpected keys, wrong shapes, a config of another class, a
  missing or corrupt file -> :class:`~stdgen.errors.StdgenError` saying what was looked for where.
- Weights are found by :func:`stdgen.weights.find_weights` (``--weights DIR``, ``$STDGEN_WEIGHTS``, or
  bundled in the package); nothing is ever downloaded.
- Models never import ``stdgen.data``, ``stdgen.train``, ``stdgen.pipeline`` or ``stdgen.app``; training
  data reach them only through a :class:`stdgen.train.Task`.
"""

from stdgen.models.modeling import (
    STORAGE_DTYPES,
    ModelConfig,
    ModelMixin,
    dequantize_int8,
    int8_error,
    quantize_int8,
)

__all__ = ["STORAGE_DTYPES", "ModelConfig", "ModelMixin", "dequantize_int8", "int8_error", "quantize_int8"]
