#!/bin/sh
# run_demo.sh - the main job of `make run`: `ratchet run` over a generated
# set of files, with a deliberately flaky step, then the same run again to
# show the result cache.
#
#   docs/examples/run_demo.sh [RATCHET]     (default: build/cli/ratchet)
#
# 1. Generates 200 files of random text in a temporary directory.
# 2. Runs `sha256sum` on each through a wrapper that fails about 20% of
#    first attempts (exit 75, "temporarily unavailable"), with
#    --retries 3, a result cache in the temporary directory, a job log and
#    the progress line: every task ends ok, some after a retry.
# 3. Runs the same command again: every result comes from the cache and
#    nothing is executed.
# Needs nothing but the ratchet binary and coreutils; cleans up after
# itself.
set -eu

RATCHET=${1:-build/cli/ratchet}
case $RATCHET in
/*) ;;
*) RATCHET=$(pwd)/$RATCHET ;;
esac
if [ ! -x "$RATCHET" ]; then
  echo "run_demo: $RATCHET is not built (make build)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ratchet-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/files"

echo "== generating 200 files in $work/files"
i=1
while [ $i -le 200 ]; do
  head -c $((4096 + i * 97)) /dev/urandom | od -An -tx1 > "$work/files/f$i.txt"
  i=$((i + 1))
done

# The flaky step: fails about one first attempt in five, never the retry
# (a marker file remembers the attempt).
cat > "$work/flaky-sha256" <<'SH'
#!/bin/sh
f=$1
m="$f.tried"
if [ ! -e "$m" ]; then
  : > "$m"
  r=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
  if [ "$r" -lt 51 ]; then
    echo "flaky-sha256: $f: temporarily unavailable" >&2
    exit 75
  fi
fi
sleep 0.01
exec sha256sum "$f"
SH
chmod +x "$work/flaky-sha256"

cd "$work"
ls files/*.txt > inputs
status=0

echo
echo "== first run: ratchet run -j 4 --retries 3 --backoff-base 50ms --cache=DIR --joblog ... --progress"
"$RATCHET" run -j 4 --retries 3 --backoff-base 50ms --cache="$work/cache" \
  --joblog "$work/joblog.tsv" --progress -a inputs \
  ./flaky-sha256 {} > sums1.txt 2> run1.err || status=$?
grep -v '^flaky-sha256' run1.err | tr '\r' '\n' | grep -v '^\s*$' | tail -1
retried=$(awk -F'\t' 'NR > 1 && $10 > 1' joblog.tsv | wc -l)
echo "exit status $status; $(wc -l < sums1.txt) checksums; $retried tasks needed a retry"
echo "job log, first lines:"
head -4 joblog.tsv | cut -f1,4,7,9-11 | sed 's/^/  /'

echo
echo "== second run: the same command, results from the cache"
rm -f files/*.tried
"$RATCHET" run -j 4 --retries 3 --cache="$work/cache" --progress -a inputs \
  ./flaky-sha256 {} > sums2.txt 2> run2.err
tr '\r' '\n' < run2.err | grep -v '^\s*$' | tail -1
if [ -z "$(ls files/*.tried 2>/dev/null)" ]; then
  echo "nothing ran again: every result came from the cache"
fi
if sort sums1.txt | cmp -s - "$(sort sums2.txt > sums2.sorted; echo sums2.sorted)"; then
  echo "the replayed checksums are identical to the first run's"
fi
echo
echo "== a sample: $(head -1 sums2.txt)"
