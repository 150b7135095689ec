#!/usr/bin/env bash
# GPU figures in one call on a machine with one NVIDIA GPU.
#
# That machine has Python 3.12 and its own CUDA PyTorch but no Rust toolchain, no FFmpeg and no network,
# so the build travels with the working tree in gpu_bundle/ (git-ignored):
#   bash benches/gpu_check.sh --prepare    # here: abi3 wheel, the FFmpeg shared libraries it links,
#                                          # the "ucf" workload videos and a small synthetic set
#   bash benches/gpu_check.sh              # there (device tool, carry gpu_bundle): install + measure
#   bash benches/gpu_check.sh --smoke      # here: the same script on the CPU, tiny, to check it
# Arguments after the mode go to benches/gpu_bench.py (e.g. --models c3d,mc4 --sections inference);
# then benches/bench_train.py measures loader / step / run on the card (NO_TRAIN_RUN=1 skips it).
# Results: $OUT/gpu/gpu.json and gpu.md (or benches/results/gpu/ without $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=gpu_bundle

prepare() {
  local venv=.venv/bin
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE"
  # A separate target dir: the wheel build must not fight a developer's `maturin develop` for the lock.
  CARGO_TARGET_DIR=target/gpu-wheel "$venv/maturin" build --release --auditwheel skip -q -o "$BUNDLE"
  local so
  so=$(ls target/gpu-wheel/maturin/*.so 2>/dev/null | head -n 1 || true)
  [ -n "$so" ] || so=python/c3d_distill/_native.abi3.so
  # Every shared library the extension needs, except the C runtime the other machine has anyway.
  mkdir -p "$BUNDLE/libs"
  ldd "$so" | awk '{print $3}' | grep -v -E '^$|/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s)\.so' \
    | xargs -I{} cp -L {} "$BUNDLE/libs/"
  # -9e: everything carried to the GPU machine must fit in 64 MiB.
  XZ_OPT=-9e tar -C "$BUNDLE" -cJf "$BUNDLE/libs.tar.xz" libs && rm -rf "$BUNDLE/libs"
  # The "ucf" workload: 320x240 25 fps MPEG-4 AVI, keyframe every 12 frames.
  mkdir -p "$BUNDLE/ucf"
  for i in $(seq 0 11); do
    ffmpeg -v error -y -f lavfi -i "testsrc2=size=320x240:rate=25,hue=h=$((i * 20))" -t 5 \
      -c:v mpeg4 -q:v 5 -g 12 "$BUNDLE/ucf/v$i.avi"
  done
  # A small synthetic action set (the demo's data, fewer videos) for the end-to-end distillation.
  "$venv/c3d-distill" data synth "$BUNDLE/synth" --classes 10 --videos-per-class 8 --duration 2 2.5 --seed 0 --quiet
  du -sh "$BUNDLE"
}

device_run() {
  local extra=("$@")
  local libs=/tmp/c3d_gpu/libs pkg=/tmp/c3d_gpu/pkg
  mkdir -p /tmp/c3d_gpu
  [ -d "$libs" ] || tar -C /tmp/c3d_gpu -xJf "$BUNDLE/libs.tar.xz"
  python3 -m pip install -q --no-deps --upgrade --target "$pkg" "$BUNDLE"/*.whl
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYTHONPATH="$pkg"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  local out="${OUT:-benches/results}/gpu"
  python3 benches/gpu_bench.py --out "$out" --ucf-dir "$BUNDLE/ucf" --synth-dir "$BUNDLE/synth" "${extra[@]}"
  # Training throughput on the card: loader alone, step alone and the run together, at the
  # full size (the CPU of this machine decodes; one core is left to the training loop).
  if [ -z "${NO_TRAIN_RUN:-}" ]; then
    python3 benches/bench_train.py --preset full --device cuda --dataset "synth:$BUNDLE/synth" \
      --students "${TRAIN_STUDENTS:-mc4}" --clips-per-video 8 --threads $(( $(nproc) - 1 )) \
      --steps 20 --reps 2 --out "$out/train_cuda.json"
  fi
}

case "${1:-}" in
  --prepare) prepare ;;
  --smoke) shift; .venv/bin/python benches/gpu_bench.py --smoke --out /tmp/gpu_smoke \
             --ucf-dir "$BUNDLE/ucf" --synth-dir "$BUNDLE/synth" "$@" ;;
  *) device_run "$@" ;;
esac
