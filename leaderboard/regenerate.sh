#!/usr/bin/env bash
# Regenerate the whole built-in leaderboard from the committed specs. JOBS (default 2, for 2 cores)
# runs that many runs at a time, one torch thread each: JOBS=16 leaderboard/regenerate.sh on 16 cores.
# Each step is resumable: finished runs and tuning trials are reused, and their metrics.json and
# config.json are committed (runs-leaderboard/), so a regeneration can span sessions. Prints each
# step's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1  # tiny models: one thread per worker
JOBS=${JOBS:-2}
step() { local t0=$SECONDS; echo "== $*"; "$@"; echo "== $(( SECONDS - t0 )) s: $*"; }
METHODS=cvf,ga,ga_diff,kl_min,npo,simnpo,idkdpo,rmu,mmunlearner
step mmu-bench sweep --spec leaderboard/sweep.yaml --jobs "$JOBS"      # default hyper-parameters, both settings: static+mia+attacks on forget_10
step mmu-bench sweep --spec leaderboard/matched.yaml --jobs "$JOBS"    # one stopping rule for all, plus CVF's ablations
step mmu-bench sweep --spec leaderboard/matched450.yaml --jobs "$JOBS" # the same at 450 steps, a budget that truncates no method's schedule
step mmu-bench tune --method "$METHODS" --trials 8 --jobs "$JOBS" --out leaderboard/tuning  # the same budget for every method (JOBS methods at a time)
step mmu-bench sweep --spec leaderboard/tuned.yaml --jobs "$JOBS"      # the tuned rows under the same rule
step mmu-bench sweep --spec leaderboard/scale.yaml --jobs "$JOBS"      # forget_5/15, continual
step mmu-bench leaderboard runs-leaderboard --tuning leaderboard/tuning \
    --title "mmu-bench leaderboard: built-in synthetic benchmark" \
    --out leaderboard/LEADERBOARD.md --out leaderboard/leaderboard.csv --out leaderboard/leaderboard.tex \
    --out leaderboard/leaderboard.html --plots leaderboard/plots
step python benchmarks/metric_meta_eval.py --runs runs-leaderboard --md docs/metric-meta-eval.md
