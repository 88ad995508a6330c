"""The model convention: configs, save / load in fp32, fp16 and int8, strict loading, determinism."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from stdgen.errors import StdgenError
from stdgen.models.modeling import (
    SCALE_SUFFIX,
    ModelConfig,
    ModelMixin,
    dequantize_int8,
    int8_error,
    quantize_int8,
)


@dataclass(frozen=True)
class BlockConfig:
    kernel: int = 3
    widths: tuple[int, ...] = (8, 16)


@dataclass(frozen=True)
class TinyConfig(ModelConfig):
    in_channels: int = 3
    block: BlockConfig = field(default_factory=BlockConfig)
    out_features: int = 5
    scale: float = 1.0
    name: str | None = None

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels: expected >= 1, got {self.in_channels}")


@dataclass
class TinyOutput:
    logits: torch.Tensor  # (B, out_features)


class Tiny(ModelMixin, nn.Module):
    """(B, C, H, W) -> TinyOutput with (B, out_features); conv + norm + linear, a tied head, buffers."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        c0, c1 = config.block.widths
        self.conv1 = nn.Conv2d(config.in_channels, c0, config.block.kernel, padding=1)
        self.norm = nn.GroupNorm(2, c0)
        self.conv2 = nn.Conv2d(c0, c1, config.block.kernel, padding=1)
        self.embed = nn.Linear(c1, config.out_features)
        self.head = nn.Linear(config.out_features, config.out_features, bias=False)
        self.register_buffer("counter", torch.tensor([3, 1, 4], dtype=torch.int64))
        self.register_buffer("offset", torch.linspace(-1, 1, config.out_features))

    def forward(self, x: torch.Tensor) -> TinyOutput:
        h = torch.nn.functional.silu(self.norm(self.conv1(x)))
        h = self.conv2(h).mean(dim=(2, 3))
        return TinyOutput(logits=self.head(self.embed(h)) * self.config.scale + self.offset)


def make(seed: int = 0, **kw) -> Tiny:
    torch.manual_seed(seed)
    return Tiny(TinyConfig(**kw))


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_config_round_trip_rebuilds_nested_and_tuples():
    cfg = TinyConfig(in_channels=4, block=BlockConfig(kernel=5, widths=(4, 6)), scale=2, name="x")
    d = cfg.to_dict()
    assert d["block"] == {"kernel": 5, "widths": [4, 6]}
    back = TinyConfig.from_dict(json.loads(json.dumps({"_class_name": "Tiny", **d})))
    assert back == cfg and isinstance(back.block, BlockConfig) and back.block.widths == (4, 6)


def test_config_from_dict_is_strict():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bogus'\].*known keys: \['block', 'in_channels'"):
        TinyConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match=r"TinyConfig.block: unknown key\(s\) \['depth'\]"):
        TinyConfig.from_dict({"block": {"depth": 2}})
    with pytest.raises(ValueError, match="in_channels: expected >= 1, got 0"):
        TinyConfig.from_dict({"in_channels": 0})


def test_shapes_and_determinism():
    a, b = make(0), make(0)
    out = a(inputs())
    assert isinstance(out, TinyOutput) and out.logits.shape == (2, 5)
    assert torch.equal(out.logits, b(inputs()).logits)
    assert not torch.equal(out.logits, make(1)(inputs()).logits)
    n = sum(p.numel() for p in a.parameters())
    assert a.num_parameters() == n == 3 * 8 * 9 + 8 + 2 * 8 + 8 * 16 * 9 + 16 + 16 * 5 + 5 + 25
    a.head.weight.requires_grad_(False)
    assert a.num_parameters(trainable_only=True) == n - 25


