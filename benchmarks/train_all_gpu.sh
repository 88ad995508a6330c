#!/usr/bin/env bash
# Train several models at once on the lent one-GPU machine, as detached processes that outlive each
# call (the machine stays held while calls follow each other within its idle window):
#   bash benchmarks/train_all_gpu.sh start MINUTES [WATCH_SECONDS]   launch every task in $TASKS, each
#                                                                   boxed to MINUTES, then watch
#   bash benchmarks/train_all_gpu.sh watch SECONDS                   wait, then report progress
#   bash benchmarks/train_all_gpu.sh finish [DTYPE]                  wait for the runs to end, export
#   bash benchmarks/train_all_gpu.sh stop                            end the runs now (by their pid files: a
#                                                                   `pkill -f` on the command line would also
#                                                                   match the calling shell); finish then
#                                                                   exports their last periodic checkpoint
# Small models leave an H100 mostly idle when trained one at a time (launch- and data-bound), so the
# tasks share it. Each task's run folder is /tmp/train-all/<task> on the machine's disk; a run already
# there is resumed. Tasks: slrm mvdiff mvreg canon segment, and baseline (the multi-view deterministic U-Net of
# benchmarks/mv_baseline.py, left on the machine as baseline/baseline.pt for gpu_eval.sh's mv section).
# Per-task trainer arguments: SLRM_ARGS, MVDIFF_ARGS, CANON_ARGS, SEGMENT_ARGS, BASELINE_ARGS (e.g.
# "--init src/stdgen/weights/slrm --set stage1_step=0"); per-task minutes: SEGMENT_MINUTES etc. A task name
# that is not a trainer task runs the trainer task named by <NAME>_TASK in its own folder (an A/B arm, e.g.
# TASKS="slrm slrm3d" SLRM3D_TASK=slrm SLRM3D_ARGS="--set points3d=4096").
# Brings back (in $OUT): progress.tar (logs, run.json, latest sample grids) and, on finish, one
# <task>.tar per task with its export (config.json + model.safetensors in DTYPE, default int8).
set -o pipefail
cmd=$1; shift
out=${OUT:-out/train-all}
root=${TRAIN_ALL_ROOT:-/tmp/train-all}
tasks=${TASKS:-slrm mvdiff canon segment}
mkdir -p "$out" "$root"
if [ ! -d /tmp/site ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
# Several processes share the GPU: return freed blocks instead of keeping fragmented reserves.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}

# CPU workers per task (the machine has 16 cores for every task's character stream; override one with e.g.
# CANON_WORKERS=8).
workers_of() {
  local var=${1^^}_WORKERS
  if [ -n "${!var}" ]; then echo "${!var}"; return; fi
  case $1 in slrm) echo 5 ;; mvdiff) echo 4 ;; mvreg) echo 14 ;; canon) echo 3 ;; segment) echo 2 ;; baseline) echo 3 ;; *) echo 2 ;; esac
}
task_of() { local var=${1^^}_TASK; echo "${!var:-$1}"; }
workers_key() { [ "$(task_of "$1")" = slrm ] && echo workers || echo stream_workers; }

report() {
  for t in $tasks; do
    local run=$root/$t
    echo "== $t: $(cat "$run/state" 2>/dev/null || echo '?')"
    [ -f "$run/log.jsonl" ] && tail -n 2 "$run/log.jsonl" | cut -c1-600
    grep -v -i warning "$run/train.log" 2>/dev/null | grep -i -E "error|traceback|exception" | tail -n 5
    [ -f "$run/pid" ] && ! kill -0 "$(cat "$run/pid")" 2>/dev/null && echo "(not running)" && tail -n 15 "$run/train.log"
  done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  (cd "$root" && tar -cf "$out/progress.tar" --exclude='*.pt' --exclude='export*' --exclude='events.*' \
      $(for t in $tasks; do echo "$t/log.jsonl $t/run.json $t/train.log $t/images"; done) 2>/dev/null)
  ls -la "$out"
}

case $cmd in
  start)
    minutes=$1; watch=${2:-0}
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    for t in $tasks; do
      run=$root/$t; mkdir -p "$run"
      resume=(); [ -f "$run/checkpoint.pt" ] && resume=(--resume)
      var=${t^^}_ARGS; extra=${!var}
      # A resumed run continues from its own weights: the trainer refuses --init beside --resume.
      [ ${#resume[@]} -gt 0 ] && extra=$(sed -E 's/--init +[^ ]+//' <<< "$extra")
      mvar=${t^^}_MINUTES; m=${!mvar:-$minutes}
      echo "running" > "$run/state"
      # setsid: the run outlives this call; state records how it ended.
      if [ "$t" = baseline ]; then  # issue 14's deterministic U-Net (benchmarks/mv_baseline.py), not a trainer task
        cmdline="python3 benchmarks/mv_baseline.py -o $run --minutes $m --device cuda --workers $(workers_of "$t") $extra"
        pattern="mv_baseline.py -o $run"
      else
        cmdline="python3 -m stdgen train $(task_of "$t") --preset small -o $run --minutes $m ${resume[*]} --quiet \
          --set $(workers_key "$t")=$(workers_of "$t") $extra"
        pattern="stdgen train $(task_of "$t") --preset small -o $run "
      fi
      setsid bash -c "$cmdline > $run/train.log 2>&1; echo \"exit \$?\" > $run/state" < /dev/null > /dev/null 2>&1 &
      sleep 1
      pgrep -n -f "$pattern" > "$run/pid"
      echo "$t: launched ($m min) $extra"
    done
    if [ "$watch" -gt 0 ]; then sleep "$watch"; fi
    report ;;
  watch)
    sleep "${1:-60}"; report ;;
  finish)
    dtype=${1:-int8}
    for t in $tasks; do
      while grep -q running "$root/$t/state" 2>/dev/null; do sleep 5; done
    done
    report
    for t in $tasks; do
      run=$root/$t
      [ -f "$run/checkpoint.pt" ] || continue
      python3 -m stdgen train export "$run" -o "$root/export-$t" --dtype "$dtype" 2>&1 | grep -v -i warning | tail -n 2
      (cd "$root" && tar -cf "$out/$t.tar" "export-$t")
    done
    ls -la "$out" ;;
  stop)
    for t in $tasks; do
      pid=$(cat "$root/$t/pid" 2>/dev/null) && kill "$pid" 2>/dev/null && echo "$t: stopped ($pid)"
      grep -q running "$root/$t/state" 2>/dev/null && echo "stopped" > "$root/$t/state"
    done
    report ;;
  *) echo "usage: $0 start MINUTES [WATCH_SECONDS] | watch SECONDS | finish [DTYPE] | stop"; exit 2 ;;
esac
