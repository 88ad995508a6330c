"""``StdGENPipeline``: one picture in, a layered (body / clothes / hair), textured ``Character`` out.

    pipe = StdGENPipeline.from_pretrained(weights_dir=None, device="cpu")   # None -> bundled weights
    out = pipe(image, pose="auto", seed=0, steps=None, refine=True, mask=None,
               progress=lambda stage, fraction: ..., on_stage=lambda stage, images: ...)

Stages, in order (:data:`STAGES`): ``preprocess`` (the figure's alpha, then the dataset's framing),
``canonicalize`` (skipped for an A-pose picture), ``multiview`` (six views of colour and normals),
``reconstruct`` (S-LRM, semantic SDF + FlexiCubes layers), ``refine`` (multi-layer refinement and
texturing against the views; skipped with ``refine=False``: the S-LRM's vertex colours stay) and
``export`` (the preview pictures and the front-silhouette check).

Fidelity to the input: in the views given to the S-LRM and to refinement, the front view (azimuth 0)
is the canonical picture itself (the user's picture, framed, or its A-pose redrawing), not the
multi-view model's front: its alpha is the front silhouette target and its colours texture the front
at :attr:`PipelineConfig.texture_view_resolution`. The other five views are the generated ones, the
back fitted to the picture's silhouette mirrored (:attr:`PipelineConfig.mirror_back`: orthographic
views at elevation 0 see the front's rays from behind). After refinement the parts' front outline is
fitted to the picture's at the bake's resolution by one smooth image-plane warp
(:attr:`PipelineConfig.front_warp_steps`, :mod:`stdgen.refine.warp`), then the textures are baked.

Reproducible: every random draw is seeded from ``seed`` (the samplers take it; refinement runs under
a forked, seeded torch state), so the same picture, seed and settings give the same character
on one machine with one thread (``OMP_NUM_THREADS=1``; with more, some CPU reductions may vary in
the last bit).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stdgen.errors import StdgenError
from stdgen.pipeline.detail import TransferConfig, apply_colour_match, fit_colour_match, transfer_picture
from stdgen.pipeline.silhouette import fit_to_silhouette
from stdgen.utils.config import ConfigMixin, check_choice, check_range

log = logging.getLogger(__name__)

#: The stages, in the order they run (``progress`` and ``seconds`` use these names).
STAGES: tuple[str, ...] = ("preprocess", "canonicalize", "multiview", "reconstruct", "refine", "export")
#: The weights folders every pipeline loads (``find_weights`` names).
COMPONENTS: tuple[str, ...] = ("segment", "canon", "mvdiff", "slrm")
#: The multi-view stage's ways (``PipelineConfig.multiview_mode``): the diffusion model from pure noise,
#: the deterministic predictor's mean alone, or the diffusion sampler started from that mean.
MULTIVIEW_MODES: tuple[str, ...] = ("diffusion", "mean", "mean+diffusion")
#: The framing of a picture whose world size is unknown: a 1.6 m tall character, its height 91 % of
#: the image (the framing ``stdgen reconstruct`` gives six pictures), so the result is in metres.
WORLD_CENTER: tuple[float, float, float] = (0.0, 0.88, 0.0)
WORLD_HALF_SIZE = 0.88
#: Index of the front view (azimuth 0) among the six generation views (-90, -45, 0, 45, 90, 180).
FRONT = 2
#: Indices of the back view (azimuth 180) and the side views (azimuths -90 and 90).
BACK, LEFT, RIGHT = 5, 0, 4


def components_for(config: PipelineConfig) -> tuple[str, ...]:
    """The weights folders a pipeline with ``config`` loads: :data:`COMPONENTS`, plus ``mvreg`` (the
    :class:`~stdgen.models.mvdiffusion.MultiViewRegressor`) when the multi-view mode uses the mean."""
    return COMPONENTS + (("mvreg",) if config.multiview_mode != "diffusion" else ())


def front_weighted(weight: float) -> tuple[float, ...]:
    """Per-view weights of the six generation views: ``weight`` for the front (the picture itself),
    1 for each generated view."""
    return tuple(weight if i == FRONT else 1.0 for i in range(6))


ProgressCallback = Callable[[str, float], None]
StageCallback = Callable[[str, dict], None]


@dataclass
class PipelineConfig(ConfigMixin):
    """The pipeline's own settings (the models' settings live in their weights folders' configs).

    The defaults keep ``stdgen generate`` within 5 minutes on 2 CPU cores with the bundled weights
    (README, "Generate"); a GPU affords larger values.
    """

    #: Side of the framed input picture kept (``input_rgba``) and of the canonical picture when no
    #: redrawing is needed.
    input_size: int = 512
    #: Side of the generated views. The bundled multi-view weights were trained at 128 px (their
    #: config says 256, the architecture's design size); other sides work but are out of distribution.
    multiview_resolution: int = 128
    #: Sampler steps of the canonicaliser when ``steps`` is not given (0: the model's own default,
    #: 20). Session h, 12 validation pictures in random poses, end to end: 2 steps against 20 give
    #: SSIM 0.858 -> 0.867, silhouette IoU 0.866 -> 0.882, part IoU body / clothes / hair 0.471 /
    #: 0.768 / 0.702 -> 0.503 / 0.793 / 0.716, F@0.01 0.749 -> 0.787: the redrawing at 20 steps adds
    #: detail that is mostly wrong (misplaced tails, a second face), at 2 it is the model's softer
    #: mean, which the later stages read better.
    canonicalize_steps: int = 2
    #: Put the picture's own pixels on the canonicaliser's redrawing of a posed picture where a dense
    #: optical flow finds them and their colours agree with it (:func:`stdgen.pipeline.detail.transfer_picture`):
    #: the redrawing is the model's soft mean at 128 px (no face, no stripes, skin tones drifting),
    #: the picture's head, torso and garments mostly keep their place. The canonical picture is then
    #: at ``input_size``. Session j, 12 validation pictures in random poses, end to end: SSIM 0.868 ->
    #: 0.871 (9 of 12 better), part IoU body / clothes / hair 0.501 / 0.795 / 0.724 -> 0.518 / 0.805 /
    #: 0.727, F@0.01 0.790 -> 0.789; about 1-2 s on 2 CPU cores.
    picture_transfer: bool = True
    #: Colour distance at which a pulled picture pixel's weight falls to 1/e (:class:`TransferConfig`).
    picture_transfer_tolerance: float = 0.15
    #: The head's share of the redrawing's height moved from the picture as one rigid piece on top of
    #: the per-pixel transfer (0: off; :func:`stdgen.pipeline.detail.head_transfer`): the redrawing has
    #: no face, and the flow cannot bring one (eyes and mouth fail its colour test). Session k, 12
    #: validation pictures in random poses: the faces come back (``docs/img/head-transfer.png``); 2D
    #: SSIM against the true A-pose fronts 0.8879 -> 0.8865 (SSIM prefers a blur to a face a pixel
    #: off), but end to end SSIM 0.873 -> 0.875 (10 of 12 better) and part IoU body / hair 0.554 /
    #: 0.719 -> 0.578 / 0.756 (the hair's outline is the picture's again), F@0.01 unchanged.
    picture_transfer_head: float = 0.19
    #: How the six views are made (:data:`MULTIVIEW_MODES`): ``"diffusion"`` samples the multi-view
    #: diffusion model from pure noise (the paper's way); ``"mean"`` takes the deterministic
    #: predictor's conditional mean (``mvreg`` weights); ``"mean+diffusion"`` noises that mean to
    #: ``multiview_start_sigma`` and lets the diffusion sampler add detail from there (SDEdit).
    multiview_mode: str = "diffusion"
    #: Start noise level of ``"mean+diffusion"`` (1 = pure noise, the mean forgotten).
    multiview_start_sigma: float = 0.6
    #: Sampler steps of the multi-view diffusion model when ``steps`` is not given (0: the model's
    #: own default, 10). 5 since session j: on the 50 A-pose test pictures SSIM 0.904 -> 0.906 (39 of
    #: 50 better), part IoU 0.634 / 0.886 / 0.782 -> 0.648 / 0.890 / 0.786; on the 50 random-pose ones
    #: within noise (SSIM 0.876 -> 0.877, part IoU 0.489 / 0.809 / 0.719 -> 0.490 / 0.808 / 0.720); the
    #: stage takes half the time. The generated views themselves are better at 5 (12 validation
    #: pictures: SSIM 0.877 -> 0.881, silhouette IoU 0.868 -> 0.873): later steps add detail the
    #: model's low-noise end has not learned.
    multiview_steps: int = 5
    #: Grid vertices per axis when the S-LRM's field is turned into layer meshes. 192 since session n
    #: (96 until session f, then 128): garments lie within a cell of the skin, and on a coarse grid the
    #: body shows through them (first 10 A-pose test pictures, 96 -> 128: part IoU body / clothes 0.444
    #: / 0.748 -> 0.547 / 0.831; 12 validation pictures, 128 -> 192: A-pose body / clothes / hair +0.013
    #: / +0.004 / +0.014, F@0.01 +0.008, random pose +0.012 / +0.006 / +0.012, F@0.01 +0.014; about 10 s
    #: more per picture on one CPU core; 256 adds about half as much again for 50 % more time).
    grid_resolution: int = 192
    #: The body's probability margin at extraction (:attr:`stdgen.geometry.layers.LayerConfig.body_margin`):
    #: where a garment is thinner than a grid cell the body and the garment may nearly tie under its
    #: surface. Measured on 12 validation pictures (session g): body IoU 0.596 / 0.607 / 0.601 at 0 /
    #: 0.2 / 0.4, the rest unchanged — the S-LRM is mostly sure where the body shows through, so 0.
    body_margin: float = 0.0
    #: Exposed body patches of at most this many grid samples go to the garment around them
    #: (:attr:`stdgen.geometry.layers.LayerConfig.max_body_speck`; 0: none). Session g, 12 validation
    #: pictures, with ``layer_targets``: part IoU body / clothes / hair 0.619 / 0.850 / 0.750 -> 0.628 /
    #: 0.852 / 0.757 (alone, from the old refinement targets: body 0.596 -> 0.610 at 60, 0.602 at 30).
    max_body_speck: int = 60
    #: Hand the exposed body to the part the S-LRM's field *renders* there
    #: (:attr:`stdgen.models.slrm.reconstruct.ReconstructConfig.rendered_labels`): under a glove or a
    #: sock thinner than a grid cell the body wins the grid samples while the rendered class, which
    #: training supervised, is the garment. ``"all"``: every part's exposed samples take the rendered
    #: class; ``"off"``: the argmax (the paper's Eq. 10 as is). Session h, 12 validation pictures (A-pose):
    #: part IoU body / clothes / hair 0.628 / 0.852 / 0.761 -> 0.631 / 0.860 / 0.760 ("body"), 0.592 /
    #: 0.851 / 0.694 ("all"); SSIM 0.889 -> 0.893; F@0.01 0.828 -> 0.825.
    rendered_labels: str = "body"
    #: Side of the views refinement compares with and textures from (the generated views are
    #: upsampled to it; the front view is the canonical picture at this side).
    refine_resolution: int = 192
    #: Optimisation steps of the body, clothes and hair stages (the refinement defaults: 40 / 60 / 80).
    #: Session d: with the 3D-supervised S-LRM the front silhouette needs more steps to reach the
    #: picture's (the six OOD A-pose pictures: front IoU 0.837-0.885 at 12 / 18 / 24, 0.863-0.902 at
    #: 24 / 36 / 48); refinement then takes 14-17 s instead of about 10 s on 2 CPU cores.
    refine_steps: tuple[int, int, int] = (24, 36, 48)
    #: Last steps of each stage at the fine resolution (0: none; the refinement default is 20 at 512 px).
    refine_fine_steps: int = 0
    #: Side of the views the textures are baked from (0: ``refine_resolution``). The front view is
    #: the canonical picture resized to it (the framed input is ``input_size``), the generated views
    #: are upsampled: the picture's own detail reaches the texture instead of a 192 px copy (stripes,
    #: checks and faces visibly sharper in the front render; session h, 12 validation pictures: SSIM
    #: 0.893 -> 0.894, part IoU within 0.003, about 2-4 s more on 2 CPU cores).
    texture_view_resolution: int = 512
    #: Side of each part's texture. At 512 the atlas (a refined clothes mesh charts into ~1 500 small
    #: charts) has fewer texels than the picture has pixels on the figure, and the front render lost
    #: the picture's stripes even when baked from the picture alone (session l); 1024 keeps them.
    texture_size: int = 1024
    #: Weight of the front view (the canonical picture itself) in the texture bake, against 1 for
    #: each generated view (both times ``cos^2`` of the viewing angle): where the picture sees a
    #: surface its colours win, so the front render shows the picture rather than a blend with the
    #: blurrier generated views. Measured on 10 test characters (README, "Fidelity"): 1 / 8 / 50 give
    #: front masked SSIM 0.383 / 0.445 / 0.462 against the picture and eight-view SSIM 0.853 / 0.855 /
    #: 0.856 against the truth.
    front_texture_weight: float = 50.0
    #: Exponent of the front view's ``cos`` in the texture bake (the generated views keep the bake's 2):
    #: a steeper one hands the surfaces the picture sees only at a grazing angle (shadowed, stretched)
    #: to the generated views beside it. Measured on 12 validation pictures (session p): 8 / 2 / 1 give
    #: SSIM 0.9130 / 0.9145 / 0.9142, so 2 (the same as the generated views).
    front_texture_power: float = 2.0
    #: Weight of the front view's silhouette (the canonical picture's own alpha) in refinement's mask
    #: terms, against 1 for each generated view (``StageConfig.mask_view_weights``). The generated
    #: views agree with one another better than with the picture (on pictures unlike the training
    #: data, the generated back view's mirrored silhouette overlaps the picture's by IoU 0.72-0.80),
    #: so with equal weights the five generated views outvote the picture and refinement moves the
    #: front silhouette *away* from it (thin forearms vanish). Measured on the six OOD A-pose pictures
    #: of issue 16: front silhouette IoU 0.77-0.83 at 1, 0.83-0.87 at 5, 0.86-0.90 at 20.
    front_silhouette_weight: float = 20.0
    #: Compare the body stage (and the clothes stage under hair) with targets of its own layer set
    #: rather than with the whole character's: the generated silhouette and normals where the coarse
    #: layer set shows in the coarse character, the coarse layer set's own render where something
    #: covers it (:func:`layer_set_views`). With the whole character's views the body is
    #: pulled out to the garments' outline and pokes through them. Session g, 12 validation pictures:
    #: part IoU body / clothes / hair 0.596 / 0.840 / 0.753 -> 0.619 / 0.850 / 0.750, SSIM 0.888 -> 0.887,
    #: F@0.01 0.830 -> 0.827.
    layer_targets: bool = True
    #: The back view's silhouette is the picture's, mirrored left to right (orthographic views at
    #: elevation 0 see the same rays from both sides), and the generated back's colours and normals
    #: are carried onto it row by row (:func:`stdgen.pipeline.silhouette.fit_to_silhouette`), for the
    #: S-LRM, refinement and the texture bake alike. The generated back's own silhouette overlaps the
    #: true one by IoU 0.91, the mirrored picture's by 0.997. Session i, 12 validation pictures: SSIM
    #: 0.894 -> 0.897, silhouette IoU 0.920 -> 0.925, part IoU body / clothes / hair 0.632 / 0.859 /
    #: 0.768 -> 0.643 / 0.864 / 0.769, F@0.01 0.825 -> 0.822 (fitted for refinement and texturing only:
    #: 0.896, 0.640 / 0.862 / 0.769).
    mirror_back: bool = True
    #: The texture bake's back view takes the picture's pixels, mirrored, wherever their colours agree
    #: with the generated back (:func:`stdgen.pipeline.detail.transfer_picture` from the mirrored
    #: picture onto the back fitted to its silhouette, the head band off): stripes, checks and prints
    #: usually go round a garment, and the 128 px generated back has lost them. Where the back differs
    #: from the front (hair over a face, a bib) the colours disagree and the generated back stays;
    #: the head keeps the generated back. Session k, 12 validation A-pose pictures: the back view
    #: against the true back (2D SSIM) 0.918 -> 0.925 (9 of 12 better); end to end SSIM 0.901 ->
    #: 0.903 (+0.0016 +- 0.0009, 8 of 12), part IoU and F-score unchanged (the geometry is).
    back_detail: bool = True
    #: Move the generated views' colours by how the generated front's differ from the picture's,
    #: by colour and height (:func:`stdgen.pipeline.detail.fit_colour_match`): the multi-view model
    #: drifts colours alike in all six views (pale blonde hair drawn skin-pink all round), and the
    #: front shows by how much. ``"all"``: for the S-LRM, refinement and the texture bake;
    #: ``"texture"``: the texture bake's views only (none when ``texture_view_resolution`` is the
    #: refinement's: the bake then reads refinement's views); ``"off"``. Session m, 12 validation
    #: pictures, paired: A-pose ``"all"`` SSIM +0.0009 +- 0.0013, part IoU body / clothes / hair +0.017 /
    #: +0.007 / -0.006 (``"texture"``: SSIM +0.0018 +- 0.0011, 8 of 12, geometry unchanged); random pose
    #: ``"all"`` SSIM +0.0007 +- 0.0006 (8 of 12), part IoU +0.006 / +0.011 / +0.001, F@0.01 unchanged.
    view_colour_match: str = "all"
    #: The two side views (azimuths -90 and 90) see one set of rays from opposite sides: both are
    #: fitted to the mean of the one's silhouette and the other's mirrored. Session i, 12 validation
    #: pictures, beside ``mirror_back``: SSIM 0.897 -> 0.896, part IoU 0.643 / 0.864 / 0.769 -> 0.648 /
    #: 0.864 / 0.764, F@0.01 0.822 -> 0.825: no clear gain, so off.
    side_consensus: bool = False
    #: Steps of the front silhouette warp after refinement, before the texture bake (0: off; only where
    #: the front is the picture itself, see ``front_warp_redrawn``; :mod:`stdgen.refine.warp`): every
    #: vertex of every part moves by one smooth offset field over the front view's image plane so
    #: that the parts' outline meets the picture's at
    #: ``texture_view_resolution`` (refinement at ``refine_resolution`` leaves it a pixel or two off
    #: all round: front silhouette IoU 0.95 against the picture at 512 px). Session o, 12 validation
    #: pictures on cached views, paired: SSIM 0.9066 -> 0.9145 (+0.0079 +- 0.0013, 12 of 12), silhouette
    #: IoU 0.930 -> 0.943, part IoU body / clothes / hair +0.022 / +0.013 / +0.008, F@0.01 +0.002; about
    #: 1.5 s on one CPU core.
    front_warp_steps: int = 40
    #: Warp onto the canonicaliser's redrawing too (a posed picture's A-pose front). Off: the redrawing's
    #: outline is itself an estimate (its silhouette IoU against the true A-pose front is about 0.88),
    #: and fitting it closer gained nothing. Session o, 12 validation pictures in random poses, paired:
    #: SSIM +0.0005 +- 0.0005, part IoU body -0.019 +- 0.009 (3 of 12 better) / +0.000 / -0.004 (the 50
    #: test pictures: SSIM +0.0006, body -0.013).
    front_warp_redrawn: bool = False
    #: The warp lattice's smoothness weight (:attr:`stdgen.refine.warp.SilhouetteWarpConfig.smoothness`);
    #: 20 / 5 / 2 gave SSIM +0.0056 / +0.0078 / +0.0079 on those pictures (1 at 80 steps: +0.0082).
    front_warp_smoothness: float = 2.0
    #: Side of each picture in ``preview.png`` and of the turntable frames.
    preview_size: int = 256
    #: Frames of the turntable (a full turn).
    turntable_frames: int = 24

    def __post_init__(self) -> None:
        check_range(self, "input_size", 64, 4096, integer=True)
        check_range(self, "multiview_resolution", 16, 1024, integer=True)
        check_range(self, "canonicalize_steps", 0, 1000, integer=True)
        check_choice(self, "picture_transfer", (True, False))
        check_range(self, "picture_transfer_tolerance", 1e-3, 10.0)
        check_range(self, "picture_transfer_head", 0.0, 0.5)
        check_choice(self, "multiview_mode", MULTIVIEW_MODES)
        check_range(self, "multiview_start_sigma", 0.01, 1.0)
        check_range(self, "multiview_steps", 0, 1000, integer=True)
        check_range(self, "grid_resolution", 16, 512, integer=True)
        check_range(self, "body_margin", 0, 0.99)
        check_range(self, "max_body_speck", 0, 10**7, integer=True)
        check_choice(self, "rendered_labels", ("off", "body", "all"))
        check_range(self, "refine_resolution", 16, 4096, integer=True)
        if len(self.refine_steps) != 3 or not all(isinstance(s, int) and 1 <= s <= 10000 for s in self.refine_steps):
            raise ValueError(f"PipelineConfig.refine_steps: expected three integers in [1, 10000] (body, clothes, "
                             f"hair), got {self.refine_steps!r}")
        self.refine_steps = tuple(self.refine_steps)
        check_range(self, "refine_fine_steps", 0, 10000, integer=True)
        check_range(self, "front_warp_steps", 0, 10000, integer=True)
        check_range(self, "front_warp_smoothness", 0, None)
        check_choice(self, "front_warp_redrawn", (True, False))
        check_range(self, "texture_view_resolution", 0, 4096, integer=True)
        if 0 < self.texture_view_resolution < 16:
            raise ValueError(f"PipelineConfig.texture_view_resolution: {self.texture_view_resolution} is below 16 "
                             "(0 means the refinement's resolution)")
        check_range(self, "texture_size", 16, 8192, integer=True)
        check_range(self, "front_texture_weight", 0, 1000)
        check_range(self, "front_texture_power", 0, 64)
        check_range(self, "front_silhouette_weight", 0, 1000)
        check_choice(self, "layer_targets", (True, False))
        check_choice(self, "mirror_back", (True, False))
        check_choice(self, "back_detail", (True, False))
        check_choice(self, "side_consensus", (True, False))
        check_choice(self, "view_colour_match", ("off", "texture", "all"))
        check_range(self, "preview_size", 16, 2048, integer=True)
        check_range(self, "turntable_frames", 1, 360, integer=True)


@dataclass
class GenerateOutput:
    """What :class:`StdGENPipeline` gives for one picture.

    ``character``: the :class:`~stdgen.structures.character.Character` (parts body / clothes / hair;
    textured after refinement, vertex-coloured without), in metres, A-pose.
    ``input_rgba`` ``(S, S, 4)`` uint8: the picture framed as the dataset frames its renders.
    ``canonical`` ``(H, W, 4)`` uint8: the A-pose front picture the views were generated from.
    ``views_rgb`` ``(6, R, R, 4)`` uint8 and ``views_normal`` ``(6, R, R, 3)`` uint8 (world normals as
    ``(n + 1) / 2``, 0 off the silhouette): the generated views at azimuths -90, -45, 0, 45, 90, 180.
    ``seconds`` / ``peak_memory``: stage -> seconds / bytes (peak resident memory of the process during
    the stage on the CPU; peak allocated GPU memory on CUDA). ``pose``: ``"apose"`` (given, or detected)
    or ``"posed"`` (canonicalised). ``settings``: seed, steps, refine, device, weights folders, version.
    ``preview`` ``(H, W, 3)`` uint8 and ``turntable`` ``(T, S, S, 3)`` uint8: the pictures of the
    ``export`` stage; ``checks``: ``front_silhouette_iou`` of the front render against the canonical
    picture's alpha, and the parts' face counts. ``cpu_seconds``: stage -> CPU time of this process
    (all its threads; steadier than ``seconds`` on a shared machine).
    """

    character: Any
    input_rgba: np.ndarray
    canonical: np.ndarray
    views_rgb: np.ndarray
    views_normal: np.ndarray
    seconds: dict[str, float]
    peak_memory: dict[str, int]
    pose: str
    settings: dict
    preview: np.ndarray | None = None
    turntable: np.ndarray | None = None
    checks: dict = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)


# -- helpers -------------------------------------------------------------------------------------------
def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _chw(rgba_u8: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` uint8 -> ``(C, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgba_u8)).permute(2, 0, 1).float() / 255.0


def _resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, side, side)``: area-averaged down, bilinear up."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    if x.shape[-1] > side:
        return torch.nn.functional.interpolate(x, size=(side, side), mode="area")
    return torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)


def _resize_premultiplied(rgba: torch.Tensor, side: int) -> torch.Tensor:
    """``(N, 4, H, W)`` straight RGBA -> ``(N, 4, side, side)`` straight RGBA, resized premultiplied
    (no fringes from the transparent surroundings)."""
    pm = _resize(torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], 1), side)
    a = pm[:, 3:].clamp(0, 1)
    rgb = torch.where(a > 1e-4, pm[:, :3] / a.clamp_min(1e-4), torch.ones_like(pm[:, :3]))
    return torch.cat([rgb.clamp(0, 1), a], 1)


class _PeakMemory:
    """Peak memory of one stage: allocated GPU memory on CUDA; on the CPU the process's peak resident
    set (``VmHWM``), reset per stage through ``/proc/self/clear_refs`` where Linux allows it (else the
    process's peak so far)."""

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    def peak(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


_OOM_HINTS = {
    "canonicalize": "fewer --steps, --pose apose for an A-pose picture, or --device cpu",
    "multiview": "fewer --steps or --device cpu",
    "reconstruct": "--device cpu",
    "refine": "--no-refine, or --device cpu",
    "export": "--device cpu",
    "preprocess": "a smaller picture",
}


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return isinstance(exc, MemoryError) or (oom is not None and isinstance(exc, oom))


# -- the pipeline --------------------------------------------------------------------------------------
class StdGENPipeline:
    """The StdGEN stages composed (module docstring). Components are plain models:

    ``segmenter`` (:class:`~stdgen.models.segment.Segmenter`, background removal of RGB pictures),
    ``canonicalizer`` (:class:`~stdgen.models.canonical.Canonicalizer`), ``multiview``
    (:class:`~stdgen.models.mvdiffusion.MultiViewDiffusion`), ``slrm``
    (:class:`~stdgen.models.slrm.SLRM`), ``regressor``
    (:class:`~stdgen.models.mvdiffusion.MultiViewRegressor`, needed by the multi-view modes that use
    the mean), plus ``config`` (:class:`PipelineConfig`), ``device`` and ``weights`` (component name ->
    folder, reported in ``settings``).
    """

    def __init__(self, segmenter, canonicalizer, multiview, slrm, *, regressor=None,
                 config: PipelineConfig | None = None, device: str | torch.device = "cpu",
                 weights: dict[str, str] | None = None):
        self.segmenter = segmenter
        self.canonicalizer = canonicalizer
        self.multiview = multiview
        self.slrm = slrm
        self.regressor = regressor
        self.config = config or PipelineConfig()
        self.config.validate()
        if self.config.multiview_mode != "diffusion" and regressor is None:
            raise StdgenError(f"multiview_mode {self.config.multiview_mode!r} needs the multi-view predictor "
                              "(mvreg weights); pass regressor=..., or use multiview_mode='diffusion'")
        self.device = torch.device(device)
        self.weights = dict(weights or {})

    @classmethod
    def from_pretrained(cls, weights_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                        config: PipelineConfig | None = None) -> StdGENPipeline:
        """Load the components (:func:`components_for` the config) from ``weights_dir/<name>/``
        (``None``: ``$STDGEN_WEIGHTS``, then the bundled weights; :func:`stdgen.weights.find_weights`).
        A missing or corrupt weights folder is a :class:`~stdgen.errors.StdgenError` naming it."""
        from stdgen.models.canonical import Canonicalizer
        from stdgen.models.mvdiffusion import MultiViewDiffusion, MultiViewRegressor
        from stdgen.models.segment import Segmenter
        from stdgen.models.slrm import SLRM
        from stdgen.utils.device import resolve_device
        from stdgen.weights import find_weights

        dev = resolve_device(device)
        config = config or PipelineConfig()
        components = components_for(config)
        if weights_dir is not None:
            # A folder given by the user must hold every component: falling back to other weights for a
            # missing one would mix models silently.
            root = Path(weights_dir)
            if not root.is_dir():
                raise StdgenError(f"weights folder {root}: no such folder (it holds {', '.join(components)})")
            missing = [name for name in components if not (root / name).is_dir()]
            if missing:
                raise StdgenError(f"weights folder {root}: no {', '.join(m + '/' for m in missing)} in it (a pipeline "
                                  f"weights folder holds {', '.join(c + '/' for c in components)})")
        folders = {name: find_weights(name, weights_dir) for name in components}
        classes = {"segment": Segmenter, "canon": Canonicalizer, "mvdiff": MultiViewDiffusion, "slrm": SLRM,
                   "mvreg": MultiViewRegressor}
        models = {}
        for name, folder in folders.items():
            try:
                models[name] = classes[name].from_pretrained(folder, device=dev)
            except StdgenError:
                raise
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                if _is_oom(exc):
                    raise StdgenError(f"out of memory loading {folder} on {dev}; try --device cpu") from None
                raise StdgenError(f"{folder}: corrupt or mismatched weights folder ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        return cls(models["segment"], models["canon"], models["mvdiff"], models["slrm"],
                   regressor=models.get("mvreg"), config=config, device=dev,
                   weights={k: str(v) for k, v in folders.items()})

    # ------------------------------------------------------------------------------------- checks
    def check_inputs(self, image, *, pose: str = "auto", seed: int = 0, steps: int | None = None,
                     refine: bool = True, mask=None) -> None:
        """Raise :class:`~stdgen.errors.StdgenError` (or ``ValueError`` for a wrong type) naming the
        argument, the value and the fix."""
        if isinstance(image, (str, os.PathLike)):
            p = Path(image)
            if not p.is_file():
                what = "a folder, not a picture" if p.is_dir() else "no such file"
                raise StdgenError(f"image: {p}: {what}; give the path of a PNG, JPEG or WebP picture")
        elif isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] not in (3, 4):
                raise StdgenError(f"image: expected an (H, W, 3) or (H, W, 4) array, got shape {image.shape}; "
                                  "give an RGB or RGBA picture")
            if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
                raise StdgenError(f"image: expected uint8 or float values in [0, 1], got dtype {image.dtype}")
            if min(image.shape[:2]) < 16:
                raise StdgenError(f"image: {image.shape[1]}x{image.shape[0]} pixels is too small; give a picture "
                                  "at least 16 pixels on each side (a few hundred is best)")
        else:
            raise ValueError(f"image: expected a path or a numpy array (H, W, 3|4), got {type(image).__name__}")
        if pose not in ("auto", "apose"):
            raise StdgenError(f"pose: expected 'auto' or 'apose', got {pose!r}; use 'apose' only for a picture "
                              "already in A-pose")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2 ** 63:
            raise StdgenError(f"seed: expected an integer in [0, 2**63), got {seed!r}")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer))
                                  or not 1 <= int(steps) <= 1000):
            raise StdgenError(f"steps: expected None (the models' defaults) or an integer in [1, 1000], got {steps!r}")
        if not isinstance(refine, (bool, np.bool_)):
            raise StdgenError(f"refine: expected True or False, got {refine!r}")
        if mask is not None and not isinstance(mask, (str, os.PathLike, np.ndarray)):
            raise ValueError(f"mask: expected None, a path or an (H, W) array, got {type(mask).__name__}")
        if isinstance(mask, (str, os.PathLike)) and not Path(mask).is_file():
            raise StdgenError(f"mask: {mask}: no such file; give the path of a mask picture (white = figure)")

    # --------------------------------------------------------------------------------------- call
    def __call__(self, image, *, pose: str = "auto", seed: int = 0, steps: int | None = None, refine: bool = True,
                 mask=None, progress: ProgressCallback | None = None,
                 on_stage: StageCallback | None = None) -> GenerateOutput:
        """Generate the layered character of ``image`` (a path, or ``(H, W, 3|4)`` uint8 / float in
        [0, 1]). ``pose``: ``"auto"`` (the A-pose check decides whether to canonicalise) or ``"apose"``
        (the picture is in A-pose: no redrawing). ``steps``: sampler steps of both diffusion models
        (``None``: ``config.canonicalize_steps`` and ``config.multiview_steps``). ``mask``: the figure's
        mask (path or ``(H, W)`` array) instead of the picture's alpha / the segmenter.
        ``progress(stage, fraction)`` as each stage advances;
        ``on_stage(stage, images)`` as ``canonicalize`` (``{"canonical": (H, W, 4) uint8}``) and
        ``multiview`` (``{"views_rgb": (6, R, R, 4), "views_normal": (6, R, R, 3)}`` uint8) end."""
        self.check_inputs(image, pose=pose, seed=seed, steps=steps, refine=refine, mask=mask)
        seed, steps, refine = int(seed), None if steps is None else int(steps), bool(refine)
        report = progress or (lambda stage, fraction: None)
        seconds: dict[str, float] = {}
        cpu_seconds: dict[str, float] = {}
        peaks: dict[str, int] = {}
        memory = _PeakMemory(self.device)

        def run(stage: str, fn: Callable[[], Any]) -> Any:
            report(stage, 0.0)
            memory.start()
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                result = fn()
            except (MemoryError, RuntimeError) as exc:
                if not _is_oom(exc):
                    raise
                raise StdgenError(f"out of memory in the {stage} stage on {self.device}: try "
                                  f"{_OOM_HINTS.get(stage, '--device cpu')}") from None
            seconds[stage] = round(time.perf_counter() - t0, 3)
            cpu_seconds[stage] = round(time.process_time() - c0, 3)
            peaks[stage] = memory.peak()
            report(stage, 1.0)
            return result

        def fraction(stage: str) -> Callable[[int, int], None]:
            # The samplers call on_step(done, total) after each step (done from 1); 1.0 waits for the stage's end.
            return lambda done, n: report(stage, min(0.99, done / max(1, n)))

        framed = run("preprocess", lambda: self.preprocess(image, mask))
        canonical, detected = run("canonicalize", lambda: self.canonicalize(framed, pose, seed, steps,
                                                                           fraction("canonicalize")))
        if on_stage is not None:
            on_stage("canonicalize", {"canonical": canonical})
        views_rgb, views_normal = run("multiview", lambda: self.generate_views(canonical, seed, steps,
                                                                              fraction("multiview")))
        if on_stage is not None:
            on_stage("multiview", {"views_rgb": views_rgb, "views_normal": views_normal})
        coarse = run("reconstruct", lambda: self.reconstruct(canonical, views_rgb, views_normal))
        if refine:
            character = run("refine", lambda: self.refine(coarse, canonical, views_rgb, views_normal, seed,
                                                          report, redrawn=detected == "posed"))
        else:
            report("refine", 0.0)
            report("refine", 1.0)
            seconds["refine"], cpu_seconds["refine"], peaks["refine"] = 0.0, 0.0, 0
            character = coarse
        preview, turntable, checks = run("export", lambda: self.export_pictures(character, framed, canonical))
        from stdgen import __version__

        settings = {"version": __version__, "seed": seed, "steps": steps, "refine": refine, "pose": pose,
                    "mask": None if mask is None else os.fspath(mask) if isinstance(mask, (str, os.PathLike))
                    else "array", "device": str(self.device), "weights": dict(self.weights),
                    "config": self.config.to_dict()}
        return GenerateOutput(character, framed, canonical, views_rgb, views_normal, seconds, peaks, detected,
                              settings, preview, turntable, checks, cpu_seconds)

    # ------------------------------------------------------------------------------------- stages
    def preprocess(self, image, mask=None) -> np.ndarray:
        """``image`` (path or array) -> ``(S, S, 4)`` uint8, the figure framed as the dataset frames it
        (:func:`stdgen.pipeline.preprocess.preprocess_image`); S = ``config.input_size``."""
        from stdgen.io.images import cap_resolution, read_image
        from stdgen.pipeline.preprocess import preprocess_image

        if isinstance(image, (str, os.PathLike)):
            arr = read_image(image, "auto")
            if min(arr.shape[:2]) < 16:
                raise StdgenError(f"{image}: {arr.shape[1]}x{arr.shape[0]} pixels is too small; give a picture "
                                  "at least 16 pixels on each side (a few hundred is best)")
        else:
            arr = np.asarray(image)
        if mask is not None:
            # The mask must match the picture's own size: shrink both together (as its alpha).
            from stdgen.pipeline.preprocess import _as_float, _read_mask

            m = _read_mask(mask, arr.shape[:2])
            arr = np.concatenate([_to_uint8(_as_float(arr)[..., :3]), _to_uint8(m)[..., None]], 2)
            arr = cap_resolution(arr)
            return _to_uint8(preprocess_image(arr, self.config.input_size, mask=arr[..., 3],
                                              segmenter=self.segmenter))
        arr = cap_resolution(arr)
        return _to_uint8(preprocess_image(arr, self.config.input_size, segmenter=self.segmenter))

    def canonicalize(self, framed: np.ndarray, pose: str, seed: int, steps: int | None,
                     on_step: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, str]:
        """``(S, S, 4)`` uint8 framed picture -> (canonical ``(H, W, 4)`` uint8, ``"apose"`` | ``"posed"``):
        the picture itself when in A-pose (given, or the A-pose check says so), else the
        canonicaliser's A-pose redrawing."""
        x = _chw(framed)
        if pose == "apose":
            return framed, "apose"
        is_apose, score = self.canonicalizer.is_a_pose(x)
        log.info("A-pose check: %.3f (%s)", score, "A-pose" if is_apose else "posed: canonicalising")
        if is_apose:
            return framed, "apose"
        if steps is None and self.config.canonicalize_steps:
            steps = self.config.canonicalize_steps
        out = self.canonicalizer.canonicalize(x, seed=seed, steps=steps, on_step=on_step)  # (4, R, R)
        canonical = _to_uint8(out.permute(1, 2, 0).numpy())
        if self.config.picture_transfer and canonical.shape[0] <= framed.shape[0]:
            canonical, weight = transfer_picture(framed, canonical,
                                                 TransferConfig(tolerance=self.config.picture_transfer_tolerance,
                                                                head_fraction=self.config.picture_transfer_head))
            figure = canonical[..., 3] > 127
            log.info("picture pixels on the redrawing: %.0f %% of the figure",
                     100 * float(weight[figure].mean()) if figure.any() else 0.0)
        return canonical, "posed"

    def generate_views(self, canonical: np.ndarray, seed: int, steps: int | None,
                       on_step: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Canonical ``(H, W, 4)`` uint8 -> (``(6, R, R, 4)`` RGBA, ``(6, R, R, 3)`` normals) uint8, made
        as ``config.multiview_mode`` says."""
        cfg = self.config
        if steps is None and cfg.multiview_steps:
            steps = cfg.multiview_steps
        image, res = _chw(canonical), cfg.multiview_resolution
        if cfg.multiview_mode == "diffusion":
            rgba, normal = self.multiview.generate(image, seed=seed, steps=steps, resolution=res, on_step=on_step)
        elif cfg.multiview_mode == "mean":
            rgba, normal = self.regressor.generate(image, resolution=res, on_step=on_step)
        else:
            from stdgen.models.mvdiffusion import prepare_image

            mean = self.regressor.sample(prepare_image(image, res)[None])[0].cpu()  # (D, V, 4, R, R)
            rgba, normal = self.multiview.generate(image, seed=seed, steps=steps, resolution=res, on_step=on_step,
                                                   init=mean, start_sigma=cfg.multiview_start_sigma)
        return _to_uint8(rgba.permute(0, 2, 3, 1).numpy()), _to_uint8(normal.permute(0, 2, 3, 1).numpy())

    def front_replaced(self, canonical: np.ndarray, views_rgb: np.ndarray, side: int,
                       back_detail: bool = False, texture: bool = False) -> torch.Tensor:
        """The six views as ``(6, 4, side, side)`` straight RGBA in [0, 1], the front view (azimuth 0)
        replaced by the canonical picture (fidelity to the input), and the views that
        :meth:`silhouette_targets` names carried onto those silhouettes; with ``back_detail`` (and
        the back fitted to the mirrored picture), the back takes the mirrored picture's pixels where
        their colours agree (:attr:`PipelineConfig.back_detail`)."""
        gen = torch.from_numpy(views_rgb).permute(0, 3, 1, 2).float() / 255.0
        # The generated colour is composited over white: un-composite it to straight colour.
        a = gen[:, 3:]
        rgb = torch.where(a > 0.02, (gen[:, :3] - (1 - a)) / a.clamp_min(0.02), torch.ones_like(gen[:, :3]))
        gen = torch.cat([rgb.clamp(0, 1), a], 1)
        match = None
        if self.config.view_colour_match == "all" or (texture and self.config.view_colour_match == "texture"):
            # Fitted at the generated side, where the generated front is the model's own.
            small = _resize_premultiplied(_chw(canonical)[None], gen.shape[-1])[0]
            match = fit_colour_match(gen[FRONT].permute(1, 2, 0).numpy(), small.permute(1, 2, 0).numpy())
        gen = _resize_premultiplied(gen, side)
        if match is not None:
            gen = torch.from_numpy(apply_colour_match(gen.permute(0, 2, 3, 1).numpy(), match)).permute(0, 3, 1, 2)
        front = _resize_premultiplied(_chw(canonical)[None], side)
        views = torch.cat([gen[:FRONT], front, gen[FRONT + 1:]])
        for v, target in self.silhouette_targets(views[:, 3]).items():
            rgb = fit_to_silhouette(views[v, :3].numpy(), views[v, 3].numpy(), target.numpy())
            rgb = torch.where(target > 1e-4, torch.from_numpy(rgb).float(), torch.ones(()))
            views[v] = torch.cat([rgb, target[None]])
        if back_detail and self.config.mirror_back:
            views[BACK] = mirrored_detail(views[FRONT], views[BACK], views_rgb.shape[1],
                                          self.config.picture_transfer_tolerance)
        return views

    def silhouette_targets(self, alphas: torch.Tensor) -> dict[int, torch.Tensor]:
        """The silhouettes the generated views are fitted to, from ``alphas`` ``(6, S, S)`` (the front's
        the picture's): view index -> ``(S, S)`` alpha. Orthographic views at elevation 0 see one set of
        rays from opposite sides, so the back's silhouette is the front's mirrored left to right, and
        the two side views' are each other's mirrored (``side_consensus``: both take their mean)."""
        targets = {}
        if self.config.mirror_back:
            targets[BACK] = alphas[FRONT].flip(-1)
        if self.config.side_consensus:
            left = (alphas[LEFT] + alphas[RIGHT].flip(-1)) / 2
            targets[LEFT], targets[RIGHT] = left, left.flip(-1)
        return targets

    def reconstruct(self, canonical: np.ndarray, views_rgb: np.ndarray, views_normal: np.ndarray):
        """The S-LRM on the six views (front = the canonical picture) -> a vertex-coloured ``Character``."""
        from stdgen.geometry.layers import LayerConfig
        from stdgen.models.slrm.reconstruct import ReconstructConfig, reconstruct
        from stdgen.render.camera import generation_views

        size = self.slrm.config.image_size
        rgba = self.front_replaced(canonical, views_rgb, size)
        x = rgba[:, :3] * rgba[:, 3:] + (1 - rgba[:, 3:])  # over white, as the S-LRM was trained
        if self.slrm.config.in_channels == 6:
            nrm = _resize(torch.from_numpy(views_normal).permute(0, 3, 1, 2).float() / 255.0, size)
            m = rgba[:, 3:]
            x = torch.cat([x, nrm * m + (1 - m)], 1)  # the dataset's encoding: white off the silhouette
        cams = generation_views(center=(0.0, 0.0, 0.0), half_size=1.0)  # the normalised frame
        dtype = next(self.slrm.parameters()).dtype
        layers = LayerConfig(method="flexicubes", layers=False, body_margin=self.config.body_margin,
                             max_body_speck=self.config.max_body_speck)
        with torch.inference_mode():
            out = reconstruct(self.slrm, x.to(self.device, dtype), cams.world_to_cam, cams.proj,
                              center=WORLD_CENTER, half_size=WORLD_HALF_SIZE,
                              config=ReconstructConfig(grid_resolution=self.config.grid_resolution, layers=layers,
                                                       rendered_labels=self.config.rendered_labels),
                              name="generate")
        if not len(out.character.body.faces):
            raise StdgenError("the reconstruction found no body in the generated views (is the picture a "
                              "character seen from the front?); try another --seed or give a --mask")
        return out.character

    def refine_views(self, canonical: np.ndarray, views_rgb: np.ndarray, views_normal: np.ndarray):
        """The :class:`~stdgen.refine.RefineViews` of the six views at ``config.refine_resolution``: the
        generated colours, silhouettes and normals, with the front view's colour and silhouette the
        canonical picture's (its normals: the generated front's, carried to the nearest pixel inside
        the canonical silhouette where the two silhouettes differ)."""
        from scipy import ndimage

        from stdgen.refine import RefineViews
        from stdgen.render.camera import generation_views

        side = self.config.refine_resolution
        rgba = self.front_replaced(canonical, views_rgb, side)  # (6, 4, S, S)
        gen_n = torch.from_numpy(views_normal).permute(0, 3, 1, 2).float() / 255.0 * 2 - 1
        # A generated normal counts inside the generated silhouette only: the model draws noise off it,
        # which resizing would blend into the rim.
        gen_alpha = torch.from_numpy(views_rgb[..., 3]).float()[:, None] / 255.0
        gen_valid = ((gen_n.norm(dim=1, keepdim=True) > 0.5) & (gen_alpha > 0.5)).float()
        gen_n = _resize(torch.cat([gen_n * gen_valid, gen_valid], 1), side)
        valid = gen_n[:, 3] > 0.5
        n = torch.nn.functional.normalize(gen_n[:, :3], dim=1, eps=1e-6)
        masks = rgba[:, 3]
        normals = n.permute(0, 2, 3, 1).contiguous().numpy()  # (6, S, S, 3)
        # The fitted views' normals follow their colours onto the fitted silhouettes (``masks`` holds
        # them already: the targets taken from it are those masks).
        for v, target in self.silhouette_targets(masks).items():
            fitted = fit_to_silhouette(normals[v].transpose(2, 0, 1), valid[v].numpy().astype(np.float32),
                                       target.numpy()).transpose(1, 2, 0)
            normals[v] = fitted / np.maximum(np.linalg.norm(fitted, axis=-1, keepdims=True), 1e-6)
            valid[v] = target > 0.5
        for v in range(normals.shape[0]):
            ok = valid[v].numpy()
            if not ok.any():
                continue
            # Each pixel takes the normal of the nearest pixel that has one (fills silhouette gaps).
            _, (iy, ix) = ndimage.distance_transform_edt(~ok, return_indices=True)
            normals[v] = normals[v][iy, ix]
        normals = normals * (masks.numpy() > 0.5)[..., None]
        cams = generation_views(center=WORLD_CENTER, half_size=WORLD_HALF_SIZE)
        return RefineViews(rgba[:, :3].permute(0, 2, 3, 1).contiguous(), masks.contiguous(),
                           torch.from_numpy(np.ascontiguousarray(normals, np.float32)), cams)

    def refine_config(self, redrawn: bool = False):
        """The :class:`~stdgen.refine.RefineConfig` these settings give (steps, resolutions, texture, the
        front warp: not on a redrawing unless ``config.front_warp_redrawn``)."""
        from stdgen.refine import RefineConfig

        cfg = RefineConfig()
        side = self.config.refine_resolution
        for stage, n in zip((cfg.schedule.body, cfg.schedule.clothes, cfg.schedule.hair), self.config.refine_steps):
            stage.steps = n
            stage.resolution = side
            stage.fine_resolution = None if self.config.refine_fine_steps == 0 else 2 * side
            stage.fine_steps = self.config.refine_fine_steps
            stage.mask_view_weights = front_weighted(self.config.front_silhouette_weight)
        cfg.texture.size = self.config.texture_size
        if self.config.front_warp_steps and (not redrawn or self.config.front_warp_redrawn):
            cfg.warp.view = FRONT
            cfg.warp.steps = self.config.front_warp_steps
            cfg.warp.smoothness = self.config.front_warp_smoothness
            cfg.warp.resolution = self.config.texture_view_resolution or self.config.refine_resolution
        cfg.texture.view_weights = front_weighted(self.config.front_texture_weight)
        if self.config.front_texture_power != cfg.texture.power:
            cfg.texture.view_powers = tuple(self.config.front_texture_power if i == FRONT else cfg.texture.power
                                            for i in range(6))
        # A helper process for the UV atlas costs more than it saves on a 2-core CPU, and keeps runs alike.
        cfg.texture.atlas_in_background = self.device.type == "cuda"
        # On a GPU the charting outlasts the refinement (session p: ~3 s of waiting for one helper to
        # chart three parts in turn): one helper per part where the host has the cores.
        cfg.texture.atlas_processes = max(1, min(3, (os.cpu_count() or 1) - 1))
        cfg.validate()
        return cfg

    def refine(self, coarse, canonical: np.ndarray, views_rgb: np.ndarray, views_normal: np.ndarray, seed: int,
               report: ProgressCallback, *, redrawn: bool = False):
        """Refine and texture the coarse parts against the views (``refine_and_texture``); ``redrawn``:
        ``canonical`` is the canonicaliser's redrawing, not the picture (the front warp then runs only
        with ``config.front_warp_redrawn``)."""
        from stdgen.refine import refine_and_texture
        from stdgen.structures.semantics import Part

        cfg = self.refine_config(redrawn=redrawn)
        views = self.refine_views(canonical, views_rgb, views_normal)
        texture_views = None
        side = self.config.texture_view_resolution
        if side and side != self.config.refine_resolution:
            from stdgen.refine import RefineViews

            # The bake reads colours and coverage only: the picture at this side, no normals.
            rgba = self.front_replaced(canonical, views_rgb, side, back_detail=self.config.back_detail,
                                       texture=True).permute(0, 2, 3, 1)  # (6, S, S, 4)
            texture_views = RefineViews(rgba[..., :3].contiguous(), rgba[..., 3].contiguous(),
                                        torch.zeros(*rgba.shape[:3], 3), views.cameras)
        coarse_parts = {Part.BODY: coarse.body}
        if coarse.clothes:
            coarse_parts[Part.CLOTHES] = coarse.clothes[0]
        if coarse.hair:
            coarse_parts[Part.HAIR] = coarse.hair[0]
        if self.config.layer_targets:
            views = layer_set_views(coarse_parts, views)
        steps = {p: cfg.schedule.stage(p).steps + cfg.schedule.stage(p).fine_steps
                 * (cfg.schedule.stage(p).fine_resolution is not None) for p in coarse_parts}
        total = sum(steps.values())
        done_before = {}
        acc = 0
        for p in (Part.BODY, Part.CLOTHES, Part.HAIR):
            if p in steps:
                done_before[p] = acc
                acc += steps[p]

        def on_step(part, step, n, terms) -> None:
            p = Part.parse(part)
            report("refine", min(0.99, (done_before.get(p, 0) + min(step + 1, steps.get(p, n))) / max(1, total)))

        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        # Refinement draws no random numbers today; a seeded, forked torch state keeps it so if one is added.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return refine_and_texture(coarse_parts, views, cfg, device=self.device, on_step=on_step,
                                      texture_views=texture_views)

    def export_pictures(self, character, framed: np.ndarray, canonical: np.ndarray):
        """(``preview`` ``(H, W, 3)`` uint8, ``turntable`` ``(T, S, S, 3)`` uint8, checks):
        :func:`stdgen.pipeline.outputs.export_pictures` with this pipeline's settings."""
        from stdgen.pipeline.outputs import export_pictures

        return export_pictures(character, framed, canonical, size=self.config.preview_size,
                               frames=self.config.turntable_frames, device=self.device)


