#!/usr/bin/env bash
# `make gpu-check` on a GPU box with CUDA PyTorch but no PyPI and no venv of ours (issue 12).
# Beforehand, where PyPI is reachable: `make gpu-wheels` (writes .whl/), then copy the checkout with
# .whl/ to the box and run `bash benchmarks/gpu_box.sh` from the repository root there.
# The wheels go into a private folder put first on PYTHONPATH, so the box's own packages stay as
# they are; the project runs from src/ (trial subprocesses inherit PYTHONPATH).
# With $OUT set, the log and the JSON figures (benchmarks/results/gpu-check/) are copied there.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/latentsweep-site}

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl || { echo "gpu_box: installing .whl/ failed"; exit 2; }
    export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
LOG=${OUT:-benchmarks/results/gpu-check}/gpu-check.log
mkdir -p "$(dirname "$LOG")"

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PYTHON" -c "import torch, hydra, optuna, mlflow; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| hydra', hydra.__version__, '| optuna', optuna.__version__, '| mlflow', mlflow.__version__)"
    # time limits so a hang cannot eat a lent GPU's whole budget (the check takes ~3-5 min)
    timeout "${TESTS_TIMEOUT:-150}" "$PYTHON" -m pytest -q -p no:cacheprovider --timeout=120 -m gpu tests
    tests_rc=$?
    timeout "${CHECK_TIMEOUT:-360}" "$PYTHON" -m benchmarks.gpu_check
    bench_rc=$?
    echo "gpu_box: gpu tests exit $tests_rc, gpu_check exit $bench_rc"
    [ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
} 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
[ -n "${OUT:-}" ] && cp benchmarks/results/gpu-check/*.json "$OUT"/ 2>/dev/null
exit "$rc"
