"""VRM in and out: seconds per character.

* import: ``import_vrm`` (read, split, skeleton, A-pose) of a VRM file;
* import + full render set: the above plus ``render_character`` (the ``stdgen data render``
  protocol: 8 eval views, top/bottom, 5 face close-ups, random views, 2 posed fronts; three layer
  sets; every map) and writing the folder, i.e. what ``stdgen data import-vrm`` does per file;
* export: ``write_vrm`` (1.0 and 0.x) and ``write_glb(skinned=True)`` of the imported character.

Prints the median of ``--repeats`` runs per step and file. Re-runnable; CPU timings on a shared
machine are noisy, so compare numbers taken in one run.

    python benchmarks/vrm_bench.py                        # CPU, 512 px
    python benchmarks/vrm_bench.py --device cuda          # the GPU machine
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _files(extra: list[str]) -> list[Path]:
    files = [ROOT / "tests" / "fixtures" / "Godette_vrm_v4.vrm"]
    shared = ROOT.parent / "shared" / "data" / "vrm" / "01_Crimsom_Avatar.vrm"
    if shared.is_file():
        files.append(shared)
    files += [Path(f) for f in extra]
    return files


def _own_vrm(out: Path) -> Path:
    """A VRM written by our exporter: the procedural character of seed 3 (or, while the generator
    is missing, the tests' capsule character)."""
    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    from vrm_fixtures import capsule_character, procedural_character

    from stdgen.export.vrm import write_vrm

    character = procedural_character()
    name = "procedural_seed3.vrm"
    if character is None:
        character, name = capsule_character(), "capsule.vrm"
    write_vrm(character, out / name)
    return out / name


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", help="more VRM files to time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--random-views", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch

    from stdgen.data.render_dataset import RenderConfig, render_character
    from stdgen.data.vrm import import_vrm
    from stdgen.export.vrm import write_vrm
    from stdgen.io.dataset import write_renders
    from stdgen.io.glb import write_glb
    from stdgen.utils.device import resolve_device

    device = str(resolve_device(args.device))
    config = RenderConfig(resolution=args.resolution, random_views=args.random_views, device=device)
    tmp = Path(tempfile.mkdtemp(prefix="vrm-bench-"))
    files = _files(args.files) + [_own_vrm(tmp)]
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    print(f"device {device} ({name}), {torch.get_num_threads()} threads, resolution {args.resolution}, "
          f"{args.random_views} random views, median of {args.repeats}")
    print(f"{'file':34s} {'tris':>7s} {'import s':>9s} {'import+render s':>16s} {'VRM 1.0 s':>10s} "
          f"{'VRM 0.x s':>10s} {'GLB s':>7s}")
    # Warm-up: JIT compilation of the rasteriser backends is not per-character work.
    warm = import_vrm(files[0]).character
    render_character(warm, RenderConfig(resolution=64, random_views=1, device=device), seed=0)

    for path in files:
        result = import_vrm(path)
        ch = result.character
        tris = sum(ch.part(p).num_faces for p in range(3))
        t_import = _median(lambda p=path: import_vrm(p), args.repeats)

        def full(p=path):
            c = import_vrm(p).character
            renders = render_character(c, config, seed=1)
            folder = Path(tempfile.mkdtemp(dir=tmp))
            write_glb(c, folder / "character.glb", skinned=True)
            write_renders(folder, renders)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        t_full = _median(full, args.repeats)
        rest = ch.with_pose(None)
        t_vrm1 = _median(lambda c=rest: write_vrm(c, tmp / "out1.vrm"), args.repeats)
        t_vrm0 = _median(lambda c=rest: write_vrm(c, tmp / "out0.vrm", version="0.x"), args.repeats)
        t_glb = _median(lambda c=ch: write_glb(c, tmp / "out.glb", skinned=True), args.repeats)
        print(f"{path.name[:34]:34s} {tris:7d} {t_import:9.2f} {t_full:16.2f} {t_vrm1:10.3f} {t_vrm0:10.3f} "
              f"{t_glb:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
