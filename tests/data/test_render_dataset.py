"""The per-character dataset renders: semantics against ray casting, layer sets, normals, depth,
framing, determinism, and the resumable, atomic dataset writer."""

import json
import os

import numpy as np
import pytest
import torch
from dataset_standin import standin_a_posed

from stdgen.data.render_dataset import (
    RenderConfig,
    character_views,
    frame_character,
    render_character,
    render_dataset_dir,
    render_to_folder,
)
from stdgen.errors import StdgenError
from stdgen.io.dataset import read_manifest, read_renders
from stdgen.io.outputs import MARKER_NAME
from stdgen.render.antialias import antialias_topology_numpy as edge_neighbours
from stdgen.render.batch import LAYER_ORDER, RenderJob, render_jobs, scene_from_character
from stdgen.render.camera import GENERATION_AZIMUTHS
from stdgen.structures.semantics import BACKGROUND_LABEL, Part

RES = 48


@pytest.fixture(scope="module")
def character():
    return standin_a_posed(1)


@pytest.fixture(scope="module")
def renders(character):
    cfg = RenderConfig(resolution=RES, random_views=2, posed_views=1, device="cpu")
    return render_character(character, cfg, seed=1)


def _raycast(origins, dirs, vertices, faces):
    """All hits of each ray with trimesh's ray-triangle intersector (independent of our rasteriser).
    Returns (t of the nearest hit (R,), its face (R,) or -1, (K,) ray / face / t of every hit)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices.astype(np.float64), faces, process=False)
    tri, ray, loc = mesh.ray.intersects_id(origins, dirs, multiple_hits=True, return_locations=True)
    t = np.einsum("kc,kc->k", loc - origins[ray], dirs[ray])
    t_best = np.full(len(origins), np.inf)
    np.minimum.at(t_best, ray, t)
    f_best = np.full(len(origins), -1)
    nearest = t <= t_best[ray]
    f_best[ray[nearest]] = tri[nearest]
    return t_best, f_best, (ray, tri, t)


def test_semantics_and_depth_agree_with_ray_casting(character, renders):
    """For every layer set and several views (orthographic, top, face close-up, perspective), the
    label of each pixel is the part of the nearest triangle a ray through its centre hits, and the
    depth is that hit's camera-space depth."""
    scene = scene_from_character(character)
    cams_all = renders.cameras()
    picks = [0, 3, 8, 12, len(renders.views) - 1]  # front, az 135, top, face az 0, a random view
    assert renders.views[picks[-1]]["group"] == "random" and not renders.views[picks[-1]]["orthographic"]
    checked = 0
    for layer in LAYER_ORDER:
        nf = scene.layer_faces[layer]
        faces = scene.faces[:nf]
        labels = scene.face_labels[:nf]
        for vi in picks:
            cams = cams_all[vi]
            origins, dirs = (x[0].reshape(-1, 3).numpy() for x in cams.pixel_rays((RES, RES)))
            t, f, (ray, tri, t_hits) = _raycast(origins, dirs, scene.vertices, faces)
            want = np.where(f >= 0, labels[np.maximum(f, 0)], BACKGROUND_LABEL).reshape(RES, RES)
            # Skip pixels where the answer is ill-posed at this precision: next to a label or
            # silhouette boundary, or where another part lies within 1 mm of the nearest hit.
            other = np.full(RES * RES, np.inf)
            differs = labels[tri] != want.reshape(-1)[ray]
            np.minimum.at(other, ray[differs], t_hits[differs])
            other = other.reshape(RES, RES)
            tt = t.reshape(RES, RES)
            pad = np.pad(want, 1, mode="edge")
            uniform = np.ones_like(want, bool)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    uniform &= pad[1 + dy : RES + 1 + dy, 1 + dx : RES + 1 + dx] == want
            with np.errstate(invalid="ignore"):  # inf - inf where a ray hits nothing
                clear = uniform & ((other - tt > 1e-3) | ~np.isfinite(tt))
            got = renders.layers[layer].sem[vi]
            assert clear.sum() > 0.6 * RES * RES
            np.testing.assert_array_equal(got[clear], want[clear], err_msg=f"{layer} view {vi}")
            # Depth: camera-space depth of the hit.
            hit = clear & np.isfinite(tt)
            eye = cams.centers[0].numpy()
            fwd = cams.forward[0].numpy()
            pts = origins.reshape(RES, RES, 3)[hit] + tt[hit][:, None] * dirs.reshape(RES, RES, 3)[hit]
            np.testing.assert_allclose(renders.layers[layer].depth[vi][hit], (pts - eye) @ fwd, atol=2e-4)
            checked += int(hit.sum())
    assert checked > 1000


