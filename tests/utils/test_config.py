"""Config dataclasses <-> dicts (strict), and the range checks their ``__post_init__`` runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from stdgen.structures.semantics import Part
from stdgen.utils.config import ConfigMixin, check_choice, check_range, config_from_dict, config_to_dict


@dataclass
class Inner(ConfigMixin):
    #: A positive step.
    lr: float = 0.1
    #: Steps.
    steps: int = 3

    def __post_init__(self) -> None:
        check_range(self, "lr", 0, None, lo_open=True)
        check_range(self, "steps", 0, 100, integer=True)


@dataclass
class Outer(ConfigMixin):
    inner: Inner = field(default_factory=Inner)
    size: tuple[int, int] = (4, 5)
    thresholds: tuple[float, ...] = (0.01, 0.02)
    resolution: int | None = None
    mode: str = "a"
    part: Part = Part.HAIR
    flag: bool = True

    def __post_init__(self) -> None:
        check_choice(self, "mode", ("a", "b"))
        check_range(self, "resolution", 16, 4096, integer=True, optional=True)


def test_round_trip_through_json_gives_an_equal_config():
    cfg = Outer(Inner(lr=0.5, steps=7), (1, 2), (0.5,), 64, "b", Part.CLOTHES, False)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data == {"inner": {"lr": 0.5, "steps": 7}, "size": [1, 2], "thresholds": [0.5], "resolution": 64,
                    "mode": "b", "part": "clothes", "flag": False}
    back = Outer.from_dict(data)
    assert back == cfg and isinstance(back.size, tuple) and isinstance(back.inner, Inner)
    assert Outer.from_json(cfg.to_json()) == cfg
    assert config_from_dict(Outer, config_to_dict(Outer())) == Outer()


def test_missing_keys_keep_their_defaults_and_ints_become_floats():
    cfg = Outer.from_dict({"inner": {"lr": 1}})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float) and cfg.inner.steps == 3 and cfg.size == (4, 5)


def test_unknown_keys_are_an_error_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"inner: unknown keys \['lrr'\]; known keys: \['lr', 'steps'\]"):
        Outer.from_dict({"inner": {"lrr": 0.1}})
    with pytest.raises(ValueError, match="unknown keys"):
        Outer.from_dict({"colour": 1})


def test_wrong_types_name_the_path():
    with pytest.raises(TypeError, match=r"inner\.steps: expected an integer, got 2\.5"):
        Outer.from_dict({"inner": {"steps": 2.5}})
    with pytest.raises(TypeError, match="size: expected 2 items"):
        Outer.from_dict({"size": [1, 2, 3]})
    with pytest.raises(ValueError, match="part: expected one of"):
        Outer.from_dict({"part": "hat"})


def test_checks_name_class_field_value_and_range():
    with pytest.raises(ValueError, match=r"Inner\.lr: expected a number in \(0, inf\], got -1"):
        Inner(lr=-1)
    with pytest.raises(ValueError, match=r"Inner\.steps: expected an integer in \[0, 100\], got 1\.5"):
        Inner(steps=1.5)
    with pytest.raises(ValueError, match=r"Outer\.mode: expected one of 'a', 'b', got 'c'"):
        Outer(mode="c")
    with pytest.raises(ValueError, match=r"Outer\.resolution: expected an integer in \[16, 4096\] or None, got 8"):
        Outer(resolution=8)
    with pytest.raises(ValueError, match="Inner.steps"):
        Outer.from_dict({"inner": {"steps": 1000}})
    with pytest.raises(ValueError, match="nan"):
        Inner(lr=float("nan"))


def test_validate_catches_fields_changed_in_place():
    cfg = Outer()
    cfg.inner.steps = -1
    with pytest.raises(ValueError, match="Inner.steps"):
        cfg.validate()
