#!/usr/bin/env bash
# The CUDA paths, checked on the lent GPU machine (device tool, carry gpu_bundle; see gpu_check.sh):
#   1. the CUDA-only tests (fast path = plain layers on channels-last, bf16 autocast) with pytest;
#   2. `c3d-distill train` of a full-size teacher with --amp, stopped after 4 epochs and resumed;
#   3. `c3d-distill distill` of mc4 from it with --amp --compile --teacher-cache.
# gpu_bundle/ must hold the wheel and libs (gpu_check.sh --prepare) and pytest's wheels
# (pip download pytest pluggy iniconfig packaging pygments --no-deps -d gpu_bundle/pytest_wheels).
# The working tree and the carried bundle must fit in 64 MiB together: move gpu_bundle/ucf aside first
# (only gpu_bench.py's read section uses it).
#   DEVICE=cpu bash benches/gpu_tests.sh    # here: the same steps at a tiny size, to check the script
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=gpu_bundle
DEVICE=${DEVICE:-cuda}
OUT_DIR="${OUT:-benches/results}/gpu_tests"
[ "$DEVICE" = cuda ] || OUT_DIR=/tmp/c3d_gpu_tests_smoke
mkdir -p "$OUT_DIR"
if [ "$DEVICE" = cuda ]; then
  libs=/tmp/c3d_gpu/libs pkg=/tmp/c3d_gpu/pkg
  mkdir -p /tmp/c3d_gpu
  [ -d "$libs" ] || tar -C /tmp/c3d_gpu -xJf "$BUNDLE/libs.tar.xz"
  python3 -m pip install -q --no-deps --upgrade --target "$pkg" "$BUNDLE"/*.whl "$BUNDLE"/pytest_wheels/*.whl
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYTHONPATH="$pkg"
  PY=python3 SHAPE=(--width 1 --size 112) AMP=(--amp) THREADS=$(( $(nproc) - 1 ))
else
  PY=.venv/bin/python SHAPE=(--width 0.125 --size 32) AMP=() THREADS=2
fi
cli() { "$PY" -c 'import sys; from c3d_distill.cli import main; raise SystemExit(main(sys.argv[1:]))' "$@"; }
work=$(mktemp -d)
data="synth:$BUNDLE/synth"
common=(--data "$data" --device "$DEVICE" "${AMP[@]}" --threads "$THREADS" --batch-size 32 --no-progress
        "${SHAPE[@]}")

echo "== pytest (CUDA-only tests)"
"$PY" -m pytest -q -p no:cacheprovider tests/models/test_models_fast.py -m gpu 2>&1 | tail -5 | tee "$OUT_DIR/pytest.txt"

echo "== train c3d: 4 epochs, stop, resume to 10"
# SGD with warm-up and clipping: AdamW at 1e-3 without warm-up (the tiny preset's recipe) diverged at
# full width in epoch 1 and left every ReLU dead.
teacher=(--model c3d --out "$work/teacher" --epochs 10 --optimizer sgd --lr 0.003 --warmup-epochs 1
         --clip-grad 5 --dropout 0 --color-permute --clips-per-video 8 "${common[@]}")
t0=$(date +%s)
cli train "${teacher[@]}" --stop-after 4
cli train "${teacher[@]}" --resume
echo "teacher: $(( $(date +%s) - t0 )) s"

echo "== distill mc4 (transfer, feature loss, compile, teacher cache; centre clips, so epochs 2-6 hit the cache)"
t0=$(date +%s)
cli distill --teacher "$work/teacher" --student mc4 --init transfer --loss feature --compile --teacher-cache \
  --out "$work/mc4" --epochs 6 --lr 0.003 --sampler center --crop-mode center --no-flip "${common[@]}"
echo "distill: $(( $(date +%s) - t0 )) s"
for run in teacher mc4; do
  for f in config.json metrics.jsonl eval.json; do
    [ -f "$work/$run/$f" ] && cp "$work/$run/$f" "$OUT_DIR/${run}_$f"
  done
done
"$PY" - "$OUT_DIR" <<'PY'
import json, pathlib, sys
for run in ("teacher", "mc4"):
    f = pathlib.Path(sys.argv[1]) / f"{run}_metrics.jsonl"
    rows = [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []
    print(run, [(r["epoch"], r["split"], round(r["loss"], 4), r.get("top1")) for r in rows if r["split"] != "train"][-4:])
    print(run, "train loss by epoch", [round(r["loss"], 4) for r in rows if r["split"] == "train"])
PY
