"""Semantic classes, layer order and layer sets, shared project-wide.

Never use bare integers for classes: ``Part.BODY``, not ``0``. The enum's order *is* the
layer order, inside to outside (body, clothes, hair), as in the paper.
"""

from __future__ import annotations

from enum import IntEnum


class Part(IntEnum):
    """The three semantic classes of a character, in layer order (inside -> outside)."""

    BODY = 0
    CLOTHES = 1
    HAIR = 2

    @property
    def key(self) -> str:
        """Lower-case name used in files and node names (``"body"``, ``"clothes"``, ``"hair"``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int | Part) -> Part:
        if isinstance(value, Part):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(f"unknown part {value!r}; expected one of body, clothes, hair") from None
        return cls(value)


PARTS: tuple[Part, ...] = (Part.BODY, Part.CLOTHES, Part.HAIR)
NUM_PARTS = len(PARTS)

#: The three layer sets P the paper renders and extracts: body alone, body + clothes, everything.
#: Keys are the names used in dataset files.
LAYER_SETS: dict[str, tuple[Part, ...]] = {
    "body": (Part.BODY,),
    "body_clothes": (Part.BODY, Part.CLOTHES),
    "full": (Part.BODY, Part.CLOTHES, Part.HAIR),
}

#: Value of background pixels in uint8 semantic label maps (parts use their ``Part`` value).
BACKGROUND_LABEL = 255
