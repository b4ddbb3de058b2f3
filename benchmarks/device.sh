#!/usr/bin/env bash
# The first thing to run on any GPU machine (issue 16): install, gsplat's kernels, the CUDA tests,
# then the renderer, ODA and the paper's schedule with the full-size Zero123, with times and peak
# VRAM beside the paper's Table V. Meant to end within 9 minutes on one H100/H200.
#
#   here:   sh benchmarks/device-wheels.sh                    # the wheels the GPU image lacks
#   there:  bash benchmarks/device.sh                         # from the repository root, .whl carried
#
# Every step prints its elapsed time; a failing step is reported and the next one still runs, so one
# call brings back everything that worked. Logs go to $OUT (the device tool brings them back) or
# /tmp/align4d-device.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
logs=${OUT:-/tmp/align4d-device}
mkdir -p "$logs"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
failed=()
step() { # step NAME COMMAND...: run it, log it, note its time and outcome
  local name=$1 t0
  shift
  t0=$(date +%s)
  echo "== $name (at $((t0 - start)) s)"
  if "$@" 2>&1 | tee "$logs/$name.log"; then
    echo "== $name: ok in $(($(date +%s) - t0)) s"
  else
    echo "== $name: FAILED in $(($(date +%s) - t0)) s (log: $name.log)"
    failed+=("$name")
  fi
}

# 1. Install from what the tree carries: the wheels of benchmarks/device-wheels.sh, beside the
#    image's own torch; align4d itself from this checkout (PYTHONPATH, no install step).
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  echo "no .whl/ carried: using what the image has (gsplat and diffusers may be missing)"
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"

# 2. gsplat's CUDA kernels, built once for this card only (its JIT build caches them in
#    TORCH_EXTENSIONS_DIR; the next import loads them).
TORCH_CUDA_ARCH_LIST=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
export TORCH_CUDA_ARCH_LIST MAX_JOBS=${MAX_JOBS:-16} TORCH_EXTENSIONS_DIR=/tmp/torch-extensions
step gsplat-build python3 -c "
import time; t = time.time()
from gsplat.cuda._backend import _C
assert _C is not None, 'gsplat kernels did not build'
print(f'gsplat kernels ready in {time.time() - t:.0f} s')"

# 3. The CUDA tests: gsplat against our CPU renderer on one scene (images and gradients), the
#    metrics' models and the pair models on the GPU.
step cuda-tests python3 -m pytest -q -m cuda -p no:cacheprovider tests/test_render.py tests/test_metrics_models.py tests/test_pairs.py

# 4. The benchmarks: renderer, ODA, then the paper's schedule (500 steps, 256 px, full-size
#    random-weight Zero123-XL; benchmarks/zero123_full.py) with time and peak VRAM beside Table V.
step render python3 benchmarks/render.py --quick
step oda python3 benchmarks/oda.py --reps 5
step schedule python3 benchmarks/optimize.py --zero123-size full --device cuda

echo "== done in $(($(date +%s) - start)) s (goal: 540 s)${failed:+; failed: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
