"""Per-pixel breakdown of the part mask IoU that ``stdgen eval`` reports, for the BODY label.

    python benchmarks/part_iou_diag.py PRED_DIR GT_DIR -o OUT_DIR [--limit N] [--names 0900000 ...] [--no-png]
        [--fit-scale]

For each character it takes exactly the label maps the evaluator compares
(:func:`stdgen.eval.evaluate_character` with ``keep_images=True``: the truth re-rendered from its
``character.glb``, the prediction rendered the same way and registered), and reports, pooled over
the eight evaluation views:

- the 4 x 4 confusion (body / clothes / hair / background, truth x prediction): where the missed
  body pixels went (FN -> clothes, hair, background) and what the false body pixels really are;
- the true body pixels by **body region** (head, neck, torso, arms, hands, legs, feet: the dominant
  skinning joint of the nearest true body vertex to the truth's unprojected depth) and how each
  region was labelled;
- **counterfactual IoU**: the mean per-character body IoU (as ``stdgen eval`` averages it) if one
  error category were labelled right, i.e. what fixing that category alone is worth;
- the share of body pixels lost to the background that lie within 1 / 2 px of the true silhouette
  edge (a thin rim: the prediction's limbs, hands and feet slightly too thin) and the share of
  false body pixels over true clothes in small components (< 30 px: speckles of body showing
  through a garment) versus blobs (a garment or limb labelled wholesale as the wrong part);
- a PNG per character (``OUT_DIR/<name>.png``, eight views across): row 1 true labels, row 2
  predicted labels (skin = body, blue = clothes, brown = hair), row 3 the body confusion
  (green body on both sides, red true body predicted clothes, blue true body predicted hair,
  magenta true body predicted background, yellow predicted body where the truth is not body,
  grey other foreground), row 4 the true body regions (head red, neck orange, torso grey, arms
  green, hands cyan, legs blue, feet purple).

``OUT_DIR/summary.json`` holds the numbers, ``OUT_DIR/<name>.npz`` the label maps (``true``,
``pred``, ``region``). CPU, about 5 s per character at 256 px (two renders of each side).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

LABELS = ("body", "clothes", "hair", "bg")
REGIONS = ("head", "neck", "torso", "arms", "hands", "legs", "feet")
JOINT_REGION = {
    "head": "head", "neck": "neck", "hips": "torso", "spine": "torso", "chest": "torso", "upperChest": "torso",
    "leftShoulder": "torso", "rightShoulder": "torso", "leftUpperArm": "arms", "leftLowerArm": "arms",
    "rightUpperArm": "arms", "rightLowerArm": "arms", "leftHand": "hands", "rightHand": "hands",
    "leftUpperLeg": "legs", "leftLowerLeg": "legs", "rightUpperLeg": "legs", "rightLowerLeg": "legs",
    "leftFoot": "feet", "leftToes": "feet", "rightFoot": "feet", "rightToes": "feet",
}  # fmt: skip
SEM_COLORS = {0: (236, 188, 160), 1: (60, 100, 220), 2: (150, 70, 40), 255: (255, 255, 255)}
REGION_COLORS = ((230, 80, 80), (240, 160, 40), (120, 120, 120), (60, 170, 60), (40, 200, 220), (80, 80, 220),
                 (200, 60, 200))
#: (true, predicted) label of each error category of the body IoU.
CATEGORIES = {"FN->clothes": (0, 1), "FN->hair": (0, 2), "FN->bg": (0, 3),
              "FP<-clothes": (1, 0), "FP<-hair": (2, 0), "FP<-bg": (3, 0)}
GROUPS = {"body/clothes": ("FN->clothes", "FP<-clothes"), "body/hair": ("FN->hair", "FP<-hair"),
          "silhouette": ("FN->bg", "FP<-bg")}


def lab4(sem: np.ndarray) -> np.ndarray:
    """uint8 labels (``Part`` values, 255 background) -> int 0 body, 1 clothes, 2 hair, 3 background."""
    out = sem.astype(np.int64)
    out[sem == 255] = 3
    return out


def body_iou(t: np.ndarray, p: np.ndarray) -> float:
    a, b = p == 0, t == 0
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else float("nan")


def body_regions(gt_dir: Path, cameras, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(V, H, W) region index of the truth's visible body surface (-1 elsewhere) and the truth's labels."""
    from scipy.spatial import cKDTree

    from stdgen.eval.protocol import load_character
    from stdgen.io.glb import posed_pieces
    from stdgen.render.batch import RenderJob, render_jobs, scene_from_character
    from stdgen.structures.semantics import Part

    ch = load_character(gt_dir / "character.glb")
    body = posed_pieces(ch, Part.BODY)[0]
    if ch.skeleton is None or body.skin_joints is None:
        raise SystemExit(f"{gt_dir}: the true body has no skin weights, so no body regions")
    dom = body.skin_joints[np.arange(len(body.vertices)), body.skin_weights.argmax(1)]
    vreg = np.array([REGIONS.index(JOINT_REGION.get(ch.skeleton.names[j], "torso")) for j in dom])
    with torch.inference_mode():
        out = render_jobs([RenderJob(scene_from_character(ch), cameras, ("full",))], resolution,
                          maps=("alpha", "depth", "sem"))
    depth = out["depth"][..., 0].numpy().astype(np.float64)
    sem = out["sem"].numpy()
    o, d = cameras.pixel_rays((resolution, resolution))
    o, d = o.numpy().astype(np.float64), d.numpy().astype(np.float64)
    o_depth = -cameras.to_camera(torch.from_numpy(o.reshape(len(cameras), -1, 3)).float()).numpy()[..., 2]
    points = o + (depth - o_depth.reshape(depth.shape))[..., None] * d
    region = np.full(depth.shape, -1, np.int64)
    m = sem == int(Part.BODY)
    region[m] = vreg[cKDTree(body.vertices).query(points[m])[1]]
    return region, sem


