"""The report of an evaluation run: ``metrics.csv``, ``summary.md`` and side-by-side pictures.

``metrics.csv`` has one row per character; undefined values (a part absent on both sides) are
``nan``; learned metrics without weights are ``not computed``. ``summary.md`` gives means with
95 % confidence intervals (Student's t over characters) in the layout of the paper's Table 1,
with the paper's numbers beside ours, then the other tables. Pictures show the best, median and
worst characters by the headline metric (3D SSIM; silhouette IoU for pictures).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from stdgen.eval.perceptual import NOT_COMPUTED
from stdgen.eval.protocol import CharacterEval, EvalRun, ViewSet
from stdgen.structures.semantics import BACKGROUND_LABEL, PARTS

#: The paper's Table 1 ("Ours" rows): (SSIM, LPIPS, FID, CLIP) for A-pose / arbitrary-pose input.
PAPER_TABLE1 = {
    ("2d", "apose"): (0.958, 0.038, 0.004, 0.941),
    ("2d", "arbitrary"): (0.920, 0.071, 0.014, 0.935),
    ("3d", "apose"): (0.937, 0.066, 0.010, 0.941),
    ("3d", "arbitrary"): (0.916, 0.084, 0.011, 0.936),
}
#: The paper's per-part mask IoU (as quoted in issue 6).
PAPER_IOU = {"body": 0.88, "clothes": 0.86, "hair": 0.73}
#: Colours of the part labels in pictures (those of the dataset previews).
PART_COLOURS = np.array([[0.95, 0.75, 0.6], [0.2, 0.4, 0.9], [0.45, 0.25, 0.1]], np.float32)
#: Metrics whose column says "not computed" when their network's weights were not given.
LEARNED = {"lpips": "lpips", "clip": "clip", "mv_lpips": "lpips", "mv_clip": "clip"}


# -- statistics --------------------------------------------------------------------------------------
def mean_ci(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, half-width of the 95 % t-interval, and count of the finite values (NaN, NaN, 0 if none;
    half-width NaN for a single value)."""
    v = np.asarray([x for x in values if isinstance(x, float | int) and math.isfinite(x)], np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    if len(v) == 1:
        return float(v[0]), float("nan"), 1
    from scipy.stats import t

    half = float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()), half, len(v)


def _fmt(x: float, digits: int = 3) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_ci(values: Sequence[float], digits: int = 3) -> str:
    m, h, n = mean_ci(values)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{_fmt(m, digits)} (n=1)"
    return f"{_fmt(m, digits)} ± {_fmt(h, digits)}"


# -- metrics.csv -------------------------------------------------------------------------------------
def columns(run: EvalRun) -> list[str]:
    """Metric columns in first-seen order, with the learned metrics always present."""
    cols: list[str] = []
    for r in run.results:
        for k in r.metrics:
            if k not in cols:
                cols.append(k)
    wanted = ["lpips", "clip"]
    if any(k.startswith("mv_") for k in cols):
        wanted += ["mv_lpips", "mv_clip"]
    for k in wanted:
        if k not in cols:
            cols.append(k)
    return cols


def _cell(run: EvalRun, r: CharacterEval, key: str) -> str:
    if key in r.metrics:
        v = r.metrics[key]
        return "nan" if not math.isfinite(v) else f"{v:.6g}"
    if key in LEARNED and not run.learned.get(LEARNED[key], False):
        return NOT_COMPUTED
    return "n/a"  # e.g. no generated views for this character


def metrics_csv(run: EvalRun) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    cols = columns(run)
    w.writerow(["character", *cols])
    for r in run.results:
        w.writerow([r.name, *(_cell(run, r, k) for k in cols)])
    return out.getvalue()


# -- summary.md --------------------------------------------------------------------------------------
def _values(run: EvalRun, key: str) -> list[float]:
    return [r.metrics[key] for r in run.results if key in r.metrics]


def _learned_cell(run: EvalRun, key: str, digits: int = 3) -> str:
    if not run.learned.get(LEARNED.get(key, key), False):
        return NOT_COMPUTED
    return fmt_ci(_values(run, key), digits)


