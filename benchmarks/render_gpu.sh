#!/usr/bin/env bash
# The renderer's GPU session in one go (for the lent GPU machine; see BENCHMARKS.md):
# GPU tests of the Triton fast path, then the benchmark side by side with nvdiffrast.
#   bash benchmarks/render_gpu.sh [OUTDIR]
# Wheels the machine lacks (nvdiffrast for the comparison) travel in .whl/.
set -o pipefail
out=${1:-${OUT:-out/render-gpu}}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
# nvdiffrast's plugin is compiled on first use: start that now, alongside the tests.
python3 - >"$out/nvdiffrast_build.log" 2>&1 <<'PY' &
import sys, time
sys.path.insert(0, "benchmarks")
t = time.time()
import render_bench, torch
sc = {"pos": torch.zeros(1, 3, 4, device="cuda"), "tri": torch.zeros(1, 3, dtype=torch.int32, device="cuda"),
      "attr": torch.zeros(3, 3, device="cuda"), "res": 8}
render_bench._nvdiffrast(sc)
print(f"nvdiffrast ready in {time.time() - t:.0f} s")
PY
build=$!
python3 -m pytest -q -m gpu -p no:cacheprovider tests/render/test_gpu.py 2>&1 | tee "$out/gpu_tests.log" | tail -15
python3 -m stdgen render-demo -o "$out" --device cuda 2>&1 | tail -2
wait $build; tail -3 "$out/nvdiffrast_build.log"
python3 benchmarks/render_bench.py --device cuda --cases 100k --reference --nvdiffrast --json "$out/bench_100k.json" 2>&1 | tail -9
python3 benchmarks/render_bench.py --device cuda --cases 1M,5k --nvdiffrast --json "$out/bench_1M.json" 2>&1 | tail -10
if [ -n "$TUNE" ]; then  # TUNE=1: also the launch-shape sweep and a per-kernel profile
  python3 benchmarks/render_tune.py --cases ${TUNE_CASES:-100k,1M,5k} 2>&1 | grep -v "^-\|Self CPU\|Warning\|warn" | tee "$out/tune.log" | cut -c1-60,150-200
fi
