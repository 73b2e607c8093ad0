#!/usr/bin/env bash
# Prints the Azure emulator seed of `make bench` for N Running Trusted Launch VMs, each with a NIC
# and a fixed Healthy attestationStatus (fixed = taken out of the guest simulation, so nothing
# changes in Azure during the run). Most VMs attested one hour before T0; M of them ("crossers")
# attested so that they cross the 8-hour mark at T0 + START + i*SPACING (i = 0..M-1).
# Also writes the crossers' names and crossing instants (epoch seconds) to CROSSFILE.
# usage: bench-seed.sh ENDPOINT N T0 START SPACING M CROSSFILE
set -euo pipefail
endpoint="$1" n="$2" t0="$3" start="$4" spacing="$5" m="$6" crossfile="$7"
sub=fd3c3665-1729-4b7b-9a38-238e83b0f98b
rg=azlocal-rg
tenant=7e589cc1-a8b6-4dff-91bd-5ec0fa18db94
stale=$((8 * 3600))

# All timestamps with one `date` call: line i is the attestation time of VM i (1-based).
# Crossers are spread evenly over the fleet (every (N/M)-th VM).
step=$(( m > 0 ? n / m : n + 1 ))
: > "$crossfile"
stamps="$(
  for ((i = 1; i <= n; i++)); do
    if (( m > 0 && i % step == 0 && i / step <= m )); then
      k=$(( i / step - 1 ))
      cross=$(( t0 + start + k * spacing ))
      printf 'vm-%05d %s\n' "$i" "$cross" >> "$crossfile"
      echo "@$(( cross - stale ))"
    else
      echo "@$(( t0 - 3600 ))"
    fi
  done | date -u -f - '+%-m/%-d/%Y %-I:%M:%S %p'
)"

cat <<YAML
tenants:
  - id: $tenant
    servicePrincipals: [{clientId: 24a6e53d-04e5-44d2-b7cc-1b732a847dfc, secret: demo-client-secret}]
clusters:
  - id: /subscriptions/$sub/resourceGroups/$rg/providers/Microsoft.AzureStackHCI/clusters/azlocal-east
    location: eastus
    aadTenantId: $tenant
    isolatedVmAttestationConfiguration:
      attestationResourceId: /subscriptions/$sub/resourceGroups/$rg/providers/Microsoft.Attestation/attestationProviders/azlocaleastmaa
      relyingPartyServiceEndpoint: https://dp.stackhci.azure.com/eastus/igvmAttestation/bench
      attestationServiceEndpoint: $endpoint/attest/azlocaleastmaa
attestationProviders:
  - {id: /subscriptions/$sub/resourceGroups/$rg/providers/Microsoft.Attestation/attestationProviders/azlocaleastmaa, location: eastus}
machines:
YAML
printf "%s\n" "$stamps" | awk -v sub_="$sub" -v rg="$rg" '{
  name = sprintf("vm-%05d", NR)
  printf "  - id: /subscriptions/%s/resourceGroups/%s/providers/Microsoft.HybridCompute/machines/%s\n", sub_, rg, name
  print  "    location: eastus"
  printf "    vm: {securityType: TrustedLaunch, enableTpm: true, secureBootEnabled: true, powerState: Running, networkInterfaces: [/subscriptions/%s/resourceGroups/%s/providers/Microsoft.AzureStackHCI/networkInterfaces/%s-nic]}\n", sub_, rg, name
  printf "    attestationStatus: {attestSecureBootEnabled: Enabled, attestationCertValidated: Valid, bootIntegrityValidated: Valid, healthStatus: Healthy, linuxKernelVersion: \"0\", timestamp: \"%s\", errorMessage: null, provisioningState: Succeeded}\n", $0
}'
