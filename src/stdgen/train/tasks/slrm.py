"""Training the S-LRM (``stdgen train slrm``): the paper's staged curriculum on streamed renders.

Stages (boundaries are preset fields, in steps):

- **0, holistic** (stands in for the pre-trained InstantNeRF we cannot download): every weight
  trains; the full character's colour, mask and depth.
- **1, single-layer semantics**: LoRA on the transformer's attention + the semantic decoder (the
  paper's recipe; ``base_lr_scale`` > 0 also keeps the base training, slower); adds the
  cross-entropy of the rendered class distribution.
- **2, multi-layer semantics**: every kept set P = {body}, {body, clothes}, all is rendered with
  Eqs. 6-8 and supervised by the matching layer render (Eq. 9).
- **3, mesh** (off unless ``stage3_step`` is set; the bundled weights had 878 steps of it, run 5):
  stage 2's terms stay (``stage3_ray_stride`` may thin their rays) and L3's mesh terms join. The
  field at the vertices of a ``stage3_grid``^3 grid over the normalised box joins the step's one
  forward call; for the first ``stage3_characters`` characters of the batch and each kept set P,
  the semantic-equivalent SDF (Eq. 10, :func:`layer_set_sdfs`: the function and probability
  scale inference extracts with) goes through FlexiCubes (:func:`stdgen.geometry.flexicubes.flexicubes`,
  default weights: the S-LRM has no weight head) and the mesh is rasterised at ``stage3_views``
  random stream views (normalised-frame cameras) by the refinement's differentiable renderer
  (:func:`stdgen.refine.schedule.render_stage`). :func:`mesh_terms`: ``mesh_normal``
  (``1 - N_hat . N_gt`` on the true foreground, 0.2), ``mesh_depth`` (``|D_hat - D_gt|`` on the true
  foreground the mesh covers, normalised units, 0.5), ``mesh_dev`` (FlexiCubes' deviation loss,
  0.5): the paper's weights; ``mesh_mask`` (coverage MSE, 1) is ours. Their gradients reach the
  weights through the grid's SDF and class probabilities. The stream adds the normal maps when
  ``stage3_step`` is set.

Losses per rendered set: ``mse`` (colour), ``ssim`` (1 - SSIM of the rendered ray images, our
stand-in for LPIPS, whose pre-trained VGG/Alex weights cannot be had here), ``mask`` (opacity vs
alpha, MSE), ``sem`` (cross-entropy of the rendered class distribution on the true foreground),
``depth`` (L1 of the expected depth on the foreground; not in the paper's NeRF stages: the data
engine's exact depth maps make it free, and it settles the geometry faster). The paper's weights
are the defaults (1, 2, 1, 1).

Optional exact 3D supervision (``points3d`` > 0 labelled points per character from the stream,
off by default; not in the paper): ``occ3d``, the binary cross-entropy of the occupancy
``sigmoid(-sdf / beta)`` against "inside some part", and from stage 1 on ``sem3d``, the class
cross-entropy of the field's logits at the inside points (innermost part: the body under the
clothes is supervised where no render sees it). The points join the one forward call.

Batches: :class:`stdgen.data.stream.RenderStream` renders the eight evaluation views (which hold
the six generation views: the inputs) and ``random_views`` perspective views of every layer set;
training seeds only, sharded over ranks. Inputs are degraded as generated views will be (blur,
colour shift, noise, sub-pixel misalignment). Rays are a stride-``ray_stride`` pixel grid (random
offset) of ``target_views`` views per step, sampled uniformly in the box plus around the true
surfaces (full and body layers), so thin shells are hit without a coarse pass.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from stdgen.geometry.grid import Grid
from stdgen.geometry.layers import layer_scale
from stdgen.geometry.rays import camera_rays, normalizing_transform, pixel_ndc
from stdgen.geometry.semantic_sdf import layer_sdf
from stdgen.models.slrm.model import SLRM, SLRMConfig
from stdgen.models.slrm.render import composite_layers, ray_points, render_layers, sample_depths
from stdgen.structures.semantics import LAYER_SETS
from stdgen.train.config import Preset, TrainConfig
from stdgen.train.task import Task, unwrap

__all__ = ["STAGE3_OFF", "SLRMPreset", "SLRMTask", "layer_set_sdfs", "mesh_terms", "paper", "small", "tiny"]

#: The default ``SLRMPreset.stage3_step``: past any run, so stage 3 is off unless set.
STAGE3_OFF: int = 1_000_000_000

#: Indices of the six generation views (-90, -45, 0, 45, 90, 180) among the eight evaluation views
#: (0, 45, ..., 315): the stream renders the evaluation views, the model reads these.
GEN_IN_EVAL: tuple[int, ...] = (6, 7, 0, 1, 2, 4)


@dataclass
class SLRMLossWeights:
    """Weights of the loss terms (the paper's for mse / ssim (LPIPS) / mask / sem; ``mse_fg``,
    ``depth`` and ``eikonal`` (VolSDF's weight) are ours). ``mse_fg`` is the colour MSE over the
    true foreground only: our renders are ~80 % white background, which dilutes the paper's
    whole-image MSE five-fold, and run 2 (2 339 steps) still predicted every garment as the mean
    grey; LPIPS, which the paper leans on for colour and texture, is not available here.
    ``occ3d`` / ``sem3d`` weigh the 3D occupancy and class terms; they act only with
    ``SLRMPreset.points3d`` > 0.

    Stage 3's mesh terms (per kept set, on the FlexiCubes mesh rasterised at the stream's views):
    ``mesh_normal`` (the paper's 0.2: ``1 - N_hat . N_gt`` on the true foreground), ``mesh_depth``
    (the paper's 0.5: ``|D_hat - D_gt|`` on the true foreground, normalised units), ``mesh_dev``
    (the paper's 0.5: FlexiCubes' deviation loss) and ``mesh_mask`` (ours, 1 as the NeRF mask
    term: MSE of the antialiased mesh coverage against the true alpha; the paper's L3 lists no
    mesh mask term, its silhouettes come from the NeRF mask term of L2 that stage 3 keeps)."""

    mse: float = 1.0
    mse_fg: float = 2.0
    ssim: float = 2.0
    mask: float = 1.0
    sem: float = 1.0
    depth: float = 0.5
    eikonal: float = 0.1
    occ3d: float = 1.0
    sem3d: float = 1.0
    mesh_normal: float = 0.2
    mesh_depth: float = 0.5
    mesh_mask: float = 1.0
    mesh_dev: float = 0.5

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, int | float) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"SLRMLossWeights.{f.name}: {v!r} is invalid; expected a finite number >= 0")


@dataclass(kw_only=True)
class SLRMPreset(Preset):
    """Everything a ``stdgen train slrm`` run needs.

    Attributes:
        model: the S-LRM configuration.
        train: the trainer's settings (see :class:`stdgen.train.config.TrainConfig`).
        batch_size: characters per step over all ranks.
        resolution: render side of the stream (= the model's input size).
        random_views: perspective views per character besides the eight evaluation views.
        target_views: views supervised per step (drawn from the 8 + random_views).
        ray_stride: rays on every ``ray_stride``-th pixel (random offset per step).
        num_uniform, num_guided, guide_spread: samples per ray (see
            :func:`stdgen.models.slrm.render.sample_depths`).
        eikonal_points: samples per character where the SDF's gradient is pushed to unit length.
        points3d: labelled 3D points per character (half near the surfaces, half uniform in the
            box; :func:`stdgen.data.stream.sample_points3d`) for the ``occ3d`` / ``sem3d`` terms;
            0 (the default) turns 3D supervision off. ``points3d_fill_gaps`` labels the air under
            a garment as the garment (the voxeliser's solid-clothes convention,
            :func:`stdgen.data.stream.fill_layer_gaps`) instead of outside.
        stage1_step, stage2_step: first step of stages 1 and 2.
        stage3_step: first step of stage 3 (mesh; :data:`STAGE3_OFF`, the default, lies past any
            run: off unless set).
        stage3_grid: grid vertices per axis of the normalised box ``[-1, 1]^3`` on which stage 3
            evaluates the field (in the one forward call) and extracts each kept set's mesh.
        stage3_characters: characters per rank (the first of the local batch) that get mesh terms
            (0: all); bounds the extraction and rasterisation cost.
        stage3_views: views rasterised per mesh (drawn at random from the stream's 8 +
            ``random_views``), at the stream's resolution.
        stage3_ray_stride: ``ray_stride`` from stage 3 on (0: unchanged), to cut the NeRF terms'
            rays while the mesh terms run.
        lora_rank: LoRA rank from stage 1 on (the paper: 128); base_lr_scale: learning-rate factor
            of the base weights from stage 1 on (0: frozen, as in the paper).
        use_normals: feed the views' normal maps as three more input channels.
        degrade: probability that an input view is degraded (blur, colour, noise, shift).
        workers, pool_size: the stream's character workers and pool (see ``StreamConfig``).
        skin_recolor: share of pool variants whose skin is re-toned to an evenly drawn skin tone
            (``StreamConfig.skin_recolor``): dark-skinned limbs were labelled clothes by run 5.
        loss: the loss weights.
        val_seeds: validation characters rendered by ``validate``.
    """

    model: SLRMConfig = field(default_factory=SLRMConfig.small)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=4e-4, warmup_steps=300, max_steps=12000))
    batch_size: int = 8
    resolution: int = 128
    random_views: int = 2
    target_views: int = 4
    ray_stride: int = 2
    num_uniform: int = 48
    num_guided: int = 16
    guide_spread: float = 0.03
    eikonal_points: int = 4096
    points3d: int = 0
    points3d_fill_gaps: bool = False
    stage1_step: int = 6000
    stage2_step: int = 8000
    stage3_step: int = STAGE3_OFF
    stage3_grid: int = 64
    stage3_characters: int = 0
    stage3_views: int = 4
    stage3_ray_stride: int = 0
    lora_rank: int = 32
    base_lr_scale: float = 0.0
    use_normals: bool = False
    degrade: float = 0.5
    workers: int = 14
    pool_size: int = 24
    skin_recolor: float = 0.0
    loss: SLRMLossWeights = field(default_factory=SLRMLossWeights)
    val_seeds: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = {
            "batch_size": self.batch_size >= 1, "resolution": self.resolution == self.model.image_size,
            "random_views": self.random_views >= 0,
            "target_views": 1 <= self.target_views <= 8 + self.random_views,
            "ray_stride": self.ray_stride >= 1 and self.resolution % self.ray_stride == 0,
            "num_uniform": self.num_uniform >= 2, "num_guided": self.num_guided >= 0,
            "guide_spread": self.guide_spread > 0, "eikonal_points": self.eikonal_points >= 0,
            "points3d": self.points3d >= 0, "skin_recolor": 0.0 <= self.skin_recolor <= 1.0,
            "stage1_step": self.stage1_step >= 0,
            "stage2_step": self.stage2_step >= self.stage1_step,
            "stage3_step": self.stage3_step >= self.stage2_step, "stage3_grid": 8 <= self.stage3_grid <= 512,
            "stage3_characters": self.stage3_characters >= 0,
            "stage3_views": 1 <= self.stage3_views <= 8 + self.random_views,
            "stage3_ray_stride": self.stage3_ray_stride == 0 or (
                self.stage3_ray_stride >= 1 and self.resolution % self.stage3_ray_stride == 0),
            "lora_rank": self.lora_rank >= 1,
            "base_lr_scale": self.base_lr_scale >= 0, "degrade": 0 <= self.degrade <= 1,
            "workers": self.workers >= 0, "pool_size": self.pool_size >= 0, "val_seeds": self.val_seeds >= 0,
            "use_normals": self.use_normals == (self.model.in_channels == 6),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            k = bad[0]
            rule = {"resolution": "must equal model.image_size", "use_normals": "must match model.in_channels (6)",
                    "target_views": "must lie in [1, 8 + random_views]",
                    "stage2_step": "must be >= stage1_step", "stage3_step": "must be >= stage2_step",
                    "stage3_grid": "must lie in [8, 512]", "stage3_views": "must lie in [1, 8 + random_views]",
                    "stage3_ray_stride": "must be 0 or divide resolution"}.get(k, "out of range")
            raise ValueError(f"SLRMPreset.{k}: {getattr(self, k)!r} is invalid; {rule}")


def tiny() -> SLRMPreset:
    """A CPU-sized preset for tests and smoke runs."""
    return SLRMPreset(model=SLRMConfig.tiny(), train=TrainConfig(lr=1e-3, warmup_steps=1, max_steps=10, ema_decay=0.9,
                                                                 bf16=False),
                      batch_size=1, resolution=32, random_views=1, target_views=2, ray_stride=4, num_uniform=8,
                      num_guided=2, eikonal_points=16, stage1_step=2, stage2_step=3, stage3_grid=32, stage3_views=2,
                      lora_rank=2, workers=0, pool_size=0, val_seeds=1)


def small() -> SLRMPreset:
    """The bundled model's training run (one H100; about an hour over several machines)."""
    return SLRMPreset()


def paper() -> SLRMPreset:
    """The paper's sizes (not trained here): 256 px inputs, LoRA rank 128."""
    return SLRMPreset(model=SLRMConfig.paper(), resolution=256, lora_rank=128, batch_size=8)


# --- helpers --------------------------------------------------------------------------------------


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of images ``(N, C, H, W)`` in [0, 1] (Gaussian window, valid region)."""
    g = torch.exp(-((torch.arange(window, device=x.device, dtype=x.dtype) - window // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    k = (g[:, None] * g[None, :]).expand(c, 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, k, groups=c)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


def degrade_views(images: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Degrade input views ``(B, V, C, H, W)`` (first 3 channels colour) as generated views are:
    sub-pixel shifts of up to 1.5 px, Gaussian blur (sigma up to 1 px), brightness / contrast /
    saturation shifts, noise. Each view is degraded with ``probability``."""
    b, v, c, h, w = images.shape
    dev, dt = images.device, images.dtype
    n = b * v
    x = images.reshape(n, c, h, w)

    def rand(*shape):
        return torch.rand(*shape, device=dev, dtype=dt, generator=generator)

    on = (rand(n) < probability).to(dt)
    # Shift: resample with a translated grid (white outside).
    shift = (rand(n, 2) * 2 - 1) * 1.5 * (2 / w) * on[:, None]
    theta = torch.zeros(n, 2, 3, device=dev, dtype=dt)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, (n, c, h, w), align_corners=False)
    x = 1 - F.grid_sample(1 - x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Blur: 5-tap Gaussian with a per-view sigma (0 = identity).
    sigma = rand(n) * on
    taps = torch.arange(-2, 3, device=dev, dtype=dt)
    ker = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    ker = ker / ker.sum(1, keepdim=True)
    xp = F.pad(x, (2, 2, 2, 2), mode="replicate").reshape(1, n * c, h + 4, w + 4)
    kx = ker.repeat_interleave(c, 0)[:, None, None, :]
    ky = ker.repeat_interleave(c, 0)[:, None, :, None]
    x = F.conv2d(F.conv2d(xp, kx, groups=n * c), ky, groups=n * c).reshape(n, c, h, w)
    # Colour: brightness, contrast, saturation on the RGB channels.
    rgb = x[:, :3]
    grey = rgb.mean(1, keepdim=True)
    sat = 1 + (rand(n, 1, 1, 1) * 2 - 1) * 0.2 * on[:, None, None, None]
    rgb = grey + (rgb - grey) * sat
    con = 1 + (rand(n, 1, 1, 1) * 2 - 1) * 0.1 * on[:, None, None, None]
    bri = (rand(n, 1, 1, 1) * 2 - 1) * 0.05 * on[:, None, None, None]
    rgb = (rgb - 0.5) * con + 0.5 + bri
    noise = torch.randn(rgb.shape, device=dev, dtype=dt, generator=generator) * 0.015 * on[:, None, None, None]
    x = torch.cat([rgb + noise, x[:, 3:]], 1).clamp(0, 1)
    return x.reshape(b, v, c, h, w)


def layer_set_sdfs(sdf: torch.Tensor, probs: torch.Tensor, grid: Grid, sets) -> dict[str, torch.Tensor]:
    """The semantic-equivalent SDF (Eq. 10) of each named kept set (keys of
    :data:`~stdgen.structures.semantics.LAYER_SETS`) from the field's ``sdf`` ``(X, Y, Z)`` and class
    probabilities ``probs`` ``(X, Y, Z, K)`` on ``grid``: :func:`stdgen.geometry.semantic_sdf.layer_sdf`
    at the probability scale inference extracts with (:func:`stdgen.geometry.layers.layer_scale`),
    so training's stage-3 meshes are the meshes ``stdgen reconstruct`` gives. Differentiable."""
    scale = layer_scale(grid)
    return {name: layer_sdf(sdf, probs, LAYER_SETS[name], scale=scale) for name in sets}


def mesh_terms(sdf: torch.Tensor, grid: Grid, cameras, normal: torch.Tensor, alpha: torch.Tensor,
               depth: torch.Tensor, unit: float | torch.Tensor = 1.0) -> dict[str, torch.Tensor]:
    """Unweighted L3 terms of the mesh of one kept set against its true renders.

    The zero set of ``sdf`` ``(X, Y, Z)`` on ``grid`` is extracted with FlexiCubes (default weights:
    the S-LRM has no weight head) and rasterised at ``cameras`` (V, normalised frame) through
    :func:`stdgen.refine.schedule.render_stage` (the refinement's differentiable normal / mask
    renderer) at the targets' resolution. Targets ``(V, H, W, C)``: ``normal`` unit world normals,
    ``alpha`` coverage, ``depth`` camera-space depth (0 off the character) in world units; ``unit``
    the world length of one normalised unit (the framing's half size).

    Returns ``normal`` (mean of ``1 - N_hat . N_gt`` over the true foreground, ``N_hat`` the
    antialiased normal times coverage), ``depth`` (mean ``|D_hat - D_gt| / unit`` over the true
    foreground the mesh covers: elsewhere it has no depth, and no gradient), ``mask`` (mean squared
    error of the antialiased coverage against ``alpha``) and ``dev`` (FlexiCubes' deviation loss),
    all differentiable with respect to ``sdf``.
    """
    from stdgen.geometry.flexicubes import flexicubes
    from stdgen.refine.schedule import FixedLayers, render_stage

    fg = (alpha > 0.5).to(sdf.dtype)
    den = fg.sum().clamp_min(1)
    surf = flexicubes(sdf, grid)
    if surf.is_empty:  # nothing to draw: the terms' values without a mesh, still attached to the graph
        zero = sdf.sum() * 0
        return {"normal": zero + fg.sum() / den, "depth": zero, "mask": zero + alpha.square().mean(), "dev": zero}
    topology = None
    if surf.faces.device.type == "cpu":  # numpy sorts the edges much faster than torch on the CPU
        from stdgen.render.antialias import antialias_topology_numpy

        topology = torch.from_numpy(antialias_topology_numpy(surf.faces.numpy()))
    nrm, cov, _, dep = render_stage(surf.vertices, surf.faces, FixedLayers.build([], sdf.device), cameras,
                                    tuple(normal.shape[1:3]), topology, depth=True)
    n_hat = 2 * nrm - cov  # render_stage encodes (n + 1) / 2 times the coverage
    hit = fg * (dep > 0).to(sdf.dtype)
    return {
        "normal": ((1 - (n_hat * normal).sum(-1, keepdim=True)) * fg).sum() / den,
        "depth": ((dep - depth).abs() * hit).sum() / (hit.sum().clamp_min(1) * unit),
        "mask": F.mse_loss(cov, alpha),
        "dev": surf.l_dev,
    }


def _slice_field(field, start: int, stop: int):
    """The field's outputs for points ``start:stop`` (of ``(B, N)``)."""
    from stdgen.models.slrm.model import FieldOutput

    return FieldOutput(field.sdf[:, start:stop], field.sigma[:, start:stop], field.rgb[:, start:stop],
                       field.logits[:, start:stop])


# --- the task -------------------------------------------------------------------------------------


class SLRMTask(Task):
    """The S-LRM's :class:`stdgen.train` task (see the module docstring)."""

    name = "slrm"

    # -- model and stages --

    def build_model(self) -> SLRM:
        return SLRM(self.preset.model)

    def adapt_init(self, model, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """RGB-input weights start a run that also reads normal maps (``use_normals``; zero weights on
        the new channels: :meth:`SLRM.widen_input_state`)."""
        return unwrap(model).widen_input_state(state)

    def stage(self, step: int) -> int:
        p = self.preset
        return 0 if step < p.stage1_step else (1 if step < p.stage2_step else (2 if step < p.stage3_step else 3))

    def on_stage_change(self, model: SLRM, stage: int) -> None:
        """From stage 1 on the transformer's attention carries LoRA adapters (added in place)."""
        if stage >= 1 and not model.config.lora_rank:
            model.add_lora(self.preset.lora_rank)

    def param_groups(self, model: SLRM, step: int) -> list[dict]:
        if self.stage(step) == 0:
            return [{"params": [p for p in model.parameters() if p.requires_grad]}]
        lora = model.lora_parameters()
        new = list(model.sem_decoder.parameters()) + [model.log_beta]
        taken = {id(p) for p in lora + new}
        groups = [{"params": lora + new}]
        base = [p for p in model.parameters() if id(p) not in taken]
        if self.preset.base_lr_scale > 0:
            groups.append({"params": base, "lr_scale": self.preset.base_lr_scale})
        else:
            for p in base:
                p.requires_grad_(False)
        return groups

    # -- data --

    def stream_config(self, *, rank: int, world_size: int, device, seed: int, split: str = "train", start: int = 0,
                      count: int | None = None, workers: int | None = None, pool_size: int | None = None,
                      batch_size: int | None = None, points3d: int | None = None):
        from stdgen.data.stream import StreamConfig

        p = self.preset
        # Stage 3 compares the meshes' normals with the true normal maps: stream them once it is set
        # (not only when it starts before train.max_steps: a run may go on past them with --steps).
        normals = p.use_normals or p.stage3_step < STAGE3_OFF
        maps = ("rgb", "depth", "sem") + (("normal",) if normals else ())
        return StreamConfig(batch_size=batch_size or max(1, p.batch_size // world_size), resolution=p.resolution,
                            views="eval", random_views=p.random_views, maps=maps, split=split, start=start, count=count,
                            workers=p.workers if workers is None else workers,
                            pool_size=p.pool_size if pool_size is None else pool_size, background="white",
                            device=str(device), rank=rank, world_size=world_size, seed=seed,
                            points3d=p.points3d if points3d is None else points3d,
                            points3d_fill_gaps=p.points3d_fill_gaps, skin_recolor=p.skin_recolor)

    def batches(self, *, rank: int, world_size: int, device, seed: int, start: int = 0) -> Iterator[dict]:
        """Endless stream batches of this rank's share. A resumed run (``start`` steps done) starts
        further along the training seeds (and, in pool mode, with a new pool of characters)."""
        from stdgen.data.stream import RenderStream

        local = max(1, self.preset.batch_size // world_size)
        cfg = self.stream_config(rank=rank, world_size=world_size, device=device, seed=seed + start,
                                 start=start * local * world_size, batch_size=local)
        yield from RenderStream(cfg)

    def inputs(self, batch: dict, *, degrade: bool = True, generator: torch.Generator | None = None):
        """The model's inputs from a stream batch: views ``(B, 6, C, H, W)`` and the normalised
        generation cameras ``(B, 6, 4, 4)`` x 2."""
        full = batch["layers"].index("full")
        idx = list(GEN_IN_EVAL)
        views = batch["rgb"][:, full, idx]
        if self.preset.use_normals:
            views = torch.cat([views, (batch["normal"][:, full, idx] + 1) / 2 * batch["alpha"][:, full, idx]
                               + (1 - batch["alpha"][:, full, idx])], 2)
        if degrade and self.preset.degrade > 0:
            views = degrade_views(views, self.preset.degrade, generator)
        m = normalizing_transform(batch["center"], batch["half_size"])  # (B, 4, 4)
        w2c = batch["world_to_cam"][:, idx] @ m[:, None]
        return views, w2c, batch["proj"][:, idx]

    def _rays(self, batch: dict, views: list[int], stride: int, offset: tuple[int, int]):
        """Rays of the chosen target views at a pixel grid: origins/dirs (B, Vt*P, 3), t_per_depth,
        and the pixel indices (rows, cols)."""
        res = self.preset.resolution
        rows = torch.arange(offset[0], res, stride, device=batch["rgb"].device)
        cols = torch.arange(offset[1], res, stride, device=batch["rgb"].device)
        ndc_all = pixel_ndc(res, res, device=rows.device)
        ndc = ndc_all[rows][:, cols].reshape(1, 1, -1, 2)
        m = normalizing_transform(batch["center"], batch["half_size"])
        w2c = batch["world_to_cam"][:, views] @ m[:, None]
        b = w2c.shape[0]
        o, d, tpd = camera_rays(w2c, batch["proj"][:, views], ndc.expand(b, len(views), -1, 2))
        return o, d, tpd, rows, cols

    def losses(self, model: SLRM, batch: dict, step: int, generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        p = self.preset
        stage = self.stage(step)
        dev = batch["rgb"].device
        gen = generator
        images, w2c, proj = self.inputs(batch, generator=gen)
        total_views = batch["rgb"].shape[2]
        pick = torch.randperm(total_views, generator=gen)[: p.target_views].tolist()
        stride = p.stage3_ray_stride if stage >= 3 and p.stage3_ray_stride else p.ray_stride
        off = torch.randint(0, stride, (2,), generator=gen).tolist()
        o, d, tpd, rows, cols = self._rays(batch, pick, stride, off)
        b, vt, nr = o.shape[0], len(pick), o.shape[2]
        h = wd = rows.numel()

        def gt(key: str, layer: int) -> torch.Tensor:  # (B, Vt, C, h, w)
            t = batch[key][:, layer][:, pick]
            return t[..., rows, :][..., cols]

        layer_names = list(batch["layers"])
        sets = ["full"] if stage < 2 else [n for n in LAYER_SETS if n in layer_names]
        # Guides: true depths (normalised t) of the full and body layers where they are covered.
        guides = []
        for name in ("full", "body"):
            li = layer_names.index(name)
            dep = gt("depth", li)[:, :, 0].reshape(b, vt, nr)
            a = gt("alpha", li)[:, :, 0].reshape(b, vt, nr)
            guides.append(torch.where(a > 0.5, dep * tpd, torch.full_like(dep, float("nan"))))
        guides = torch.stack(guides, -1)  # (B, Vt, P, 2)
        t, valid = sample_depths(o.reshape(b, -1, 3), d.reshape(b, -1, 3), p.num_uniform,
                                 guides=guides.reshape(b, -1, 2), num_guided=p.num_guided, spread=p.guide_spread,
                                 generator=gen)
        # Rays and samples first, then one forward (encoder + field at the samples): under DDP the
        # whole computation goes through the wrapper's forward.
        pts = ray_points(o.reshape(b, -1, 3), d.reshape(b, -1, 3), t)
        lw = p.loss
        n_eik = min(p.eikonal_points, pts.shape[1]) if lw.eikonal else 0
        if n_eik:
            # Central differences of the SDF at a random subset of the samples (grid_sample has no
            # double backward, so no autograd gradient): six more points each.
            pick_e = (torch.randint(0, pts.shape[1], (b, n_eik), generator=gen).to(pts.device) if gen is not None
                      else torch.randint(0, pts.shape[1], (b, n_eik), device=pts.device))  # no host round trip
            base = pts.gather(1, pick_e[..., None].expand(b, n_eik, 3))
            fd = 1.0 / p.model.triplane_res  # half a texel
            offs = torch.cat([torch.eye(3), -torch.eye(3)]).to(pts) * fd  # (6, 3)
            pts = torch.cat([pts, (base[:, :, None] + offs).reshape(b, -1, 3)], 1)
        n_3d = batch["points"].shape[1] if p.points3d and (lw.occ3d or lw.sem3d) else 0
        start_3d = pts.shape[1]
        if n_3d:
            # The labelled points in the normalised frame (world = center + half_size * normalised).
            p3 = (batch["points"] - batch["center"][:, None]) / batch["half_size"][:, None, None]
            pts = torch.cat([pts, p3.to(pts.dtype)], 1)
        mesh = stage >= 3 and any((lw.mesh_normal, lw.mesh_depth, lw.mesh_mask, lw.mesh_dev))
        start_grid = pts.shape[1]
        if mesh:
            # Stage 3: the field on the extraction grid joins the same forward call (every character
            # of the batch gets the grid: the points are one (B, N, 3) tensor).
            grid = Grid.cube(p.stage3_grid)
            gpts = grid.points(pts.device, pts.dtype).reshape(1, -1, 3)
            pts = torch.cat([pts, gpts.expand(b, -1, -1)], 1)
        field = model(images, w2c, proj, points=pts).field
        n_ray = t.shape[1] * t.shape[2]
        rendered = composite_layers(_slice_field(field, 0, n_ray), t, sets, semantics=stage >= 1)
        out: dict[str, torch.Tensor] = {}
        if n_eik:
            f = field.sdf[:, n_ray:n_ray + 6 * n_eik].float().reshape(b, n_eik, 6)
            grad = (f[..., :3] - f[..., 3:]) / (2 * fd)
            out["eikonal"] = lw.eikonal * ((grad.norm(dim=-1) - 1) ** 2).mean()
        if n_3d:
            out.update(self._losses3d(model, _slice_field(field, start_3d, start_3d + n_3d),
                                      batch["point_labels"], stage))
        if mesh:
            out.update(self._mesh_losses(_slice_field(field, start_grid, pts.shape[1]), grid, batch, sets, gen))
        for name in sets:
            li = layer_names.index(name)
            r = rendered[name]
            col_gt = gt("rgb", li).permute(0, 1, 3, 4, 2).reshape(b, -1, 3)
            a_gt = gt("alpha", li)[:, :, 0].reshape(b, -1)
            sem_gt = gt("sem", li).reshape(b, -1).long()
            dep_gt = (gt("depth", li)[:, :, 0] * tpd.reshape(b, vt, h, wd)).reshape(b, -1)
            fg = (a_gt > 0.5) & valid
            suffix = "" if len(sets) == 1 else f"_{name}"
            out["mse" + suffix] = lw.mse * F.mse_loss(r.color, col_gt)
            if lw.ssim:
                pred_img = r.color.reshape(b * vt, h, wd, 3).permute(0, 3, 1, 2)
                gt_img = col_gt.reshape(b * vt, h, wd, 3).permute(0, 3, 1, 2)
                out["ssim" + suffix] = lw.ssim * (1 - ssim(pred_img, gt_img))
            out["mask" + suffix] = lw.mask * F.mse_loss(r.opacity, a_gt)
            fgf = fg.float()
            denom = fgf.sum().clamp_min(1)
            if lw.mse_fg:
                out["mse_fg" + suffix] = lw.mse_fg * ((r.color - col_gt).square().mean(-1) * fgf).sum() / denom
            if lw.depth:
                out["depth" + suffix] = lw.depth * ((r.depth - dep_gt).abs() * fgf).sum() / denom
            if stage >= 1 and lw.sem:
                probs = r.semantics / r.opacity.clamp_min(1e-4)[..., None]
                lab = sem_gt.clamp(0, probs.shape[-1] - 1)
                nll = -torch.log(probs.gather(-1, lab[..., None])[..., 0].clamp_min(1e-6))
                out["sem" + suffix] = lw.sem * (nll * fgf).sum() / denom
        del dev
        return out

    def _mesh_losses(self, field, grid: Grid, batch: dict, sets: list[str], generator: torch.Generator | None
                     ) -> dict[str, torch.Tensor]:
        """Stage 3's L3 terms: ``field`` the outputs ``(B, G)`` at the vertices of ``grid``. For the
        first ``stage3_characters`` characters and each kept set: Eq. 10 on the grid, FlexiCubes,
        rasterised at ``stage3_views`` random stream views (normalised-frame cameras) and compared
        with that set's true renders (:func:`mesh_terms`); terms averaged over the characters."""
        from stdgen.render.camera import Cameras

        p = self.preset
        lw = p.loss
        b = field.sdf.shape[0]
        n = b if p.stage3_characters == 0 else min(b, p.stage3_characters)
        views = torch.randperm(batch["rgb"].shape[2], generator=generator)[: p.stage3_views].tolist()
        m = normalizing_transform(batch["center"], batch["half_size"])
        w2c = batch["world_to_cam"][:, views] @ m[:, None]
        proj = batch["proj"][:, views]
        layer_names = list(batch["layers"])
        weights = {"normal": lw.mesh_normal, "depth": lw.mesh_depth, "mask": lw.mesh_mask, "dev": lw.mesh_dev}
        out: dict[str, torch.Tensor] = {}
        # FlexiCubes, the camera transforms and the rasteriser run in float32, never under bf16 autocast.
        with torch.autocast(field.sdf.device.type, enabled=False):
            for i in range(n):
                sdf = field.sdf[i].float().reshape(grid.shape)
                probs = torch.softmax(field.logits[i].float(), -1).reshape(*grid.shape, -1)
                cams = Cameras(w2c[i].float(), proj[i].float(), proj[i, :, 3, 3] == 1)
                for name, f in layer_set_sdfs(sdf, probs, grid, sets).items():
                    li = layer_names.index(name)
                    terms = mesh_terms(f, grid, cams, batch["normal"][i, li, views].permute(0, 2, 3, 1).float(),
                                       batch["alpha"][i, li, views].permute(0, 2, 3, 1).float(),
                                       batch["depth"][i, li, views].permute(0, 2, 3, 1).float(),
                                       unit=batch["half_size"][i].float())
                    suffix = "" if len(sets) == 1 else f"_{name}"
                    for k, w in weights.items():
                        if w:
                            key = f"mesh_{k}{suffix}"
                            out[key] = out.get(key, 0) + w / n * terms[k]
        return out

    def _losses3d(self, model: SLRM, field, labels: torch.Tensor, stage: int) -> dict[str, torch.Tensor]:
        """``occ3d`` (all stages) and ``sem3d`` (stage 1 on) at the labelled points: ``field`` their
        outputs ``(B, N)``, ``labels`` ``(B, N)`` uint8 (255 outside every part)."""
        from stdgen.structures.semantics import BACKGROUND_LABEL

        lw = self.preset.loss
        lab = labels.long()
        inside = lab != BACKGROUND_LABEL
        out: dict[str, torch.Tensor] = {}
        if lw.occ3d:
            # The occupancy at the field's own VolSDF scale: a solid's opacity is about
            # Laplace-CDF(-sdf / beta), so sigmoid(-sdf / beta) asks for a surface as sharp as the
            # renders see, no sharper (beta starts at 0.03 normalised, ~2 cm, and falls as they
            # sharpen). Detached: the renders, not this term, set beta.
            beta = unwrap(model).beta.detach().float()
            out["occ3d"] = lw.occ3d * F.binary_cross_entropy_with_logits(-field.sdf.float() / beta, inside.float())
        if stage >= 1 and lw.sem3d:
            logits = field.logits.float()
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.clamp_max(logits.shape[-1] - 1).reshape(-1),
                                 reduction="none").reshape(lab.shape)
            fin = inside.float()
            out["sem3d"] = lw.sem3d * (ce * fin).sum() / fin.sum().clamp_min(1)
        return out

    # -- looking and validating --

    @torch.no_grad()
    def render_views(self, model: SLRM, planes: torch.Tensor, batch: dict, views: list[int], res: int,
                     sets=("full", "body")) -> dict[str, dict[str, torch.Tensor]]:
        """Full images ``(B, Vt, 3, res, res)`` (colour), opacity and argmax labels of the given stream
        views, per layer set."""
        p = self.preset
        stride = p.resolution // res
        o, d, tpd, rows, cols = self._rays(batch, views, stride, (stride // 2, stride // 2))
        b, vt, nr = o.shape[:3]
        t, _ = sample_depths(o.reshape(b, -1, 3), d.reshape(b, -1, 3), p.num_uniform * 2)
        out = {}
        for name, r in render_layers(model, planes, o.reshape(b, -1, 3), d.reshape(b, -1, 3), t, list(sets)).items():
            out[name] = {"color": r.color.reshape(b, vt, res, res, 3).permute(0, 1, 4, 2, 3).clamp(0, 1),
                         "opacity": r.opacity.reshape(b, vt, res, res),
                         "labels": r.semantics.argmax(-1).reshape(b, vt, res, res)}
        return out

    @torch.no_grad()
    def images(self, model: SLRM, batch: dict) -> dict[str, torch.Tensor]:
        """A grid per character: input front, then for views 0, 90, 135 (a held-out view) and a random
        view: true full, rendered full, rendered body-only. (N, 3, H, W)."""
        images, w2c, proj = self.inputs(batch, degrade=False)
        n = min(2, images.shape[0])
        sub = {k: (v[:n] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == images.shape[0] else v)
               for k, v in batch.items()}
        planes = model.encode(images[:n], w2c[:n], proj[:n])
        views = [0, 2, 3] + ([8] if sub["rgb"].shape[2] > 8 else [])
        res = self.preset.resolution
        r = self.render_views(model, planes, sub, views, res)
        full = list(sub["layers"]).index("full")
        rows = []
        for i in range(n):
            tiles = [images[i, 2, :3]]
            for k, v in enumerate(views):
                tiles += [sub["rgb"][i, full, v], r["full"]["color"][i, k], r["body"]["color"][i, k]]
            rows.append(torch.cat(tiles, -1))
        return {"slrm": torch.stack(rows)}

    @torch.no_grad()
    def validate(self, model: SLRM, device) -> dict[str, float]:
        """Mask IoU and PSNR of the full and body-only renders at the eight evaluation views, for the
        first ``val_seeds`` validation characters (64 px renders)."""
        from stdgen.data.stream import RenderStream

        p = self.preset
        if p.val_seeds == 0:
            return {}
        cfg = self.stream_config(rank=0, world_size=1, device=device, seed=0, split="validation", count=p.val_seeds,
                                 workers=0, pool_size=0, batch_size=p.val_seeds, points3d=0)
        with torch.autocast(torch.device(device).type, enabled=False):  # the renderer runs in float32
            batch = next(iter(RenderStream(cfg)))
        images, w2c, proj = self.inputs(batch, degrade=False)
        planes = model.encode(images, w2c, proj)
        res = min(64, p.resolution)
        views = list(range(8))
        r = self.render_views(model, planes, batch, views, res, sets=("full", "body"))
        stride = p.resolution // res
        sl = slice(stride // 2, None, stride)
        out = {}
        for name in ("full", "body"):
            li = list(batch["layers"]).index(name)
            a_gt = batch["alpha"][:, li, :8, 0, sl, sl] > 0.5
            a = r[name]["opacity"] > 0.5
            out[f"iou_{name}"] = float((a & a_gt).sum() / (a | a_gt).sum().clamp_min(1))
            mse = F.mse_loss(r[name]["color"], batch["rgb"][:, li, :8, :, sl, sl])
            out[f"psnr_{name}"] = float(-10 * torch.log10(mse.clamp_min(1e-10)))
        return out

    def export(self, model: SLRM, directory, dtype: str = "fp16") -> None:
        """Save the inference model: LoRA folded in."""
        model.merged().save_pretrained(directory, dtype=dtype)
