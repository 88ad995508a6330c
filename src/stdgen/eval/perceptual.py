"""Learned image metrics from LOCAL weights only: LPIPS, FID features, CLIP similarity.

Nothing is downloaded. Each metric is computed only when the user points the evaluator at a
weights file or directory; otherwise the report says "not computed".

LPIPS (Zhang et al. 2018), our own torch implementation: the image pair goes through a VGG-16
or AlexNet feature stack (chosen by the weights), the activations at five taps are normalised
to unit length over channels, their squared differences are weighted per channel by the
non-negative "linear" layers, averaged over space and summed over taps. Weights are a state dict
(``.pth``/``.pt`` or ``.safetensors``), or a directory whose state dicts are merged (e.g. the
LPIPS linear layers and the backbone in separate files). Accepted key names: those of the
reference LPIPS module (``net.slice{1..5}.{i}.weight``/``.bias``, ``lin{0..4}.model.1.weight``,
optional ``scaling_layer.shift``/``.scale``), or torchvision-style backbone keys
(``features.{i}.weight``/``.bias``; ``classifier.*`` is ignored). Missing keys and unknown keys
are errors that list them. Channel counts come from the weights, so tiny test networks work.

FID (Heusel et al. 2017): Frechet distance between Gaussians fitted to Inception features of two
image sets. Features come from a local TorchScript file (or a ``torch.export`` ``.pt2`` program).
Two calling conventions: a TorchScript module whose
``forward`` takes ``return_features`` (the StyleGAN3 metrics Inception) gets uint8 images
``(N, 3, H, W)`` and resizes them itself; any other module gets float images in [0, 1] resized
to 299 x 299 and must return ``(N, D)`` features.

CLIP similarity: cosine similarity of CLIP image embeddings, with ``transformers`` (optional
import) loading ``CLIPModel`` from a local directory (``local_files_only``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stdgen.errors import InputError, StdgenError

#: Value written in reports for a learned metric whose weights were not given.
NOT_COMPUTED = "not computed"

# Fixed input normalisation of LPIPS (inputs scaled to [-1, 1] first).
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)

# Layer layouts of the two backbones as (kind, torchvision index, kernel, stride, padding), and
# the torchvision index after which each of the five slices ends (the LPIPS taps are ReLU outputs).
_VGG16 = ("c", "r", "c", "r", "p", "c", "r", "c", "r", "p", "c", "r", "c", "r", "c", "r", "p",
          "c", "r", "c", "r", "c", "r", "p", "c", "r", "c", "r", "c", "r")  # fmt: skip
_VGG16_SLICES = (4, 9, 16, 23, 30)
_ALEX = ("c", "r", "p", "c", "r", "p", "c", "r", "c", "r", "c", "r")
_ALEX_SLICES = (2, 5, 8, 10, 12)
_ALEX_CONV = {0: (11, 4, 2), 3: (5, 1, 2), 6: (3, 1, 1), 8: (3, 1, 1), 10: (3, 1, 1)}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file, or all such files of a
    directory merged (a key in two files is an error)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".pt", ".bin"))
        if not files:
            raise InputError(f"{path}: no .safetensors / .pth / .pt / .bin weight files in this directory")
        merged: dict[str, torch.Tensor] = {}
        for f in files:
            sd = load_state_dict(f)
            twice = sorted(set(sd) & set(merged))
            if twice:
                raise InputError(f"{f}: keys also found in another file of {path}: {twice[:5]}")
            merged.update(sd)
        return merged
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # many formats, many failure kinds: report them as one input error
        raise InputError(f"{path}: unreadable weights ({type(exc).__name__}: {exc})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return dict(sd)


# -- LPIPS -------------------------------------------------------------------------------------------
class LPIPS(nn.Module):
    """LPIPS distance network built from a state dict (see the module docstring for key names).

    ``forward(a, b)`` takes ``(B, H, W, 3)`` images in [0, 1] and returns ``(B,)`` distances
    (0 for identical images). Use :func:`load_lpips` to build one from a file.
    """

    def __init__(self, state: dict[str, torch.Tensor], source: str = "<state dict>") -> None:
        super().__init__()
        backbone, lins, extra = _split_lpips_keys(state, source)
        first = backbone.get("0.weight")
        if first is None:
            raise InputError(f"{source}: missing backbone key for the first convolution "
                             "('net.slice1.0.weight' or 'features.0.weight')")
        kind = "alex" if first.shape[-1] == 11 else "vgg"
        layout, ends = (_ALEX, _ALEX_SLICES) if kind == "alex" else (_VGG16, _VGG16_SLICES)
        self.kind = kind
        expected = {f"{i}.{p}" for i, k in enumerate(layout) if k == "c" for p in ("weight", "bias")}
        missing = sorted(expected - set(backbone), key=_natural)
        unexpected = sorted(set(backbone) - expected, key=_natural)
        if missing or unexpected:
            raise InputError(f"{source}: LPIPS {kind} backbone keys do not match: missing {missing[:8]}, "
                             f"unexpected {unexpected[:8]}")
        self.slices = nn.ModuleList()
        start = 0
        tap_channels = []
        channels = 3
        for end in ends:
            layers = []
            for i in range(start, end):
                if layout[i] == "c":
                    w = backbone[f"{i}.weight"]
                    k, s, p = _ALEX_CONV[i] if kind == "alex" else (3, 1, 1)
                    if w.shape[1] != channels or w.shape[-1] != k:
                        raise InputError(f"{source}: layer {i} weight has shape {tuple(w.shape)}, expected "
                                         f"(*, {channels}, {k}, {k})")
                    conv = nn.Conv2d(w.shape[1], w.shape[0], k, stride=s, padding=p)
                    with torch.no_grad():
                        conv.weight.copy_(w)
                        conv.bias.copy_(backbone[f"{i}.bias"])
                    channels = w.shape[0]
                    layers.append(conv)
                elif layout[i] == "r":
                    layers.append(nn.ReLU())
                else:
                    layers.append(nn.MaxPool2d(3, 2) if kind == "alex" else nn.MaxPool2d(2, 2))
            self.slices.append(nn.Sequential(*layers))
            tap_channels.append(channels)
            start = end
        missing = [f"lin{t}.model.1.weight" for t in range(5) if t not in lins]
        if missing:
            raise InputError(f"{source}: missing LPIPS linear-layer keys {missing}")
        self.lins = nn.ParameterList()
        for t in range(5):
            w = lins[t].reshape(-1)
            if w.numel() != tap_channels[t]:
                raise InputError(f"{source}: lin{t} has {w.numel()} weights for {tap_channels[t]} channels")
            self.lins.append(nn.Parameter(w.clone().float(), requires_grad=False))
        shift = extra.get("shift", torch.tensor(_LPIPS_SHIFT)).reshape(1, 3, 1, 1).float()
        scale = extra.get("scale", torch.tensor(_LPIPS_SCALE)).reshape(1, 3, 1, 1).float()
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)
        self.requires_grad_(False)
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` in [-1, 1] -> the five unit-normalised tap activations."""
        h = (x - self.shift) / self.scale
        taps = []
        for s in self.slices:
            h = s(h)
            taps.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return taps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = self.features(a.permute(0, 3, 1, 2).float() * 2 - 1)
        fb = self.features(b.permute(0, 3, 1, 2).float() * 2 - 1)
        total = 0
        for t, (x, y) in enumerate(zip(fa, fb)):
            d = (x - y).pow(2) * self.lins[t].view(1, -1, 1, 1)
            total = total + d.sum(1).mean((1, 2))
        return total