def test_layer_sets_hold_only_their_parts(renders):
    body, bc, full = (renders.layers[k].sem for k in ("body", "body_clothes", "full"))
    assert set(np.unique(body)) <= {Part.BODY, BACKGROUND_LABEL}
    assert set(np.unique(bc)) <= {Part.BODY, Part.CLOTHES, BACKGROUND_LABEL}
    assert {Part.BODY, Part.CLOTHES, Part.HAIR} <= set(np.unique(full))
    # Removing outer layers reveals the body beneath: every pixel the full set covers, the body
    # or the body+clothes set covers too unless only outer parts were there.
    assert (body != BACKGROUND_LABEL).sum() < (bc != BACKGROUND_LABEL).sum() <= (full != BACKGROUND_LABEL).sum()
    under_shirt = (full == Part.CLOTHES) & (body == Part.BODY)
    assert under_shirt.sum() > 50


def test_body_layer_matches_the_reference_renderer(character, renders):
    """The batched renderer's body-alone images equal stdgen.render.render_mesh of the body part
    (coverage exactly; colour, alpha, normals and depth to float precision)."""
    from stdgen.render.scene import render_mesh

    cams = renders.cameras()
    with torch.no_grad():
        ref = render_mesh(character.part(Part.BODY), cams, RES, shading="flat")
    got = renders.layers["body"]
    cov = ref.rast[..., 3].numpy() > 0
    np.testing.assert_array_equal(got.coverage, cov)
    a = ref.alpha[..., 0].numpy()
    np.testing.assert_allclose(got.rgb[..., 3], np.round(a * 255), atol=1)
    straight = np.where(a[..., None] > 0, ref.rgb.numpy() / np.maximum(a[..., None], 1e-8), 0)
    np.testing.assert_allclose(got.rgb[..., :3][a > 0.05], np.round(np.clip(straight, 0, 1) * 255)[a > 0.05], atol=2)
    np.testing.assert_allclose(got.normal[cov], ref.normal.numpy()[cov], atol=1e-4)
    np.testing.assert_allclose(got.depth[cov], ref.depth[..., 0].numpy()[cov], atol=1e-5)


def test_normals_are_unit_where_covered_and_face_the_camera(character):
    cfg = RenderConfig(resolution=RES, random_views=1, posed_views=0, device="cpu")
    framing = frame_character(character)
    cams, _ = character_views(framing, cfg, seed=0)
    out = render_jobs([RenderJob(scene_from_character(character), cams)], RES)
    n, cov = out["normal"], out["covered"]
    length = n.norm(dim=-1)
    torch.testing.assert_close(length[cov], torch.ones_like(length[cov]), atol=1e-5, rtol=0)
    assert torch.all(n[~cov] == 0)
    # Visible surfaces face the viewer: n . (towards camera) > 0 almost everywhere (smooth normals
    # may tilt away at silhouettes).
    fwd = cams.forward.repeat(len(LAYER_ORDER), 1)  # images are layer-major
    facing = torch.einsum("ihwc,ic->ihw", n, -fwd)[cov]
    assert (facing > 0).float().mean() > 0.97


