//! `Microsoft.Attestation/attestationProviders` (api-version 2021-06-01): synchronous CRUD and
//! lists (CONTRACTS.md §1).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{invalid_content, json_body, method_not_allowed, not_found};
use crate::emulator::Inner;
use crate::http::{Req, Resp};
use crate::jwt::{b64std, b64std_decode, sha256};
use crate::state::{ArmId, Provider, World};

const NS: &str = "Microsoft.Attestation";
const TYPE: &str = "attestationProviders";
const FULL_TYPE: &str = "Microsoft.Attestation/attestationProviders";

/// ARM JSON of a provider.
pub(crate) fn render(inner: &Inner, p: &Provider) -> Value {
    let mut v = json!({
        "id": p.id,
        "name": p.name,
        "type": FULL_TYPE,
        "location": p.location,
        "properties": {
            "trustModel": if p.is_isolated() { "Isolated" } else { "AAD" },
            "status": "Ready",
            "attestUri": inner.attest_uri(&p.name),
            "publicNetworkAccess": p.public_network_access,
            "tpmAttestationAuthentication": p.tpm_attestation_authentication,
        },
    });
    if let (Some(tags), Some(obj)) = (&p.tags, v.as_object_mut()) {
        obj.insert("tags".into(), tags.clone());
    }
    v
}

/// Creates or updates a provider. Returns whether it was created.
#[allow(clippy::too_many_arguments)]
pub(crate) fn upsert(
    inner: &Inner,
    world: &mut World,
    id: &ArmId,
    location: &str,
    tags: Option<Value>,
    certs: Vec<Vec<u8>>,
    public_network_access: Option<String>,
    tpm: Option<String>,
) -> Result<bool, String> {
    let key = id.key(NS, TYPE);
    if let Some(p) = world.providers.get_mut(&key) {
        p.tags = tags;
        if let Some(v) = public_network_access {
            p.public_network_access = v;
        }
        if let Some(v) = tpm {
            p.tpm_attestation_authentication = v;
        }
        return Ok(false);
    }
    let cert = crate::tls::self_signed_rsa(&inner.maa_key, &inner.attest_uri(&id.name))
        .map_err(|e| e.to_string())?;
    let der = cert.as_ref().to_vec();
    let kid = b64std(&sha256(&der));
    world.providers.insert(
        key,
        Provider {
            id: id.render(NS, TYPE),
            subscription: id.subscription.clone(),
            resource_group: id.resource_group.clone(),
            name: id.name.clone(),
            location: location.to_owned(),
            tags,
            public_network_access: public_network_access.unwrap_or_else(|| "Enabled".into()),
            tpm_attestation_authentication: tpm.unwrap_or_else(|| "Enabled".into()),
            signing_certs: certs,
            policies: HashMap::new(),
            instance_cert: der,
            kid,
        },
    );
    Ok(true)
}

/// GET list by subscription or resource group.
pub(crate) fn list(inner: &Inner, req: &Req, sub: &str, rg: Option<&str>) -> Resp {
    if req.method != http::Method::GET {
        return method_not_allowed(req);
    }
    let w = inner.world();
    let value: Vec<Value> = w
        .providers
        .values()
        .filter(|p| p.subscription.eq_ignore_ascii_case(sub))
        .filter(|p| rg.is_none_or(|g| p.resource_group.eq_ignore_ascii_case(g)))
        .map(|p| render(inner, p))
        .collect();
    Resp::json(200, &json!({ "value": value }))
}

fn name_ok(name: &str, rule: crate::config::ProviderNameRule) -> bool {
    let len_ok = (3..=24).contains(&name.len());
    len_ok
        && match rule {
            crate::config::ProviderNameRule::Spec => {
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }
            crate::config::ProviderNameRule::LowercaseAlphanumeric => name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        }
}

fn enabled_disabled(props: &Map<String, Value>, field: &str) -> Result<Option<String>, Resp> {
    match props.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("Enabled") => Ok(Some("Enabled".into())),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("Disabled") => Ok(Some("Disabled".into())),
        Some(other) => Err(invalid_content(&format!(
            "Error converting value {other} to type '{field}'. Allowed values are 'Enabled', 'Disabled'. Path 'properties.{field}'"
        ))),
    }
}

fn tags_of(body: &Map<String, Value>) -> Result<Option<Value>, Resp> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => {
            Ok(Some(Value::Object(m.clone())))
        }
        Some(_) => Err(invalid_content(
            "Tags must be an object of string values. Path 'tags'",
        )),
    }
}

fn signing_certs(props: &Map<String, Value>) -> Result<Vec<Vec<u8>>, Resp> {
    let Some(psc) = props.get("policySigningCertificates") else {
        return Ok(Vec::new());
    };
    let bad = |why: &str| {
        Resp::cloud_error(
            400,
            "InvalidParameter",
            &format!("properties.policySigningCertificates is invalid: {why}"),
        )
    };
    let keys = psc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("'keys' must be an array of JSON Web Keys"))?;
    let mut out = Vec::new();
    for k in keys {
        let first = k
            .get("x5c")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .ok_or_else(|| bad("every key needs an 'x5c' array of base64 DER certificates"))?;
        let der = b64std_decode(first).ok_or_else(|| bad("x5c entries must be standard base64"))?;
        if x509_parser::parse_x509_certificate(&der).is_err() {
            return Err(bad("x5c entry is not a DER X.509 certificate"));
        }
        out.push(der);
    }
    Ok(out)
}

