#!/usr/bin/env bash
# One prepared GPU check (see benchmarks/gpu_check.py and docs/scaling.md).
#
# On the GPU machine, from the repo root:   bash benchmarks/gpu_check.sh [gpu_check.py options]
#   Installs the project into the python that holds CUDA torch (no torch reinstall, no index),
#   prints how long that took, then runs gpu_check.py under a hard time limit (GPU_CHECK_LIMIT,
#   default 450 s). Python packages the machine lacks are installed from .whl/ when present.
# Where pip can reach a package index (a dev machine):  bash benchmarks/gpu_check.sh --fetch-wheels
#   Downloads those missing packages as wheels for the GPU machine's python (3.12, x86-64) into
#   .whl/ (git-ignored); carry .whl with the run (device tool: carry [".whl"]).
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
       TOKENIZERS_PARALLELISM=false PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}
# What the GPU image (python 3.12, transformers 5.17, see the device docs) lacks or has in another
# version than the dev machines: rouge-score (+ nltk, defusedxml) is not there at all; transformers
# 5.17 names the KV cache `past_key_values` where 5.24 (what the adapter is written against) says
# `cache`; peft pinned to match; regex because transformers 5.24 checks for >= 2025.10.22 at import.
# Everything else in pyproject is already there.
WHEELS=${GPU_CHECK_WHEELS:-"rouge-score==0.1.2 nltk==3.10.4 defusedxml==0.7.1 transformers==5.24.0 peft==0.21.2 regex==2026.11.19"}

if [ "${1:-}" = "--fetch-wheels" ]; then
    mkdir -p .whl
    grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude 2>/dev/null || true
    plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
    for spec in $WHEELS; do
        # pure-Python wheels match any platform; an sdist-only package (rouge-score) is built here
        $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            $plat -d .whl "$spec" 2>/dev/null || $PY -m pip wheel -q --no-deps -w .whl "$spec" || exit 1
    done
    ls -la .whl
    exit 0
fi

t_start=$(date +%s)
echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
$PY -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.cuda.is_available())" \
    || { echo "gpu_check: '$PY' cannot import torch; set PYTHON to the interpreter that has CUDA torch"; exit 1; }

echo "== install"
t0=$(date +%s.%N)
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-check-site .whl/*.whl \
        || { echo "gpu_check: installing the carried wheels in .whl/ failed (see above)"; exit 1; }
    export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
fi
# --no-deps --no-index: never touch the machine's CUDA torch, never ask an index (there is none);
# --no-build-isolation: build with the setuptools already there. Editable first, plain if that fails.
if ! $PY -m pip install -q --no-deps --no-index --no-build-isolation -e . 2>/tmp/gpu-check-pip.log; then
    echo "(editable install failed, trying a plain one: $(tail -1 /tmp/gpu-check-pip.log))"
    $PY -m pip install -q --no-deps --no-index --no-build-isolation . 2>>/tmp/gpu-check-pip.log \
        || { echo "gpu_check: pip install of the project failed:"; tail -20 /tmp/gpu-check-pip.log; exit 1; }
fi
# Every dependency in pyproject must import; name the missing ones and how to bring them.
$PY - <<'EOF' || exit 1
import importlib.util, sys
need = {"torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers", "accelerate": "accelerate",
        "peft": "peft", "sklearn": "scikit-learn", "scipy": "scipy", "numpy": "numpy", "pluggy": "pluggy",
        "tabulate": "tabulate", "rouge_score": "rouge-score", "nltk": "nltk", "PIL": "pillow", "tqdm": "tqdm",
        "yaml": "pyyaml", "safetensors": "safetensors", "pyarrow": "pyarrow", "matplotlib": "matplotlib",
        "mmu_bench": "mmu-bench (this project)"}
missing = [dist for mod, dist in need.items() if importlib.util.find_spec(mod) is None]
optional = [d for m, d in {"datasets": "datasets", "lm_eval": "lm-eval"}.items() if importlib.util.find_spec(m) is None]
if optional:
    print(f"(not installed, not needed by the check: {', '.join(optional)})")
if missing:
    print(f"gpu_check: missing after install: {', '.join(missing)}. This machine cannot reach an index: on a "
          f"machine that can, run `bash benchmarks/gpu_check.sh --fetch-wheels` and carry .whl/ along.")
    sys.exit(1)
import mmu_bench.evaluate, mmu_bench.methods.cvf  # noqa: E401,F401  the import chain the check uses
import peft, transformers
print(f"imports ok: transformers {transformers.__version__}, peft {peft.__version__}, mmu_bench from "
      f"{mmu_bench.__file__.rsplit('/', 2)[0]}")
EOF
t1=$(date +%s.%N)
echo "install took $(printf '%.1f' "$(echo "$t1 - $t0" | bc 2>/dev/null || $PY -c "print($t1 - $t0)")") s"

echo "== gpu_check.py"
limit=${GPU_CHECK_LIMIT:-450}
budget=$((limit - 30))
timeout --signal=INT --kill-after=20 "$limit" $PY benchmarks/gpu_check.py --budget "$budget" "$@"
rc=$?
[ $rc -eq 124 ] && echo "gpu_check: stopped at the ${limit} s limit"
echo "gpu_check.sh: total $(( $(date +%s) - t_start )) s, exit $rc"
exit $rc