def picture(t_sem: np.ndarray, p_sem: np.ndarray, region: np.ndarray) -> np.ndarray:
    def colorize(sem):
        img = np.zeros(sem.shape + (3,), np.uint8)
        for k, c in SEM_COLORS.items():
            img[sem == k] = c
        return img

    t, p = lab4(t_sem), lab4(p_sem)
    conf = np.full(t.shape + (3,), 255, np.uint8)
    conf[(t != 3) | (p != 3)] = (200, 200, 200)
    conf[(t == 0) & (p == 0)] = (40, 190, 40)
    conf[(t == 0) & (p == 1)] = (230, 30, 30)
    conf[(t == 0) & (p == 2)] = (30, 60, 240)
    conf[(t == 0) & (p == 3)] = (220, 0, 220)
    conf[(t != 0) & (p == 0)] = (245, 210, 0)
    reg = np.full(region.shape + (3,), 255, np.uint8)
    for k, c in enumerate(REGION_COLORS):
        reg[region == k] = c
    strip = lambda x: np.concatenate(list(x), 1)
    return np.concatenate([strip(colorize(t_sem)), strip(colorize(p_sem)), strip(conf), strip(reg)], 0)


def analyse(t: np.ndarray, p: np.ndarray) -> dict:
    """Counterfactual IoUs, rim and speckle counts of one character's (V, H, W) lab4 maps."""
    from scipy import ndimage

    out = {"iou": body_iou(t, p), "fixed": {}}
    for name, (a, b) in CATEGORIES.items():
        q = p.copy()
        q[(t == a) & (p == b)] = a
        out["fixed"][name] = body_iou(t, q)
    for g, cats in GROUPS.items():
        q = p.copy()
        for c in cats:
            a, b = CATEGORIES[c]
            q[(t == a) & (p == b)] = a
        out["fixed"][g] = body_iou(t, q)
    rim = np.zeros(3, np.int64)  # FN->bg pixels within 1 px, within 2 px, all
    speck = np.zeros(2, np.int64)  # FP<-clothes pixels in components < 30 px, all
    for v in range(len(t)):
        inside = ndimage.distance_transform_edt(t[v] != 3)
        d = inside[(t[v] == 0) & (p[v] == 3)]
        rim += (np.count_nonzero(d <= 1), np.count_nonzero(d <= 2), len(d))
        lab, n = ndimage.label((t[v] == 1) & (p[v] == 0), structure=np.ones((3, 3)))
        if n:
            sizes = np.bincount(lab.ravel())[1:]
            speck += (sizes[sizes < 30].sum(), sizes.sum())
    out["rim"], out["speckle"] = rim.tolist(), speck.tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pred", type=Path, help="prediction folder (one folder per character with character.glb)")
    ap.add_argument("gt", type=Path, help="dataset folder (stdgen data render)")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=0, help="only the first N characters")
    ap.add_argument("--names", nargs="*", help="only these characters")
    ap.add_argument("--no-png", action="store_true")
    ap.add_argument("--fit-scale", action="store_true", help="as `stdgen eval --fit-scale` (pictures carry no size)")
    a = ap.parse_args()
    from PIL import Image

    from stdgen.eval.protocol import EvalConfig, evaluate_character
    from stdgen.io.dataset import read_renders

    a.output.mkdir(parents=True, exist_ok=True)
    names = a.names or sorted(p.name for p in a.pred.iterdir() if (p / "character.glb").is_file()
                              and (a.gt / p.name / "meta.json").is_file())
    if a.limit:
        names = names[:a.limit]
    total, total_reg = np.zeros((4, 4), np.int64), np.zeros((len(REGIONS), 4), np.int64)
    rows = []
    for name in names:
        ev = evaluate_character(a.pred / name, a.gt / name, EvalConfig(fit_scale=a.fit_scale), keep_images=True,
                                geometry=False)
        t, p = lab4(ev.true_views.sem), lab4(ev.pred_views.sem)
        renders = read_renders(a.gt / name, layers=("full",), maps=("rgb",))
        region, sem = body_regions(a.gt / name, renders.cameras(renders.view_index("eval")), renders.resolution)
        if not np.array_equal(lab4(sem), t):
            raise SystemExit(f"{name}: the truth's labels differ from the evaluator's")
        conf = np.zeros((4, 4), np.int64)
        np.add.at(conf, (t.ravel(), p.ravel()), 1)
        creg = np.zeros((len(REGIONS), 4), np.int64)
        np.add.at(creg, (region[t == 0], p[t == 0]), 1)
        total += conf
        total_reg += creg
        res = analyse(t, p)
        rows.append({"name": name, "eval_iou_body": ev.metrics["iou_body"], "confusion": conf.tolist(),
                     "regions": creg.tolist(), **res})
        tb = max(conf[0].sum(), 1)
        print(f"{name}: body IoU {res['iou']:.3f}; true body {conf[0].sum()} px -> "
              + ", ".join(f"{LABELS[k]} {conf[0, k] / tb:.3f}" for k in range(4))
              + f"; false body from clothes / hair / bg {conf[1:, 0].tolist()} px", flush=True)
        np.savez_compressed(a.output / f"{name}.npz", true=ev.true_views.sem, pred=ev.pred_views.sem, region=region)
        if not a.no_png:
            Image.fromarray(picture(ev.true_views.sem, ev.pred_views.sem, region)).save(a.output / f"{name}.png")
    if not rows:
        raise SystemExit("no characters found on both sides")
    base = np.nanmean([r["iou"] for r in rows])
    fixed = {k: float(np.nanmean([r["fixed"][k] for r in rows])) for k in rows[0]["fixed"]}
    rim = np.sum([r["rim"] for r in rows], 0)
    speck = np.sum([r["speckle"] for r in rows], 0)
    summary = {"characters": names, "labels": LABELS, "regions_names": REGIONS, "confusion": total.tolist(),
               "regions": total_reg.tolist(), "mean_iou_body": base, "counterfactual_mean_iou": fixed,
               "fn_bg_within_1px_2px_all": rim.tolist(), "fp_clothes_speckle_all": speck.tolist(),
               "per_character": rows}
    (a.output / "summary.json").write_text(json.dumps(summary, indent=1))

    tb, miss, false = total[0].sum(), total[0, 1:].sum(), total[1:, 0].sum()
    print(f"\n{len(rows)} characters: mean body IoU {base:.3f} (pooled over characters "
          f"{total[0, 0] / (tb + total[:, 0].sum() - total[0, 0]):.3f})")
    print(f"true body {tb} px; missed {miss} ({miss / tb:.3f}) -> "
          + ", ".join(f"{LABELS[k]} {total[0, k] / max(miss, 1):.2f}" for k in (1, 2, 3))
          + f"; false body {false} ({false / tb:.3f} of true) <- "
          + ", ".join(f"{LABELS[k]} {total[k, 0] / max(false, 1):.2f}" for k in (1, 2, 3)))
    print(f"missed to background within 1 px of the true silhouette edge {rim[0] / max(rim[2], 1):.2f}, "
          f"within 2 px {rim[1] / max(rim[2], 1):.2f}; false body over clothes in specks < 30 px "
          f"{speck[0] / max(speck[1], 1):.2f}")
    print("\n| region | true body px | share | predicted body | clothes | hair | background | share of misses |")
    print("|---|---|---|---|---|---|---|---|")
    for r, rn in enumerate(REGIONS):
        n = total_reg[r].sum()
        if n:
            print(f"| {rn} | {n} | {n / tb:.3f} | " + " | ".join(f"{total_reg[r, k] / n:.3f}" for k in range(4))
                  + f" | {total_reg[r, 1:].sum() / max(miss, 1):.3f} |")
    print("\n| if this were labelled right | mean body IoU | gain |")
    print("|---|---|---|")
    for k, v in fixed.items():
        print(f"| {k} | {v:.3f} | +{v - base:.3f} |")


if __name__ == "__main__":
    main()
