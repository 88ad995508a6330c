"""Procedural layered anime characters: body, face, garments, hair, skeleton, skin weights.

``make_character(seed, config=None) -> Character`` is deterministic in the seed. The body is a
template meshed once per process from blended SDF primitives and deformed per character by
sliders; garments are thick closed shells on offset level sets of the body's SDF (or hanging
surfaces of revolution for skirts); hair is a scalp cap plus strand clumps swept along guide
curves. See the README, "Procedural characters".
"""

from stdgen.data.procedural.garments import GARMENT_KINDS
from stdgen.data.procedural.generator import GENERATOR_VERSION, make_character
from stdgen.data.procedural.hair import HAIR_STYLES
from stdgen.data.procedural.params import CharacterConfig

__all__ = ["GARMENT_KINDS", "GENERATOR_VERSION", "HAIR_STYLES", "CharacterConfig", "make_character"]
