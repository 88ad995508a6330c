"""Issue 15's figures on held-out test characters: each character drawn in a random pose from a
random camera (the test split's fixed pairs, half of the inputs A-posed) -> the canonicaliser's A-pose
front against the true A-pose front render: SSIM / PSNR / foreground PSNR / silhouette IoU over the
posed inputs, the same for "return the posed input" (the floor the issue quotes) and for "return the
input re-framed" (``Canonicalizer.frame_reference``; for the A-posed inputs nearly the answer, so it
shows what the model loses of a picture it only has to copy), the A-pose check's accuracy over all
inputs, and seconds per picture.

    python benchmarks/canon_eval.py --characters 50 --steps 10,20 --device cuda -o canon_eval.json \\
        [--weights WEIGHTS_DIR] [--grid canon_eval.png] [--split validation]

``--weights`` is a folder holding ``config.json`` + ``model.safetensors``, or a ``--weights``-style root
with ``canon/`` in it (default: the bundled weights).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def test_pairs(count: int, device, split: str = "test") -> dict[str, torch.Tensor]:
    """The first ``count`` held-out characters of ``split`` as ``ref`` ``(N, 4, R, R)`` posed pictures, ``target``
    ``(N, 4, R, R)`` A-pose fronts (both RGB over white + alpha in [0, 1]) and ``is_apose`` ``(N,)``."""
    from stdgen.data.stream import RenderStream
    from stdgen.train.tasks.canon import CanonTask, reference_from_stream, small, target_from_stream

    task = CanonTask(small())
    refs, targets, flags = [], [], []
    for raw in RenderStream(task.stream_config(split=split, count=count, batch_size=min(count, 10), device=device)):
        refs.append(reference_from_stream(raw).cpu())
        targets.append(target_from_stream(raw).cpu())
        flags.append(raw["posed_is_apose"].cpu())
    return {"ref": torch.cat(refs), "target": torch.cat(targets), "is_apose": torch.cat(flags)}


def mean_metrics(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    from stdgen.train.tasks.canon import canon_metrics

    return {k: float(torch.nanmean(v).item()) for k, v in canon_metrics(pred, true).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--characters", type=int, default=50)
    ap.add_argument("--split", choices=("test", "validation"), default="test",
                    help="validation: choose between runs there; test: report")
    ap.add_argument("--steps", default="20", help="comma-separated sampler steps")
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("-o", "--output", default=None)
    ap.add_argument("--grid", default=None, help="write input | generated | true rows of the first 8 posed pairs")
    args = ap.parse_args(argv)

    from stdgen.models.canonical import Canonicalizer
    from stdgen.weights import find_weights

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    folder = Path(args.weights) if args.weights and (Path(args.weights) / "config.json").is_file() else \
        find_weights("canon", args.weights)
    model = Canonicalizer.from_pretrained(folder, device=device)
    pairs = test_pairs(args.characters, device, args.split)
    ref, true, is_apose = pairs["ref"], pairs["target"], pairs["is_apose"]
    posed = ~is_apose
    result = {"characters": args.characters, "split": args.split, "posed_inputs": int(posed.sum()),
              "device": str(device), "weights": str(folder),
              "posed_input_as_answer": mean_metrics(ref[posed], true[posed])}
    with torch.no_grad():
        prob = model.pose_scores(ref.to(device))[:, 0].cpu()
        framed = (model.frame_reference(ref.to(device) * 2 - 1).float().cpu() + 1) / 2
    result["reframed_input_as_answer"] = {"posed": mean_metrics(framed[posed], true[posed]),
                                          "apose_inputs": mean_metrics(framed[is_apose], true[is_apose])
                                          if is_apose.any() else {}}
    result["apose_check_accuracy"] = float(((prob >= model.config.check_threshold) == is_apose).float().mean())
    for steps in [int(s) for s in args.steps.split(",")]:
        outs, seconds = [], 0.0
        for i in range(0, ref.shape[0], args.batch):
            t = time.perf_counter()
            outs.append(model.sample(ref[i:i + args.batch].to(device), seed=i, steps=steps,
                                     guidance=args.guidance).float().cpu())
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t
        pred = torch.cat(outs)
        row = mean_metrics(pred[posed], true[posed])
        row["apose_inputs"] = mean_metrics(pred[is_apose], true[is_apose]) if is_apose.any() else {}
        row["seconds_per_picture_batched"] = seconds / ref.shape[0]
        result[f"steps_{steps}"] = row
        print(f"steps {steps}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
        if args.grid and steps == int(args.steps.split(",")[-1]):
            from PIL import Image

            from stdgen.train.tasks.canon import sample_grid

            idx = torch.nonzero(posed)[:8, 0]
            grid = sample_grid(ref[idx], pred[idx], true[idx])[0]
            Image.fromarray((grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(args.grid)
    print("posed input as the answer: " + ", ".join(f"{k} {v:.3f}" for k, v in result["posed_input_as_answer"].items()))
    for k, v in result["reframed_input_as_answer"].items():
        print(f"re-framed input as the answer ({k}): " + ", ".join(f"{m} {x:.3f}" for m, x in v.items()))
    print(f"A-pose check accuracy {result['apose_check_accuracy']:.3f}")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
