"""The on-the-fly render stream: batch layout, agreement with the disk renderer, seeds and shards,
pool variants, backgrounds."""

import math

import numpy as np
import pytest
import torch
from dataset_standin import standin_a_posed

from stdgen.data import splits
from stdgen.data.render_dataset import RenderConfig, render_character
from stdgen.data.stream import (
    CharacterSource,
    RenderStream,
    StreamConfig,
    hue_matrix,
    random_recolor,
    split_seed,
)
from stdgen.structures.semantics import BACKGROUND_LABEL, Part

RES = 40


def _stream(**kw):
    base = dict(batch_size=2, resolution=RES, count=3, device="cpu", random_light=False)
    base.update(kw)
    return RenderStream(StreamConfig(**base), make=standin_a_posed)


def test_batches_have_the_documented_layout():
    batches = list(_stream(background="white", random_views=1))
    assert [len(b["seed"]) for b in batches] == [2, 1]  # count 3 in batches of 2: the last is partial
    b = batches[0]
    assert b["layers"] == ("body", "body_clothes", "full")
    assert len(b["view_names"]) == 9 and b["view_names"][-1] == "random_00"
    for key, ch in (("rgb", 3), ("lit", 3), ("normal", 3), ("alpha", 1), ("depth", 1)):
        assert b[key].shape == (2, 3, 9, ch, RES, RES) and b[key].dtype == torch.float32, key
    assert b["sem"].shape == (2, 3, 9, RES, RES) and b["sem"].dtype == torch.uint8
    assert b["world_to_cam"].shape == (2, 9, 4, 4) and b["proj"].shape == (2, 9, 4, 4)
    assert b["seed"].tolist() == [0, 1] and b["variant"].tolist() == [0, 0]
    # White background where nothing is drawn; colour in [0, 1].
    empty = b["alpha"][:, :, :, 0] == 0
    assert torch.all(b["rgb"].permute(0, 1, 2, 4, 5, 3)[empty] == 1)
    assert b["rgb"].min() >= 0 and b["rgb"].max() <= 1
    # Layer sets: the body set shows only body pixels.
    assert set(torch.unique(b["sem"][:, 0]).tolist()) <= {int(Part.BODY), BACKGROUND_LABEL}


def test_batches_can_feed_a_model_in_training():
    b = next(iter(_stream(count=1, batch_size=1, maps=("rgb",))))
    conv = torch.nn.Conv2d(3, 2, 3)
    x = b["rgb"].flatten(0, 2)  # (B L V, 3, H, W)
    conv(x).square().mean().backward()  # would fail on inference-mode tensors
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


def test_stream_renders_equal_the_disk_renders():
    """The same character and views through the stream and through render_character agree."""
    b = next(iter(_stream(background="black", count=1, batch_size=1)))
    cfg = RenderConfig(resolution=RES, random_views=0, face_views=False, top_bottom=False, posed_views=0,
                       device="cpu")
    disk = render_character(standin_a_posed(0), cfg, seed=0)
    assert b["view_names"] == [v["name"] for v in disk.views]
    for li, layer in enumerate(b["layers"]):
        d = disk.layers[layer]
        np.testing.assert_array_equal(b["sem"][0, li].numpy(), d.sem)
        np.testing.assert_allclose(np.round(b["alpha"][0, li, :, 0].numpy() * 255), d.rgb[..., 3], atol=1)
        cov = d.coverage
        np.testing.assert_allclose(b["depth"][0, li, :, 0].numpy()[cov], d.depth[cov], atol=1e-6)
        n = b["normal"][0, li].permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(n[cov], d.normal[cov], atol=1e-6)
    np.testing.assert_allclose(b["world_to_cam"][0].numpy(), np.array([v["world_to_cam"] for v in disk.views]),
                               atol=1e-6)


def test_seeds_come_from_the_split_and_shards_do_not_overlap():
    assert split_seed("test", 0) == splits.TEST[0] and split_seed("validation", 5) == splits.VALIDATION[5]
    assert split_seed("train", splits.VALIDATION.start) not in splits.VALIDATION
    with pytest.raises(IndexError):
        split_seed("test", len(splits.TEST))

    class Probe(CharacterSource):  # records seeds without making characters
        def _item(self, character, seed, variant, rng, topology=None):
            return seed

        def _make(self, seed):
            return None

    seen = []
    for rank in range(3):
        seen.append(list(Probe(StreamConfig(split="test", start=4, count=10, rank=rank, world_size=3))))
    flat = sorted(s for part in seen for s in part)
    assert flat == list(splits.TEST[4:14])
    assert all(set(a).isdisjoint(b) for i, a in enumerate(seen) for b in seen[i + 1 :])


