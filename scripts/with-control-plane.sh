#!/usr/bin/env bash
# Runs a command with one real control plane (kube-apiserver + etcd) for its whole duration:
# builds it if needed, starts `testenv up --audit`, exports TESTENV_DIR and TESTENV_BIN_DIR, runs
# the command, and stops the control plane whatever happens.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$("$root/tests/control-plane/build.sh" | tail -n1)"
dir="$(mktemp -d "${TMPDIR:-/tmp}/gao-testenv.XXXXXX")"
rmdir "$dir" # testenv creates it
"$bin/testenv" up --audit --dir "$dir" > "$dir.out" &
pid=$!
stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$dir.out"; }
trap stop EXIT
# Wait for testenv's ready line (it prints one JSON line, or exits on failure).
for _ in $(seq 1 600); do
  if [ -s "$dir.out" ]; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "testenv failed to start; see above" >&2; exit 1; fi
  sleep 0.2
done
grep -q '"ready":true' "$dir.out" || { echo "testenv not ready: $(cat "$dir.out")" >&2; exit 1; }
export TESTENV_DIR="$dir" TESTENV_BIN_DIR="$bin" PATH="$bin:$PATH"
"$@"
