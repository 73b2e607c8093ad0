#!/usr/bin/env bash
# Fleet benchmark (issue 10): runs the operator binary as a separate process against the real
# control plane (testenv, with an audit log) and the Azure emulator seeded with N Azure Local VMs,
# each with a GuestAttestationExtension (which creates and owns the VM's AttestationStatus), and
# records for each N: cold start, reconciles/s, Azure requests per VM per refresh interval by
# operation, API-server writes per object in steady state, RSS and CPU, and stale-flip latency.
# Results: bench/results/<N>.json and bench/results/README.md. Method: docs/performance.md.
#
# usage: scripts/bench.sh N [N...]
# environment (all optional):
#   BENCH_PORT=18543          emulator port (its seed names the MAA endpoint, so it is fixed)
#   BENCH_METRICS_PORT=18544  operator /metrics port
#   BENCH_REFRESH=S           scaled refresh interval in seconds (default 30);
#                             --interval-scale = S / 1800 (refreshInterval defaults to 30m). The
#                             operator raises it to the fleet's floor, 2N x 1.25 / 6 s (T6); the
#                             window and the per-interval figures use the effective interval.
#   BENCH_K=2                 steady-state window, in refresh intervals
#   BENCH_COLD_EST=S          expected cold start in seconds, to place the 8-hour crossings
#                             after it (default 30 + 2N/3: about 8 ARM reads per VM at 12/s)
#   BENCH_CROSSERS=M          VMs crossing the 8-hour mark during the run (default N/10, 5..200)
#   BENCH_READ_QPS=12         the operator's ARM read budget (--arm-read-qps; burst BENCH_READ_BURST,
#                             default 100). Above the default the run is *accelerated*: it measures
#                             the operator's own costs at fleet size in less time, and its results
#                             go to <N>-qps<Q>.json (cold start then scales with the budget)
#   BENCH_WRITE_QPS=5         the ARM write budget (--arm-write-qps; burst BENCH_WRITE_BURST, default
#                             50); above the default the results go to <N>-qps<Q>-w<W>.json
#   BENCH_OPERATOR_WRAP="..." run the operator under this command (e.g. "heaptrack -o DIR/op" for a
#                             heap profile); RSS and CPU are then those of the wrapper's process
#   BENCH_PROFILE=release     cargo profile of the binaries
#   BENCH_OPERATOR_BIN, BENCH_EMULATOR_BIN  use these binaries instead of building (profile "prebuilt")
#   BENCH_RESULTS=DIR         where the JSON and the table go (default bench/results)
#   BENCH_STRICT=1            fail unless every object got Ready and the steady window had no
#                             Azure or API-server write (what CI checks with make bench-quick)
#   BENCH_WORK=DIR            scratch directory (default: a new one under /tmp, removed at exit
#                             unless BENCH_KEEP=1)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ "$#" -ge 1 ] || { echo "usage: $0 N [N...]" >&2; exit 2; }

port="${BENCH_PORT:-18543}"
mport="${BENCH_METRICS_PORT:-18544}"
k="${BENCH_K:-2}"
profile="${BENCH_PROFILE:-release}"
ns=bench
results="${BENCH_RESULTS:-$root/bench/results}"
mkdir -p "$results"
command_line="scripts/bench.sh $*"
# The code measured is the code built now: record it before a run that may last hours.
commit="$(git -C "$root" rev-parse HEAD)"
dirty="$( [ -n "$(git -C "$root" status --porcelain -- src emulator charts crds Cargo.toml Cargo.lock)" ] && echo true || echo false )"
[ -n "${BENCH_MAKE_TARGET:-}" ] && command_line="make $BENCH_MAKE_TARGET ($command_line)"

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "null"; else printf "%.4f", a / b }'; }
wait_for() { # what timeout-seconds command...
  local what="$1" t="$2"; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then log "timed out waiting for $what"; return 1; fi
    sleep 0.5
  done
}