/// GET/PUT/PATCH/DELETE of one provider.
pub(crate) fn handle(inner: &Inner, req: &Req, sub: &str, rg: &str, name: &str) -> Resp {
    let id = ArmId {
        subscription: sub.to_owned(),
        resource_group: rg.to_owned(),
        name: name.to_owned(),
    };
    let key = id.key(NS, TYPE);
    match req.method {
        http::Method::GET => {
            let w = inner.world();
            w.providers.get(&key).map_or_else(
                || not_found(FULL_TYPE, name, rg),
                |p| Resp::json(200, &render(inner, p)),
            )
        }
        http::Method::DELETE => {
            let existed = inner.world().providers.remove(&key).is_some();
            Resp::empty(if existed { 200 } else { 204 })
        }
        http::Method::PUT => put(inner, req, &id, &key),
        http::Method::PATCH => patch(inner, req, &key, name, rg),
        _ => method_not_allowed(req),
    }
}

fn put(inner: &Inner, req: &Req, id: &ArmId, key: &str) -> Resp {
    let body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !name_ok(&id.name, inner.cfg().provider_name_rule) {
        return Resp::cloud_error(
            400,
            "InvalidResourceName",
            &format!(
                "The resource name '{}' is invalid. Attestation provider names must be 3-24 characters of letters, digits and hyphens (pattern ^[a-zA-Z0-9-]{{3,24}}$).",
                id.name
            ),
        );
    }
    let location = match body.get("location") {
        Some(Value::String(l)) if !l.trim().is_empty() => l.clone(),
        _ => {
            return Resp::cloud_error(
                400,
                "LocationRequired",
                "The location property is required for this definition.",
            );
        }
    };
    let props = match body.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        None | Some(Value::Null) => {
            return invalid_content("Required property 'properties' not found in JSON. Path ''");
        }
        Some(_) => {
            return invalid_content(
                "Unexpected JSON token for 'properties': expected an object. Path 'properties'",
            );
        }
    };
    let tags = match tags_of(&body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (pna, tpm) = match (
        enabled_disabled(&props, "publicNetworkAccess"),
        enabled_disabled(&props, "tpmAttestationAuthentication"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let certs = match signing_certs(&props) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut w = inner.world();
    if let Some(existing) = w.providers.get(key) {
        let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
        if norm(&existing.location) != norm(&location) {
            return Resp::cloud_error(
                400,
                "InvalidResourceLocation",
                &format!(
                    "The resource '{}' already exists in location '{}' in resource group '{}'. A resource with the same name cannot be created in location '{location}'. Please select a new resource name.",
                    existing.name, existing.location, existing.resource_group
                ),
            );
        }
    } else if let Some(other) = w.provider_by_name(&id.name) {
        return Resp::cloud_error(
            409,
            "Conflict",
            &format!(
                "The attestation provider name '{}' is already in use (by {}).",
                id.name, other.id
            ),
        );
    }
    match upsert(inner, &mut w, id, &location, tags, certs, pna, tpm) {
        Ok(created) => {
            let body = w
                .providers
                .get(key)
                .map(|p| render(inner, p))
                .unwrap_or_default();
            Resp::json(if created { 201 } else { 200 }, &body)
        }
        Err(e) => Resp::cloud_error(500, "InternalServerError", &e),
    }
}

fn patch(inner: &Inner, req: &Req, key: &str, name: &str, rg: &str) -> Resp {
    let body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let tags = match tags_of(&body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let props = match body.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => {
            return invalid_content(
                "Unexpected JSON token for 'properties': expected an object. Path 'properties'",
            );
        }
    };
    let (pna, tpm) = match (
        enabled_disabled(&props, "publicNetworkAccess"),
        enabled_disabled(&props, "tpmAttestationAuthentication"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let mut w = inner.world();
    let Some(p) = w.providers.get_mut(key) else {
        return not_found(FULL_TYPE, name, rg);
    };
    if tags.is_some() {
        p.tags = tags;
    }
    if let Some(v) = pna {
        p.public_network_access = v;
    }
    if let Some(v) = tpm {
        p.tpm_attestation_authentication = v;
    }
    Resp::json(200, &render(inner, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderNameRule;

    #[test]
    fn name_rules() {
        assert!(name_ok("myattestationprovider", ProviderNameRule::Spec));
        assert!(name_ok("My-Prov1", ProviderNameRule::Spec));
        assert!(!name_ok("ab", ProviderNameRule::Spec));
        assert!(!name_ok("a".repeat(25).as_str(), ProviderNameRule::Spec));
        assert!(!name_ok("my_prov", ProviderNameRule::Spec));
        assert!(!name_ok(
            "My-Prov1",
            ProviderNameRule::LowercaseAlphanumeric
        ));
        assert!(name_ok("myprov1", ProviderNameRule::LowercaseAlphanumeric));
    }
}
