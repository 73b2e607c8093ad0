#!/usr/bin/env bash
# Writes bench/results/README.md from bench/results/<N>.json (written by scripts/bench.sh).
# No jq or python: a small awk flattener turns each JSON file into `path value` lines.
# usage: bench-report.sh [RESULTS_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$root/bench/results}"

flatten() { # JSON object (as scripts/bench.sh writes it) -> "a.b.c value" lines
  tr -d '\n' < "$1" | awk '
    {
      s = $0; depth = 0; key = ""
      while (length(s) > 0) {
        c = substr(s, 1, 1)
        if (c == "{") { if (key != "") { path[++depth] = key; key = "" } else depth += 0; s = substr(s, 2); opened[depth] = 1; continue }
        if (c == "}") { if (depth > 0) depth--; s = substr(s, 2); continue }
        if (c == "\"") {
          rest = substr(s, 2); e = index(rest, "\""); str = substr(rest, 1, e - 1); s = substr(rest, e + 1)
          sub(/^[ \t]*/, "", s)
          if (substr(s, 1, 1) == ":") { key = str; s = substr(s, 2); sub(/^[ \t]*/, "", s); continue }
          emit(str); continue
        }
        if (c ~ /[-0-9tfn]/) { match(s, /^[-0-9.eE+a-z]+/); v = substr(s, 1, RLENGTH); s = substr(s, RLENGTH + 1); emit(v); continue }
        s = substr(s, 2)
      }
    }
    function emit(v,   p, i) { p = ""; for (i = 1; i <= depth; i++) p = p path[i] "."; print p key, v; key = "" }'
}