def test_edge_neighbours_match_the_renderers_topology(character):
    from stdgen.render.antialias import antialias_topology

    # Hand-worked: vertex 6 duplicates 3 and vertex 9 duplicates 7 (as -0.0 vs 0.0); edge 2-3 is
    # shared by three faces (not a pair); the other edges are open.
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 2, 0], [1, 2, 0], [1, 1, 0], [-0.0, 1, 1],
                  [0.5, 1.5, 1], [0.0, 1, 1]], np.float32)
    f = np.array([[0, 1, 2], [1, 3, 2], [2, 6, 4], [3, 5, 4], [2, 3, 7], [2, 3, 8], [9, 3, 8]], np.int32)
    welded, plain = edge_neighbours(f, v), edge_neighbours(f)
    assert welded[0, 1] == 1 and welded[1, 2] == 0  # edge 1-2
    assert welded[1, 1] == -1 and welded[4, 0] == -1  # edge 2-3: three faces
    assert welded[2, 1] == 3 and welded[3, 2] == 2  # edge 6-4 == 3-4 once 6 is welded to 3
    assert welded[4, 1] == 6 and welded[6, 0] == 4  # edge 3-7 == 9-3 once -0.0 == 0.0
    assert welded[5, 1] == 6 and welded[6, 1] == 5  # edge 3-8
    assert plain[2, 1] == -1 and plain[4, 1] == -1 and plain[5, 1] == 6
    meshes = [(f, v), *((m.faces, m.vertices) for m in (character.body, *character.clothes, *character.hair))]
    for faces, verts in meshes:
        for weld in (True, False):
            ref = antialias_topology(torch.from_numpy(faces), torch.from_numpy(verts) if weld else None).numpy()
            np.testing.assert_array_equal(edge_neighbours(faces, verts if weld else None), ref)


