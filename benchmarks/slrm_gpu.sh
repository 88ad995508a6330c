#!/usr/bin/env bash
# One chunk of S-LRM training on the lent GPU machine: resumes /tmp/slrm-run when it is there (the
# machine's disk keeps it between calls on one warm machine), else starts from scratch or --init.
#   bash benchmarks/slrm_gpu.sh MINUTES [trainer args...]
# Brings back (in $OUT): log.jsonl, run.json, the latest sample grid, the EMA export as fp16 shards.
set -o pipefail
minutes=$1; shift
out=${OUT:-out/slrm-gpu}
mkdir -p "$out"
if [ ! -d /tmp/site ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
run=${SLRM_RUN:-/tmp/slrm-run}
resume=(); [ -f "$run/checkpoint.pt" ] && resume=(--resume)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m stdgen train slrm --preset small -o "$run" --minutes "$minutes" "${resume[@]}" --quiet "$@" 2>&1 \
  | grep -v -i warning | tee "$out/train.log" | tail -n 30
cp "$run/log.jsonl" "$run/run.json" "$out/" 2>/dev/null
cp "$run/images/slrm_latest.png" "$out/" 2>/dev/null
python3 - "$run/export" "$out" <<'PY'
import sys, json
from pathlib import Path
from safetensors.torch import load_file, save_file
src, out = Path(sys.argv[1]), Path(sys.argv[2])
if (src / "model.safetensors").is_file():
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(src / "model.safetensors")).items()}
    keys = sorted(sd)
    half = len(keys) // 2
    for i, part in enumerate((keys[:half], keys[half:])):
        save_file({k: sd[k].contiguous() for k in part}, str(out / f"export_shard{i}.safetensors"))
    (out / "export_config.json").write_text((src / "config.json").read_text())
PY
ls -la "$out"