def _fid_cell(run: EvalRun, kind: str) -> str:
    if not run.learned.get("inception"):
        return NOT_COMPUTED
    if kind in run.fid:
        return f"{run.fid[kind]:.3f}"
    return NOT_COMPUTED


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _listing(names: Sequence[str], limit: int = 20) -> str:
    if not names:
        return "none"
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def summary_markdown(run: EvalRun, pictures: dict[str, str] | None = None) -> str:
    from stdgen import __version__

    n = len(run.results)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# stdgen evaluation report", ""]
    if run.mode == "pictures":
        lines += [f"- predictions: `{run.pred_root}` · pictures: `{run.true_root}` · **{n}** characters · "
                  f"stdgen {__version__} · {when}",
                  f"- prediction folders without a picture ({len(run.only_pred)}): {_listing(run.only_pred)}",
                  f"- pictures without a prediction ({len(run.only_true)}): {_listing(run.only_true)}", ""]
        lines += _pictures_section(run)
    else:
        lines += [f"- predictions: `{run.pred_root}` · ground truth: `{run.true_root}` · **{n}** characters · "
                  f"stdgen {__version__} · {when}",
                  f"- only in predictions ({len(run.only_pred)}): {_listing(run.only_pred)}",
                  f"- only in ground truth ({len(run.only_true)}): {_listing(run.only_true)}", ""]
        lines += _table1_section(run)
        lines += _image_section(run)
        if any("chamfer" in r.metrics for r in run.results):
            lines += _geometry_section(run)
        lines += _decomposition_section(run)
    lines += ["Values are means over characters ± the half-width of their 95 % confidence interval "
              "(Student's t); characters where a value is undefined (e.g. a part neither side has) are left "
              "out of that mean, and `n` says how many remain where it matters.", ""]
    if pictures:
        lines += ["## Side by side", ""]
        for label, file in pictures.items():
            lines += [f"**{label}**: [{file}]({file})", "", f"![{label}]({file})", ""]
    return "\n".join(lines) + "\n"


def _table1_section(run: EvalRun) -> list[str]:
    cfg = run.config
    has_mv = any("mv_ssim" in r.metrics for r in run.results)
    rows = []
    for kind, title in (("2d", "2D multi-view"), ("3d", "3D character")):
        for inp, label in (("apose", "A-pose input"), ("arbitrary", "arbitrary-pose input")):
            s, l, f, c = PAPER_TABLE1[(kind, inp)]
            rows.append([f"{title}: StdGEN paper, {label}", f"{s:.3f}", f"{l:.3f}", f"{f:.3f}", f"{c:.3f}"])
        pre = "mv_" if kind == "2d" else ""
        if kind == "2d" and not has_mv:
            rows.append([f"**{title}: this run**", "no generated views", "", "", ""])
            continue
        nk = sum(1 for r in run.results if f"{pre}ssim" in r.metrics)
        rows.append([f"**{title}: this run** (n={nk})", fmt_ci(_values(run, f"{pre}ssim")),
                     _learned_cell(run, f"{pre}lpips"), _fid_cell(run, "mv" if kind == "2d" else "3d"),
                     _learned_cell(run, f"{pre}clip")])
    lines = ["## Table 1 layout (the paper's protocol)", ""]
    lines += _table(["", "SSIM ↑", "LPIPS ↓", "FID ↓", "CLIP ↑"], rows)
    reg = (f"aligned to the ground truth by horizontal mask registration (shift ≤ {cfg.max_shift:g} of the width)"
           if cfg.register else "not registered (--no-register)")
    fitted = (" (first scaled and moved to the truth's height, lowest point and horizontal centre: `--fit-scale`)"
              if cfg.fit_scale else "")
    lines += ["",
              f"3D: the predicted character{fitted} rendered at the ground truth's eight evaluation views "
              f"(orthographic, elevation 0, 45° steps, unlit colour as the dataset renders it, 8-bit), each {reg}, "
              "over a white background. 2D: the generated views (`mv_rgb.png`) against the ground truth's six "
              "generation views, unregistered. CLIP similarity is between the front ground-truth view and each "
              "predicted view. FID is computed over all views of all characters at once (a set-level number, so "
              "no interval); the paper's FID values are on a scale we cannot reproduce (their feature "
              "extractor and normalisation are not stated), so compare FID between runs of this evaluator only.",
              ""]
    for kind, note in run.fid_notes.items():
        lines += [f"- FID ({kind}): {note}"]
    if run.fid_notes:
        lines.append("")
    return lines


def _image_section(run: EvalRun) -> list[str]:
    rows = []
    spec = [("ssim", "SSIM", 3), ("psnr", "PSNR (dB)", 2), ("ssim_masked", "masked SSIM", 3),
            ("psnr_masked", "masked PSNR (dB)", 2), ("mask_iou", "silhouette IoU", 3),
            ("normal_angle_deg", "normal error (°)", 2), ("shift_px", "registration shift (px)", 2)]
    for pre, label in (("", "3D renders (8 views)"), ("mv_", "generated views (6)")):
        if not any(f"{pre}ssim" in r.metrics for r in run.results):
            continue
        rows.append([label] + [fmt_ci(_values(run, pre + k), d) if any(pre + k in r.metrics for r in run.results)
                               else "n/a" for k, _, d in spec])
    lines = ["## Image metrics", ""]
    lines += _table(["", *(s[1] for s in spec)], rows)
    lines += ["", "Masked SSIM / PSNR are over the union of the predicted and true masks; the normal error is "
              "the mean angle between world normals where both have a surface; PSNR is capped at 100 dB "
              "(identical images).", ""]
    return lines


