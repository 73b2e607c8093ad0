//! The extension settings renderer: for any endpoints and settings, exactly the documented case-sensitive keys,
//! every value a string, booleans as "true"/"false", isAzureStack "true"; the JSON text parses back equal.
#![no_main]

use guest_attestation_operator::crd::ExtensionSettings;
use guest_attestation_operator::extension::settings::{Endpoints, render_settings};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

type Input = (String, String, String, String, String, String, bool, bool);

fuzz_target!(|input: Input| {
    let (maa, rp, cluster, tenant, name, frequency, custom, alerts) = input;
    let e = Endpoints {
        maa_endpoint: maa,
        relying_party_endpoint: rp,
        cluster_id: cluster,
        cluster_aad_tenant_id: tenant,
    };
    let s = ExtensionSettings {
        maa_tenant_name: name,
        asc_reporting_frequency: frequency,
        use_custom_token: custom,
        disable_alerts: alerts,
    };
    let v = render_settings(&e, &s);
    assert_eq!(keys(&v), ["AttestationConfig"]);
    let c = &v["AttestationConfig"];
    assert_eq!(
        keys(c),
        [
            "AscSettings",
            "AzureStackSettings",
            "MaaSettings",
            "disableAlerts",
            "isAzureStack",
            "useCustomToken"
        ]
    );
    assert_eq!(keys(&c["MaaSettings"]), ["maaEndpoint", "maaTenantName"]);
    assert_eq!(
        keys(&c["AscSettings"]),
        ["ascReportingEndpoint", "ascReportingFrequency"]
    );
    assert_eq!(
        keys(&c["AzureStackSettings"]),
        ["clusterAadTenantId", "clusterId"]
    );
    let flag = |b: bool| if b { "true" } else { "false" };
    assert_eq!(c["useCustomToken"], flag(custom));
    assert_eq!(c["disableAlerts"], flag(alerts));
    assert_eq!(c["isAzureStack"], "true");
    assert_eq!(c["MaaSettings"]["maaEndpoint"], e.maa_endpoint.as_str());
    assert_eq!(
        c["MaaSettings"]["maaTenantName"],
        s.maa_tenant_name.as_str()
    );
    assert_eq!(
        c["AscSettings"]["ascReportingEndpoint"],
        e.relying_party_endpoint.as_str()
    );
    assert_eq!(
        c["AscSettings"]["ascReportingFrequency"],
        s.asc_reporting_frequency.as_str()
    );
    assert_eq!(c["AzureStackSettings"]["clusterId"], e.cluster_id.as_str());
    assert_eq!(
        c["AzureStackSettings"]["clusterAadTenantId"],
        e.cluster_aad_tenant_id.as_str()
    );
    let text = serde_json::to_string(&v).expect("serialisable");
    assert_eq!(serde_json::from_str::<Value>(&text).expect("valid JSON"), v);
});
