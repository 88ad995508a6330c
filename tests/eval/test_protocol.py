import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch

from stdgen.errors import InputError
from stdgen.eval import protocol as pr
from stdgen.io.dataset import read_meta, read_renders
from stdgen.structures.semantics import Part
from stdgen.utils.io import save_png

from .helpers import RES, standin_parts, textured_standin_character, write_prediction, write_truth

FAST = pr.EvalConfig(points=5000)


def test_identity_scores_perfectly(truth_dir, pred_root):
    r = pr.evaluate_character(pred_root / "a", truth_dir / "a", FAST)
    m = r.metrics
    assert m["ssim"] == 1 and m["ssim_masked"] == 1 and m["psnr"] == 100
    assert m["mask_iou"] == 1 and m["shift_px"] == 0
    assert m["normal_angle_deg"] == pytest.approx(0, abs=1e-6)
    assert m["iou_body"] == m["iou_clothes"] == m["iou_hair"] == 1 and m["semantic_accuracy"] == 1
    assert m["chamfer"] == 0 and m["fscore@0.01"] == 1 and m["fscore@0.02"] == 1
    for p in ("body", "clothes", "hair"):
        assert m[f"{p}/chamfer"] == 0 and m[f"{p}/fscore@0.01"] == 1
    assert m["normal_consistency"] == pytest.approx(1)
    assert 0 <= m["clothes_hollowness"] <= 1 and 0 <= m["clothes_in_body"] <= 1


def test_textured_truth_scores_one_against_itself(tmp_path):
    """Ground truth against itself is exactly 1 on every image metric, for a character whose parts are
    several textured and untextured pieces (as the procedural ones are: before both sides went through
    one rendering path, a plaid shirt scored 0.88 masked SSIM against itself)."""
    truth = write_truth(tmp_path / "gt" / "c", textured_standin_character(3))
    pred = tmp_path / "pred" / "c"
    pred.mkdir(parents=True)
    shutil.copy(truth / "character.glb", pred / "character.glb")
    m = pr.evaluate_character(pred, truth, pr.EvalConfig(geometry=False, volume=False)).metrics
    assert m["ssim"] == 1 and m["ssim_masked"] == 1 and m["psnr"] == 100 and m["psnr_masked"] == 100
    assert m["mask_iou"] == 1 and m["shift_px"] == 0 and m["semantic_accuracy"] == 1
    assert m["iou_body"] == m["iou_clothes"] == m["iou_hair"] == 1
    assert m["normal_angle_deg"] == pytest.approx(0, abs=1e-6)
    # The pieces keep their own textures: the stored truth and the re-rendered GLB agree to within one
    # 8-bit level, while merging each part's pieces first (the old path) changes the shirt's colours.
    renders = read_renders(truth, layers=("full",), maps=("rgb",))
    idx = renders.view_index("eval")
    cams = renders.cameras(idx)
    stored = pr._true_viewset(renders, idx, 1.0).rgb
    pieces = pr.render_parts(pr.load_character(truth / "character.glb"), cams, RES).rgb
    merged = pr.render_parts(pr.load_parts(truth / "character.glb"), cams, RES).rgb
    assert np.abs(pieces - stored).max() <= 1 / 255 + 1e-6
    assert np.abs(merged - stored).max() > 0.2
    s = pr.evaluate_character(pred, truth, pr.EvalConfig(geometry=False, volume=False, truth="stored")).metrics
    assert s["ssim_masked"] > 0.999 and s["mask_iou"] == 1


def test_a_different_character_scores_worse(truth_dir, pred_root):
    # Character b judged against a's truth: same shapes, other shirt colour.
    shutil.copy(truth_dir / "b" / "character.glb", pred_root / "a" / "character.glb")
    m = pr.evaluate_character(pred_root / "a", truth_dir / "a", FAST).metrics
    assert m["ssim"] < 1 and m["psnr"] < 60 and m["mask_iou"] == 1


