"""Export: layered characters as VRM 0.x / 1.0 (:mod:`~stdgen.export.vrm`) and GLB, and the
``stdgen export`` command. GLB reading and writing is :mod:`stdgen.io.glb`'s."""
