"""The S-LRM (semantic large reconstruction model): six views in, a semantic triplane field out.

See :mod:`stdgen.models.slrm.model` for the shapes, :mod:`stdgen.models.slrm.render` for volume
rendering the field, and :mod:`stdgen.models.slrm.reconstruct` for views -> layered ``Character``.
"""

from stdgen.models.slrm.model import SLRM, FieldOutput, SLRMConfig

__all__ = ["SLRM", "FieldOutput", "SLRMConfig"]