def test_swapping_clothes_and_hair_drops_their_iou(truth_dir, tmp_path):
    parts = standin_parts(1)
    swapped = {Part.BODY: parts[Part.BODY], Part.CLOTHES: parts[Part.HAIR], Part.HAIR: parts[Part.CLOTHES]}
    write_prediction(tmp_path / "a", swapped)
    m = pr.evaluate_character(tmp_path / "a", truth_dir / "a", FAST).metrics
    assert m["iou_body"] == pytest.approx(1.0)
    assert m["iou_clothes"] < 0.1 and m["iou_hair"] < 0.1
    assert m["semantic_accuracy"] < 0.8
    # The pictures are the same: only the labels moved.
    assert m["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["hair/fscore@0.01"] < 0.2 and m["body/fscore@0.01"] > 0.9


def test_fit_scale_undoes_a_uniform_scale_and_move(truth_dir, tmp_path):
    """A prediction made at the wrong size (as from a picture, which carries no size) scores badly
    as it is and like the truth once fitted to the truth's height, feet and centre."""
    parts = standin_parts(1)
    moved = {p: m.replace(vertices=m.vertices * 1.3 + np.array([0.05, -0.2, 0.03], np.float32))
             for p, m in parts.items()}
    write_prediction(tmp_path / "a", moved)
    plain = pr.evaluate_character(tmp_path / "a", truth_dir / "a", FAST).metrics
    fitted = pr.evaluate_character(tmp_path / "a", truth_dir / "a", dataclasses.replace(FAST, fit_scale=True)).metrics
    assert plain["mask_iou"] < 0.8 and plain["fscore@0.01"] < 0.5
    assert fitted["mask_iou"] > 0.99 and fitted["fscore@0.01"] > 0.99 and fitted["ssim"] > 0.99
    scale, offset = pr.height_fit(np.array([[0, 1, 0], [2, 3, 4]], float), np.array([[-1, 0, -1], [1, 1, 1]], float))
    assert scale == 0.5 and np.allclose(offset, [-0.5, -0.5, -1])


def test_horizontal_shift_is_fixed_by_mask_registration(truth_dir, tmp_path):
    half = read_meta(truth_dir / "a")["framing"]["half_size"]
    pixel = 2 * half / RES
    k = 3
    parts = standin_parts(1)
    moved = {p: m.replace(vertices=m.vertices + np.array([k * pixel, 0, 0], np.float32)) for p, m in parts.items()}
    renders = read_renders(truth_dir / "a", layers=("full",), maps=("rgb", "normal", "sem"))
    idx = renders.view_index("eval")
    true = pr._true_viewset(renders, idx, 1.0)
    pred = pr.render_parts(moved, renders.cameras(idx), RES)
    t = lambda x: torch.from_numpy(x)
    plain = pr.view_metrics(t(pred.rgb), t(true.rgb), t(pred.alpha), t(true.alpha))
    fixed = pr.view_metrics(t(pred.rgb), t(true.rgb), t(pred.alpha), t(true.alpha), register=True)
    az = [round(renders.views[i]["azimuth"]) % 360 for i in idx]
    front, back = az.index(0), az.index(180)
    # The front view sees +X to the right, the back view to the left.
    assert int(fixed["shift"][front]) == -k and int(fixed["shift"][back]) == k
    for v in (front, back):
        assert float(plain["ssim"][v]) < 0.97
        assert float(fixed["ssim"][v]) > 0.999 and float(fixed["mask_iou"][v]) > 0.99
    # The whole protocol: registration recovers most of the loss.
    write_prediction(tmp_path / "a", moved)
    on = pr.evaluate_character(tmp_path / "a", truth_dir / "a", pr.EvalConfig(geometry=False, volume=False))
    off = pr.evaluate_character(tmp_path / "a", truth_dir / "a",
                                pr.EvalConfig(geometry=False, volume=False, register=False))
    assert on.metrics["ssim"] > off.metrics["ssim"] + 0.02 and on.metrics["shift_px"] > 1


def test_view_metrics_api_on_a_batch():
    g = torch.Generator().manual_seed(0)
    rgb = torch.ones(2, 3, 32, 40, 3)
    mask = torch.zeros(2, 3, 32, 40)
    mask[..., 8:24, 12:22] = 1
    rgb = rgb * (1 - mask[..., None]) + mask[..., None] * torch.rand(2, 3, 32, 40, 3, generator=g)
    labels = torch.where(mask > 0, 1, 255).to(torch.uint8)
    shifted_rgb = torch.roll(rgb, 4, dims=-2)
    shifted_mask = torch.roll(mask, 4, dims=-1)
    res = pr.view_metrics(shifted_rgb, rgb, shifted_mask, mask, pred_labels=torch.roll(labels, 4, -1),
                          true_labels=labels, register=True)
    assert res["ssim"].shape == (2, 3)
    assert torch.allclose(res["ssim"], torch.ones(2, 3, dtype=torch.float64))
    assert (res["shift"] == -4).all() and (res["iou_clothes"] == 1).all()
    assert res["iou_hair"].isnan().all()
    plain = pr.view_metrics(shifted_rgb, rgb, shifted_mask, mask)
    assert (plain["ssim"] < 0.9).all() and (plain["shift"] == 0).all()
    means = pr.nanmean_metrics(res)
    assert means["ssim"] == pytest.approx(1) and math.isnan(means["iou_hair"])


def test_view_metrics_ignore_the_callers_autocast():
    """Trainers validate inside bf16 autocast; SSIM computed there came out negative."""
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(4, 64, 64)
    mask[:, 10:54, 20:44] = 1
    true = 1 - mask[..., None] * torch.rand(4, 64, 64, 3, generator=g) * 0.3
    pred = (true + 0.02 * torch.randn(4, 64, 64, 3, generator=g)).clamp(0, 1)
    plain = pr.view_metrics(pred, true, mask, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = pr.view_metrics(pred, true, mask, mask)
    torch.testing.assert_close(inside["ssim"], plain["ssim"])
    torch.testing.assert_close(inside["psnr"], plain["psnr"])


def test_generated_views_are_scored_against_the_generation_views(truth_dir, pred_root):
    renders = read_renders(truth_dir / "a", layers=("full",), maps=("rgb", "normal"))
    gen = renders.view_index("gen")
    save_png(pred_root / "a" / "mv_rgb.png", np.concatenate(list(renders.layers["full"].rgb[gen]), axis=1))
    n = renders.layers["full"].normal[gen]
    save_png(pred_root / "a" / "mv_normal.png", np.concatenate(list(np.where(n.any(-1, keepdims=True),
                                                                             n * 0.5 + 0.5, 0)), axis=1))
    m = pr.evaluate_character(pred_root / "a", truth_dir / "a", pr.EvalConfig(geometry=False, volume=False)).metrics
    assert m["mv_ssim"] == 1 and m["mv_mask_iou"] == 1
    assert m["mv_normal_angle_deg"] < 0.5  # 8-bit normals re-encoded
    # RGB views (already over white, no mask of their own): no silhouette IoU, the truth's mask is used.
    rgba = renders.layers["full"].rgb[gen].astype(np.float32) / 255
    over_white = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    save_png(pred_root / "a" / "mv_rgb.png", np.concatenate(list(over_white), axis=1))
    m = pr.evaluate_character(pred_root / "a", truth_dir / "a", pr.EvalConfig(geometry=False, volume=False)).metrics
    assert "mv_mask_iou" not in m and m["mv_ssim"] > 0.999
    # Wrong number of views in the sheet: an error naming the file.
    save_png(pred_root / "a" / "mv_rgb.png", np.zeros((RES, RES * 5, 4), np.uint8))
    with pytest.raises(InputError, match="mv_rgb.png"):
        pr.evaluate_character(pred_root / "a", truth_dir / "a", FAST)


def test_input_view_fidelity(truth_dir, pred_root, tmp_path):
    parts = pr.load_parts(pred_root / "a" / "character.glb")
    cam = pr.input_camera(parts)
    view = pr.render_parts(parts, cam, 48, background=0.0)  # premultiplied on black = colour * alpha
    straight = np.where(view.alpha[..., None] > 0, view.rgb / np.maximum(view.alpha[..., None], 1e-6), 0)
    rgba = np.concatenate([straight[0], view.alpha[0][..., None]], -1)
    save_png(tmp_path / "a.png", rgba)
    m = pr.evaluate_input_view(pred_root / "a", tmp_path / "a.png").metrics
    assert m["silhouette_iou"] == pytest.approx(1.0)
    assert m["ssim_masked"] > 0.999
    # Without alpha, a mask is needed; with one, the same answer.
    save_png(tmp_path / "rgb.png", rgba[..., :3])
    with pytest.raises(InputError, match="no alpha"):
        pr.evaluate_input_view(pred_root / "a", tmp_path / "rgb.png")
    save_png(tmp_path / "mask.png", rgba[..., 3])
    m2 = pr.evaluate_input_view(pred_root / "a", tmp_path / "rgb.png", tmp_path / "mask.png").metrics
    assert m2["silhouette_iou"] == pytest.approx(1.0)
    # A picture of the wrong character region scores lower.
    save_png(tmp_path / "off.png", np.roll(rgba, 6, axis=1))
    assert pr.evaluate_input_view(pred_root / "a", tmp_path / "off.png").metrics["silhouette_iou"] < 0.8


def test_pictures_are_padded_to_a_square(tmp_path):
    pic = np.zeros((30, 20, 4), np.uint8)
    pic[5:25, 5:15] = (200, 100, 50, 255)
    save_png(tmp_path / "p.png", pic)
    rgb, mask = pr.load_picture(tmp_path / "p.png")
    assert rgb.shape == (30, 30, 3) and mask.shape == (30, 30)
    assert mask.sum() == 200 and mask[:, :5].sum() == 0 and mask[5:25, 10:20].all()


def test_missing_and_malformed_inputs_name_the_file(truth_dir, tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(InputError, match=r"a/character\.glb: missing"):
        pr.evaluate_character(tmp_path / "a", truth_dir / "a", FAST)
    (tmp_path / "a" / "character.glb").write_bytes(b"glTF garbage that is not a file")
    with pytest.raises(InputError, match=r"a/character\.glb"):
        pr.evaluate_character(tmp_path / "a", truth_dir / "a", FAST)
    with pytest.raises(InputError, match="meta.json"):
        pr.evaluate_character(tmp_path / "a", tmp_path, FAST)


def test_dataset_run_lists_characters_on_one_side(truth_dir, pred_root):
    (pred_root / "zz-extra").mkdir()
    shutil.rmtree(pred_root / "b")
    run = pr.evaluate_dataset(pred_root, truth_dir, pr.EvalConfig(geometry=False, volume=False))
    assert [r.name for r in run.results] == ["a"]
    assert run.only_pred == ["zz-extra"] and run.only_true == ["b"]
    with pytest.raises(InputError, match="no character folder names in common"):
        pr.evaluate_dataset(pred_root / "zz-extra", truth_dir, FAST)


class _TinyFeatures(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 5, stride=8)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def test_fid_and_lpips_through_the_dataset_run(truth_dir, pred_root, tmp_path):
    from stdgen.eval.perceptual import LPIPS, InceptionFeatures, PerceptualModels
    from stdgen.eval.report import summary_markdown

    from .helpers import tiny_lpips_state

    torch.manual_seed(0)
    models = PerceptualModels(lpips=LPIPS(tiny_lpips_state("vgg")),
                              inception=InceptionFeatures(_TinyFeatures().eval(), False, torch.device("cpu")))
    cfg = pr.EvalConfig(geometry=False, volume=False)
    run = pr.evaluate_dataset(pred_root, truth_dir, cfg, models)
    # Identical predictions: LPIPS 0 per character, FID 0 over the set (16 views a side).
    assert all(r.metrics["lpips"] == pytest.approx(0, abs=1e-6) for r in run.results)
    assert run.fid["3d"] == pytest.approx(0, abs=1e-6)
    assert "not computed" in summary_markdown(run)  # CLIP had no weights
    shutil.copy(truth_dir / "b" / "character.glb", pred_root / "a" / "character.glb")
    run2 = pr.evaluate_dataset(pred_root, truth_dir, cfg, models)
    assert run2.fid["3d"] > 1e-6 and run2.results[0].metrics["lpips"] > 0
