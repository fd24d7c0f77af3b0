#!/usr/bin/env bash
# Paired hot-path runs of two source trees, alternating so that machine load hits both alike:
#   bench/hotpath.sh BEFORE_TREE AFTER_TREE [ROUNDS] [-- bench/hotpath.py options]
# e.g. git archive <commit> | tar -x -C /tmp/before; bench/hotpath.sh /tmp/before . 5 -- --shape single
# Prints one JSON line per run (tree, shape, CPU seconds per repeat) and, last, the median after/before ratio
# of each round's best repeat. Uses this checkout's .venv and its bench/hotpath.py for both trees.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
before="$(cd "$1" && pwd)"; after="$(cd "$2" && pwd)"; shift 2
rounds=5
if [[ $# -gt 0 && "$1" != "--" ]]; then rounds="$1"; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
script="$(mktemp -d)/hotpath.py"; cp "$here/bench/hotpath.py" "$script"
ratios=()
for ((i = 0; i < rounds; i++)); do
  # the order alternates between rounds
  if ((i % 2)); then order=("$after" "$before"); else order=("$before" "$after"); fi
  declare -A best=()
  for tree in "${order[@]}"; do
    line="$(cd "$tree" && PYTHONPATH="$tree" "$here/.venv/bin/python" "$script" "$@")"
    echo "{\"tree\": \"$tree\", \"run\": $line}"
    best[$tree]="$(python3 -c 'import json,sys; print(min(json.loads(sys.argv[1])["cpu_s"]))' "$line")"
  done
  ratios+=("$(python3 -c "print(${best[$after]} / ${best[$before]})")")
  unset best
done
python3 -c 'import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print(f"after/before: median {statistics.median(r):.3f} over {len(r)} rounds ({min(r):.3f}-{max(r):.3f})")' "${ratios[@]}"