def _natural(key: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _split_lpips_keys(state: dict[str, torch.Tensor], source: str):
    """Sort keys into backbone (torchvision index -> tensor as ``"{i}.weight"``), linear layers and the
    scaling constants; unknown keys are an error."""
    backbone: dict[str, torch.Tensor] = {}
    lins: dict[int, torch.Tensor] = {}
    extra: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        m = re.fullmatch(r"(?:net\.slice\d|features)\.(\d+)\.(weight|bias)", key)
        if m:
            name = f"{m.group(1)}.{m.group(2)}"
            if name in backbone:
                raise InputError(f"{source}: backbone layer {name} given twice")
            backbone[name] = value
            continue
        m = re.fullmatch(r"lin(\d)\.model\.1\.weight", key)
        if m:
            lins[int(m.group(1))] = value
            continue
        m = re.fullmatch(r"scaling_layer\.(shift|scale)", key)
        if m:
            extra[m.group(1)] = value
            continue
        if key.startswith("classifier."):  # a torchvision classifier head: not part of LPIPS
            continue
        unknown.append(key)
    if unknown:
        raise InputError(f"{source}: unexpected keys for an LPIPS network: {sorted(unknown, key=_natural)[:8]}")
    return backbone, lins, extra


def load_lpips(path: str | Path, device: str | torch.device = "cpu") -> LPIPS:
    """An :class:`LPIPS` network from a local weights file or directory."""
    return LPIPS(load_state_dict(path), str(path)).to(device)


@torch.no_grad()
def lpips_distance(model: LPIPS, a: torch.Tensor, b: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """``(B,)`` LPIPS of ``(B, H, W, 3)`` image pairs in [0, 1], in chunks of ``batch``."""
    dev = next(model.parameters()).device
    out = [model(a[i:i + batch].to(dev), b[i:i + batch].to(dev)).double().cpu() for i in range(0, len(a), batch)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


# -- FID ---------------------------------------------------------------------------------------------
@dataclass
class InceptionFeatures:
    """A local TorchScript feature network for FID (see the module docstring for conventions)."""

    module: torch.nn.Module
    stylegan_convention: bool
    device: torch.device
    size: int = 299

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch: int = 16) -> np.ndarray:
        """``(N, H, W, 3)`` images in [0, 1] -> ``(N, D)`` float64 features."""
        feats = []
        for i in range(0, len(images), batch):
            x = images[i:i + batch].to(self.device).permute(0, 3, 1, 2).float().clamp(0, 1)
            if self.stylegan_convention:
                f = self.module((x * 255 + 0.5).to(torch.uint8), return_features=True)
            else:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                  antialias=True)
                f = self.module(x)
            if isinstance(f, tuple | list):
                f = f[0]
            feats.append(f.reshape(f.shape[0], -1).double().cpu().numpy())
        return np.concatenate(feats) if feats else np.zeros((0, 0))


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> InceptionFeatures:
    """Load a feature network for FID from a local file: TorchScript (``.pt``/``.pth``/``.jit``), or a
    ``torch.export`` program (``.pt2``, the generic float-input convention)."""
    import warnings

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such feature-network file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what such files are
            if path.suffix == ".pt2":
                module = torch.export.load(str(path)).module().to(device)
            else:
                module = torch.jit.load(str(path), map_location=device).eval()
    except Exception as exc:  # TorchScript / export raise RuntimeError and friends on a bad file
        raise InputError(f"{path}: not a TorchScript or exported module ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None
    try:
        args = [a.name for a in module.forward.schema.arguments]
    except AttributeError:
        args = []
    return InceptionFeatures(module, "return_features" in args, torch.device(device))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased) of ``(N, D)`` features; N >= 2."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"gaussian_stats: need at least 2 feature vectors, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``, the Frechet distance of two Gaussians."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    s1, s2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        # Singular products (fewer samples than dimensions): regularise, as is customary.
        offset = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets ``(N, D)``, ``(M, D)``."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


# -- CLIP --------------------------------------------------------------------------------------------
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipImageEncoder:
    """CLIP image embeddings from a local ``transformers`` CLIPModel directory."""

    def __init__(self, directory: str | Path, device: str | torch.device = "cpu") -> None:
        directory = Path(directory)
        if not directory.is_dir():
            raise InputError(f"{directory}: --clip-weights must be a directory holding a transformers CLIP model")
        try:
            from transformers import CLIPModel
        except ImportError:
            raise StdgenError("CLIP similarity needs the optional 'transformers' package "
                              "(pip install transformers); or leave out --clip-weights") from None
        try:
            model, info = CLIPModel.from_pretrained(str(directory), local_files_only=True, output_loading_info=True)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{directory}: cannot load a CLIP model ({type(exc).__name__}: {str(exc)[:200]})") \
                from None
        missing = sorted(k for k in info.get("missing_keys", ()) if "vision" in k or "visual" in k)
        if missing or info.get("mismatched_keys"):
            raise InputError(f"{directory}: CLIP weights incomplete: missing {missing[:8]}, "
                             f"mismatched {sorted(info.get('mismatched_keys', ()))[:8]}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.size = int(model.config.vision_config.image_size)
        mean, std = _CLIP_MEAN, _CLIP_STD
        pre = directory / "preprocessor_config.json"
        if pre.is_file():
            import json

            cfg = json.loads(pre.read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """``(N, H, W, 3)`` images in [0, 1] -> ``(N, D)`` unit embeddings (float64, CPU).

        Images are resized (shorter side to the model's size, bicubic) and centre-cropped, then
        normalised with CLIP's mean and std.
        """
        out = []
        for i in range(0, len(images), batch):
            x = images[i:i + batch].to(self.device).permute(0, 3, 1, 2).float().clamp(0, 1)
            h, w = x.shape[-2:]
            scale = self.size / min(h, w)
            nh, nw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
            top, left = (nh - self.size) // 2, (nw - self.size) // 2
            x = x[..., top:top + self.size, left:left + self.size]
            x = (x - self.mean) / self.std
            vision = self.model.vision_model(pixel_values=x)
            emb = self.model.visual_projection(vision.pooler_output)
            out.append(F.normalize(emb.double(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 0, dtype=torch.float64)


def load_clip(directory: str | Path, device: str | torch.device = "cpu") -> ClipImageEncoder:
    return ClipImageEncoder(directory, device)


def clip_similarity(encoder: ClipImageEncoder, reference: torch.Tensor, images: torch.Tensor) -> float:
    """Mean cosine similarity between one ``(H, W, 3)`` reference image and each of ``(N, H, W, 3)`` images."""
    e = encoder(torch.cat([reference[None], images]))
    return float((e[1:] @ e[0]).mean())


@dataclass
class PerceptualModels:
    """The learned metrics the user supplied weights for (``None`` = not computed)."""

    lpips: LPIPS | None = None
    inception: InceptionFeatures | None = None
    clip: ClipImageEncoder | None = None

    @classmethod
    def load(cls, lpips: str | Path | None = None, inception: str | Path | None = None,
             clip: str | Path | None = None, device: str | torch.device = "cpu") -> PerceptualModels:
        return cls(load_lpips(lpips, device) if lpips else None,
                   load_inception(inception, device) if inception else None,
                   load_clip(clip, device) if clip else None)