def _geometry_section(run: EvalRun) -> list[str]:
    ts = run.config.thresholds
    rows = []
    for pre, label in [("", "whole character")] + [(f"{p.key}/", p.key) for p in PARTS]:
        vals = _values(run, pre + "chamfer")
        n = sum(1 for v in vals if math.isfinite(v))
        rows.append([label, str(n), fmt_ci(vals, 4)]
                    + [fmt_ci(_values(run, f"{pre}fscore@{t:g}"), 3) for t in ts]
                    + [fmt_ci(_values(run, pre + "normal_consistency"), 3)])
    lines = ["## Geometry", ""]
    lines += _table(["", "n", "Chamfer ↓", *(f"F-score@{t:g} ↑" for t in ts), "normal consistency ↑"], rows)
    moved = ("the prediction first scaled and moved to the truth's height, lowest point and horizontal centre: "
             "`--fit-scale`" if run.config.fit_scale else "the prediction is not moved or rescaled")
    lines += ["", f"Distances in units of the **true character's height** (both meshes divided by it; "
              f"{moved}), so F-score@{ts[0]:g} counts surface points within "
              f"{ts[0] * 100:g} % of the height. Chamfer = mean of the two directed mean nearest-neighbour "
              f"distances between {run.config.points} area-uniform surface samples per character (a part's "
              "samples are those that fell on it). A part missing on one side scores F = 0 and no Chamfer.", ""]
    return lines


def _decomposition_section(run: EvalRun) -> list[str]:
    rows = []
    for p in PARTS:
        rows.append([p.key, f"{PAPER_IOU[p.key]:.2f}", fmt_ci(_values(run, f"iou_{p.key}"))])
    lines = ["## Decomposition", ""]
    lines += _table(["part", "mask IoU, paper", "mask IoU, this run"], rows)
    lines += ["", "Per-part IoU of the visible part labels in the eight registered views (pooled over the views).",
              ""]
    other = [("semantic_accuracy", "semantic pixel accuracy ↑",
              "labels agree, over pixels that are foreground on either side"),
             ("clothes_hollowness", "clothes hollowness ↑",
              "share of the predicted body's volume the predicted clothes solid does not fill (1 = a shell)"),
             ("clothes_in_body", "clothes vertices inside the body ↓", "share of clothes vertices"),
             ("hair_in_inner", "hair vertices inside clothes or body ↓", "share of hair vertices")]
    rows = [[label, fmt_ci(_values(run, k)), what] for k, label, what in other
            if any(k in r.metrics for r in run.results)]
    lines += _table(["metric", "this run", "what"], rows)
    lines.append("")
    return lines


def _pictures_section(run: EvalRun) -> list[str]:
    spec = [("silhouette_iou", "silhouette IoU ↑"), ("ssim_masked", "masked SSIM ↑"),
            ("psnr_masked", "masked PSNR (dB) ↑"), ("ssim", "SSIM ↑"), ("psnr", "PSNR (dB) ↑"),
            ("lpips", "LPIPS ↓"), ("clip", "CLIP ↑")]
    row = []
    for k, _ in spec:
        row.append(_learned_cell(run, k) if k in LEARNED else fmt_ci(_values(run, k)))
    lines = ["## Input-view fidelity", ""]
    lines += _table([label for _, label in spec], [row])
    lines += ["", f"The prediction rendered from the front orthographic camera framed as the dataset frames its "
              f"views (bounds of the prediction, margin {run.config.margin:g}), at the picture's size (pictures "
              "padded to a square), against the picture over white; the silhouette is compared with the "
              "picture's alpha (or its mask). Masked values are over the union of both silhouettes.", ""]
    return lines


