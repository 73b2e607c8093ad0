#!/usr/bin/env bash
# cargo deny with the advisory database read from a local copy (fetching is impossible here).
# usage: cargo-deny.sh <advisory-db copy> <db-path for cargo-deny>
set -euo pipefail
src="$1"; dbs="$2"
# cargo-deny reads each database from a git checkout in a directory named after its URL (here
# the default RustSec URL's); the copy is committed into a local repository once per change.
dest="$dbs/advisory-db-3157b0e258782691"
if [ ! -d "$src/crates" ]; then
  # Without the copy, the one imported by an earlier run on this machine still serves.
  [ -d "$dest/.git" ] || { echo "cargo-deny.sh: no advisory database at $src (set ADVISORY_DB)" >&2; exit 1; }
  echo "cargo-deny.sh: no advisory database at $src; using the copy imported before in $dest" >&2
  exec cargo deny --offline --all-features check
fi
stamp="$(cd "$src" && find . -type f -newer /dev/null | wc -l) $(du -sk "$src" | cut -f1)"
if [ ! -d "$dest/.git" ] || [ "$(cat "$dest/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$dest"; mkdir -p "$dest"
  cp -R "$src"/. "$dest"/
  git -C "$dest" init -q
  git -C "$dest" add -A
  git -C "$dest" -c user.name=offline -c user.email=offline@invalid commit -qm "offline copy"
  echo "$stamp" > "$dest/.stamp"
fi
exec cargo deny --offline --all-features check
