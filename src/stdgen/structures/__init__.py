"""The shared types every stage passes around; imports no stage.

- :class:`~stdgen.structures.mesh.Mesh` (plain numpy triangle mesh) and ``merge_meshes``;
- :class:`~stdgen.structures.character.Character` with its :class:`Skeleton` and :class:`Pose`;
- :class:`~stdgen.structures.semantics.Part` (body / clothes / hair) and the paper's layer sets.
"""

from stdgen.structures.character import HUMANOID_BONES, HUMANOID_PARENTS, Character, Pose, Skeleton, skin_vertices
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import LAYER_SETS, NUM_PARTS, PARTS, Part

__all__ = ["HUMANOID_BONES", "HUMANOID_PARENTS", "LAYER_SETS", "NUM_PARTS", "PARTS", "Character", "Mesh", "Part",
           "Pose", "Skeleton", "merge_meshes", "skin_vertices"]