# --- processes: every one we start is recorded and stopped at exit ----------------------------
pids=()
work_root="${BENCH_WORK:-$(mktemp -d /tmp/gao-bench.XXXXXX)}"
mkdir -p "$work_root"
stop_pid() {
  local pid="$1"
  # Children first: a wrapper (BENCH_OPERATOR_WRAP) does not pass the signal on.
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}"; done
  pids=()
  if [ "${BENCH_KEEP:-0}" != 1 ] && [ -z "${BENCH_WORK:-}" ]; then rm -rf "$work_root"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -------------------------------------------------------------------------------------
log "building the control plane, the operator and the emulator ($profile)"
bin="$(tests/control-plane/build.sh | tail -n1)"
export PATH="$bin:$PATH"
pflag=(); [ "$profile" = release ] && pflag=(--release)
[ "$profile" != release ] && [ "$profile" != debug ] && pflag=(--profile "$profile")
if [ -n "${BENCH_OPERATOR_BIN:-}" ] && [ -n "${BENCH_EMULATOR_BIN:-}" ]; then
  operator_bin="$BENCH_OPERATOR_BIN" emulator_bin="$BENCH_EMULATOR_BIN"
  profile="prebuilt"
else
  cargo build --quiet "${pflag[@]}" --bin guest-attestation-operator -p guest-attestation-operator \
    --bin azure-emulator -p azure-emulator
  tdir="${CARGO_TARGET_DIR:-$root/target}/$([ "$profile" = dev ] && echo debug || echo "$profile")"
  operator_bin="$tdir/guest-attestation-operator"
  emulator_bin="$tdir/azure-emulator"
fi

