"""``stdgen data render``: the multi-layer dataset renders of procedural characters, to disk."""

from __future__ import annotations

import argparse


def add_render_options(p: argparse.ArgumentParser) -> None:
    """The render-set options shared by ``stdgen data render`` and ``stdgen data import-vrm``."""
    p.add_argument("--resolution", type=int, default=512, help="image size in pixels (default 512)")
    p.add_argument("--random-views", type=int, default=4, help="random perspective views (default 4; paper: 20)")
    p.add_argument("--posed-views", type=int, default=2,
                   help="random-pose front renders per character (canonicalisation pairs, default 2)")
    p.add_argument("--no-face", action="store_true", help="skip the five face close-ups")
    p.add_argument("--no-top-bottom", action="store_true", help="skip the top and bottom views")
    p.add_argument("--random-light", action="store_true", help="a random key-light direction per character")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--backend", default="auto", help="rasteriser backend: auto, torch, numba, triton")
    p.add_argument("--overwrite", action="store_true",
                   help="write into DIR even if it holds files this command did not make (replacing "
                   "same-named character folders)")


def render_config_from_args(args: argparse.Namespace):
    """The :class:`~stdgen.data.render_dataset.RenderConfig` of :func:`add_render_options`' flags;
    bad values are user errors."""
    from stdgen.data.render_dataset import RenderConfig
    from stdgen.errors import StdgenError
    from stdgen.utils.device import resolve_device

    try:
        config = RenderConfig(resolution=args.resolution, random_views=args.random_views,
                              face_views=not args.no_face, top_bottom=not args.no_top_bottom,
                              posed_views=args.posed_views, random_light=args.random_light,
                              backend=args.backend, device=str(resolve_device(args.device)))
    except ValueError as exc:
        raise StdgenError(str(exc)) from None
    return config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="render procedural characters into a dataset directory (one folder each)",
        description="Render COUNT procedural characters into DIR, one folder per character (the format of "
        "docs/dataset.md): eight evaluation views (which hold the six generation views), top and bottom, "
        "face close-ups and random views, each as unlit and lit colour, normal, depth, mask and semantic "
        "maps for the layer sets full, body and body+clothes; random-pose front renders; character.glb; "
        "and DIR/manifest.json. Resumable: run it again to finish an interrupted run.",
    )
    p.add_argument("--count", type=int, required=True, help="number of characters")
    p.add_argument("--seed", type=int, default=0,
                   help="first seed (default 0); with --split, the first index into that split's seeds")
    p.add_argument("--split", choices=("train", "validation", "test"), default=None,
                   help="take seeds from this fixed split (stdgen.data.splits) instead of SEED, SEED+1, ...")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="dataset directory")
    add_render_options(p)
    p.add_argument("--workers", type=int, default=0,
                   help="worker processes (default 0: all in this process); on a GPU they make the characters")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_render)


def seeds_for(count: int, first: int, split: str | None) -> list[int]:
    """The seeds a ``--count/--seed/--split`` request names (see ``docs/dataset.md``)."""
    from stdgen.data import splits
    from stdgen.errors import StdgenError

    if count < 0:
        raise StdgenError(f"--count must be >= 0, got {count}")
    if first < 0:
        raise StdgenError(f"--seed must be >= 0, got {first}")
    if split is None:
        if first + count - 1 > splits.MAX_SEED:
            raise StdgenError(f"seeds must stay below 2**31; --seed {first} --count {count} goes past it")
        return list(range(first, first + count))
    if split == "train":
        return [splits.train_seed(first + i) for i in range(count)]
    r = splits.TEST if split == "test" else splits.VALIDATION
    if first + count > len(r):
        raise StdgenError(f"the {split} split has {len(r)} seeds; --seed {first} --count {count} asks past its end")
    return list(r[first : first + count])


def _render(args: argparse.Namespace) -> int:
    from stdgen.data.render_dataset import render_dataset_dir
    from stdgen.errors import StdgenError

    seeds = seeds_for(args.count, args.seed, args.split)
    if args.workers < 0:
        raise StdgenError(f"--workers must be >= 0, got {args.workers}")
    config = render_config_from_args(args)
    from functools import partial

    from tqdm import tqdm

    from stdgen.utils.progress import LazyBar

    with LazyBar(partial(tqdm, unit="char", desc="render", disable=args.quiet)) as bar:
        result = render_dataset_dir(args.output, seeds, config, workers=args.workers, progress=bar,
                                    overwrite=args.overwrite)
    print(f"rendered {result['rendered']}, already there {result['skipped']}"
          + (f", removed {result['removed_temporaries']} leftovers" if result["removed_temporaries"] else "")
          + f"; manifest {result['manifest']}")
    return 0
