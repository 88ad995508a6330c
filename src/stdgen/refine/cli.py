"""``stdgen refine``: multi-layer refinement and texturing of one character folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "refine",
        help="refine a character's coarse layer meshes against its views and texture them",
        description="Refine the coarse body, clothes and hair meshes of a character folder (the dataset "
        "format) against its six generation-view normal maps and masks - body first, then clothes with the "
        "body fixed, then hair with both fixed - texture them from its colour views, and write "
        "OUT_DIR/character.glb (nodes body, clothes, hair), OUT_DIR/before_after.png and OUT_DIR/report.json. "
        "Without --coarse, the coarse meshes are made by voxelising the folder's character.glb at 64^3 and "
        "extracting the three layers.",
    )
    p.add_argument("character_dir", metavar="CHARACTER_DIR", help="a character folder (meta.json, renders)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="output directory: new, or one refine wrote before (then replaced whole); never an input")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR even if it holds files refine did "
                   "not write (inputs are still refused)")
    p.add_argument("--coarse", metavar="MESH_DIR", default=None,
                   help="coarse meshes to refine: body.obj / clothes.obj / hair.obj (or .ply, .glb), or one .glb "
                   "with nodes body, clothes, hair")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps per layer (default: the schedule's)")
    p.add_argument("--resolution", type=int, default=None,
                   help="render resolution of the optimisation (default: the schedule's)")
    p.add_argument("--fine-steps", type=int, default=None,
                   help="final steps per layer at the views' own resolution (default: the schedule's)")
    p.add_argument("--vertex-colors", action="store_true", help="vertex colours instead of a baked UV texture")
    p.add_argument("--texture-size", type=int, default=None, help="texture atlas side per part (default 1024)")
    p.add_argument("--metric-points", type=int, default=None,
                   help="surface points per mesh for the report's Chamfer / F-score (default 300000)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_refine)


def _refine(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stdgen.errors import StdgenError
    from stdgen.refine.folder import refine_folder
    from stdgen.utils.device import resolve_device

    folder = Path(args.character_dir)
    if not folder.is_dir():
        raise StdgenError(f"{folder}: no such directory")
    cfg = _config(args)
    from stdgen.io.outputs import claim_output_dir
    from stdgen.utils.device import check_device

    check_device(args.device)
    claim_output_dir(args.output, "refine", overwrite=args.overwrite, inputs=[folder, args.coarse],
                     recognise=lambda f: {p.name for p in f.iterdir()} <= {"before_after.png", "character.glb",
                                                                              "report.json"})
    device = resolve_device(args.device)
    with _Progress(disabled=args.quiet) as bars:
        report = refine_folder(folder, args.output, coarse_dir=args.coarse, device=device, config=cfg,
                               on_step=bars.step, on_task=bars.task)
    s = report["seconds"]
    print(f"wrote {args.output} in {s['total']:.1f} s (body {s['body']:.1f}, clothes {s['clothes']:.1f}, "
          f"hair {s['hair']:.1f}, texture {s['texture']:.1f})")
    for key, entry in report["parts"].items():
        if entry.get("chamfer_before") is not None:
            print(f"  {key}: Chamfer {entry['chamfer_before']:.5f} -> {entry['chamfer_after']:.5f}, "
                  f"F@0.01 {entry['fscore_before']:.3f} -> {entry['fscore_after']:.3f}, "
                  f"penetrating vertices {entry['penetrating_vertices']}")
    return 0


def _config(args: argparse.Namespace):
    """The :class:`~stdgen.refine.core.RefineConfig` of the flags; a value the config's checks refuse is a
    one-line error naming the flag."""
    from stdgen.errors import StdgenError
    from stdgen.refine.core import RefineConfig
    from stdgen.structures.semantics import PARTS

    cfg = RefineConfig()

    def stages(name: str):
        return lambda value: [setattr(cfg.schedule.stage(p), name, value) for p in PARTS]

    setters = {
        "--steps": (args.steps, stages("steps")),
        "--resolution": (args.resolution, stages("resolution")),
        "--fine-steps": (args.fine_steps, stages("fine_steps")),
        "--texture-size": (args.texture_size, lambda v: setattr(cfg.texture, "size", v)),
        "--metric-points": (args.metric_points, lambda v: setattr(cfg.report, "metric_points", v)),
    }
    for flag, (value, apply) in setters.items():
        if value is None:
            continue
        apply(value)
        try:
            cfg.validate()
        except ValueError as exc:
            raise StdgenError(f"{flag} {value}: {exc}") from None
    if args.vertex_colors:
        cfg.texture.mode = "vertex"
    return cfg


class _Progress:
    """tqdm bars for :func:`~stdgen.refine.folder.refine_folder`'s callbacks: one per refined part, one per
    later task (texture, metrics)."""

    def __init__(self, disabled: bool) -> None:
        self.disabled = disabled
        self.bar = None
        self.name = None

    def _bar(self, name: str, total: int):
        from tqdm.auto import tqdm

        if self.name != name:
            self.close()
            self.bar = tqdm(total=total, desc=name, leave=False)
            self.name = name
        return self.bar

    def step(self, part, step: int, total: int, terms: dict) -> None:
        if self.disabled:
            return
        bar = self._bar(f"refine {part.key}", total)
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{terms['total']:.4g}", verts=terms["vertices"], refresh=False)

    def task(self, name: str, done: int, total: int) -> None:
        if self.disabled:
            return
        bar = self._bar(name, total)
        bar.update(done - bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.name = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
