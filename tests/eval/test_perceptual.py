import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stdgen.errors import InputError, StdgenError
from stdgen.eval import perceptual as pc

from .helpers import tiny_lpips_state


def _images(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, size, size, 3, generator=g)


@pytest.mark.parametrize("kind,size", [("vgg", 32), ("alex", 64)])
def test_lpips_tiny_weights_behave_like_a_distance(tmp_path, kind, size):
    from safetensors.torch import save_file

    path = tmp_path / "lpips.safetensors"
    save_file(tiny_lpips_state(kind), str(path))
    model = pc.load_lpips(path)
    assert model.kind == kind
    a, b = _images(2, size, 0), _images(2, size, 1)
    d_aa = pc.lpips_distance(model, a, a)
    d_ab = pc.lpips_distance(model, a, b)
    d_ba = pc.lpips_distance(model, b, a)
    assert torch.allclose(d_aa, torch.zeros(2, dtype=torch.float64), atol=1e-7)
    assert (d_ab > 1e-4).all()
    assert torch.allclose(d_ab, d_ba, atol=1e-6)
    # Closer images are closer.
    near = (a + 0.02 * (b - a)).clamp(0, 1)
    assert (pc.lpips_distance(model, a, near) < d_ab).all()


def test_lpips_first_tap_by_hand(tmp_path):
    # Only the first tap weighted: LPIPS = mean over pixels of sum_c w_c (f1_c - f2_c)^2 on the
    # channel-normalised ReLU(conv(ReLU(conv(x)))) of the scaled input.
    sd = tiny_lpips_state("vgg")
    for t in range(1, 5):
        sd[f"lin{t}.model.1.weight"].zero_()
    torch.save(sd, tmp_path / "w.pth")
    model = pc.load_lpips(tmp_path / "w.pth")
    a, b = _images(1, 16, 2), _images(1, 16, 3)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feat(x):
        h = ((x.permute(0, 3, 1, 2) * 2 - 1) - shift) / scale
        h = F.relu(F.conv2d(h, sd["net.slice1.0.weight"], sd["net.slice1.0.bias"], padding=1))
        h = F.relu(F.conv2d(h, sd["net.slice1.2.weight"], sd["net.slice1.2.bias"], padding=1))
        return h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)

    w = sd["lin0.model.1.weight"].view(1, -1, 1, 1)
    want = ((feat(a) - feat(b)) ** 2 * w).sum(1).mean()
    assert float(pc.lpips_distance(model, a, b)[0]) == pytest.approx(float(want), rel=1e-5)


def test_lpips_torchvision_naming_and_split_files(tmp_path):
    sd = tiny_lpips_state("vgg", naming="torchvision")
    backbone = {k: v for k, v in sd.items() if k.startswith("features.")}
    backbone["classifier.0.weight"] = torch.zeros(2, 2)  # a torchvision head is ignored
    lins = {k: v for k, v in sd.items() if k.startswith("lin")}
    (tmp_path / "w").mkdir()
    torch.save(backbone, tmp_path / "w" / "vgg16.pth")
    torch.save(lins, tmp_path / "w" / "lin.pth")
    model = pc.load_lpips(tmp_path / "w")
    a = _images(1, 32)
    assert float(pc.lpips_distance(model, a, a)[0]) == pytest.approx(0, abs=1e-7)


def test_lpips_mismatched_weights_are_errors_that_name_the_keys(tmp_path):
    sd = tiny_lpips_state("vgg")
    del sd["net.slice3.12.bias"]
    torch.save(sd, tmp_path / "a.pth")
    with pytest.raises(InputError, match=r"12\.bias"):
        pc.load_lpips(tmp_path / "a.pth")
    sd = tiny_lpips_state("vgg")
    sd["something.else"] = torch.zeros(1)
    torch.save(sd, tmp_path / "b.pth")
    with pytest.raises(InputError, match="something.else"):
        pc.load_lpips(tmp_path / "b.pth")
    sd = tiny_lpips_state("vgg")
    del sd["lin4.model.1.weight"]
    torch.save(sd, tmp_path / "c.pth")
    with pytest.raises(InputError, match="lin4"):
        pc.load_lpips(tmp_path / "c.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pth"):
        pc.load_lpips(tmp_path / "junk.pth")
    with pytest.raises(InputError, match="no such"):
        pc.load_lpips(tmp_path / "missing.pth")


def test_frechet_distance_of_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 9.0])
    # |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2 for diagonal covariances.
    want = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    assert pc.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, abs=1e-9)


def test_fid_of_feature_sets():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 4))
    assert pc.fid(x, x) == pytest.approx(0, abs=1e-6)
    # The same cloud shifted by c: only the mean term remains.
    c = np.array([1.0, -2.0, 0.5, 0.0])
    assert pc.fid(x + c, x) == pytest.approx(float(c @ c), abs=1e-6)


class _TinyFeatures(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


class _StyleGanLike(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 5)

    def forward(self, x, return_features: bool = False):
        assert x.dtype == torch.uint8
        f = self.lin(x.float().mean((2, 3)) / 255)
        return f if return_features else f.sum(1)


def test_inception_from_a_local_torchscript_file(tmp_path):
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning):  # TorchScript is deprecated in recent torch, still what FID files are
        torch.jit.script(_TinyFeatures()).save(str(tmp_path / "inc.pt"))
        torch.jit.script(_StyleGanLike()).save(str(tmp_path / "sg.pt"))
    net = pc.load_inception(tmp_path / "inc.pt")
    assert not net.stylegan_convention
    imgs = _images(5, 40)
    f = net(imgs)
    assert f.shape == (5, 8) and np.isfinite(f).all()
    assert pc.fid(f, f) == pytest.approx(0, abs=1e-6)
    sg = pc.load_inception(tmp_path / "sg.pt")
    assert sg.stylegan_convention and sg(imgs).shape == (5, 5)
    # A torch.export program works the same way as the generic TorchScript convention.
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(_TinyFeatures().eval(), (torch.rand(2, 3, 299, 299),),
                                  dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(tmp_path / "inc.pt2"))
    exported = pc.load_inception(tmp_path / "inc.pt2")
    assert exported(imgs).shape == (5, 8) and exported(imgs[:1]).shape == (1, 8)
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.pt"):
        pc.load_inception(tmp_path / "bad.pt")


def test_clip_from_a_local_directory(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                         vocab_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                           image_size=32, patch_size=8),
        projection_dim=8)
    torch.manual_seed(0)
    transformers.CLIPModel(cfg).save_pretrained(str(tmp_path / "clip"))
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3,
                                                                             "image_std": [0.5] * 3}))
    enc = pc.load_clip(tmp_path / "clip")
    a, b = _images(1, 48, 0)[0], _images(3, 48, 1)
    assert pc.clip_similarity(enc, a, a[None]) == pytest.approx(1.0, abs=1e-6)
    s = pc.clip_similarity(enc, a, b)
    assert -1 <= s < 1
    e = enc(b)
    assert e.shape == (3, 8) and torch.allclose(e.norm(dim=1), torch.ones(3, dtype=torch.float64))
    with pytest.raises(StdgenError, match="nothing-here"):
        pc.load_clip(tmp_path / "nothing-here")
