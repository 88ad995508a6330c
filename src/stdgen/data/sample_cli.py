"""``stdgen data sample``: make procedural characters, a contact sheet of them, and their GLB files."""

from __future__ import annotations

import argparse

#: Columns of one character's strip in the contact sheet.
SHEET_COLUMNS: tuple[str, ...] = ("A-pose front", "A-pose back", "random pose", "body", "body+clothes")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="make procedural characters: a contact sheet and one GLB per character",
        description="Make COUNT procedural characters from seeds SEED, SEED+1, ... and write DIR/sheet.png (per "
        "character: A-pose front, A-pose back, a random pose, the body alone and body+clothes) and "
        "DIR/<index>/character.glb (one scene with nodes body, clothes, hair, textured, in A-pose) with "
        "DIR/<index>/meta.json (the seed and every slider).",
    )
    p.add_argument("--count", type=int, required=True, help="number of characters")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--seed-step", type=int, default=1, help="seed increment (default 1; e.g. 1009 to spread "
                   "COUNT characters over the seed range)")
    p.add_argument("--layout", choices=("strips", "fronts", "faces"), default="strips",
                   help="sheet layout: five pictures per character (default), one A-pose front per "
                   "character, or one face close-up per character")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--resolution", type=int, default=192, help="size of each picture in the sheet (default 192)")
    p.add_argument("--per-row", type=int, default=0,
                   help="characters per sheet row (default: about square)")
    p.add_argument("--presentation", choices=("female", "male", "child"), default=None,
                   help="only this presentation (default: random)")
    p.add_argument("--no-glb", action="store_true", help="write only the sheet")
    p.add_argument("--device", default="cpu", help="device for rendering the sheet (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="write into DIR even if it holds files this command did not make")
    p.set_defaults(func=_sample)


def character_strip(character, resolution: int, device: str = "cpu", random_pose_seed: int = 0):
    """The five pictures of one character (list of (R, R, 3) float arrays in [0, 1], white
    background): A-pose front and back, a random pose, body alone, body+clothes."""
    import numpy as np
    import torch

    from stdgen.data.posing import a_pose, random_pose
    from stdgen.render.camera import frame_bounds, orthographic_cameras
    from stdgen.render.scene import render_mesh

    posed = character if character.pose is not None else character.with_pose(a_pose(character.skeleton))
    rand = character.with_pose(random_pose(character.skeleton, np.random.default_rng(random_pose_seed)))
    b = np.concatenate([posed.bounds(), rand.bounds()])
    center, half = frame_bounds(np.stack([b.min(0), b.max(0)]))
    cams = orthographic_cameras([0.0, 180.0], 0.0, center=center, half_size=half, device=device)
    front = orthographic_cameras([0.0], 0.0, center=center, half_size=half, device=device)
    out = []
    with torch.no_grad():
        full = render_mesh(posed.layer_mesh("full"), cams, resolution, shading="toon")
        out += list(full.composite(1.0).cpu().numpy())
        rand_out = render_mesh(rand.layer_mesh("full"), front, resolution, shading="toon")
        out.append(rand_out.composite(1.0).cpu().numpy()[0])
        for layer in ("body", "body_clothes"):
            r = render_mesh(posed.layer_mesh(layer), front, resolution, shading="toon")
            out.append(r.composite(1.0).cpu().numpy()[0])
    return out


def front_picture(character, resolution: int, device: str = "cpu", face: bool = False):
    """One toon-shaded picture of the character in its pose: the whole body from the front, or
    (``face``) a close-up of the head. (R, R, 3) float in [0, 1], white background."""
    import numpy as np
    import torch

    from stdgen.data.posing import a_pose
    from stdgen.render.camera import frame_bounds, orthographic_cameras
    from stdgen.render.scene import render_mesh

    posed = character if character.pose is not None else character.with_pose(a_pose(character.skeleton))
    if face:
        sk = posed.skeleton
        head = posed.posed_joints()[sk.index("head")].astype(np.float64)
        h = posed.meta["body"]["height"] / posed.meta["body"]["head_ratio"]
        center, half = tuple(head + [0, 0.42 * h, 0]), 0.78 * h
    else:
        center, half = frame_bounds(posed.bounds())
    cams = orthographic_cameras([0.0], 0.0, center=center, half_size=half, device=device)
    with torch.no_grad():
        out = render_mesh(posed.layer_mesh("full"), cams, resolution, shading="toon")
    return out.composite(1.0).cpu().numpy()[0]


def contact_sheet(strips: list[list], labels: list[str], per_row: int = 0, pad: int = 6):
    """Tile character strips (each a list of equally sized images) into one sheet, a label above
    each strip. Returns (H, W, 3) float32 in [0, 1]."""
    import math

    import numpy as np

    from stdgen.utils.io import image_grid

    n = len(strips)
    if per_row <= 0:
        per_row = max(1, round(math.sqrt(n / len(strips[0]) * 1.6))) if n else 1
    cells = []
    for strip, label in zip(strips, labels):
        cell = image_grid([strip], pad=1)
        cells.append(_label(cell, label))
    rows = [cells[i : i + per_row] for i in range(0, n, per_row)]
    return image_grid(rows, pad=pad, background=1.0) if rows else np.ones((8, 8, 3), np.float32)


def _label(img, text: str):
    """Add a strip of text above an image (PIL's built-in bitmap font; no files needed)."""
    import numpy as np
    from PIL import Image, ImageDraw

    band = 14
    out = np.ones((img.shape[0] + band, img.shape[1], 3), np.float32)
    out[band:] = img
    pil = Image.fromarray((out * 255).astype(np.uint8))
    ImageDraw.Draw(pil).text((4, 1), text, fill=(40, 40, 40))
    return np.asarray(pil).astype(np.float32) / 255.0


def _is_old_sample(folder) -> bool:
    """A folder written by ``data sample`` before outputs carried a marker: ``sheet.png`` and
    numbered character folders holding a meta.json, nothing else."""
    names = list(folder.iterdir())
    return any(p.name == "sheet.png" for p in names) and all(
        p.name == "sheet.png" or (p.is_dir() and p.name.isdigit() and (p / "meta.json").is_file()) for p in names)


def _sample(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from stdgen.data.procedural import CharacterConfig, make_character
    from stdgen.errors import StdgenError
    from stdgen.utils.device import resolve_device
    from stdgen.utils.io import atomic_dir, atomic_write, remove_stale_temporaries, save_png

    if args.count < 1:
        raise StdgenError(f"--count must be >= 1, got {args.count}")
    if args.seed_step < 1:
        raise StdgenError(f"--seed-step must be >= 1, got {args.seed_step}")
    if args.seed < 0 or args.seed + (args.count - 1) * args.seed_step >= 2**31:
        raise StdgenError(f"seeds must stay in [0, 2**31): --seed {args.seed} --count {args.count} "
                          f"--seed-step {args.seed_step} goes past it")
    if not 16 <= args.resolution <= 2048:
        raise StdgenError(f"--resolution must be in [16, 2048], got {args.resolution}")
    from stdgen.io.outputs import claim_output_dir, claim_subfolder, mark_output_dir
    from stdgen.utils.device import check_device

    check_device(args.device)
    out = claim_output_dir(args.output, "data sample", overwrite=args.overwrite, recognise=_is_old_sample)
    width = max(4, len(str(args.count - 1)))
    if not args.no_glb:  # refuse before any work, not after the first character
        for i in range(args.count):
            claim_subfolder(out / f"{i:0{width}d}", overwrite=args.overwrite)
    device = str(resolve_device(args.device))
    if out.exists() and not out.is_dir():
        out.unlink()  # --overwrite of a file where the folder goes
    out.mkdir(parents=True, exist_ok=True)
    mark_output_dir(out, "data sample")
    remove_stale_temporaries(out)
    config = CharacterConfig(presentation=args.presentation)
    strips, labels = [], []
    for i in tqdm(range(args.count), desc="characters", unit="char", disable=args.quiet):
        seed = args.seed + i * args.seed_step
        character = make_character(seed, config)
        meta = character.meta
        if args.layout == "strips":
            strips.append(character_strip(character, args.resolution, device, random_pose_seed=seed))
            labels.append(f"{i:0{width}d}  seed {seed}  {meta['presentation']}, {meta['hair']['style']} hair, "
                          + ", ".join(g["kind"].replace("_", " ") for g in meta["garments"]))
        else:
            strips.append([front_picture(character, args.resolution, device, face=args.layout == "faces")])
            labels.append(f"seed {seed}")
        if not args.no_glb:
            from stdgen.io.glb import write_glb

            with atomic_dir(out / f"{i:0{width}d}") as tmp:
                write_glb(character, tmp / "character.glb")
                with atomic_write(tmp / "meta.json", "w") as f:
                    json.dump(meta, f, indent=1)
    save_png(out / "sheet.png", contact_sheet(strips, labels, args.per_row))
    if not args.quiet:
        print(f"wrote {out / 'sheet.png'}" + ("" if args.no_glb else f" and {args.count} character folders"))
    return 0