files=()
while IFS= read -r f; do files+=("$f"); done < <(ls "$dir"/*.json 2>/dev/null | sort -t/ -k"$(echo "$dir" | tr -cd / | wc -c | awk '{ print $1 + 2 }')" -n)
[ "${#files[@]}" -gt 0 ] || { echo "no results in $dir" >&2; exit 1; }

get() { awk -v k="$2" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "$1"; }

{
  echo "# Fleet benchmark results"
  echo
  echo "Written by \`scripts/bench-report.sh\` from the JSON files next to this one (one per N, written by"
  echo "\`scripts/bench.sh\`). What each figure means, the targets and what dominates the cost:"
  echo "[docs/performance.md](../../docs/performance.md). Figures are from one run each; they are not averages."
  echo
  echo "| figure | target |$(for f in "${files[@]}"; do printf ' N = %s |' "$(basename "$f" .json)"; done)"
  echo "|---|---|$(for _ in "${files[@]}"; do printf -- '---|'; done)"
  row() { # label target path [suffix]
    local label="$1" target="$2" path="$3" suffix="${4:-}"
    printf '| %s | %s |' "$label" "$target"
    for f in "${files[@]}"; do
      local v; v="$(get "$f.flat" "$path")"
      printf ' %s%s |' "${v:-–}" "$( [ -n "$v" ] && [ "$v" != null ] && echo "$suffix" )"
    done
    echo
  }
  for f in "${files[@]}"; do flatten "$f" > "$f.flat"; done
  row "cold start: all GAE + ATS Ready" "–" cold_start.all_ready_s " s"
  row "cold start: all GAE Ready" "–" cold_start.all_gae_ready_s " s"
  row "cold start: reconciles/s" "–" cold_start.reconciles_per_s
  row "cold start: Azure reads (all VMs)" "–" cold_start.azure_reads
  row "cold start: Azure writes (all VMs)" "–" cold_start.azure_writes
  row "cold start: reconciles held for booked reads" "–" cold_start.bookings.read_holds
  row "cold start: reconciles held for a booked write" "–" cold_start.bookings.write_holds
  row "cold start: booked read tokens unused" "0 (exact booking)" cold_start.bookings.unused_read_tokens
  row "cold start: booked write tokens unused" "0 (exact booking)" cold_start.bookings.unused_write_tokens
  row "steady: reconciles/s" "–" steady.reconciles_per_s
  row "steady: Azure reads / VM / interval" "T5 ≤ 1 per controller (2 in all)" steady.azure_requests_per_vm_per_interval.reads
  row "steady: Azure writes / VM / interval" "T5 0" steady.azure_requests_per_vm_per_interval.writes
  row "steady: API writes / object (non-crossers)" "T5 0" steady.k8s_writes_per_object_excluding_crossers
  row "steady: API writes in window (all, incl. Events)" "–" steady.k8s_writes_in_window
  row "client read budget (reads/s)" "T6 12 (an accelerated run sets more)" setup.arm_read_qps
  row "peak Azure reads in 1 s" "T6 ≤ budget after a burst of 100; ARM refill 25" azure_peak_per_s.reads
  row "client write budget (writes/s)" "T6 5" setup.arm_write_qps
  row "peak Azure writes in 1 s" "T6 ≤ budget after a burst of 50; ARM refill 10" azure_peak_per_s.writes
  row "RSS steady" "T1 < 96 MiB at 10k" memory.rss_steady_mib " MiB"
  row "RSS peak (VmHWM)" "T1 < 128 MiB at 10k" memory.rss_peak_mib " MiB"
  row "RSS / cached object (no baseline)" "T1 ≤ 3 KiB (store only)" memory.rss_kib_per_cached_object " KiB"
  row "packed cache / cached object (since the packed cache)" "T1 ≤ 3 KiB (store only)" memory.cache_bytes_per_cached_object " B"
  row "CPU seconds, cold start" "–" cold_start.cpu_s " s"
  row "CPU seconds / interval, steady" "–" steady.cpu_s_per_interval " s"
  row "CPU seconds, whole run" "–" cpu_s_total " s"
  row "stale flips measured" "–" stale_flip.measured
  row "stale flip p50" "–" stale_flip.latency_s.p50 " s"
  row "stale flip p99" "issue: < 5 s; T8 ≤ 60 s" stale_flip.latency_s.p99 " s"
  row "stale flip max" "T8 ≤ 60 s" stale_flip.latency_s.max " s"
  echo
  echo "Azure requests per VM per refresh interval in steady state, by operation (method_operation):"
  echo
  for f in "${files[@]}"; do
    printf -- '* N = %s: ' "$(basename "$f" .json)"
    { grep '^steady.azure_requests_per_vm_per_interval.by_operation.' "$f.flat" || true; } \
      | sed 's/^steady.azure_requests_per_vm_per_interval.by_operation.//' | sort | awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " } END { print "" }'
  done
  echo
  echo "Azure requests per VM during the cold start, by operation:"
  echo
  for f in "${files[@]}"; do
    printf -- '* N = %s: ' "$(basename "$f" .json)"
    { grep '^cold_start.azure_requests_per_vm_by_operation.' "$f.flat" || true; } \
      | sed 's/^cold_start.azure_requests_per_vm_by_operation.//' | sort | awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " } END { print "" }'
  done
  echo
  echo "Runs:"
  echo
  for f in "${files[@]}"; do
    printf -- '* N = %s: %s, commit `%s`%s, %s CPUs, %s KiB memory, %s build; refresh interval %s s (interval scale %s), effective interval %s s (fleet floor %s s), window %s intervals, %s crossers; command `%s`\n' \
      "$(get "$f.flat" n)" "$(get "$f.flat" date)" "$(get "$f.flat" commit)" \
      "$( [ "$(get "$f.flat" dirty)" = true ] && echo ' (with uncommitted changes)')" \
      "$(get "$f.flat" machine.nproc)" "$(get "$f.flat" machine.mem_total_kib)" "$(get "$f.flat" machine.profile)" \
      "$(get "$f.flat" setup.refresh_interval_s)" "$(get "$f.flat" setup.interval_scale)" \
      "$(get "$f.flat" setup.effective_interval_s)" "$(get "$f.flat" setup.fleet_floor_s)" \
      "$(get "$f.flat" setup.window_intervals)" "$(get "$f.flat" setup.crossers)" "$(get "$f.flat" command)"
  done
} > "$dir/README.md"
rm -f "$dir"/*.json.flat
echo "wrote $dir/README.md" >&2
