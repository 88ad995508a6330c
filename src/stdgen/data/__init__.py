"""Data: procedural characters, VRM import, dataset renders and the training stream.

The shared types (:class:`~stdgen.structures.Character`, ``Mesh``, ``Part``) live in
:mod:`stdgen.structures`; file formats in :mod:`stdgen.io`; the batched renderer in
:mod:`stdgen.render.batch`.
"""
