#!/usr/bin/env bash
# Prints the Azure emulator seed of `make demo`: an Azure Local cluster with its attestation
# provider, and six Trusted Launch VMs that show every state. vm-healthy and vm-silent are
# simulated guests (they report once the extension is deployed); the others have fixed statuses
# with timestamps relative to now.
# usage: demo-seed.sh ENDPOINT   (the emulator's https://127.0.0.1:PORT)
set -euo pipefail
endpoint="$1"
sub=fd3c3665-1729-4b7b-9a38-238e83b0f98b
rg=azlocal-rg
tenant=7e589cc1-a8b6-4dff-91bd-5ec0fa18db94
ts() { date -u -d "$1" '+%-m/%-d/%Y %-I:%M:%S %p'; }
m() { echo "/subscriptions/$sub/resourceGroups/$rg/providers/Microsoft.HybridCompute/machines/$1"; }
nic() { echo "[/subscriptions/$sub/resourceGroups/$rg/providers/Microsoft.AzureStackHCI/networkInterfaces/$1-nic]"; }
status() { # secureBoot certValid bootValid health timestamp error
  cat <<S
    attestationStatus:
      attestSecureBootEnabled: $1
      attestationCertValidated: $2
      bootIntegrityValidated: $3
      healthStatus: $4
      linuxKernelVersion: "0"
      timestamp: "$5"
      errorMessage: ${6:-null}
      provisioningState: Succeeded
S
}
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
      relyingPartyServiceEndpoint: https://dp.stackhci.azure.com/eastus/igvmAttestation/demo
      attestationServiceEndpoint: $endpoint/attest/azlocaleastmaa
attestationProviders:
  - {id: /subscriptions/$sub/resourceGroups/$rg/providers/Microsoft.Attestation/attestationProviders/azlocaleastmaa, location: eastus}
machines:
  - id: $(m vm-healthy)
    location: eastus
    vm: {securityType: TrustedLaunch, enableTpm: true, secureBootEnabled: true, powerState: Running, networkInterfaces: $(nic vm-healthy)}
  - id: $(m vm-no-secureboot)
    location: eastus
    vm: {securityType: TrustedLaunch, enableTpm: true, secureBootEnabled: false, powerState: Running, networkInterfaces: $(nic vm-no-secureboot)}
$(status Disabled Valid Valid Unhealthy "$(ts '-2 hours')")
  - id: $(m vm-no-vtpm)
    location: eastus
    vm: {securityType: TrustedLaunch, enableTpm: false, secureBootEnabled: true, powerState: Running, networkInterfaces: $(nic vm-no-vtpm)}
$(status Enabled Invalid Valid Unhealthy "$(ts '-3 hours')" '"vTPM not available: attestation certificate missing"')
  - id: $(m vm-boot-failed)
    location: eastus
    vm: {securityType: TrustedLaunch, enableTpm: true, secureBootEnabled: true, powerState: Running, networkInterfaces: $(nic vm-boot-failed)}
$(status Enabled Valid Invalid Unhealthy "$(ts '-1 hours')" '"Boot integrity measurement does not match the expected baseline"')
  - id: $(m vm-stopped)
    location: eastus
    vm: {securityType: TrustedLaunch, enableTpm: true, secureBootEnabled: true, powerState: Stopped, networkInterfaces: $(nic vm-stopped)}
$(status Enabled Valid Valid Healthy "$(ts '-2 days')")
  - id: $(m vm-silent)
    location: eastus
    vm: {securityType: TrustedLaunch, enableTpm: true, secureBootEnabled: true, powerState: Running, networkInterfaces: $(nic vm-silent)}
YAML
