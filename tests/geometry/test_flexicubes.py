"""FlexiCubes: tables from first principles, every configuration class, the reference, gradients,
closed forms, and a short optimisation through the rasteriser."""

import math

import numpy as np
import pytest
import torch

from stdgen.geometry import flexicubes as fc
from stdgen.geometry.flexicubes import flexicubes
from stdgen.geometry.flexicubes_ref import flexicubes_reference
from stdgen.geometry.flexicubes_tables import (
    EDGE_CORNERS,
    FACE_CORNERS,
    configuration_classes,
    corner_offset,
    dmc_tables,
    is_ambiguous,
)
from stdgen.geometry.grid import Grid

# --- helpers ---------------------------------------------------------------------------------


class _UnionFind:
    def __init__(self, n):
        self.p = list(range(n))

    def find(self, a):
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a, b):
        self.p[self.find(a)] = self.find(b)


def _cube_components(code: int, face_bits: int) -> list[int]:
    """Component of each corner on the cube's surface: corners of one sign joined along edges, and
    across an ambiguous face when its bit connects that sign (1: inside pair, 0: outside pair)."""
    uf = _UnionFind(8)
    inside = [(code >> c) & 1 for c in range(8)]
    for c0, c1 in EDGE_CORNERS:
        if inside[c0] == inside[c1]:
            uf.union(int(c0), int(c1))
    for f in range(6):
        if is_ambiguous(code, f):
            cs = [int(c) for c in FACE_CORNERS[f]]
            connected_sign = (face_bits >> f) & 1
            pair = (cs[0], cs[2]) if inside[cs[0]] == connected_sign else (cs[1], cs[3])
            uf.union(*pair)
    return [uf.find(c) for c in range(8)]


def _edge_counts(faces: np.ndarray) -> dict:
    counts = {}
    for a, b in np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).tolist():
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


def assert_closed_oriented_manifold(faces: np.ndarray, num_vertices: int):
    """Every directed edge used once and its reverse once; every vertex's fan a single disc."""
    counts = _edge_counts(faces)
    assert all(c == 1 for c in counts.values()), "a directed edge is used twice (bad orientation or non-manifold)"
    assert all((b, a) in counts for a, b in counts), "an edge has no twin: the surface is open"
    # Vertex links: the faces around a vertex form one cycle.
    nxt = {}
    for f in faces.tolist():
        for k in range(3):
            v, a, b = f[k], f[(k + 1) % 3], f[(k + 2) % 3]
            nxt.setdefault(v, {})[a] = b
    for v, ring in nxt.items():
        start = next(iter(ring))
        cur, n = start, 0
        while True:
            cur = ring[cur]
            n += 1
            if cur == start or n > len(ring):
                break
        assert n == len(ring), f"vertex {v} is non-manifold (its fan is not one disc)"
    assert set(np.unique(faces)) == set(range(num_vertices)), "unused vertices"


def _components(faces: np.ndarray, n: int) -> int:
    uf = _UnionFind(n)
    for a, b, c in faces.tolist():
        uf.union(a, b)
        uf.union(b, c)
    return len({uf.find(v) for v in np.unique(faces).tolist()})


def _signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)


# --- tables ----------------------------------------------------------------------------------


def test_tables_regenerated_from_corner_components():
    """The loops traced from face segments equal the boundaries between the connected components
    of corners on the cube's surface (an independent derivation), for all 256 x 64 configurations."""
    t = dmc_tables()
    for code in range(256):
        for bits in range(64):
            cfg = code + 256 * bits
            comp = _cube_components(code, bits)
            inside = [(code >> c) & 1 for c in range(8)]
            pair_of_edge = {}
            for e, (c0, c1) in enumerate(EDGE_CORNERS):
                if inside[c0] != inside[c1]:
                    i, o = (c0, c1) if inside[c0] else (c1, c0)
                    pair_of_edge[e] = (comp[i], comp[o])
            loop = t.loop_of_edge[cfg]
            assert set(np.flatnonzero(loop >= 0)) == set(pair_of_edge)
            # Same loop <=> same pair of adjacent components (the regions form a tree on the sphere).
            for e1 in pair_of_edge:
                for e2 in pair_of_edge:
                    assert (loop[e1] == loop[e2]) == (pair_of_edge[e1] == pair_of_edge[e2]), (code, bits, e1, e2)
            n_comp = len(set(comp))
            assert t.num_loops[cfg] == (n_comp - 1 if pair_of_edge else 0)
            # Loops are numbered 0..n-1 in order of their smallest edge.
            firsts = [int(np.flatnonzero(loop == k)[0]) for k in range(t.num_loops[cfg])]
            assert firsts == sorted(firsts)