# --- helpers reading the running system --------------------------------------------------------
metric_sum() { # metrics-file name [label-filter]: sum of the samples of one metric
  awk -v m="$2" -v f="${3:-}" '$1 ~ "^"m"({|$)" && index($1, f) { s += $NF } END { printf "%d", s }' "$1"
}
cpu_seconds() { # pid: utime + stime in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}
proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
count_ready() { # kind: how many objects have condition Ready=True
  kubectl get "$1" -n "$ns" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
    2>/dev/null | grep -cx True || true
}
count_assessed() { # how many AttestationStatuses carry a health (Ready=False is a valid outcome: Stale)
  kubectl get ats -n "$ns" -o jsonpath='{range .items[*]}{.status.health}{"\n"}{end}' \
    2>/dev/null | grep -cE '^(Healthy|Unhealthy|Unknown)$' || true
}
requests_tsv() { # emulator /requests JSON -> epoch<TAB>method<TAB>operation<TAB>path
  sed -e 's/},{"apiVersion"/}\n{"apiVersion"/g' -e 's/},{"seq"/}\n{"seq"/g' | awk '
    {
      tm = $0; sub(/.*"time":\{/, "", tm); sub(/\}.*/, "", tm)
      s = tm; sub(/.*"secs_since_epoch":/, "", s); sub(/[^0-9].*/, "", s)
      t = tm; sub(/.*"nanos_since_epoch":/, "", t); sub(/[^0-9].*/, "", t)
      m = $0; sub(/.*"method":"/, "", m); sub(/".*/, "", m)
      p = $0; sub(/.*"path":"/, "", p); sub(/".*/, "", p)
      if (s == "" || m == $0 || p == $0) next
      lp = tolower(p)
      if (lp ~ /oauth2\/v2.0\/token/) op = "token"
      else if (lp ~ /^\/attest\//) op = "maa"
      else if (lp ~ /attestationstatus\/default$/) op = "attestationStatus"
      else if (lp ~ /virtualmachineinstances\/default$/) op = "vmInstance"
      else if (lp ~ /operationstatus\//) op = "operationStatus"
      else if (lp ~ /operationresults\//) op = "operationResult"
      else if (lp ~ /\/extensions\/[^\/]+$/) op = "extension"
      else if (lp ~ /\/machines\/[^\/]+$/) op = "machine"
      else if (lp ~ /\/clusters\/[^\/]+$/) op = "cluster"
      else if (lp ~ /attestationproviders\/[^\/]+$/) op = "attestationProvider"
      else op = "other"
      printf "%s.%09d\t%s\t%s_%s\t%s\n", s, t, m, m, op, p
    }'
}
audit_tsv() { # audit logs -> stamp<TAB>verb<TAB>resource<TAB>subresource<TAB>name, operator requests only
  grep -hF "\"username\":\"system:serviceaccount:$ns:guest-attestation-operator\"" "$@" | awk '
    function field(s, k,   v) { v = s; if (!sub(".*\"" k "\":\"", "", v)) return "-"; sub(/".*/, "", v); return v }
    {
      st = field($0, "stage"); if (st != "-" && st != "ResponseComplete") next
      o = $0; if (!sub(/.*"objectRef":\{/, "", o)) o = ""; sub(/\}.*/, "", o)
      printf "%s\t%s\t%s\t%s\t%s\n", field($0, "requestReceivedTimestamp"), field($0, "verb"),
        field(o, "resource"), field(o, "subresource"), field(o, "name")
    }'
}
pct() { # p file-of-numbers (sorted): nearest-rank percentile
  awk -v p="$1" '{ v[NR] = $1 } END { if (NR == 0) { print "null"; exit } i = int(p * NR + 0.9999); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.3f", v[i] }' "$2"
}

# --- one run -----------------------------------------------------------------------------------
run_one() {
  local n="$1" w="$work_root/n$n"
  rm -rf "$w"; mkdir -p "$w"
  local refresh="${BENCH_REFRESH:-30}"
  local scale; scale="$(awk -v r="$refresh" 'BEGIN { printf "%.6f", r / 1800 }')"
  # The operator's floor for 2N objects (src/controller/fleet.rs), to place the crossings.
  local qps="${BENCH_READ_QPS:-12}" burst="${BENCH_READ_BURST:-100}"
  local floor_est; floor_est="$(awk -v n="$n" -v q="$qps" 'BEGIN { printf "%d", 2 * n * 1.25 / (q / 2) + 0.999 }')"
  local interval_est=$(( refresh > floor_est ? refresh : floor_est ))
  local cold_est="${BENCH_COLD_EST:-$(( 30 + 8 * n / qps ))}"
  local wqps="${BENCH_WRITE_QPS:-5}" wburst="${BENCH_WRITE_BURST:-50}"
  local name="$n"; [ "$qps" != 12 ] && name="$n-qps$qps"; [ "$wqps" != 5 ] && name="$name-w$wqps"
  local m="${BENCH_CROSSERS:-$(( n / 10 ))}"; (( m < 5 )) && m=5; (( m > 200 )) && m=200; (( m > n )) && m=$n
  local window=$(( k * interval_est ))
  log "N=$n: refresh interval ${refresh}s (--interval-scale $scale; fleet floor ~${floor_est}s), window ${k} intervals, $m crossers"

  log "starting the control plane (audit on)"
  testenv up --dir "$w/cp" --audit --keep > "$w/testenv.out" 2> "$w/testenv.log" &
  pids+=($!)
  wait_for "the control plane" 120 test -f "$w/cp/ready"
  export KUBECONFIG="$w/cp/admin.kubeconfig"

  # Crossings: spread over the steady window, which starts one interval after every object is
  # Ready. Placed from the expected cold start; crossers that cross before Ready are reported apart.
  local t0; t0="$(date +%s)"
  local setup_est=$(( 15 + n / 200 ))
  local start=$(( setup_est + cold_est + interval_est ))
  local spacing=$(( m > 1 ? window / m : 1 )); (( spacing < 1 )) && spacing=1
  scripts/bench-seed.sh "https://127.0.0.1:$port" "$n" "$t0" "$start" "$spacing" "$m" "$w/crossers.txt" > "$w/seed.yaml"

  log "starting the emulator (port $port, $n machines)"
  # The request log must hold the whole cold start (about 11 requests per VM) and a window.
  "$emulator_bin" --ca-out "$w/emulator-ca.pem" --seed "$w/seed.yaml" --port "$port" \
    --request-log-capacity "$(( 100000 + 30 * n ))" \
    > "$w/emulator.out" 2> "$w/emulator.log" &
  pids+=($!)
  wait_for "the emulator" 120 grep -q endpoint "$w/emulator.out"
  local endpoint admin
  endpoint="$(sed -n 's/.*"endpoint":"\([^"]*\)".*/\1/p' "$w/emulator.out")"
  admin="$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' "$w/emulator.out")"

  log "installing the chart and the credentials into namespace $ns"
  kubectl create namespace "$ns" >/dev/null
  helm template guest-attestation-operator charts/guest-attestation-operator -n "$ns" --include-crds \
    | kubectl apply --server-side -f - >/dev/null
  kubectl apply -n "$ns" -f demo/00-credentials.yaml >/dev/null
  testenv token --dir "$w/cp" -n "$ns" --sa guest-attestation-operator --duration 4h --out "$w/operator.kubeconfig"

  log "creating $n GuestAttestationExtensions (kubectl apply --server-side of one multi-document file)"
  local sub=fd3c3665-1729-4b7b-9a38-238e83b0f98b rg=azlocal-rg
  awk -v n="$n" -v sub_="$sub" -v rg="$rg" 'BEGIN {
    for (i = 1; i <= n; i++) {
      name = sprintf("vm-%05d", i)
      print "---\napiVersion: guestattestation.dev/v1alpha1\nkind: GuestAttestationExtension\nmetadata:\n  name: " name "\nspec:"
      print "  machineId: /subscriptions/" sub_ "/resourceGroups/" rg "/providers/Microsoft.HybridCompute/machines/" name
      print "  clusterId: /subscriptions/" sub_ "/resourceGroups/" rg "/providers/Microsoft.AzureStackHCI/clusters/azlocal-east"
      print "  credentialsRef: {name: azure-sp}"
    } }' > "$w/gaes.yaml"
  local ta; ta="$(now)"
  kubectl apply --server-side -n "$ns" -f "$w/gaes.yaml" >/dev/null
  local apply_s; apply_s="$(fsub "$(now)" "$ta")"
  log "applied in ${apply_s}s"

  log "starting the operator"
  local t_start; t_start="$(now)"
  local wrap=(); [ -n "${BENCH_OPERATOR_WRAP:-}" ] && read -r -a wrap <<< "$BENCH_OPERATOR_WRAP"
  "${wrap[@]}" "$operator_bin" --kubeconfig "$w/operator.kubeconfig" --namespace "$ns" --leader-elect=false \
    --identity bench --azure-endpoint "$endpoint" --extra-ca-file "$w/emulator-ca.pem" \
    --interval-scale "$scale" --log-format json --http-bind-address "127.0.0.1:$mport" \
    --arm-read-qps "$qps" --arm-read-burst "$burst" --arm-write-qps "$wqps" --arm-write-burst "$wburst" \
    > "$w/operator.log" 2>&1 &
  local opid=$!
  pids+=("$opid")
  # RSS sampler: epoch VmRSS VmHWM (KiB), every second.
  ( while kill -0 "$opid" 2>/dev/null; do
      printf '%s %s %s\n' "$(date +%s)" "$(proc_kb "$opid" VmRSS)" "$(proc_kb "$opid" VmHWM)"
      sleep 1
    done ) > "$w/rss.txt" 2>/dev/null &
  pids+=($!)

  # Cold start: until every GAE is Ready and every ATS has assessed its VM (a crosser that
  # crossed early is Unknown/Stale, not Ready, and that is the right answer).
  local cold_timeout=$(( 120 + 2 * n ))
  # Listing 2N objects costs the API server; poll less often at size (a 10,000-VM list each second
  # took most of a core of the two).
  local poll=$(( 1 + n / 2500 ))
  local gae_ready=0 ats_ready=0 t_gae="" t_ready=""
  while :; do
    kill -0 "$opid" 2>/dev/null || { log "the operator exited; see $w/operator.log"; tail -5 "$w/operator.log" >&2; return 1; }
    gae_ready="$(count_ready gae)"
    [ -z "$t_gae" ] && [ "$gae_ready" -ge "$n" ] && t_gae="$(now)"
    ats_ready="$(count_assessed)"
    if [ "$gae_ready" -ge "$n" ] && [ "$ats_ready" -ge "$n" ]; then t_ready="$(now)"; break; fi
    if awk -v a="$(now)" -v b="$t_start" -v t="$cold_timeout" 'BEGIN { exit !(a - b > t) }'; then
      log "cold start timed out after ${cold_timeout}s: GAE Ready $gae_ready/$n, ATS assessed $ats_ready/$n"
      break
    fi
    sleep "$poll"
  done
  local cold_s="null" gae_s="null"
  [ -n "$t_ready" ] && cold_s="$(fsub "$t_ready" "$t_start")"
  [ -n "$t_gae" ] && gae_s="$(fsub "$t_gae" "$t_start")"
  curl -sf "http://127.0.0.1:$mport/metrics" > "$w/metrics.ready"
  local cpu_ready; cpu_ready="$(cpu_seconds "$opid")"
  local runs_ready; runs_ready="$(metric_sum "$w/metrics.ready" guest_attestation_reconcile_runs_total)"
  log "cold start: ${cold_s}s (GAE Ready ${gae_s}s), $runs_ready reconciles, ${cpu_ready} CPU s"
  # Reconciles that waited for, or were sent back to wait for, their booked reads or write; tokens left unused.
  local held_reads held_writes unused_reads unused_writes
  held_reads="$(metric_sum "$w/metrics.ready" guest_attestation_azure_holds_total 'operation="book_reads"')"
  held_writes="$(metric_sum "$w/metrics.ready" guest_attestation_azure_holds_total 'operation="book_writes"')"
  unused_reads="$(metric_sum "$w/metrics.ready" guest_attestation_azure_booked_reads_total 'outcome="unused"')"
  unused_writes="$(metric_sum "$w/metrics.ready" guest_attestation_azure_booked_writes_total 'outcome="unused"')"
  curl -sf "$admin/requests" > "$w/requests.cold.json"
  curl -sf -X DELETE "$admin/requests" >/dev/null

  # Steady state: settle one interval, then a window of k intervals, at the effective interval
  # (the refresh interval raised to the operator's fleet floor).
  local floor interval
  floor="$(metric_sum "$w/metrics.ready" guest_attestation_refresh_floor_seconds)"
  interval=$(( refresh > floor ? refresh : floor ))
  window=$(( k * interval ))
  log "settling one interval (${interval}s: refresh ${refresh}s, floor ${floor}s), then a ${window}s window"
  sleep "$interval"
  curl -sf "$admin/requests" > "$w/requests.settle.json"
  curl -sf -X DELETE "$admin/requests" >/dev/null
  local ws we
  ws="$(now)"
  curl -sf "http://127.0.0.1:$mport/metrics" > "$w/metrics.ws"
  local cpu_ws; cpu_ws="$(cpu_seconds "$opid")"
  sleep "$window"
  we="$(now)"
  curl -sf "$admin/requests" > "$w/requests.window.json"
  curl -sf "http://127.0.0.1:$mport/metrics" > "$w/metrics.we"
  local cpu_we; cpu_we="$(cpu_seconds "$opid")"
  local rss_kb hwm_kb
  rss_kb="$(proc_kb "$opid" VmRSS)"; hwm_kb="$(proc_kb "$opid" VmHWM)"

  # Let the last crossers flip, then read the Events.
  local last_cross; last_cross="$(awk '{ if ($2 > m) m = $2 } END { print m + 0 }' "$w/crossers.txt")"
  local wait_more; wait_more="$(awk -v l="$last_cross" -v t="$(date +%s)" 'BEGIN { d = l + 15 - t; print (d > 0 ? int(d) : 0) }')"
  if [ "$wait_more" -gt 0 ]; then log "waiting ${wait_more}s for the last crossing"; sleep "$wait_more"; fi
  kubectl get events.events.k8s.io -n "$ns" \
    -o jsonpath='{range .items[?(@.reason=="StaleAttestation")]}{.regarding.name} {.eventTime}{"\n"}{end}' > "$w/stale-events.txt"
  kubectl get ats -n "$ns" -o jsonpath='{range .items[*]}{.metadata.name} {.status.reason}{"\n"}{end}' > "$w/ats-final.txt"
  local cpu_end; cpu_end="$(cpu_seconds "$opid")"
  hwm_kb="$(proc_kb "$opid" VmHWM)"
  stop_pid "$opid"

  # --- analysis ------------------------------------------------------------------------------
  requests_tsv < "$w/requests.cold.json" > "$w/requests.cold.tsv"
  requests_tsv < "$w/requests.window.json" > "$w/requests.window.tsv"
  # The API server rotates its audit log every 100 MB (lumberjack's default): read the backups too.
  audit_tsv "$w/cp"/audit*.log > "$w/audit.tsv"
  local ws_iso we_iso
  ws_iso="$(date -u -d "@$ws" +%Y-%m-%dT%H:%M:%S.%6NZ)"; we_iso="$(date -u -d "@$we" +%Y-%m-%dT%H:%M:%S.%6NZ)"

  # Azure: per VM per interval, by operation, in the window.
  local azure_ops
  azure_ops="$(awk -F'\t' -v n="$n" -v k="$k" '{ c[$3]++ } END {
      sep = ""; for (o in c) { printf "%s\"%s\": %.3f", sep, o, c[o] / n / k; sep = ", " } }' "$w/requests.window.tsv")"
  local azure_reads azure_writes
  azure_reads="$(awk -F'\t' -v n="$n" -v k="$k" '$2 == "GET" { c++ } END { printf "%.3f", c / n / k }' "$w/requests.window.tsv")"
  azure_writes="$(awk -F'\t' -v n="$n" -v k="$k" '$2 != "GET" && $3 != "POST_token" { c++ } END { printf "%.3f", c / n / k }' "$w/requests.window.tsv")"
  # Peak rates (requests in any one second) over the whole run, reads and writes.
  cat "$w/requests.cold.tsv" "$w/requests.window.tsv" > "$w/requests.all.tsv"
  requests_tsv < "$w/requests.settle.json" >> "$w/requests.all.tsv"
  local peak_reads peak_writes cold_reads cold_writes
  peak_reads="$(awk -F'\t' '$2 == "GET" { c[int($1)]++ } END { m = 0; for (s in c) if (c[s] > m) m = c[s]; print m }' "$w/requests.all.tsv")"
  peak_writes="$(awk -F'\t' '$2 != "GET" && $3 != "POST_token" { c[int($1)]++ } END { m = 0; for (s in c) if (c[s] > m) m = c[s]; print m }' "$w/requests.all.tsv")"
  cold_reads="$(awk -F'\t' '$2 == "GET" { c++ } END { print c + 0 }' "$w/requests.cold.tsv")"
  cold_writes="$(awk -F'\t' '$2 != "GET" && $3 != "POST_token" { c++ } END { print c + 0 }' "$w/requests.cold.tsv")"
  local cold_ops
  cold_ops="$(awk -F'\t' -v n="$n" '{ c[$3]++ } END {
      sep = ""; for (o in c) { printf "%s\"%s\": %.3f", sep, o, c[o] / n; sep = ", " } }' "$w/requests.cold.tsv")"

  # API server writes by the operator in the window, per object, excluding the crossers (whose
  # status legitimately changes when they go Stale); Events counted apart.
  awk '{ print $1 }' "$w/crossers.txt" > "$w/crosser-names.txt"
  awk -F'\t' -v a="$ws_iso" -v b="$we_iso" '$1 >= a && $1 < b && ($2 == "update" || $2 == "patch" || $2 == "create" || $2 == "delete")' \
    "$w/audit.tsv" > "$w/audit.window.tsv"
  local writes_total writes_noncross writes_events writes_by
  writes_total="$(wc -l < "$w/audit.window.tsv")"
  writes_events="$(awk -F'\t' '$3 == "events"' "$w/audit.window.tsv" | wc -l)"
  writes_noncross="$(awk -F'\t' 'NR == FNR { x[$1] = 1; next } $3 != "events" && !($5 in x)' "$w/crosser-names.txt" "$w/audit.window.tsv" | wc -l)"
  writes_by="$(awk -F'\t' '{ c[$2 " " $3 ($4 == "-" ? "" : "/" $4)]++ } END {
      sep = ""; for (o in c) { printf "%s\"%s\": %d", sep, o, c[o]; sep = ", " } }' "$w/audit.window.tsv")"
  local cold_writes_k8s
  cold_writes_k8s="$(awk -F'\t' -v b="$(date -u -d "@$t_ready" +%Y-%m-%dT%H:%M:%S.%6NZ 2>/dev/null || echo z)" \
    '$1 < b && ($2 == "update" || $2 == "patch" || $2 == "create")' "$w/audit.tsv" | wc -l)"
  local objects=$(( 2 * n - 2 * m ))
  local wpo; wpo="$(fdiv "$writes_noncross" "$objects")"

  # Reconciles.
  local runs_ws runs_we
  runs_ws="$(metric_sum "$w/metrics.ws" guest_attestation_reconcile_runs_total)"
  runs_we="$(metric_sum "$w/metrics.we" guest_attestation_reconcile_runs_total)"
  local wsec; wsec="$(fsub "$we" "$ws")"
  local rps_cold="null"; [ "$cold_s" != null ] && rps_cold="$(fdiv "$runs_ready" "$cold_s")"
  local rps_steady; rps_steady="$(fdiv "$((runs_we - runs_ws))" "$wsec")"
  local runs_by
  runs_by="$(awk '/^guest_attestation_reconcile_runs_total\{/ { c = $1; sub(/.*controller="/, "", c); sub(/".*/, "", c); printf "%s\"%s\": %d", sep, c, $NF; sep = ", " }' "$w/metrics.we")"

  # Stale flips: Event eventTime - crossing instant, for crossers that crossed after Ready.
  : > "$w/flip.txt"; : > "$w/flip-early.txt"
  awk 'NR == FNR { c[$1] = $2; next } ($1 in c) { print $1, c[$1], $2 }' "$w/crossers.txt" "$w/stale-events.txt" \
    | while read -r name cross ev; do
        local evs; evs="$(date -u -d "$ev" +%s.%N)"
        local lat; lat="$(fsub "$evs" "$cross")"
        if [ -n "$t_ready" ] && awk -v c="$cross" -v r="$t_ready" 'BEGIN { exit !(c >= r) }'; then
          echo "$lat" >> "$w/flip.txt"
        else
          echo "$lat" >> "$w/flip-early.txt"
        fi
      done
  sort -n -o "$w/flip.txt" "$w/flip.txt"
  local flips early stale_final p50 p99 pmax
  flips="$(wc -l < "$w/flip.txt")"; early="$(wc -l < "$w/flip-early.txt")"
  stale_final="$(awk '$2 == "Stale"' "$w/ats-final.txt" | wc -l)"
  p50="$(pct 0.50 "$w/flip.txt")"; p99="$(pct 0.99 "$w/flip.txt")"; pmax="$(pct 1.0 "$w/flip.txt")"

  local rss_mib hwm_mib per_obj_kib
  rss_mib="$(awk -v x="$rss_kb" 'BEGIN { printf "%.1f", x / 1024 }')"
  hwm_mib="$(awk -v x="$hwm_kb" 'BEGIN { printf "%.1f", x / 1024 }')"
  # Per-object memory: steady RSS over the 2N cached objects (AttestationStatus + extension),
  # without subtracting a baseline (see docs/performance.md).
  per_obj_kib="$(awk -v x="$rss_kb" -v n="$n" 'BEGIN { printf "%.2f", x / (2 * n) }')"
  local cache_b cache_per_obj
  cache_b="$(metric_sum "$w/metrics.we" guest_attestation_cache_bytes)"
  cache_per_obj="$(awk -v x="$cache_b" -v n="$n" 'BEGIN { printf "%.0f", x / (2 * n) }')"
  local cpu_steady_per_interval; cpu_steady_per_interval="$(awk -v a="$cpu_we" -v b="$cpu_ws" -v k="$k" 'BEGIN { printf "%.3f", (a - b) / k }')"

  cat > "$results/$name.json" <<JSON
{
  "n": $n,
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "commit": "$commit",
  "dirty": $dirty,
  "command": "$command_line",
  "machine": {"nproc": $(nproc), "mem_total_kib": $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo), "kernel": "$(uname -r)", "profile": "$profile"},
  "setup": {"arm_read_qps": $qps, "arm_read_burst": $burst, "arm_write_qps": $wqps, "arm_write_burst": $wburst, "refresh_interval_s": $refresh, "interval_scale": $scale, "fleet_floor_s": $floor, "effective_interval_s": $interval, "window_intervals": $k, "window_s": $wsec,
            "crossers": $m, "gae_apply_s": $apply_s, "objects_created_by": "kubectl apply --server-side of N GuestAttestationExtensions; the operator creates the N AttestationStatuses"},
  "cold_start": {"all_ready_s": $cold_s, "all_gae_ready_s": $gae_s, "gae_ready": $gae_ready, "ats_assessed": $ats_ready,
                 "reconciles": $runs_ready, "reconciles_per_s": $rps_cold, "cpu_s": $cpu_ready,
                 "azure_reads": $cold_reads, "azure_writes": $cold_writes, "azure_requests_per_vm_by_operation": {$cold_ops},
                 "k8s_writes": $cold_writes_k8s,
                 "bookings": {"read_holds": $held_reads, "write_holds": $held_writes, "unused_read_tokens": $unused_reads, "unused_write_tokens": $unused_writes}},
  "steady": {"reconciles_per_s": $rps_steady, "reconciles_total_by_controller": {$runs_by},
             "azure_requests_per_vm_per_interval": {"reads": $azure_reads, "writes": $azure_writes, "by_operation": {$azure_ops}},
             "k8s_writes_in_window": $writes_total, "k8s_writes_by_verb_resource": {$writes_by}, "k8s_event_writes": $writes_events,
             "k8s_writes_per_object_excluding_crossers": $wpo,
             "cpu_s_per_interval": $cpu_steady_per_interval},
  "azure_peak_per_s": {"reads": $peak_reads, "writes": $peak_writes, "client_limit_reads": $qps, "client_burst_reads": $burst, "client_limit_writes": $wqps, "arm_refill_reads": 25, "arm_refill_writes": 10},
  "memory": {"rss_steady_mib": $rss_mib, "rss_peak_mib": $hwm_mib, "rss_kib_per_cached_object": $per_obj_kib, "cache_bytes": $cache_b, "cache_bytes_per_cached_object": $cache_per_obj},
  "cpu_s_total": $cpu_end,
  "stale_flip": {"measured": $flips, "crossed_before_ready": $early, "stale_at_end": $stale_final,
                 "latency_s": {"p50": $p50, "p99": $p99, "max": $pmax}}
}
JSON
  log "wrote $results/$name.json"
  cat "$results/$name.json" >&2
  if [ "${BENCH_STRICT:-0}" = 1 ]; then
    local bad=""
    [ "$cold_s" = null ] && bad="$bad; cold start did not finish (GAE Ready $gae_ready/$n, ATS assessed $ats_ready/$n)"
    [ "$azure_writes" != "0.000" ] && bad="$bad; Azure writes in the steady window: $azure_writes per VM per interval"
    [ "$writes_noncross" != 0 ] && bad="$bad; API-server writes in the steady window: $writes_noncross (non-crossers)"
    if [ -n "$bad" ]; then log "FAILED${bad}"; cleanup; return 1; fi
  fi

  # Stop this N's processes before the next one.
  cleanup
  unset KUBECONFIG
}

for n in "$@"; do
  work_root="${BENCH_WORK:-$(mktemp -d /tmp/gao-bench.XXXXXX)}"
  run_one "$n"
done
scripts/bench-report.sh "$results"
