#!/usr/bin/env bash
# `make demo`: the whole story on this machine, no Azure subscription and no cluster needed.
# Starts the real control plane and the Azure emulator (seeded with an Azure Local cluster and
# VMs in every state), installs the chart, runs the operator with the chart's identity, applies
# the demo objects and shows what a user would look at. `make demo-down` stops everything.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
demo="$root/.demo"
ns=demo
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
wait_for() { # what timeout-seconds command...
  local what="$1" t="$2"; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 1
  done
}

if [ -f "$demo/testenv.pid" ] || [ -f "$demo/ready" ]; then
  echo "a demo is already running (make demo-down stops it)" >&2
  exit 1
fi

step "Building the control plane (kube-apiserver, etcd, kubectl, helm; cached after the first time)"
bin="$(tests/control-plane/build.sh | tail -n1)"
export PATH="$bin:$PATH"

step "Building the operator and the Azure emulator"
cargo build --quiet --bin guest-attestation-operator -p guest-attestation-operator
cargo build --quiet --bin azure-emulator -p azure-emulator
target="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug"

mkdir -p "$demo"
step "Starting the control plane (real kube-apiserver + etcd on loopback)"
nohup testenv up --dir "$demo/cp" --keep > "$demo/testenv.out" 2> "$demo/testenv.log" &
echo $! > "$demo/testenv.pid"
wait_for "the control plane" 120 test -f "$demo/cp/ready"
export KUBECONFIG="$demo/cp/admin.kubeconfig"
kubectl version | sed 's/^/    /'

step "Starting the Azure emulator (Entra ID, ARM, MAA) seeded with an Azure Local cluster and 6 VMs"
port="${DEMO_AZURE_PORT:-18443}"
scripts/demo-seed.sh "https://127.0.0.1:$port" > "$demo/seed.yaml"
nohup "$target/azure-emulator" --ca-out "$demo/emulator-ca.pem" --seed "$demo/seed.yaml" --port "$port" \
  > "$demo/emulator.out" 2> "$demo/emulator.log" &
echo $! > "$demo/emulator.pid"
wait_for "the emulator" 60 grep -q endpoint "$demo/emulator.out"
endpoint="$(sed -n 's/.*"endpoint":"\([^"]*\)".*/\1/p' "$demo/emulator.out")"
admin="$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' "$demo/emulator.out")"
echo "    $endpoint (control API $admin)"

step "Installing the chart (CRDs, ServiceAccount, RBAC) into namespace $ns"
kubectl create namespace "$ns" >/dev/null
helm template guest-attestation-operator charts/guest-attestation-operator -n "$ns" --include-crds \
  | kubectl apply --server-side -f - | sed 's/^/    /'
testenv token --dir "$demo/cp" -n "$ns" --sa guest-attestation-operator --out "$demo/operator.kubeconfig"

step "Running the operator with the chart's ServiceAccount token (logs: .demo/operator.log)"
nohup "$target/guest-attestation-operator" --kubeconfig "$demo/operator.kubeconfig" \
  --namespace "$ns" --leader-elect=true --lease-namespace "$ns" \
  --azure-endpoint "$endpoint" --extra-ca-file "$demo/emulator-ca.pem" \
  --interval-scale 0.01 --log-format text --http-bind-address 127.0.0.1:0 \
  > "$demo/operator.log" 2>&1 &
echo $! > "$demo/operator.pid"

step "Applying the demo objects (demo/): a provider, one GuestAttestationExtension per VM"
kubectl apply -n "$ns" -f demo/ | sed 's/^/    /'

step "Waiting for the healthy VMs to be attested (extension deployed, guest reporting)"
for vm in vm-healthy vm-silent; do
  wait_for "$vm to be Ready" 180 kubectl wait -n "$ns" --for=condition=Ready --timeout=2s "ats/$vm"
done
kubectl get guestattestation -n "$ns"

step "vm-no-secureboot and vm-no-vtpm miss prerequisites: nothing is deployed, the condition says why"
wait_for "preflight results" 60 sh -c "kubectl get gae vm-no-vtpm -n $ns -o jsonpath='{.status.conditions[?(@.type==\"PrerequisitesMet\")].status}' | grep -qx False"
for vm in vm-no-secureboot vm-no-vtpm; do
  kubectl get gae "$vm" -n "$ns" -o jsonpath='    {.metadata.name}: {.status.conditions[?(@.type=="PrerequisitesMet")].message}{"\n"}'
done

step "Why is vm-boot-failed Unhealthy? (conditions and events)"
wait_for "vm-boot-failed to be assessed" 120 sh -c "kubectl get ats vm-boot-failed -n $ns -o jsonpath='{.status.health}' | grep -qx Unhealthy"
kubectl get ats vm-boot-failed -n "$ns" -o jsonpath='{range .status.conditions[*]}    {.type}={.status} {.reason}: {.message}{"\n"}{end}'
kubectl get events -n "$ns" --field-selector involvedObject.name=vm-boot-failed | sed 's/^/    /'

step "vm-silent's extension stops reporting; the emulator's clock jumps 8 hours and 1 minute"
# The emulator's control API (plain HTTP on loopback), spoken with bash alone.
post() { # path json
  local hostport="${admin#http://}" body="$2"
  exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}"
  printf 'POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
    "$1" "$hostport" "${#body}" "$body" >&3
  head -n1 <&3 | grep -q ' 200 ' || { echo "emulator control API: $1 failed" >&2; exec 3>&-; return 1; }
  exec 3>&-
}
silent="/subscriptions/fd3c3665-1729-4b7b-9a38-238e83b0f98b/resourceGroups/azlocal-rg/providers/Microsoft.HybridCompute/machines/vm-silent"
post /guest/reporting "{\"machineId\":\"$silent\",\"value\":false}"
post /clock/advance '{"seconds":28860}'
echo "    the Running VM vm-silent has not reported for more than 8 hours now; the operator notices at its next read"
wait_for "vm-silent to go Stale" 120 sh -c "kubectl get ats vm-silent -n $ns -o jsonpath='{.status.reason}' | grep -qx Stale"
kubectl get ats -n "$ns"
kubectl get ats vm-silent -n "$ns" -o jsonpath='    {.status.message}{"\n"}'
kubectl get events -n "$ns" --field-selector involvedObject.name=vm-silent,reason=StaleAttestation | sed 's/^/    /'

step "Done"
cat <<MSG
    Explore:  export KUBECONFIG=$demo/cp/admin.kubeconfig
              kubectl get guestattestation -n $ns ; kubectl describe gae -n $ns vm-healthy
              curl -s $admin/requests | head     # what the operator asked Azure
    Stop:     make demo-down
MSG
