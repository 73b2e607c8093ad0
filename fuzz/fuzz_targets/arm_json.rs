//! ARM response bodies: any bytes decode into each model or fail with a serde error (which the client turns
//! into `AzureInvalidResponse` with a bounded message), never a panic; what decodes goes through the pure code
//! that consumes it.
#![no_main]

use guest_attestation_operator::attestation_status::assess::{
    AttestationFacts, Observation, VmFacts, assess,
};
use guest_attestation_operator::azure::{
    AttestationProvider, Cluster, Error, JsonWebKeySet, Machine, MachineExtension,
    MachineExtensionSpec, Service, VmAttestationStatus, VmInstance,
};
use guest_attestation_operator::controller::{azure_reason, conditions::MAX_MESSAGE};
use guest_attestation_operator::extension::settings::endpoints_from_cluster;
use guest_attestation_operator::extension::{compare, preflight};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fn decode<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    match serde_json::from_slice(body) {
        Ok(v) => Some(v),
        Err(source) => {
            let e = Error::Decode {
                service: Service::Arm,
                operation: "fuzz",
                status: 200,
                source,
            };
            assert_eq!(azure_reason::reason(&e), "AzureInvalidResponse");
            assert!(azure_reason::message(&e).len() <= MAX_MESSAGE);
            None
        }
    }
}

fuzz_target!(|body: &[u8]| {
    if let Some(c) = decode::<Cluster>(body) {
        let _ = endpoints_from_cluster("/cluster", &c, None);
    }
    let _ = decode::<Machine>(body);
    let _ = decode::<AttestationProvider>(body).map(|p| p.is_ready());
    let _ = decode::<JsonWebKeySet>(body);
    if let Some(e) = decode::<MachineExtension>(body) {
        let _ = compare::compare(&MachineExtensionSpec::default(), Some(&e));
    }
    let vm = decode::<VmInstance>(body).unwrap_or_default();
    let _ = preflight::preflight(&preflight::VmFacts::from_instance(&vm));
    if let Some(s) = decode::<VmAttestationStatus>(body) {
        let p = s.properties;
        let obs = Observation::Vm {
            vm: VmFacts::default(),
            attestation: Some(AttestationFacts {
                attest_secure_boot_enabled: p.attest_secure_boot_enabled.map(|v| v.to_string()),
                attestation_cert_validated: p.attestation_cert_validated.map(|v| v.to_string()),
                boot_integrity_validated: p.boot_integrity_validated.map(|v| v.to_string()),
                health_status: p.health_status.map(|v| v.to_string()),
                linux_kernel_version: p.linux_kernel_version,
                error_message: p.error_message,
                timestamp: p.timestamp,
            }),
        };
        let _ = assess(
            &obs,
            "2026-01-01T00:00:00Z".parse().expect("a time"),
            std::time::Duration::from_secs(8 * 3600),
        );
    }
});
