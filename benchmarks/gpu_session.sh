#!/usr/bin/env bash
# Everything the project measures on the lent GPU machine, in a few calls on one warm machine.
#   bash benchmarks/gpu_session.sh SECTION...    (sections: tests data profile geometry eval vrm refine nearest render models)
# Logs go to $OUT (the device tool brings them back) or out/gpu-session. Wheels the machine lacks
# travel in .whl/ (see /work/.library device README; ../shared/tools/device-wheels.py fetches them).
set -o pipefail
out=${OUT:-out/gpu-session}
mkdir -p "$out"
if [ ! -d /tmp/site ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$out/gpu.txt"
run() { local name=$1; shift; echo "== $name: $*"; timeout "${SECTION_TIMEOUT:-300}" "$@" 2>&1 | tee "$out/$name.log" | tail -25; }
for section in "$@"; do
  case $section in
    profile) run data_profile python3 benchmarks/data_profile.py --device cuda --batch-size 32 --resolution 256 ;;
    tests) run gpu_tests python3 -m pytest -q -m gpu -p no:cacheprovider tests ;;
    data)
      run data_render python3 benchmarks/data_throughput.py render --device cuda --resolution 256 --batch-size 32 --batches 5 --runs 3
      run data_stream python3 benchmarks/data_throughput.py stream --device cuda --resolution 256 --workers 15 --batch-size 32 --batches 6 --runs 3
      run data_stream_pool python3 benchmarks/data_throughput.py stream --device cuda --resolution 256 --workers 15 --batch-size 32 --batches 6 --runs 3 --pool 8
      run data_disk python3 benchmarks/data_throughput.py disk --device cuda --resolution 256 512 --count 4 --runs 2 ;;
    geometry) run geometry python3 benchmarks/geometry_bench.py --device cuda --only flexicubes volume ;;
    eval) run eval python3 benchmarks/eval_bench.py --device cuda ;;
    vrm) run vrm python3 benchmarks/vrm_bench.py --device cuda ;;
    refine)
      run refine python3 benchmarks/refine_bench.py --device cuda --timing-runs 5
      run refine_profile python3 benchmarks/refine_profile.py "${TMPDIR:-/tmp}/stdgen-refine-bench/0900000" --device cuda ;;
    nearest) run nearest python3 benchmarks/nearest_bench.py --device cuda ;;
    models)
      run models_gpu_tests python3 -m pytest -q -m gpu -p no:cacheprovider tests/train tests/models
      run slrm_probe python3 benchmarks/slrm_probe.py --batch-size 8 16 --seconds 40 ;;
    render) run render python3 benchmarks/render_bench.py --device cuda --cases 100k ;;
    *) echo "unknown section $section"; exit 2 ;;
  esac
done
