"""Which part (body / clothes / hair) a VRM primitive belongs to, by its names.

The rules live in a small YAML file (``parts.yaml`` beside this module, documented there) so a
user can import files named otherwise without touching code: ``load_part_rules(path)``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from stdgen.errors import InputError
from stdgen.structures.semantics import Part

NAME_KINDS: tuple[str, ...] = ("material", "mesh", "node")


@dataclass(frozen=True)
class PartRule:
    """One rule: names in which ``pattern`` is found (``re.search``) belong to ``part``."""

    pattern: re.Pattern
    part: Part


@dataclass(frozen=True)
class PartRules:
    """An ordered list of rules, the order in which a primitive's names are tried, and the part
    of primitives no rule matches. ``source`` names the YAML file they came from."""

    rules: tuple[PartRule, ...]
    match_order: tuple[str, ...] = NAME_KINDS
    unmatched: Part = Part.BODY
    source: str = "parts.yaml"

    def classify(self, names: dict[str, str | None]) -> tuple[Part, str]:
        """``names`` maps ``"material"``, ``"mesh"``, ``"node"`` to a name (or None). Returns the
        part and a sentence saying why, for the import report."""
        for kind in self.match_order:
            name = names.get(kind)
            if not name:
                continue
            for rule in self.rules:
                if rule.pattern.search(name):
                    return rule.part, f"{kind} name {name!r} matches /{rule.pattern.pattern}/"
        tried = ", ".join(f"{k} {names.get(k)!r}" for k in self.match_order if names.get(k))
        why = f"no rule matches ({tried or 'no names'}); unmatched primitives go to {self.unmatched.key}"
        return self.unmatched, why


def load_part_rules(path: str | os.PathLike | None = None) -> PartRules:
    """The rules in ``path`` (YAML), or the packaged default (VRoid's naming) when None."""
    import yaml

    if path is None:
        text = resources.files("stdgen.data.vrm").joinpath("parts.yaml").read_text()
        source = "stdgen/data/vrm/parts.yaml"
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: no such part-rules file")
        text = p.read_text()
        source = str(p)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML ({exc})") from None
    return parse_part_rules(data, source)


def parse_part_rules(data, source: str = "<rules>") -> PartRules:
    """Check and compile the YAML structure; unknown keys and bad values raise InputError."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping with 'rules'")
    unknown = set(data) - {"rules", "match_order", "unmatched"}
    if unknown:
        raise InputError(f"{source}: unknown keys {sorted(unknown)} (allowed: rules, match_order, unmatched)")
    order = data.get("match_order", list(NAME_KINDS))
    if not isinstance(order, list) or not order or any(k not in NAME_KINDS for k in order):
        raise InputError(f"{source}: match_order must be a list drawn from {list(NAME_KINDS)}, got {order!r}")
    try:
        unmatched = Part.parse(data.get("unmatched", "body"))
    except (KeyError, ValueError, TypeError):
        raise InputError(f"{source}: unmatched must be body, clothes or hair, got {data.get('unmatched')!r}") from None
    raw = data.get("rules")
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{source}: 'rules' must be a non-empty list of {{pattern, part}}")
    rules = []
    for i, r in enumerate(raw):
        if not isinstance(r, dict) or set(r) != {"pattern", "part"}:
            raise InputError(f"{source}: rule {i} must have exactly the keys pattern and part, got {r!r}")
        try:
            pattern = re.compile(str(r["pattern"]))
        except re.error as exc:
            raise InputError(f"{source}: rule {i}: bad pattern {r['pattern']!r} ({exc})") from None
        try:
            part = Part.parse(r["part"])
        except (KeyError, ValueError, TypeError):
            raise InputError(f"{source}: rule {i}: part must be body, clothes or hair, got {r['part']!r}") from None
        rules.append(PartRule(pattern, part))
    return PartRules(tuple(rules), tuple(order), unmatched, source)
