#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME each (go test's
# -fuzztime: a duration such as 60s, or a count of inputs such as 50000x;
# default 50000x). A count is what CI uses: with a duration, Go 1.26's
# fuzzing coordinator can fail a target with a bare "context deadline
# exceeded" as the time runs out (go.dev/issue/75804, fixed in Go 1.27),
# which happened here once in four CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-50000x}
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
  pkg=./$(dirname "${f#./}")
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r name; do
    echo "== $pkg $name ($t)"
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg"
  done
done