def test_fp32_round_trip_is_exact(tmp_path):
    model = make(3, scale=0.5)
    model.save_pretrained(tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())
    assert cfg["_class_name"] == "Tiny" and cfg["scale"] == 0.5
    loaded = Tiny.from_pretrained(tmp_path / "w")
    assert not loaded.training and loaded.config == model.config
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and v.dtype == v2.dtype and torch.equal(v, v2), k
    assert torch.equal(loaded(inputs()).logits, model(inputs()).logits)


def test_fp16_round_trip_within_half_precision(tmp_path):
    model = make(4)
    model.save_pretrained(tmp_path / "w", dtype="fp16")
    tensors = load_file(str(tmp_path / "w" / "model.safetensors"))
    assert {t.dtype for t in tensors.values()} == {torch.float16, torch.int64}
    loaded = Tiny.from_pretrained(tmp_path / "w")
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype
        if v.is_floating_point():
            # fp16 keeps 11 significant bits: relative error <= 2^-11 (values here are far from subnormals).
            assert torch.all((w - v).abs() <= v.abs() * 2.0**-11 + 1e-7), k
        else:
            assert torch.equal(w, v)
    err = (loaded(inputs()).logits - model(inputs()).logits).abs().max().item()
    assert err < 1e-3


def test_int8_round_trip_within_half_a_step(tmp_path):
    model = make(5)
    model.save_pretrained(tmp_path / "w", dtype="int8")
    with open(tmp_path / "w" / "model.safetensors", "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert header["__metadata__"] == {"format": "pt", "stdgen_dtype": "int8"}
    tensors = load_file(str(tmp_path / "w" / "model.safetensors"))
    assert tensors["conv1.weight"].dtype == torch.int8
    assert tensors["conv1.weight" + SCALE_SUFFIX].dtype == torch.float16
    assert tensors["conv1.weight" + SCALE_SUFFIX].shape == (8,)
    assert tensors["conv1.bias"].dtype == torch.float16 and tensors["offset"].dtype == torch.float16
    loaded = Tiny.from_pretrained(tmp_path / "w")
    for k, v in model.state_dict().items():
        if v.is_floating_point() and v.dim() >= 2:
            scale = tensors[k + SCALE_SUFFIX].float().view((-1,) + (1,) * (v.dim() - 1))
            assert torch.all((loaded.state_dict()[k] - v).abs() <= scale / 2 * (1 + 1e-6)), k
    stats = int8_error(model)
    # absmax / 127 rounded to fp16 (rel. 2^-11), then half a step: at most ~1/254 of the row's magnitude.
    assert 0 < stats["max_rel"] <= (1 + 2.0**-10) / 254
    out_err = (loaded(inputs()).logits - model(inputs()).logits).abs().max().item()
    print(f"int8 storage: max weight error {stats['max_abs']:.2e} ({stats['max_rel']:.2e} of the row's max), "
          f"max output error {out_err:.2e}")
    assert out_err < 2e-2


def test_quantize_int8_edge_cases():
    w = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [1e-9, -1e-9, 0.0]])
    q, s = quantize_int8(w)
    assert q.dtype == torch.int8 and s.dtype == torch.float16 and s.shape == (3,)
    assert torch.equal(q[0], torch.zeros(3, dtype=torch.int8)) and s[0] == 1
    assert q[1].tolist() == [64, -127, 32]  # the row max maps to -127; 1 and 0.5 are ~63.5 and ~31.75 steps
    assert torch.allclose(dequantize_int8(q, s)[1], w[1], atol=float(s[1]) / 2)
    assert torch.isfinite(dequantize_int8(q, s)).all()


def test_load_dtype_and_device(tmp_path):
    make(6).save_pretrained(tmp_path / "w")
    m = Tiny.from_pretrained(tmp_path / "w", dtype="bf16")
    assert m.conv1.weight.dtype == torch.bfloat16 and m.counter.dtype == torch.int64
    assert m.conv1.weight.device.type == "cpu"


