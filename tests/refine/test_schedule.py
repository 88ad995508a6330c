"""The body -> clothes -> hair schedule on a small stand-in (fast) and on held-out procedural
characters (slow): Chamfer to the true parts drops, and layers stay apart."""

import numpy as np
import pytest

from stdgen.geometry.metrics import mesh_metrics
from stdgen.refine.folder import penetrating_vertices
from stdgen.refine.schedule import ScheduleConfig, refine_character
from stdgen.refine.targets import make_targets
from stdgen.structures.semantics import PARTS, Part

#: A vertex of an outer layer counts as inside an inner one only deeper than this (metres): the
#: clothes' inner surface lies *on* the body, so it may poke a hair's breadth in either way.
PENETRATION_TOLERANCE = 0.002


def _fast_config(steps=20, fine_steps=8) -> ScheduleConfig:
    cfg = ScheduleConfig()
    for p in PARTS:
        s = cfg.stage(p)
        s.steps, s.resolution, s.fine_resolution, s.fine_steps = steps, 96, 192, fine_steps
        s.explicit_target.steps = 15
    return cfg


def test_schedule_refines_every_part_of_a_small_standin(standin, standin_views):
    """Fast variant (96 px, 20 + 8 steps). Measured: body 2.05x, clothes 1.65x, hair 2.02x lower
    Chamfer. The stand-in's shells have faces no elevation-0 view sees (the clothes' top ring and
    bottom, the hair's underside), which no refinement from these views can correct, so the outer
    layers are held to smaller factors here than the body."""
    true, coarse = standin
    cams, renders = standin_views
    targets = {p: make_targets(cams, renders[p]["alpha"], renders[p]["normal"],
                               part_mask=(renders[p]["sem"] == int(p)).float() * renders[p]["alpha"]) for p in PARTS}
    out = refine_character(coarse, targets, _fast_config())
    ratio = {}
    for p in PARTS:
        before = mesh_metrics(coarse[p], true[p], count=60000, thresholds=())["chamfer"]
        after = mesh_metrics(out.meshes[p], true[p], count=60000, thresholds=())["chamfer"]
        ratio[p] = before / after
    assert ratio[Part.BODY] > 1.8, ratio
    assert ratio[Part.CLOTHES] > 1.45 and ratio[Part.HAIR] > 1.7, ratio
    # Layer order: no clothes vertex inside the body, no hair vertex inside body or clothes.
    body, clothes, hair = (out.meshes[p] for p in PARTS)
    assert penetrating_vertices(clothes, [body], PENETRATION_TOLERANCE) == 0
    assert penetrating_vertices(hair, [body, clothes], PENETRATION_TOLERANCE) == 0
    # And the refined meshes are still closed manifolds.
    from stdgen.refine.remesh import manifold_report

    for p in PARTS:
        assert manifold_report(out.meshes[p].faces, out.meshes[p].num_vertices).watertight


def test_schedule_skips_missing_parts(standin, standin_views):
    true, coarse = standin
    cams, renders = standin_views
    t = make_targets(cams, renders[Part.BODY]["alpha"], renders[Part.BODY]["normal"])
    out = refine_character({Part.BODY: coarse[Part.BODY]}, {Part.BODY: t}, _fast_config(steps=2, fine_steps=0))
    assert set(out.meshes) == {Part.BODY} and set(out.seconds) == {"body"}
    with pytest.raises(ValueError, match="no targets"):
        refine_character({Part.HAIR: coarse[Part.HAIR]}, {}, _fast_config(steps=1, fine_steps=0))


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_refine_held_out_procedural_characters(tmp_path, index):
    """The issue's test on held-out procedural characters, with the default schedule: each part's
    Chamfer to the true part (point to surface, see stdgen.geometry.surface_metrics) drops at least 2x, no
    layer penetrates the one inside it, and the body's and clothes' normal consistency does not get
    worse."""
    from stdgen.data.render_dataset import RenderConfig, procedural_character, render_to_folder
    from stdgen.data.splits import held_out_seeds
    from stdgen.refine.folder import refine_folder

    seed = held_out_seeds(index + 1)[index]
    folder = tmp_path / f"{seed}"
    cfg = RenderConfig(resolution=512, random_views=0, face_views=False, top_bottom=False, posed_views=0,
                       device="cpu")
    render_to_folder(procedural_character(seed), folder, cfg, seed=seed, source="procedural")
    report = refine_folder(folder, tmp_path / "out")
    parts = report["parts"]
    for key in ("body", "clothes", "hair"):
        e = parts[key]
        if e["chamfer_before"] is None:
            continue
        assert e["penetrating_vertices"] == 0, (key, e)
        assert e["chamfer_after"] < e["chamfer_before"] / SLOW_RATIO[key], (key, e)
        if key in NC_KEPT:
            assert e["normal_consistency_after"] >= e["normal_consistency_before"], (key, e)
    assert np.isfinite(report["seconds"]["total"])


#: Chamfer ratios the slow test demands per part (the issue's 2x; see BENCHMARKS.md for
#: what was measured over 20 held-out characters).
SLOW_RATIO = {"body": 2.0, "clothes": 2.0, "hair": 2.0}
#: Parts whose normal consistency must not drop (hair's can: fused strands, see the benchmark figures).
NC_KEPT = ("body", "clothes")


@pytest.mark.gpu
def test_schedule_runs_on_cuda(standin, standin_views):
    """The fast variant on the GPU: every tensor of the loop lives on the device (a CPU tensor mixed
    in raises), and the result refines as on the CPU."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    true, coarse = standin
    cams, renders = standin_views
    targets = {p: make_targets(cams, renders[p]["alpha"], renders[p]["normal"],
                               part_mask=(renders[p]["sem"] == int(p)).float() * renders[p]["alpha"], device="cuda")
               for p in PARTS}
    out = refine_character(coarse, targets, _fast_config(), device="cuda")
    for p in PARTS:
        before = mesh_metrics(coarse[p], true[p], count=60000, thresholds=())["chamfer"]
        after = mesh_metrics(out.meshes[p], true[p], count=60000, thresholds=())["chamfer"]
        assert before / after > 1.4, (p, before, after)