def test_views_and_framing(character, renders):
    groups = [v["group"] for v in renders.views]
    assert groups == ["eval"] * 8 + ["top_bottom"] * 2 + ["face"] * 5 + ["random"] * 2
    gen = renders.view_index("gen")
    assert [round(renders.views[i]["azimuth"]) % 360 for i in gen] == [round(a) % 360 for a in GENERATION_AZIMUTHS]
    assert all(renders.views[i]["orthographic"] and abs(renders.views[i]["elevation"]) < 1e-6 for i in gen)
    # One framing: the A-posed character's bounds fill 1/margin of the front view's height, centred.
    front = renders.layers["full"].rgb[renders.meta["a_pose_front"], ..., 3] > 0
    rows = np.nonzero(front.any(1))[0]
    margin = renders.meta["framing"]["margin"]
    assert abs((rows[-1] - rows[0] + 1) - RES / margin) <= 2
    assert abs(rows[0] - (RES - 1 - rows[-1])) <= 2
    # The face close-up at azimuth 0 looks at the face (body) with hair above it.
    face = renders.layers["full"].sem[renders.view_index(names=["face_az+000_el+05"])[0]]
    assert face[RES // 2, RES // 2] == Part.BODY
    assert (face[: RES // 4] == Part.HAIR).any()


def test_canonicalisation_pair_of_the_a_pose_is_the_front_view(character):
    """Rendered in its own A-pose, the posed front render is exactly the A-pose front view; in a
    random pose it differs."""
    from stdgen.data.posing import random_pose

    cfg = RenderConfig(resolution=RES, random_views=0, face_views=False, top_bottom=False, device="cpu")
    rng = np.random.default_rng(0)
    r = render_character(character, cfg, seed=0, poses=[character.pose, random_pose(character.skeleton, rng)])
    front = r.layers["full"].rgb[r.meta["a_pose_front"]]
    np.testing.assert_array_equal(r.posed_rgb[0], front)
    assert np.abs(r.posed_rgb[1].astype(int) - front).sum() > 1000
    assert len(r.meta["posed"]) == 2 and np.asarray(r.meta["posed"][1]["pose"]["rotations"]).shape[1:] == (3, 3)


def test_color_matrices_recolour_one_part(character):
    framing = frame_character(character)
    cams, _ = character_views(framing, RenderConfig(resolution=RES, random_views=0, face_views=False,
                                                    top_bottom=False), seed=0)
    scene = scene_from_character(character)
    plain = render_jobs([RenderJob(scene, cams[:1], ("full",))], RES)
    mats = np.stack([np.eye(3)] * 3).astype(np.float32)
    mats[Part.CLOTHES] = 0
    dark = render_jobs([RenderJob(scene, cams[:1], ("full",), color_matrices=mats)], RES)
    sem = plain["sem"]
    # Pixels away from label boundaries (antialiasing blends colours across them).
    inner = plain["alpha"][..., 0] == 1
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        inner &= torch.roll(sem, (dy, dx), (1, 2)) == sem
    clothes, body = inner & (sem == Part.CLOTHES), inner & (sem == Part.BODY)
    assert clothes.sum() > 20 and body.sum() > 20
    assert torch.all(dark["rgb"][clothes] == 0) and plain["rgb"][clothes].sum() > 0
    torch.testing.assert_close(dark["rgb"][body], plain["rgb"][body])


def _tree(folder):
    return {p: (folder / p).read_bytes() for p in sorted(os.listdir(folder))}


def test_same_seed_gives_byte_identical_folders(tmp_path):
    cfg = RenderConfig(resolution=32, random_views=2, posed_views=1, random_light=True, device="cpu")
    a = render_to_folder(standin_a_posed(4), tmp_path / "a" / "0000004", cfg, seed=4, source="standin")
    b = render_to_folder(standin_a_posed(4), tmp_path / "b" / "0000004", cfg, seed=4, source="standin")
    assert a == b
    ta, tb = _tree(tmp_path / "a" / "0000004"), _tree(tmp_path / "b" / "0000004")
    assert set(ta) >= {"character.glb", "meta.json", "preview.png", "posed_rgb.png", "full_rgb.png", "body_sem.png"}
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name] == tb[name], name
    # Another seed draws other random views and light (the seed is really used).
    render_to_folder(standin_a_posed(4), tmp_path / "c" / "0000004", cfg, seed=5, source="standin")
    tc = _tree(tmp_path / "c" / "0000004")
    assert tc["full_lit.png"] != ta["full_lit.png"]
    assert json.loads(tc["meta.json"])["light_dir"] != json.loads(ta["meta.json"])["light_dir"]


class _Crash(Exception):
    pass


def test_killed_run_resumes(tmp_path):
    cfg = RenderConfig(resolution=24, random_views=0, posed_views=0, face_views=False, device="cpu")
    out = tmp_path / "ds"
    calls = []

    def crashing(seed):
        calls.append(seed)
        if seed == 11:
            raise _Crash  # dies in the middle of the run
        return standin_a_posed(seed)

    with pytest.raises(_Crash):
        render_dataset_dir(out, [10, 11, 12], cfg, make=crashing, source="standin", progress=False)
    assert sorted(p.name for p in out.iterdir() if p.name != MARKER_NAME) == ["0000010", "manifest.json"]
    assert [e["id"] for e in read_manifest(out)["characters"]] == ["0000010"]
    first = (out / "0000010" / "meta.json").stat().st_mtime_ns
    # A hard kill (no clean-up) while writing leaves a temporary folder behind.
    (out / ".tmp-0000011.x1y2").mkdir()
    (out / ".tmp-0000011.x1y2" / "full_rgb.png").write_bytes(b"half")
    calls.clear()
    res = render_dataset_dir(out, [10, 11, 12], cfg, make=standin_a_posed_counting(calls), source="standin",
                             progress=False)
    assert res["rendered"] == 2 and res["skipped"] == 1 and res["removed_temporaries"] == 1
    assert calls == [11, 12]  # the finished character was not made again
    assert (out / "0000010" / "meta.json").stat().st_mtime_ns == first
    assert sorted(p.name for p in out.iterdir() if p.name != MARKER_NAME) == [
        "0000010", "0000011", "0000012", "manifest.json"]
    m = read_manifest(out)
    assert [(e["id"], e["seed"], e["split"], e["source"]) for e in m["characters"]] == [
        ("0000010", 10, "train", "standin"), ("0000011", 11, "train", "standin"), ("0000012", 12, "train", "standin")]
    assert m["render_config"] == cfg.content()
    for name in ("0000011", "0000012"):
        assert read_renders(out / name, maps=("sem",)).layers["full"].sem.shape == (10, 24, 24)
    # Other settings into the same directory: refused, nothing touched.
    with pytest.raises(StdgenError, match="other settings"):
        render_dataset_dir(out, [10], RenderConfig(resolution=32, device="cpu"), make=standin_a_posed, progress=False)


def standin_a_posed_counting(calls):
    def make(seed):
        calls.append(seed)
        return standin_a_posed(seed)

    return make


# -- the command line ---------------------------------------------------------------------------------
def test_seed_selection():
    from stdgen.data import splits
    from stdgen.data.render_cli import seeds_for

    assert seeds_for(3, 5, None) == [5, 6, 7]
    assert seeds_for(2, 998, "test") == [splits.TEST[998], splits.TEST[999]]
    assert seeds_for(2, 0, "validation") == list(splits.VALIDATION[:2])
    train = seeds_for(5, splits.VALIDATION.start - 2, "train")
    assert not any(s in splits.VALIDATION or s in splits.TEST for s in train) and len(set(train)) == 5
    for args in ((2, 999, "test"), (-1, 0, None), (1, -3, None), (2, splits.MAX_SEED, None)):
        with pytest.raises(StdgenError):
            seeds_for(*args)


def test_cli_renders_resumes_and_reports_errors(tmp_path, monkeypatch, capsys):
    import stdgen.data.render_dataset as rd
    from stdgen.cli import main

    monkeypatch.setattr(rd, "procedural_character", standin_a_posed)  # the generator is another issue's
    out = tmp_path / "ds"
    argv = ["data", "render", "--count", "2", "--seed", "5", "-o", str(out), "--resolution", "24",
            "--random-views", "1", "--posed-views", "1", "--no-face", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    assert "rendered 2" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if p.name != MARKER_NAME) == ["0000005", "0000006", "manifest.json"]
    r = read_renders(out / "0000006")
    assert [v["group"] for v in r.views] == ["eval"] * 8 + ["top_bottom"] * 2 + ["random"]
    assert r.posed_rgb.shape == (1, 24, 24, 4) and r.meta["split"] == "train" and r.meta["source"] == "procedural"
    from stdgen.io.glb import read_glb

    parts = read_glb(out / "0000006" / "character.glb")
    assert set(parts) == {"body", "clothes", "hair"} and parts["hair"].num_faces > 0
    assert main(argv) == 0
    assert "rendered 0, already there 2" in capsys.readouterr().out
    for bad in (["--resolution", "3"], ["--split", "test", "--seed", "999"], ["--workers", "-1"]):
        assert main(argv + bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("stdgen: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    assert main(["data", "render", "--count", "1", "-o", str(tmp_path / "file"), "--quiet"]) == 2


@pytest.mark.slow
def test_sigkilled_process_resumes(tmp_path):
    """A rendering process killed with SIGKILL (no clean-up at all) leaves only complete folders, and
    the next run finishes the set."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "ds"
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from dataset_standin import standin_a_posed\n"
        "from stdgen.data.render_dataset import RenderConfig, render_dataset_dir\n"
        "cfg = RenderConfig(resolution=96, random_views=1, posed_views=1, device='cpu')\n"
        f"render_dataset_dir({str(out)!r}, list(range(40)), cfg, make=standin_a_posed, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 300
    while time.time() < deadline and len([p for p in out.glob("0*")]) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in out.glob("0*"))
    assert 2 <= len(done) < 40
    for name in done:  # every folder that exists is complete
        assert read_renders(out / name, maps=("sem",)).layers["full"].sem.shape[0] == 16  # 8 + 2 + 5 + 1 views
    cfg = RenderConfig(resolution=96, random_views=1, posed_views=1, device="cpu")
    res = render_dataset_dir(out, list(range(len(done) + 2)), cfg, make=standin_a_posed, source="standin",
                             progress=False)
    assert res["skipped"] == len(done) and res["rendered"] == 2
    assert not list(out.glob(".tmp-*"))
    assert len(read_manifest(out)["characters"]) == len(done) + 2


@pytest.mark.slow
def test_cli_with_the_procedural_generator(tmp_path):
    """`stdgen data render` end to end with the real generator: folders, manifest, glb, layer sets."""
    from stdgen.cli import main
    from stdgen.data import splits
    from stdgen.io.glb import read_glb

    out = tmp_path / "test_set"
    assert main(["data", "render", "--count", "2", "--split", "test", "-o", str(out), "--resolution", "64",
                 "--device", "cpu", "--quiet"]) == 0
    m = read_manifest(out)
    assert [(e["seed"], e["split"], e["source"]) for e in m["characters"]] == [
        (splits.TEST[0], "test", "procedural"), (splits.TEST[1], "test", "procedural")]
    for e in m["characters"]:
        r = read_renders(out / e["id"])
        assert len(r.views) == 8 + 2 + 5 + 4 and r.posed_rgb.shape[0] == 2
        assert r.meta["character"]["seed"] == e["seed"]
        full, body = r.layers["full"].sem, r.layers["body"].sem
        assert {0, 1, 2} <= set(np.unique(full)) and set(np.unique(body)) <= {0, BACKGROUND_LABEL}
        parts = read_glb(out / e["id"] / "character.glb")
        assert all(parts[k].num_faces > 0 for k in ("body", "clothes", "hair"))
