"""``stdgen data import-vrm``: dataset folders like ``stdgen data render``'s, import.json, resuming."""

import json
import sys
from pathlib import Path

import numpy as np

from stdgen.cli import main
from stdgen.data.posing import upper_arm_angle
from stdgen.data.render_dataset import RenderConfig, character_views, frame_character
from stdgen.export.vrm import write_vrm
from stdgen.io.dataset import MAPS, read_manifest, read_renders
from stdgen.io.glb import read_character_glb
from stdgen.structures.semantics import LAYER_SETS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
from vrm_fixtures import capsule_character  # noqa: E402

SMALL = ["--resolution", "48", "--random-views", "1", "--posed-views", "1", "--no-face", "--no-top-bottom", "--quiet"]


def _run(capsys, *args):
    capsys.readouterr()
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_import_vrm_writes_dataset_folders_and_resumes(tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_vrm(capsule_character(), src / "sub" / "capsule.vrm")
    (src / "robot.vrm").write_bytes((FIXTURES / "debug_robot.vrm").read_bytes())
    out = tmp_path / "ds"
    status, stdout, err = _run(capsys, "data", "import-vrm", str(src), "-o", str(out), *SMALL)
    assert status == 0 and "imported 2, already there 0, skipped 0" in stdout
    assert "warning" in err and "robot.vrm" in err and "body only" in err
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["vrm-capsule", "vrm-robot"]

    folder = out / "vrm-capsule"
    expected = {f"{layer}_{m}.png" for layer in LAYER_SETS for m in MAPS}
    expected |= {"meta.json", "preview.png", "posed_rgb.png", "character.glb", "import.json"}
    assert {p.name for p in folder.iterdir()} == expected
    # The same protocol as `stdgen data render`: its config, its views for this character.
    config = RenderConfig(resolution=48, random_views=1, posed_views=1, face_views=False, top_bottom=False,
                          device="cpu")
    renders = read_renders(folder)
    assert renders.meta["render_config"] == config.content()
    report = json.loads((folder / "import.json").read_text())
    character = read_character_glb(folder / "character.glb")
    _, views = character_views(frame_character(character, config.margin), config, report["seed"])
    assert [v["name"] for v in renders.views] == [v["name"] for v in views]
    np.testing.assert_allclose([v["world_to_cam"] for v in renders.views], [v["world_to_cam"] for v in views],
                               atol=1e-5)
    assert renders.layers["full"].rgb.shape == (len(views), 48, 48, 4)
    # All three parts in the labels, body alone in the body layer.
    sem = renders.layers["full"].sem
    assert {0, 1, 2} <= set(np.unique(sem).tolist())
    assert set(np.unique(renders.layers["body"].sem).tolist()) <= {0, 255}
    assert renders.meta["source"] == "vrm" and renders.meta["split"] == "train"

    # import.json says what went where; character.glb is the A-posed, skinned character.
    assert report["vrm_version"] == "1.0" and report["warnings"] == []
    assert {r["material"]: r["part"] for r in report["primitives"]}["N00_000_Hair_00_HAIR"] == "hair"
    assert abs(upper_arm_angle(character.skeleton, character.pose) - 45) < 1e-3
    robot = json.loads((out / "vrm-robot" / "import.json").read_text())
    assert any("body only" in w for w in robot["warnings"])

    manifest = read_manifest(out)
    assert sorted(e["id"] for e in manifest["characters"]) == folders
    # Run again: nothing to do. A folder is replaced only when asked for other settings.
    status, stdout, _ = _run(capsys, "data", "import-vrm", str(src), "-o", str(out), *SMALL)
    assert status == 0 and "imported 0, already there 2" in stdout
    status, stdout, err = _run(capsys, "data", "import-vrm", str(src / "robot.vrm"), "-o", str(out),
                               "--resolution", "64", "--quiet")
    assert status == 1 and "other file or settings" in err
    # --require-all-parts skips the body-only robot, with the reason.
    status, stdout, err = _run(capsys, "data", "import-vrm", str(src / "robot.vrm"), "-o", str(tmp_path / "d2"),
                               "--require-all-parts", *SMALL)
    assert status == 1 and "cannot be split" in err and "imported 0" in stdout

    # And back out: the folder exports as VRM, with the source's meta.
    status, _, err = _run(capsys, "export", str(out / "vrm-robot"), "--format", "vrm", "-o", str(tmp_path / "r.vrm"))
    assert status == 0, err
    from stdgen.data.vrm import import_vrm

    again = import_vrm(tmp_path / "r.vrm")
    assert again.report["meta"]["name"] == "VRM Animation Debug Robot"
    assert again.report["meta"]["authors"] == ["@saturday06"]