class TiedTiny(Tiny):
    """Tiny with a second name for its head: the state dict holds one tensor under two keys."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.alias = self.head


def test_tied_weights_survive(tmp_path):
    torch.manual_seed(12)
    model = TiedTiny(TinyConfig())
    assert model.state_dict()["alias.weight"].data_ptr() == model.state_dict()["head.weight"].data_ptr()
    model.save_pretrained(tmp_path / "w")  # safetensors alone refuses shared storage
    loaded = TiedTiny.from_pretrained(tmp_path / "w")
    assert loaded.alias.weight is loaded.head.weight
    assert torch.equal(loaded.head.weight, model.head.weight)


def test_strict_loading_names_keys(tmp_path):
    make(8).save_pretrained(tmp_path / "w")
    path = tmp_path / "w" / "model.safetensors"
    state = load_file(str(path))
    dropped = dict(state)
    dropped.pop("conv2.bias")
    dropped["surplus.weight"] = torch.zeros(2)
    save_file(dropped, str(path))
    with pytest.raises(StdgenError, match=r"missing keys conv2\.bias; unexpected keys surplus\.weight"):
        Tiny.from_pretrained(tmp_path / "w")
    wrong = dict(state)
    wrong["embed.weight"] = torch.zeros(5, 15)
    save_file(wrong, str(path))
    with pytest.raises(StdgenError, match=r"shape mismatches embed\.weight \(5, 15\) vs \(5, 16\) expected"):
        Tiny.from_pretrained(tmp_path / "w")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(StdgenError, match="weights folder not found"):
        Tiny.from_pretrained(tmp_path / "nothing")
    make(9).save_pretrained(tmp_path / "w")
    weights = tmp_path / "w" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(StdgenError, match="not a readable safetensors file"):
        Tiny.from_pretrained(tmp_path / "w")
    weights.unlink()
    with pytest.raises(StdgenError, match=r"weights file not found \(looked for model\.safetensors in"):
        Tiny.from_pretrained(tmp_path / "w")
    make(9).save_pretrained(tmp_path / "w")
    cfg = tmp_path / "w" / "config.json"
    cfg.write_text("{not json")
    with pytest.raises(StdgenError, match="not a readable JSON config"):
        Tiny.from_pretrained(tmp_path / "w")
    cfg.write_text(json.dumps({"_class_name": "Tiny", "in_chanels": 3}))
    with pytest.raises(StdgenError, match=r"unknown key\(s\) \['in_chanels'\]"):
        Tiny.from_pretrained(tmp_path / "w")
    cfg.write_text(json.dumps({"_class_name": "Other"}))
    with pytest.raises(StdgenError, match="weights of a Other, not a Tiny"):
        Tiny.from_pretrained(tmp_path / "w")
    cfg.unlink()
    with pytest.raises(StdgenError, match="config file not found"):
        Tiny.from_pretrained(tmp_path / "w")


def test_int8_scale_without_tensor_is_an_error(tmp_path):
    make(10).save_pretrained(tmp_path / "w", dtype="int8")
    path = tmp_path / "w" / "model.safetensors"
    state = load_file(str(path))
    state.pop("conv1.weight" + SCALE_SUFFIX)
    save_file(state, str(path), metadata={"format": "pt", "stdgen_dtype": "int8"})
    with pytest.raises(StdgenError, match=r"int8 tensor 'conv1.weight' has no scale"):
        Tiny.from_pretrained(tmp_path / "w")


def test_save_is_atomic_and_checks_dtype(tmp_path):
    model = make(11)
    model.save_pretrained(tmp_path / "w")
    before = (tmp_path / "w" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"dtype: expected one of \('fp32', 'fp16', 'int8'\), got 'int4'"):
        model.save_pretrained(tmp_path / "w", dtype="int4")
    assert (tmp_path / "w" / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w"]


def test_wrong_config_type_is_rejected():
    with pytest.raises(TypeError, match="config must be a TinyConfig, got BlockConfig"):
        Tiny(BlockConfig())
