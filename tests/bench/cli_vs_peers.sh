#!/bin/sh
# cli_vs_peers.sh - `ratchet run` against xargs -P and GNU parallel, side by
# side in one run, on this machine.
#
#   tests/bench/cli_vs_peers.sh [BUILD_DIR]      (default: build)
#
# 1. `true` over 1,000 inputs with 2 jobs: ratchet run -j2, xargs -P2 -n1,
#    parallel --will-cite -j2. Best of 3 wall-clock times each.
# 2. Plugin throughput: ratchet run --plugin (the test plugin's "upper"
#    kind, an in-process handler that does almost nothing) over 100,000
#    inputs with 2 workers; best of 3.
# Goals (docs/benchmarks.md): ratchet no slower than xargs, at least 4x
# faster than GNU parallel. The table is printed; nothing is asserted.
set -eu

BUILD=${1:-build}
RATCHET=$BUILD/cli/ratchet
PLUGIN=$BUILD/tests/cli/ratchet-test-plugin.so
N=1000
NP=100000
[ -x "$RATCHET" ] || { echo "cli_vs_peers: build $RATCHET first" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cli-vs-peers.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
seq $N > "$tmp/in"
seq $NP > "$tmp/in-plugin"

# best_of3 CMD...: the best wall time of three runs, in seconds (stdin from
# $tmp/in, output discarded).
best_of3() {
  best=""
  for _ in 1 2 3; do
    t0=$(date +%s.%N)
    "$@" < "$tmp/in" > /dev/null 2>&1 || true
    t1=$(date +%s.%N)
    t=$(echo "$t1 - $t0" | bc)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then
      best=$t
    fi
  done
  echo "$best"
}

row() { # name seconds tasks
  printf '| %-34s | %8.3f s | %9.3f ms | %10.0f |\n' "$1" "$2" \
    "$(echo "$2 * 1000 / $3" | bc -l)" "$(echo "$3 / $2" | bc -l)"
}

echo "true x $N inputs, 2 jobs, best of 3 ($(nproc) CPUs)"
echo
echo "| runner                             |     wall   |   per task   |  tasks/s   |"
echo "| ---------------------------------- | ---------- | ------------ | ---------- |"
t_r=$(best_of3 "$RATCHET" run -j2 --quiet true)
row "ratchet run -j2 true" "$t_r" $N
t_x=$(best_of3 xargs -P2 -n1 true)
row "xargs -P2 -n1 true" "$t_x" $N
if command -v parallel > /dev/null 2>&1; then
  t_p=$(best_of3 parallel --will-cite -j2 true)
  row "parallel --will-cite -j2 true" "$t_p" $N
else
  t_p=""
  echo "| parallel --will-cite -j2 true      | (not installed: apt-get install parallel) |"
fi

best=""
for _ in 1 2 3; do
  t0=$(date +%s.%N)
  "$RATCHET" run -j2 --quiet --plugin "$PLUGIN" --kind upper \
    -a "$tmp/in-plugin" > /dev/null
  t1=$(date +%s.%N)
  t=$(echo "$t1 - $t0" | bc)
  if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
done
row "ratchet run -j2 --plugin (x$NP)" "$best" $NP

echo
printf 'ratchet vs xargs: %.2fx the speed (goal >= 1)\n' \
  "$(echo "$t_x / $t_r" | bc -l)"
if [ -n "$t_p" ]; then
  printf 'ratchet vs GNU parallel: %.2fx the speed (goal >= 4)\n' \
    "$(echo "$t_p / $t_r" | bc -l)"
fi
