#!/usr/bin/env bash
# The bundled models' figures on the lent GPU machine, in one call:
#   bash benchmarks/gpu_eval.sh [CHARACTERS] [SECTION...]    (sections: mv canon slrm quant slrm_eval
#   generate; default mv canon slrm generate)
# WEIGHTS_FROM=/tmp/train-all: use the exports train_all_gpu.sh left there; MV_BASELINE=DIR: score the
# deterministic baseline (benchmarks/mv_baseline.py's output folder) beside the diffusion model;
# MV_REGRESSOR=DIR: score a MultiViewRegressor export alone and, with MV_SDEDIT=0.5,0.7, as the start of
# the diffusion sampler.
# mv: benchmarks/mv_eval.py on the held-out test characters at the trained side (128, or MV_RESOLUTION) and steps
# 10, 20; canon: benchmarks/canon_eval.py at steps 10, 20; generate: `stdgen generate` on the shipped
# examples (per-stage seconds and peak memory in each report.json). Results as JSON / PNG in $OUT.
set -o pipefail
n=${1:-50}; shift || true
sections=${*:-mv canon slrm generate}
out=${OUT:-out/gpu-eval}
mkdir -p "$out"
if [ ! -d /tmp/site ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
# Weights trained earlier in this machine's session (train_all_gpu.sh's exports) replace the copies
# bundled in this working tree, for this call only.
if [ -n "$WEIGHTS_FROM" ]; then
  for t in slrm mvdiff mvreg canon segment; do
    [ -f "$WEIGHTS_FROM/export-$t/model.safetensors" ] && mkdir -p "src/stdgen/weights/$t" \
      && cp "$WEIGHTS_FROM/export-$t/"* "src/stdgen/weights/$t/" \
      && echo "weights: $t from $WEIGHTS_FROM/export-$t"
  done
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for s in $sections; do
  case $s in
    mv) timeout "${MV_TIMEOUT:-240}" python3 benchmarks/mv_eval.py --weights src/stdgen/weights/mvdiff --characters "$n" \
          --resolution "${MV_RESOLUTION:-128}" --steps "${MV_STEPS:-10,20}" --batch 10 --device cuda -o "$out/mv_eval.json" \
          ${MV_BASELINE:+--baseline "$MV_BASELINE"} ${MV_REGRESSOR:+--regressor "$MV_REGRESSOR"} \
          ${MV_SDEDIT:+--sdedit "$MV_SDEDIT"} 2>&1 | grep -v -i warn | grep -v "^  *[0-9.-]*,\?$" | tail -n 60 ;;
    canon) timeout "${CANON_TIMEOUT:-200}" python3 benchmarks/canon_eval.py --characters "$n" --steps "${CANON_STEPS:-10,20}" ${CANON_GUIDANCE:+--guidance $CANON_GUIDANCE} --device cuda \
          -o "$out/canon_eval.json" --grid "$out/canon_eval.png" 2>&1 | grep -v -i warn | tail -n 6 ;;
    slrm)  # S-LRM reconstruction time per character on the GPU (true six views of test characters)
      timeout "${SLRM_TIMEOUT:-200}" bash -c "python3 -m stdgen data render --split test --count 10 --resolution 256 \
          --random-views 0 --posed-views 0 --no-face --no-top-bottom -o /tmp/slrm-test --device cuda --quiet --overwrite \
          && python3 -m stdgen reconstruct /tmp/slrm-test -o /tmp/slrm-pred --device cuda --overwrite" 2>&1 \
          | grep -v -i warn | tail -n 4
      python3 - /tmp/slrm-pred "$out/slrm_gpu.json" <<'PY'
