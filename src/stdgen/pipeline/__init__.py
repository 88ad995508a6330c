"""One picture in, a layered 3D character out: the stages composed (issue 16).

    from stdgen.pipeline import StdGENPipeline, GenerateOutput, save_output

    pipe = StdGENPipeline.from_pretrained(weights_dir=None, device="cpu")  # None: $STDGEN_WEIGHTS, then bundled
    out = pipe(image, pose="auto", seed=0, steps=None, refine=True, mask=None,
               progress=None,    # (stage, fraction in [0, 1]) as each stage advances
               on_stage=None)    # (stage, images) as "canonicalize" and "multiview" end
    save_output(out, "out/name", fmt="glb")  # character.glb, body/clothes/hair.glb, canonical.png, views.png,
                                             # turntable.gif, preview.png, report.json (atomically)

Layouts (numpy, uint8 unless noted): ``image`` ``(H, W, 3|4)`` uint8 or float in [0, 1], or a path;
``out.input_rgba`` ``(S, S, 4)`` the framed picture (figure 91 % of the height, centred);
``out.canonical`` ``(H, W, 4)`` the A-pose front picture (straight alpha); ``out.views_rgb``
``(6, R, R, 4)`` unlit colour over white + alpha and ``out.views_normal`` ``(6, R, R, 3)`` world
normals as ``(n + 1) / 2`` (0 off the silhouette), azimuths -90, -45, 0, 45, 90, 180;
``out.character`` a :class:`~stdgen.structures.character.Character` (metres, A-pose, parts
body / clothes / hair); ``out.seconds`` / ``out.peak_memory`` stage -> seconds / bytes.

Stages (:data:`STAGES`): preprocess -> canonicalize -> multiview -> reconstruct -> refine -> export;
settings in :class:`PipelineConfig`. Modules: :mod:`.preprocess` (the figure's alpha and framing:
``preprocess_image``, ``alpha_of``, ``frame_figure``), :mod:`.pipeline` (the pipeline),
:mod:`.outputs` (the files and pictures).

This package may import ``io``, ``models``, ``refine``, ``render``, ``structures``, ``utils`` and
``geometry``, never ``train`` or ``data`` (import-linter holds it). Nothing here draws progress bars.
Attributes load lazily, so ``stdgen --help`` and ``stdgen.pipeline.preprocess`` import no torch through here.
"""

import importlib

_EXPORTS = {
    "StdGENPipeline": "pipeline", "GenerateOutput": "pipeline", "PipelineConfig": "pipeline", "STAGES": "pipeline",
    "save_output": "outputs", "output_files": "outputs",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Lazy: ``stdgen.pipeline.preprocess`` users (and ``stdgen --help``) do not import torch through here.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"stdgen.pipeline.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'stdgen.pipeline' has no attribute {name!r}")
