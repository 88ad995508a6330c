"""Data: the shared :class:`Character`, procedural characters, VRM import, dataset renders."""

from stdgen.structures.character import HUMANOID_BONES, HUMANOID_PARENTS, Character, Pose, Skeleton, skin_vertices

__all__ = ["HUMANOID_BONES", "HUMANOID_PARENTS", "Character", "Pose", "Skeleton", "skin_vertices"]
