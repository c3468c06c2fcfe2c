#!/usr/bin/env bash
# Regenerate the whole built-in leaderboard from the committed specs (2 cores: --jobs 2).
# Each step is resumable: finished runs and tuning trials are reused. Prints each step's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1  # tiny models: one thread per worker, two workers
step() { local t0=$SECONDS; echo "== $*"; "$@"; echo "== $(( SECONDS - t0 )) s: $*"; }
METHODS=cvf,ga,ga_diff,kl_min,npo,simnpo,idkdpo,rmu,mmunlearner
step mmu-bench sweep --spec leaderboard/sweep.yaml --jobs 2      # default hyper-parameters, fixed steps, both settings
step mmu-bench sweep --spec leaderboard/attacks.yaml --jobs 2    # robustness: every method x every attack
step mmu-bench sweep --spec leaderboard/matched.yaml --jobs 2    # one stopping rule for all, plus CVF's ablations
step mmu-bench tune --method "$METHODS" --trials 8 --jobs 2 --out leaderboard/tuning  # the same budget for every method (two methods at a time)
step mmu-bench sweep --spec leaderboard/tuned.yaml --jobs 2      # the tuned rows under the same rule
step mmu-bench leaderboard runs-leaderboard --tuning leaderboard/tuning \
    --title "mmu-bench leaderboard: built-in synthetic benchmark" \
    --out leaderboard/LEADERBOARD.md --out leaderboard/leaderboard.csv --out leaderboard/leaderboard.tex \
    --out leaderboard/leaderboard.html --plots leaderboard/plots
step python benchmarks/metric_meta_eval.py --runs runs-leaderboard --md docs/metric-meta-eval.md
