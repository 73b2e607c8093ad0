#!/usr/bin/env bash
# cargo deny with the advisory database read from a local copy (fetching is impossible here).
# usage: cargo-deny.sh <advisory-db copy> <db-path for cargo-deny>
set -euo pipefail
src="$1"; dbs="$2"
[ -d "$src/crates" ] || { echo "cargo-deny.sh: no advisory database at $src" >&2; exit 1; }
mkdir -p "$dbs"
# cargo-deny looks for each database in a directory named after its URL; link the local copy
# under the name it expects for the default RustSec URL.
name="$(cargo deny --log-level error check --help >/dev/null 2>&1; echo advisory-db-3157b0e258782691)"
ln -sfn "$src" "$dbs/$name"
exec cargo deny --all-features check --disable-fetch --config deny.toml