def mirrored_detail(front: torch.Tensor, back: torch.Tensor, generated_side: int, tolerance: float,
                    head_fraction: float = 0.19) -> torch.Tensor:
    """``front`` / ``back`` ``(4, S, S)`` straight RGBA in [0, 1], the back fitted to the front's
    silhouette mirrored -> the back with the mirrored front's pixels where their colours agree with
    it (:func:`stdgen.pipeline.detail.transfer_picture`, compared at ``generated_side``, the side the
    back was generated at, so the front is blurred to its softness). The head (the top
    ``head_fraction`` of the figure's height, fading out over its last quarter) keeps the generated
    back: a fringe and a face can agree in colour with the hair behind them. Silhouette kept."""
    side = back.shape[-1]
    if generated_side > side:
        return back
    to_u8 = lambda x: _to_uint8(x.permute(1, 2, 0).numpy())
    small = to_u8(_resize_premultiplied(back[None], generated_side)[0])
    # Where the picture is not used, the back as it came (not its round trip through generated_side).
    out, _ = transfer_picture(to_u8(front.flip(-1)), small, TransferConfig(tolerance=tolerance, head_fraction=0.0),
                              base=back[:3].permute(1, 2, 0).numpy())
    rgb = torch.from_numpy(out[..., :3]).permute(2, 0, 1).float() / 255.0
    rows = torch.nonzero((back[3] > 0.5).any(1)).flatten()
    if rows.numel():
        top, height = float(rows[0]), float(rows[-1] - rows[0])
        r = torch.arange(side, dtype=torch.float32)[:, None]
        keep = ((r - top - head_fraction * height) / max(0.25 * head_fraction * height, 1.0)).clamp(0, 1)
        rgb = keep * rgb + (1 - keep) * back[:3]
    return torch.cat([torch.where(back[3:] > 1e-4, rgb, back[:3]), back[3:]])