def test_pool_mode_makes_variants_of_a_fixed_pool():
    made = []

    def make(seed):
        made.append(seed)
        return standin_a_posed(seed)

    s = RenderStream(StreamConfig(batch_size=3, resolution=RES, count=6, pool_size=2, device="cpu", maps=("rgb",)),
                     make=make)
    batches = list(s)
    seeds = torch.cat([b["seed"] for b in batches]).tolist()
    variants = torch.cat([b["variant"] for b in batches]).tolist()
    assert sorted(made) == [0, 1]  # only the pool was generated
    assert set(seeds) <= {0, 1} and variants == [1, 2, 3, 4, 5, 6]
    # Variants differ (re-posed arms, new colours) even where the seed repeats.
    rgb = torch.cat([b["rgb"][:, 2, 0] for b in batches])
    i, j = [k for k, s_ in enumerate(seeds) if s_ == seeds[0]][:2]
    assert (rgb[i] - rgb[j]).abs().sum() > 1.0


def test_hue_matrix():
    np.testing.assert_allclose(hue_matrix(0.0), np.eye(3), atol=1e-6)
    # A third of a turn about the grey axis permutes the primaries: red -> green -> blue.
    np.testing.assert_allclose(hue_matrix(120.0) @ np.array([1.0, 0, 0]), [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(hue_matrix(77.0) @ np.ones(3), np.ones(3), atol=1e-6)  # grey stays grey
    np.testing.assert_allclose(hue_matrix(0.0, saturation=0.0) @ np.array([1.0, 0, 0]), np.full(3, 1 / 3), atol=1e-6)
    np.testing.assert_allclose(hue_matrix(33.0, value=0.5) @ np.ones(3), np.full(3, 0.5), atol=1e-6)
    m = random_recolor(np.random.default_rng(0))
    np.testing.assert_array_equal(m[Part.BODY], np.eye(3))  # skin and eyes keep their colours
    assert not np.allclose(m[Part.CLOTHES], np.eye(3)) and not np.allclose(m[Part.HAIR], m[Part.CLOTHES])
    assert math.isclose(float(np.linalg.det(hue_matrix(50.0))), 1.0, rel_tol=1e-5)


def test_skin_recolor_draws_every_skin_tone_evenly():
    from stdgen.data.procedural.params import SKIN_TONES

    # Off: exactly the plain re-colouring's draws (runs without it are unchanged).
    for seed in range(3):
        np.testing.assert_array_equal(random_recolor(np.random.default_rng(seed)),
                                      random_recolor(np.random.default_rng(seed), (0.9, 0.8, 0.7), 0.0))
    source = np.array([0.99, 0.88, 0.80])
    nearest = []
    for seed in range(400):
        m = random_recolor(np.random.default_rng(seed), tuple(source), 1.0)
        assert np.count_nonzero(m[Part.BODY] - np.diag(np.diag(m[Part.BODY]))) == 0  # per-channel gains
        tone = m[Part.BODY] @ source  # the source skin maps to a tone of the table (+ small jitter)
        d = np.linalg.norm(np.asarray(SKIN_TONES) - tone, axis=1)
        assert d.min() < 0.05
        nearest.append(int(d.argmin()))
    counts = np.bincount(nearest, minlength=len(SKIN_TONES))
    # The two darkest tones (the generator's rarest, 3-4 %) now come about 1 in 10 times each.
    dark = np.argsort([sum(t) for t in SKIN_TONES])[:2]
    assert all(counts[i] >= 20 for i in dark), counts
    # Without a known tone (an imported VRM character) the skin is kept.
    np.testing.assert_array_equal(random_recolor(np.random.default_rng(0), None, 1.0)[Part.BODY], np.eye(3))


def test_random_backgrounds_are_shared_by_the_layer_sets_of_a_view():
    b = next(iter(_stream(background="random", count=2, maps=("rgb",))))
    empty = b["alpha"][..., 0, :, :] == 0  # (B, L, V, H, W)
    corner = b["rgb"][..., :, 0, 0]  # (B, L, V, 3): the top-left pixel is background in these views
    assert torch.all(empty[..., 0, 0])
    torch.testing.assert_close(corner[:, 0], corner[:, 2])  # same background for body and full
    assert not torch.allclose(corner[:, :, 0], corner[:, :, 1])  # another view, another background


def test_bad_config_values_are_rejected():
    for kw in ({"views": "all"}, {"background": "green"}, {"maps": ("rgb", "uv")}, {"layers": ("hair",)},
               {"split": "dev"}, {"rank": 2, "world_size": 2}):
        with pytest.raises(ValueError):
            StreamConfig(**kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stream_on_cuda_matches_the_cpu():
    """The stream renders the same batch on the GPU (Triton backend) as on the CPU."""
    kw = dict(batch_size=2, count=2, background="black", random_views=1, resolution=64)
    gpu = next(iter(_stream(device="cuda", **kw)))
    cpu = next(iter(_stream(device="cpu", **kw)))
    assert gpu["rgb"].is_cuda and gpu["sem"].is_cuda
    same = (gpu["sem"].cpu() == cpu["sem"]).float().mean().item()
    assert same > 0.999  # float rounding may flip a pixel centre lying exactly on an edge
    for key in ("alpha", "rgb", "lit", "normal", "depth"):
        diff = (gpu[key].cpu() - cpu[key]).abs()
        assert diff.mean().item() < 1e-3, key
    torch.testing.assert_close(gpu["world_to_cam"].cpu(), cpu["world_to_cam"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stream_with_workers_and_pool_on_cuda():
    s = RenderStream(StreamConfig(batch_size=4, resolution=64, count=8, workers=2, pool_size=2, device="cuda"),
                     make=standin_a_posed)
    batches = list(s)
    assert sum(len(b["seed"]) for b in batches) == 8
    assert all(b["rgb"].is_cuda and b["rgb"].shape[1:] == (3, 8, 3, 64, 64) for b in batches)
    variants = torch.cat([b["variant"] for b in batches]).tolist()
    assert len(set(variants)) == 8 and 0 not in variants


def test_worker_transport_packs_a_scene_into_one_tensor_and_back():
    import copy
    import pickle

    from stdgen.data.stream import _from_shared, _to_shared

    cfg = StreamConfig(batch_size=1, resolution=32, views="eval", device="cpu", start=0, count=1)
    item = next(iter(CharacterSource(cfg, standin_a_posed)))
    ref = copy.deepcopy(item.scene)
    sent = _to_shared(item)
    tensors = [v for v in vars(sent.scene).values() if isinstance(v, torch.Tensor)]
    assert not tensors and isinstance(sent.scene._packed[0], torch.Tensor)  # one buffer travels
    back = _from_shared(pickle.loads(pickle.dumps(sent))).scene
    for name in ("vertices", "normals", "colors", "faces", "face_labels", "face_texture", "corner_uvs", "topology"):
        a, b = getattr(ref, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    assert len(back.textures) == len(ref.textures)
    assert all(np.array_equal(a, b) for a, b in zip(ref.textures, back.textures))
    assert not hasattr(back, "_packed")


def test_background_prefetch_keeps_order_and_reraises_errors():
    from stdgen.data.stream import _background

    assert list(_background(iter(range(100)), depth=4)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("broken worker")

    got = []
    with pytest.raises(ValueError, match="broken worker"):
        for x in _background(failing(), depth=2):
            got.append(x)
    assert got == [1]


@pytest.mark.parametrize("prefetch_thread", [False, True])
def test_worker_processes_deliver_every_character_once(prefetch_thread):
    cfg = StreamConfig(batch_size=2, resolution=24, device="cpu", workers=2, count=5, random_light=False,
                       prefetch_thread=prefetch_thread)
    seeds = [int(s) for batch in RenderStream(cfg, make=standin_a_posed) for s in batch["seed"]]
    assert sorted(seeds) == [split_seed("train", i) for i in range(5)]


def test_stream_renders_in_float32_inside_autocast():
    """A task's validation draws batches inside the trainer's bf16 autocast: the renderer must still get
    float32 positions (this crashed the first GPU runs of mvdiff and segment at their first validation)."""
    plain = next(iter(_stream(count=1, batch_size=1, maps=("rgb",))))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = next(iter(_stream(count=1, batch_size=1, maps=("rgb",))))
    assert auto["rgb"].dtype == torch.float32
    torch.testing.assert_close(auto["rgb"], plain["rgb"])


def test_posed_inputs_render_in_float32_inside_autocast():
    """The canonicaliser's validation draws posed inputs inside bf16 autocast: the posed render must
    get float32 positions too (this killed the session-e canonicaliser run at its first validation)."""
    cfg = dict(batch_size=1, resolution=16, views="gen", layers=("full",), maps=("lit",), count=1,
               posed_input=True, apose_input_fraction=1.0, device="cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = next(iter(RenderStream(StreamConfig(**cfg))))
    assert b["posed_lit"].dtype == torch.float32 and b["posed_alpha"].shape == (1, 1, 16, 16)


def test_pool_refresh_brings_new_characters():
    """``pool_refresh`` swaps pool members for the split's next seeds; 0 keeps the pool fixed (and
    draws exactly as before: the refresh coin is only tossed when it is on)."""
    fixed = [int(s) for b in _stream(pool_size=2, count=12, batch_size=4, maps=("rgb",)) for s in b["seed"]]
    fresh = [int(s) for b in _stream(pool_size=2, count=12, batch_size=4, maps=("rgb",), pool_refresh=0.5)
             for s in b["seed"]]
    assert len(set(fixed)) <= 2
    assert set(fixed) == {0, 1} and len(set(fresh)) > 3
    assert set(fresh) <= set(range(2 + 12))  # the starting pool, then the split's next seeds in order
    with pytest.raises(ValueError, match="pool_refresh"):
        StreamConfig(pool_refresh=1.5)