def test_classic_marching_cubes_counts():
    assert len(configuration_classes(with_complement=True)) == 15  # Lorensen and Cline's 15 cases
    assert len(configuration_classes()) == 23
    t = dmc_tables()
    ambiguous_codes = int(t.ambiguous.any(1).sum())
    # Codes with an ambiguous face: the classic cases 3, 6, 7, 10, 12, 13 and their rotations/complements.
    classes = configuration_classes(with_complement=True)
    amb_classes = [c for c in classes if t.ambiguous[c[0]].any()]
    assert len(amb_classes) == 6
    assert ambiguous_codes == sum(len(c) for c in amb_classes)
    # Without ambiguity, the number of patches is the number of corner components minus one.
    assert t.num_loops[0] == 0 and t.num_loops[255] == 0
    assert t.num_loops[1] == 1  # one corner cut off
    assert t.num_loops[1 + 128] == 2  # two opposite corners (case 4): two patches, no tunnel


# --- one test per configuration class ----------------------------------------------------------

CLASSES = configuration_classes()


def _embed(code: int, rng: np.random.Generator) -> torch.Tensor:
    """A 4^3 field: the centre cube has sign code ``code`` with random magnitudes, all else +1."""
    s = np.ones((4, 4, 4))
    for c in range(8):
        i, j, k = corner_offset(c)
        mag = rng.uniform(0.1, 1.0)
        s[1 + i, 1 + j, 1 + k] = -mag if (code >> c) & 1 else mag
    return torch.tensor(s, dtype=torch.float64)


def _inside_components(sdf: np.ndarray, cfg_of_cube: dict) -> int:
    """Connected components of inside grid vertices: along edges, and across ambiguous faces whose
    (final) resolution connects the inside pair."""
    nx, ny, nz = sdf.shape
    idx = lambda i, j, k: (i * ny + j) * nz + k
    uf = _UnionFind(sdf.size)
    inside = sdf < 0
    for i, j, k in zip(*np.nonzero(inside)):
        for d in range(3):
            n = [i, j, k]
            n[d] += 1
            if n[d] < sdf.shape[d] and inside[tuple(n)]:
                uf.union(idx(i, j, k), idx(*n))
    for cube, cfg in cfg_of_cube.items():
        code, bits = cfg % 256, cfg // 256
        for f in range(6):
            if is_ambiguous(code, f) and (bits >> f) & 1:
                cs = [int(c) for c in FACE_CORNERS[f]]
                a, b = (cs[0], cs[2]) if (code >> cs[0]) & 1 else (cs[1], cs[3])
                pa = [cube[d] + corner_offset(a)[d] for d in range(3)]
                pb = [cube[d] + corner_offset(b)[d] for d in range(3)]
                uf.union(idx(*pa), idx(*pb))
    return len({uf.find(idx(i, j, k)) for i, j, k in zip(*np.nonzero(inside))})