def layer_set_views(coarse_parts: dict, views, grow_px: int = 2) -> dict:
    """``{Part: RefineViews}``: each inner part's stage compared with its own layer set (the part
    and those inside it), the outermost part with ``views`` (the whole character).

    A layer set's targets: where it shows in the coarse character (the coarse set in front of the
    coarse outer parts, grown by ``grow_px`` pixels), the generated silhouette and normals; where
    the outer parts cover it, the coarse set's own render (silhouette kept inside the generated
    one), so refinement sharpens the exposed skin without pulling the body out to a skirt's
    outline. Colours stay the views' (the texture bake depth-tests each part in its own scene)."""
    from scipy import ndimage

    from stdgen.refine import RefineViews
    from stdgen.refine.schedule import FixedLayers, render_stage
    from stdgen.structures.mesh import merge_meshes
    from stdgen.structures.semantics import PARTS

    present = [p for p in PARTS if p in coarse_parts and not coarse_parts[p].is_empty]
    out = {present[-1]: views}
    side = views.masks.shape[1:3]
    cams = views.cameras
    gen_mask = views.masks.float()
    gen_normal = views.normals.float()
    for i, p in enumerate(present[:-1]):
        inner = [coarse_parts[q] for q in present[: i + 1]]
        outer = [coarse_parts[q] for q in present[i + 1:]]
        layer_set = merge_meshes(inner)
        x = torch.as_tensor(layer_set.vertices, dtype=torch.float32)
        tri = torch.as_tensor(layer_set.faces, dtype=torch.long)
        with torch.no_grad():
            nrm, mask, _ = render_stage(x, tri, FixedLayers.build([], "cpu"), cams, side)
            _, _, shown = render_stage(x, tri, FixedLayers.build([(m.vertices, m.faces) for m in outer], "cpu"),
                                       cams, side)
        exposed = (shown[..., 0] > 0.5).numpy()
        grown = torch.from_numpy(np.stack([ndimage.binary_dilation(e, iterations=grow_px) for e in exposed]))
        own_mask = torch.minimum(mask[..., 0], gen_mask)
        own_normal = torch.nn.functional.normalize(nrm * 2 - 1, dim=-1, eps=1e-6) * (mask > 0.5)
        layer_mask = torch.where(grown, gen_mask, own_mask)
        layer_normal = torch.where(torch.from_numpy(exposed)[..., None], gen_normal, own_normal)
        out[p] = RefineViews(views.images, layer_mask.contiguous(), layer_normal.contiguous(), cams, views.labels)
    return out
