#!/usr/bin/env bash
# The canonicalisation model on the lent GPU machine: its CUDA test, a short real training run of the
# small preset (the on-the-fly posed-pair stream included) and the sampling time per image.
#   bash benchmarks/canon_gpu.sh STEPS [trainer args...]
# Brings back (in $OUT): train.log, log.jsonl, run.json, the sample grid, timing.txt.
set -o pipefail
steps=${1:-60}; shift
out=${OUT:-out/canon-gpu}
mkdir -p "$out"
if [ ! -d /tmp/site ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/timing.txt"
timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider tests/models/test_canonical.py 2>&1 | tail -5
run=${CANON_RUN:-/tmp/canon-run}
resume=(); [ -f "$run/checkpoint.pt" ] && resume=(--resume)
python3 -m stdgen train canon --preset small -o "$run" --steps "$steps" "${resume[@]}" --quiet "$@" 2>&1 \
  | grep -v -i warning | tee "$out/train.log" | tail -n 25
cp "$run/log.jsonl" "$run/run.json" "$out/" 2>/dev/null
ls "$run/images" 2>/dev/null | tail -3
cp "$(ls -t "$run"/images/*.png 2>/dev/null | head -1)" "$out/samples.png" 2>/dev/null
python3 - "$run/export" <<'PY' 2>&1 | grep -v -i warning | tee -a "$out/timing.txt"
import sys, time, torch
from stdgen.models.canonical import Canonicalizer
m = Canonicalizer.from_pretrained(sys.argv[1], device="cuda")
img = torch.rand(4, 512, 384)
for steps, g in ((20, 1.0), (20, 2.0), (30, 2.0)):
    m.canonicalize(img, seed=0, steps=steps, guidance=g)
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(3):
        m.canonicalize(img, seed=0, steps=steps, guidance=g)
    torch.cuda.synchronize()
    print(f"canonicalize 128 px, {steps} steps, guidance {g}: {(time.perf_counter() - t) / 3 * 1000:.0f} ms per image")
t = time.perf_counter()
for _ in range(20):
    m.is_a_pose(img)
torch.cuda.synchronize()
print(f"is_a_pose: {(time.perf_counter() - t) / 20 * 1000:.1f} ms per image")
PY