import json, sys
from pathlib import Path
rows = {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*/report.json"))}
Path(sys.argv[2]).write_text(json.dumps(rows, indent=2))
for k, r in rows.items():
    print(k, {s: round(v, 3) for s, v in (r.get("seconds") or {}).items()})
PY
      ;;
    quant)  # issue 13's int8 vs fp16 figure: one training checkpoint ($QUANT_RUN) exported both ways, the field
      # of each on the same test characters' true views (the slrm or slrm_eval section renders them first)
      run=${QUANT_RUN:-/tmp/train-all/slrm}
      data=$( [ -d /tmp/slrm-test50 ] && echo /tmp/slrm-test50 || echo /tmp/slrm-test )
      for d in fp16 int8; do
        python3 -m stdgen train export "$run" -o /tmp/quant-$d/slrm --dtype $d 2>&1 | grep -v -i warn | tail -n 1
      done
      timeout "${QUANT_TIMEOUT:-120}" python3 benchmarks/quant_diff.py /tmp/quant-fp16/slrm /tmp/quant-int8/slrm "$data" \
        --characters 10 -o "$out/quant.json" 2>&1 | grep -v -i warn | tail -n 12 ;;
    slrm_eval)  # issue 13's figures for each S-LRM export in $SLRM_EVAL_RUNS (train_all_gpu.sh task names: an
      # A/B of two runs): reconstruct the first N test characters from their true views, score with stdgen eval
      [ -d /tmp/slrm-test50 ] || python3 -m stdgen data render --split test --count "$n" --resolution 256 \
          --random-views 0 --posed-views 0 --no-face --no-top-bottom -o /tmp/slrm-test50 --device cuda --quiet \
          --overwrite 2>&1 | grep -v -i warn | tail -n 2
      for r in ${SLRM_EVAL_RUNS:-slrm}; do
        w=/tmp/slrm-eval-w-$r; rm -rf "$w"; mkdir -p "$w"
        cp -r "${WEIGHTS_FROM:-/tmp/train-all}/export-$r" "$w/slrm"
        timeout "${SLRM_EVAL_TIMEOUT:-200}" python3 -m stdgen reconstruct /tmp/slrm-test50 -o /tmp/slrm-eval-p-$r \
          --weights "$w" --device cuda --overwrite 2>&1 | grep -v -i warn | tail -n 1
        timeout "${SLRM_EVAL_TIMEOUT:-200}" python3 -m stdgen eval /tmp/slrm-eval-p-$r /tmp/slrm-test50 \
          -o "$out/slrm-eval-$r" --overwrite --quiet 2>&1 | grep -v -i warn | tail -n 3
        rm -f "$out/slrm-eval-$r"/*.png
        echo "== $r"; head -n 30 "$out/slrm-eval-$r/summary.md"
      done ;;
    generate)
      ls examples/*.png >/dev/null 2>&1 || { echo "no examples/"; continue; }
      pics=(examples/*.png); [ -d out/ood ] && pics+=(out/ood/*)
      timeout "${GENERATE_TIMEOUT:-240}" python3 -m stdgen generate "${pics[@]}" -o /tmp/gen-gpu --device cuda \
        --overwrite --quiet 2>&1 | grep -v -i warn | tail -n 12
      python3 - /tmp/gen-gpu "$out/generate_gpu.json" <<'PY'
import json, sys
from pathlib import Path
rows = {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*/report.json"))}
Path(sys.argv[2]).write_text(json.dumps(rows, indent=2))
for k, r in rows.items():
    print(k, {s: round(v, 2) for s, v in r.get("seconds", {}).items()}, r.get("peak_memory"))
PY
      (cd /tmp/gen-gpu && tar -cf "$out/generate.tar" */preview.png */views.png */canonical.png */report.json) ;;
    *) echo "unknown section $s"; exit 2 ;;
  esac
done
# PACK=1: everything in one $out/eval.tar (the device brings back at most 8 files).
if [ -n "$PACK" ]; then
  (cd "$out" && tar -cf /tmp/eval.tar --exclude=eval.tar . && rm -rf ./* && mv /tmp/eval.tar eval.tar)
fi
ls -la "$out"
