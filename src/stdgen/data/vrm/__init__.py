"""VRM 0.x / 1.0 import: real VRM characters -> :class:`~stdgen.structures.character.Character`.

``import_vrm(path)`` reads a file, splits it into body / clothes / hair by names
(``parts.yaml``, overridable), builds the humanoid skeleton and poses it to the canonical A-pose
(reading the file is :mod:`stdgen.io.vrm`'s); ``stdgen data import-vrm`` (:mod:`stdgen.data.vrm.cli`)
turns files into dataset folders.
"""

from stdgen.data.vrm.importer import SkipImport, VrmImport, VrmImportConfig, import_vrm
from stdgen.data.vrm.split import PartRules, load_part_rules

__all__ = ["PartRules", "SkipImport", "VrmImport", "VrmImportConfig", "import_vrm", "load_part_rules"]
