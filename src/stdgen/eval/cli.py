"""``stdgen eval``: score predicted characters against ground truth, or against input pictures."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate predicted characters (the paper's Table 1 protocol, geometry, decomposition)",
        description="Evaluate predicted characters. With GT_DIR (a dataset directory of character folders): "
        "the paper's 3D protocol (eight views, horizontal mask registration, SSIM/PSNR), 2D multi-view "
        "metrics of generated views if present, geometry (Chamfer, F-score, normal consistency in units of the "
        "true height) and decomposition (per-part IoU, semantic accuracy, hollowness, penetration). With "
        "--images: input-view fidelity against the pictures the predictions were made from. LPIPS, FID and "
        "CLIP only from local weights. Writes REPORT_DIR/metrics.csv, summary.md and side-by-side PNGs.",
    )
    p.add_argument("pred", metavar="PRED_DIR", help="folder of prediction folders (each with character.glb)")
    p.add_argument("gt", metavar="GT_DIR", nargs="?", help="ground-truth dataset folder (stdgen data render)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR",
                   help="report directory: new, or an earlier report (then replaced); never an input")
    p.add_argument("--overwrite", action="store_true", help="replace REPORT_DIR even if it holds files eval did "
                   "not write (inputs are still refused)")
    p.add_argument("--images", metavar="PICTURES_DIR", help="input pictures, matched to PRED_DIR folders by stem")
    p.add_argument("--masks", metavar="MASKS_DIR", help="masks for pictures without alpha (same stems)")
    p.add_argument("--lpips-weights", metavar="PATH", help="local LPIPS weights (file or directory)")
    p.add_argument("--inception-weights", metavar="PATH", help="local TorchScript Inception for FID")
    p.add_argument("--clip-weights", metavar="DIR", help="local transformers CLIP model directory")
    p.add_argument("--points", type=int, default=None, help="surface samples per character for geometry "
                   "(default 100000)")
    p.add_argument("--no-geometry", action="store_true", help="skip Chamfer / F-score / normal consistency")
    p.add_argument("--no-volume", action="store_true", help="skip clothes hollowness and layer penetration")
    p.add_argument("--no-register", action="store_true", help="compare renders without mask registration")
    p.add_argument("--max-shift", type=float, default=None,
                   help="largest registration shift as a fraction of the width (default 0.25)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N characters")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--backend", default="auto", help="rasteriser visibility backend")
    p.add_argument("--truth", choices=("render", "stored"), default="render",
                   help="render: the truth's views are rendered from its character.glb exactly as the prediction's "
                   "(default; truth against itself scores 1); stored: the dataset folder's stored renders")
    p.add_argument("--fit-scale", action="store_true",
                   help="first scale and move each prediction to the truth's height, lowest point and horizontal "
                   "centre (for characters made from one picture, which carries no absolute size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from stdgen.errors import StdgenError
    from stdgen.eval.perceptual import PerceptualModels
    from stdgen.eval.protocol import (
        EvalConfig,
        evaluate_character,
        evaluate_dataset,
        evaluate_input_view,
        evaluate_pictures,
    )
    from stdgen.eval.report import headline, write_report
    from stdgen.utils.device import resolve_device

    if (args.gt is None) == (args.images is None):
        raise StdgenError("give either GT_DIR (3D evaluation) or --images PICTURES_DIR (input-view fidelity)")
    if args.masks and not args.images:
        raise StdgenError("--masks only goes with --images")
    if args.limit is not None and args.limit < 1:
        raise StdgenError(f"--limit must be at least 1, got {args.limit}")
    from stdgen.io.outputs import claim_output_dir
    from stdgen.utils.device import check_device

    check_device(args.device)
    out = claim_output_dir(args.output, "eval", overwrite=args.overwrite, recognise=_is_old_report,
                           inputs=[args.pred, args.gt, args.images, args.masks]).resolve()
    device = str(resolve_device(args.device))
    kw = {"device": device, "backend": args.backend, "register": not args.no_register,
          "geometry": not args.no_geometry, "volume": not args.no_volume, "truth": args.truth,
          "fit_scale": args.fit_scale}
    if args.points is not None:
        kw["points"] = args.points
    if args.max_shift is not None:
        kw["max_shift"] = args.max_shift
    try:
        config = EvalConfig(**kw)
    except ValueError as exc:
        raise StdgenError(str(exc)) from None
    models = PerceptualModels.load(args.lpips_weights, args.inception_weights, args.clip_weights, device)

    from functools import partial

    from tqdm import tqdm

    from stdgen.utils.progress import LazyBar

    if args.images:
        with LazyBar(partial(tqdm, desc="eval", unit="picture")) as bar:
            run = evaluate_pictures(args.pred, args.images, args.masks, config, models, limit=args.limit,
                                    progress=bar)
        pairs = {r.name: r for r in run.results}
        from stdgen.eval.protocol import match_pictures

        found = {n: (p, pic, m) for n, p, pic, m in match_pictures(args.pred, args.images, args.masks)[0]}

        def images_of(r):
            p, pic, m = found[r.name]
            again = evaluate_input_view(p, pic, m, config, None, keep_images=True)
            return again.true_views, again.pred_views
    else:
        with LazyBar(partial(tqdm, desc="eval", unit="char")) as bar:
            run = evaluate_dataset(args.pred, args.gt, config, models, limit=args.limit, progress=bar)
        pairs = {r.name: r for r in run.results}
        from stdgen.eval.protocol import match_characters

        found = {n: (p, t) for n, p, t in match_characters(args.pred, args.gt)[0]}

        def images_of(r):
            # Pictures are made again for the three picked characters (results keep no images).
            again = evaluate_character(*found[r.name], config, None, keep_images=True, geometry=False)
            return again.true_views, again.pred_views

    write_report(run, out, images_of)
    key = headline(run)
    vals = [r.metrics.get(key, float("nan")) for r in pairs.values()]
    import math

    finite = [v for v in vals if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else float("nan")
    print(f"evaluated {len(run.results)} characters: mean {key} {mean:.4f}; "
          f"only in predictions {len(run.only_pred)}, only on the other side {len(run.only_true)}")
    print(f"wrote {out / 'metrics.csv'}, {out / 'summary.md'}")
    return 0


#: What a report folder holds (besides its pictures, named ``<label>_<character>.png``).
_REPORT_FILES = ("metrics.csv", "summary.md")


def _is_old_report(folder) -> bool:
    """A report written before reports carried a marker: only metrics.csv, summary.md and the
    picked examples' pictures (``best_*.png``, ``median_*.png``, ``worst_*.png``)."""
    names = {p.name for p in folder.iterdir()}
    pictures = {n for n in names if n.endswith(".png") and n.split("_", 1)[0] in ("best", "median", "worst")}
    return bool(names & set(_REPORT_FILES)) and not names - set(_REPORT_FILES) - pictures