@pytest.mark.parametrize("cls", range(len(CLASSES)), ids=[f"class{i:02d}-code{c[0]}" for i, c in enumerate(CLASSES)])
def test_configuration_class(cls):
    """Every sign configuration of the class, with random magnitudes: a closed, oriented, manifold
    mesh; one ball (Euler characteristic 2) per inside component; positive volume; the centre
    cube's patch count is its corner components minus one; vertices stay in their cube."""
    rng = np.random.default_rng(cls)
    grid = Grid((4, 4, 4), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    tab = fc._tables(torch.device("cpu"))
    for code in CLASSES[cls]:
        for _ in range(3):
            sdf = _embed(code, rng)
            out = flexicubes(sdf, grid)
            if code in (0, 255):
                assert out.is_empty if code == 0 else not out.is_empty
                continue
            v, f = out.vertices.numpy(), out.faces.numpy()
            assert_closed_oriented_manifold(f, len(v))
            topo = fc._topology(sdf, grid, tab)
            cfgs = {}
            for lin, cfg in zip(topo["lin"].tolist(), (topo["cfg"]).tolist()):
                cfgs[(lin // 9, (lin // 3) % 3, lin % 3)] = cfg
            comps = _inside_components(sdf.numpy(), cfgs)
            assert _components(f, len(v)) == comps
            euler = len(v) - len(f) * 3 // 2 + len(f)
            assert euler == 2 * comps
            assert _signed_volume(v, f) > 0
            centre = cfgs[(1, 1, 1)]
            assert dmc_tables().num_loops[centre] == len(set(_cube_components(centre % 256, centre // 256))) - 1
            # Dual vertices are convex combinations of edge crossings: inside their cube.
            cube_of_vertex = np.repeat(topo["lin"].numpy(), dmc_tables().num_loops[topo["cfg"].numpy()])
            ci = np.stack([cube_of_vertex // 9, (cube_of_vertex // 3) % 3, cube_of_vertex % 3], 1)
            assert np.all(v >= ci - 1e-9) and np.all(v <= ci + 1 + 1e-9)


# --- random fields: fast equals reference; topology repair -------------------------------------


def _random_case(n, seed, weights=True):
    g = torch.Generator().manual_seed(seed)
    sdf = torch.randn(n, n, n, generator=g, dtype=torch.float64)
    for d in range(3):  # positive boundary: closed surfaces
        sdf.index_fill_(d, torch.tensor([0, n - 1]), 1.0)
    kw = {}
    if weights:
        c = (n - 1,) * 3
        kw = dict(deform=torch.randn(n, n, n, 3, generator=g, dtype=torch.float64),
                  alpha=torch.randn(*c, 8, generator=g, dtype=torch.float64),
                  beta=torch.randn(*c, 12, generator=g, dtype=torch.float64),
                  gamma=torch.randn(*c, generator=g, dtype=torch.float64))
    return Grid.cube(n, 1.0), sdf, kw


@pytest.mark.parametrize("training", [False, True])
def test_fast_equals_reference(training):
    for seed in range(3):
        grid, sdf, kw = _random_case(5, seed)
        kw = {k: v.requires_grad_() for k, v in kw.items()}
        sdf = sdf.requires_grad_()
        a = flexicubes(sdf, grid, training=training, **kw)
        b = flexicubes_reference(sdf, grid, training=training, **kw)
        assert torch.equal(a.faces, b.faces)
        torch.testing.assert_close(a.vertices, b.vertices, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a.l_dev, b.l_dev, rtol=1e-10, atol=1e-12)
        # Vector-Jacobian products with a random cotangent agree for every input.
        cot = torch.randn_like(a.vertices)
        inputs = [sdf, *kw.values()]
        ga = torch.autograd.grad((a.vertices * cot).sum() + a.l_dev, inputs, allow_unused=True)
        gb = torch.autograd.grad((b.vertices * cot).sum() + b.l_dev, inputs, allow_unused=True)
        for x, y in zip(ga, gb):
            if x is None or y is None:
                assert x is None and y is None or (x if y is None else y).abs().max() == 0
            else:
                torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-11)


def test_random_fields_give_closed_manifolds_and_need_the_repair():
    flips = 0
    for seed in range(10):
        grid, sdf, _ = _random_case(8, 100 + seed, weights=False)
        out = flexicubes(sdf, grid)
        assert_closed_oriented_manifold(out.faces.numpy(), out.vertices.shape[0])
        flips += fc._topology(sdf, grid, fc._tables(sdf.device))["flips"]
    assert flips > 0  # the ambiguity repair was exercised


def test_without_repair_the_dual_mesh_is_non_manifold(monkeypatch):
    grid, sdf, _ = _random_case(8, 7, weights=False)
    tab = {k: v.clone() for k, v in fc._tables(torch.device("cpu")).items()}
    tab["same"][:] = False  # never detect conflicts
    monkeypatch.setitem(fc._TABLE_CACHE, "cpu", tab)
    out = flexicubes(sdf, grid)
    counts = _edge_counts(out.faces.numpy())
    assert any(c > 1 for c in counts.values()) or any((b, a) not in counts for a, b in counts)


# --- gradients -----------------------------------------------------------------------------------


def test_gradcheck_all_inputs():
    n = 4
    grid = Grid.cube(n, 1.0)
    g = torch.Generator().manual_seed(3)
    p = grid.points(dtype=torch.float64)
    sdf = p.norm(dim=-1) - 0.6 + 0.05 * torch.randn(n, n, n, generator=g, dtype=torch.float64)
    c = (n - 1,) * 3
    args = [sdf, 0.3 * torch.randn(n, n, n, 3, generator=g, dtype=torch.float64),
            torch.randn(*c, 8, generator=g, dtype=torch.float64), torch.randn(*c, 12, generator=g, dtype=torch.float64),
            torch.randn(*c, generator=g, dtype=torch.float64)]
    args = [a.requires_grad_() for a in args]

    def fn(s, d, a, b, gm):
        o = flexicubes(s, grid, deform=d, alpha=a, beta=b, gamma=gm, training=True)
        return o.vertices, o.l_dev

    # fast_mode checks random directional derivatives (finite differences) of every input.
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5, fast_mode=True)
    # And the full Jacobian for the SDF values alone.
    assert torch.autograd.gradcheck(lambda s: fn(s, *args[1:]), [args[0]], eps=1e-6, atol=1e-5)
    out = fn(*args)
    grads = torch.autograd.grad(out[0].sum() + out[1], args)
    assert all(gr.abs().sum() > 0 for gr in grads)  # every input really reaches the output


# --- closed forms ------------------------------------------------------------------------------


def test_sphere_area_and_volume_at_64():
    grid = Grid.cube(64, 1.0)
    r = 0.7
    sdf = grid.points().norm(dim=-1) - r
    out = flexicubes(sdf, grid)
    v, f = out.vertices.double().numpy(), out.faces.numpy()
    assert_closed_oriented_manifold(f, len(v))
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    assert abs(area / (4 * math.pi * r * r) - 1) < 0.01
    assert abs(_signed_volume(v, f) / (4 / 3 * math.pi * r**3) - 1) < 0.01
    assert len(v) - len(f) // 2 == 2  # Euler characteristic of a sphere (V - E + F with E = 3F/2)


def test_deviation_loss_zero_on_a_plane_positive_on_a_sphere():
    grid = Grid.cube(12, 1.0)
    p = grid.points(dtype=torch.float64)
    plane = flexicubes(p[..., 2] - 0.13 + 0.2 * p[..., 0], grid)
    assert plane.l_dev.item() < 1e-12
    sphere = flexicubes(p.norm(dim=-1) - 0.55, grid)
    assert sphere.l_dev.item() > 1e-4


def test_empty_and_open_boundary_and_bad_input():
    grid = Grid.cube(6, 1.0)
    assert flexicubes(torch.ones(6, 6, 6), grid).is_empty
    assert flexicubes(-torch.ones(6, 6, 6), grid).is_empty
    p = grid.points()
    out = flexicubes(p[..., 1] - 0.1, grid)  # a plane through the box: open at the boundary
    counts = _edge_counts(out.faces.numpy())
    assert any((b, a) not in counts for a, b in counts)
    with pytest.raises(ValueError, match="sdf"):
        flexicubes(torch.ones(5, 6, 6), grid)
    with pytest.raises(ValueError, match="alpha"):
        flexicubes(torch.ones(6, 6, 6), grid, alpha=torch.zeros(6, 6, 6, 8))


# --- optimisation through the rasteriser ---------------------------------------------------------


def test_short_optimisation_toward_target_renders():
    """SDF values and deformations of a sphere on a 16^3 grid, optimised for 25 Adam steps against
    mask and depth renders of a box through our rasteriser, lower the loss at least 4x."""
    import trimesh

    from stdgen.render import antialias, antialias_topology, orthographic_cameras, rasterize, shade

    torch.manual_seed(0)
    cams = orthographic_cameras([0, 90, 180, 270], [25, -25, 25, -25], half_size=0.9)

    def render(verts, faces):
        clip = cams.clip(verts)
        rast = rasterize(clip, faces, (32, 32))
        m = shade.mask(rast)
        d = shade.linear_depth(verts, faces, rast, cams)
        out = antialias(torch.cat([m, d * m], -1), rast, clip, faces, antialias_topology(faces))
        return out[..., :1], out[..., 1:]

    box = trimesh.creation.box((0.9, 0.7, 0.8))
    with torch.no_grad():
        tm, td = render(torch.tensor(box.vertices, dtype=torch.float32), torch.tensor(box.faces, dtype=torch.int32))
    grid = Grid.cube(16, 0.8)
    sdf = (grid.points().norm(dim=-1) - 0.35).requires_grad_()
    deform = torch.zeros(*grid.shape, 3, requires_grad=True)
    opt = torch.optim.Adam([sdf, deform], lr=0.03)
    losses = []
    for _ in range(25):
        out = flexicubes(sdf, grid, deform=deform, training=True)
        m, d = render(out.vertices, out.faces.int())
        loss = ((m - tm) ** 2).mean() + (tm * (d - td).abs()).mean() + 0.5 * out.l_dev
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 4, losses


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    grid, sdf, kw = _random_case(12, 42)
    outs, grads = [], []
    for dev in ("cpu", "cuda"):
        leaves = {k: v.detach().to(dev, copy=True).requires_grad_() for k, v in {"sdf": sdf, **kw}.items()}
        out = flexicubes(leaves["sdf"], grid, training=True, **{k: v for k, v in leaves.items() if k != "sdf"})
        (out.vertices.sum() + out.l_dev).backward()
        outs.append(out)
        grads.append({k: v.grad.cpu() for k, v in leaves.items()})
    assert torch.equal(outs[0].faces, outs[1].faces.cpu())
    torch.testing.assert_close(outs[0].vertices, outs[1].vertices.cpu())
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k])