# -- pictures ----------------------------------------------------------------------------------------
def pick_examples(run: EvalRun, key: str) -> dict[str, CharacterEval]:
    """The best, median and worst characters by ``key`` (higher is better); fewer if there are fewer."""
    scored = [r for r in run.results if math.isfinite(r.metrics.get(key, float("nan")))]
    if not scored:
        return {}
    order = sorted(scored, key=lambda r: (r.metrics[key], r.name))
    picks = {"best": order[-1], "median": order[(len(order) - 1) // 2], "worst": order[0]}
    out, seen = {}, set()
    for label, r in picks.items():
        if r.name not in seen:
            out[label] = r
            seen.add(r.name)
    return out


def _small(images: np.ndarray, size: int) -> list[np.ndarray]:
    """(V, H, W, 3) float -> V images at most ``size`` pixels high (box filter)."""
    from PIL import Image

    out = []
    for x in images:
        h, w = x.shape[:2]
        if h <= size:
            out.append(x)
            continue
        nw = max(1, round(w * size / h))
        u8 = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
        out.append(np.asarray(Image.fromarray(u8).resize((nw, size), Image.BOX)).astype(np.float32) / 255)
    return out


def _sem_rgb(sem: np.ndarray) -> np.ndarray:
    bg = sem == BACKGROUND_LABEL
    return np.where(bg[..., None], 1.0, PART_COLOURS[np.minimum(sem, len(PART_COLOURS) - 1)]).astype(np.float32)


def _diff_rgb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| averaged over channels, shown dark on white (x2 so small errors show)."""
    d = np.clip(np.abs(a - b).mean(-1) * 2, 0, 1)
    return np.repeat((1 - d)[..., None], 3, axis=-1).astype(np.float32)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` into the top-left corner of a float RGB image (PIL's built-in font)."""
    from PIL import Image, ImageDraw

    u8 = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
    ImageDraw.Draw(u8).text((4, 2), text, fill=(200, 0, 0))
    return np.asarray(u8).astype(np.float32) / 255


def side_by_side(true: ViewSet, pred: ViewSet, title: str, size: int = 160) -> np.ndarray:
    """Rows: truth, prediction (registered), |difference|, truth parts, predicted parts (when labelled)."""
    from stdgen.utils.io import image_grid

    rows = [_small(true.rgb, size), _small(pred.rgb, size), _small(_diff_rgb(pred.rgb, true.rgb), size)]
    names = ["truth", "prediction", "|difference| x2"]
    if true.sem is not None and pred.sem is not None:
        rows += [_small(_sem_rgb(true.sem), size), _small(_sem_rgb(pred.sem), size)]
        names += ["true parts", "predicted parts"]
    rows = [[_label(row[0], name), *row[1:]] for row, name in zip(rows, names)]
    grid = image_grid(rows)
    return _with_title(grid, title)


def picture_side_by_side(true: ViewSet, pred: ViewSet, title: str, size: int = 256) -> np.ndarray:
    """Picture | render | silhouettes (green both, red picture only, blue render only) | difference."""
    from stdgen.utils.io import image_grid

    t, p = true.alpha[0] > 0.5, pred.alpha[0] > 0.5
    sil = np.ones(t.shape + (3,), np.float32)
    sil[t & p] = (0.3, 0.75, 0.3)
    sil[t & ~p] = (0.9, 0.2, 0.2)
    sil[~t & p] = (0.2, 0.3, 0.9)
    row = [_small(true.rgb, size)[0], _small(pred.rgb, size)[0], _small(sil[None], size)[0],
           _small(_diff_rgb(pred.rgb, true.rgb), size)[0]]
    row = [_label(im, name) for im, name in zip(row, ["picture", "render", "silhouettes", "|difference| x2"])]
    return _with_title(image_grid([row]), title)


def _with_title(grid: np.ndarray, title: str) -> np.ndarray:
    strip = _label(np.ones((16, grid.shape[1], 3), np.float32), title)
    return np.concatenate([strip, grid], 0)


# -- writing -----------------------------------------------------------------------------------------
def headline(run: EvalRun) -> str:
    return "silhouette_iou" if run.mode == "pictures" else "ssim"


def write_report(run: EvalRun, out_dir: str | Path,
                 images_of: Callable[[CharacterEval], tuple[ViewSet, ViewSet]] | None = None) -> Path:
    """Write ``metrics.csv``, ``summary.md`` and the side-by-side PNGs into ``out_dir`` atomically.

    ``images_of(result)`` returns ``(true, pred)`` view sets for a picked character (results of a
    run do not keep images, to bound memory); without it no pictures are drawn.
    """
    from stdgen.io.outputs import write_output_dir
    from stdgen.utils.io import save_png

    out_dir = Path(out_dir)
    key = headline(run)
    pictures: dict[str, str] = {}
    with write_output_dir(out_dir, "eval") as tmp:
        (tmp / "metrics.csv").write_text(metrics_csv(run))
        if images_of is not None:
            for label, r in pick_examples(run, key).items():
                true, pred = images_of(r)
                title = f"{label}: {r.name}  {key} {r.metrics[key]:.4f}"
                img = (picture_side_by_side(true, pred, title) if run.mode == "pictures"
                       else side_by_side(true, pred, title))
                file = f"{label}_{_safe(r.name)}.png"
                save_png(tmp / file, img)
                pictures[f"{label} {key} ({r.name}, {r.metrics[key]:.4f})"] = file
        (tmp / "summary.md").write_text(summary_markdown(run, pictures))
    return out_dir


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
