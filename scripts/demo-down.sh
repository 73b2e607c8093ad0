#!/usr/bin/env bash
# `make demo-down`: stops the operator, the emulator and the control plane of `make demo`, and
# removes .demo/. Safe to run when nothing is running.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
demo="$root/.demo"
for p in operator emulator testenv; do
  if [ -f "$demo/$p.pid" ]; then
    pid="$(cat "$demo/$p.pid")"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null
  fi
done
rm -rf "$demo"
echo "demo stopped"
