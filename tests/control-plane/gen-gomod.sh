#!/usr/bin/env bash
# Prints the go/godebug lines and the replace block that map every Kubernetes staging module
# from v0.0.0 to its published version, read from the exact upstream go.mod (never typed by hand).
# usage: gen-gomod.sh [v1.37.2]   (etcd pin on stderr)
set -euo pipefail
k8s="${1:-v1.37.2}"
staging="v0.${k8s#v1.}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"
upstream="$(GOTOOLCHAIN=local GOWORK=off go mod download -json "k8s.io/kubernetes@${k8s}" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
grep -E '^(go|godebug) ' "$upstream"
echo 'replace ('
grep -E '^[[:space:]]+k8s\.io/[^ ]+ v0\.0\.0([[:space:]]+//.*)?$' "$upstream" \
  | awk -v v="$staging" '{ printf "\t%s => %s %s\n", $1, $1, v }'
echo ')'
grep -E 'go\.etcd\.io/etcd/server/v3 ' "$upstream" >&2 || true
