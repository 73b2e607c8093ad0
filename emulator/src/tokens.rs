//! Entra ID token endpoint (client credentials with a secret or a client assertion), the IMDS
//! managed-identity endpoint, and bearer-token validation for ARM and MAA.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::emulator::Inner;
use crate::http::{Req, Resp};
use crate::jwt::{Jws, sign_jwt};
use crate::timefmt::{self, unix_seconds};

/// ARM audiences (compared without trailing slash, case-insensitively).
pub(crate) const ARM_AUDIENCES: [&str; 2] = [
    "https://management.azure.com",
    "https://management.core.windows.net",
];
/// MAA data-plane audience.
pub(crate) const MAA_AUDIENCES: [&str; 1] = ["https://attest.azure.net"];
/// Audience of projected service-account tokens used as client assertions.
pub(crate) const FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn norm_aud(s: &str) -> String {
    s.trim_end_matches('/').to_ascii_lowercase()
}

fn known_resource(resource: &str) -> bool {
    let n = norm_aud(resource);
    ARM_AUDIENCES
        .iter()
        .chain(MAA_AUDIENCES.iter())
        .any(|a| *a == n)
}

/// Who a token was issued to.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) appid: String,
    pub(crate) tenant: String,
}

/// Issues an RS256 access token. Returns (token, lifetime seconds).
pub(crate) fn issue(
    inner: &Inner,
    tenant: &str,
    client_id: &str,
    audience: &str,
    appidacr: &str,
) -> Result<(String, u64), crate::Error> {
    let now = unix_seconds(SystemTime::now());
    let life = inner.cfg().token_lifetime.as_secs();
    let oid = crate::emulator::stable_uuid(&format!("{tenant}|{client_id}"));
    let iss = format!("https://sts.windows.net/{tenant}/");
    let claims = json!({
        "aud": audience,
        "iss": iss,
        "iat": now,
        "nbf": now,
        "exp": now + i64::try_from(life).unwrap_or(3599),
        "appid": client_id,
        "appidacr": appidacr,
        "idp": iss,
        "idtyp": "app",
        "oid": oid,
        "sub": oid,
        "tid": tenant,
        "uti": inner.random_id(),
        "ver": "1.0",
    });
    let header =
        json!({"typ": "JWT", "alg": "RS256", "kid": inner.entra_kid, "x5t": inner.entra_kid});
    Ok((sign_jwt(&inner.entra_key, &header, &claims)?, life))
}

fn entra_error(inner: &Inner, status: u16, error: &str, code: u32, text: &str) -> Resp {
    let trace = inner.random_id();
    let corr = inner.random_id();
    let now = SystemTime::now();
    let ts = timefmt::rfc3339(now);
    let short_ts = format!("{} {}Z", &ts[..10], &ts[11..19]);
    Resp::json(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {short_ts}"
            ),
            "error_codes": [code],
            "timestamp": short_ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("{}/error?code={code}", inner.endpoint),
        }),
    )
}

fn missing_param(inner: &Inner, name: &str) -> Resp {
    entra_error(
        inner,
        400,
        "invalid_request",
        900_144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`.
#[allow(clippy::too_many_lines)] // one linear validation sequence, in Entra's order
pub(crate) fn token_endpoint(inner: &Inner, req: &Req, tenant: &str) -> Resp {
    if req.method != http::Method::POST {
        return entra_error(
            inner,
            405,
            "invalid_request",
            900_561,
            "The endpoint only accepts POST requests.",
        );
    }
    let form: Vec<(String, String)> =
        if req.media_type().as_deref() == Some("application/x-www-form-urlencoded") {
            form_urlencoded::parse(&req.body).into_owned().collect()
        } else {
            Vec::new()
        };
    let p = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let tenant_known = inner
        .world()
        .tenants
        .contains_key(&tenant.to_ascii_lowercase());
    if !tenant_known {
        return entra_error(
            inner,
            400,
            "invalid_request",
            90_002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let Some(grant) = p("grant_type") else {
        return missing_param(inner, "grant_type");
    };
    if grant != "client_credentials" {
        return entra_error(
            inner,
            400,
            "unsupported_grant_type",
            70_003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    let Some(client_id) = p("client_id") else {
        return missing_param(inner, "client_id");
    };
    let Some(scope) = p("scope") else {
        return missing_param(inner, "scope");
    };
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let [single] = scopes.as_slice() else {
        return entra_error(
            inner,
            400,
            "invalid_scope",
            70_011,
            &format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        );
    };
    let Some(resource) = single.strip_suffix("/.default") else {
        return entra_error(
            inner,
            400,
            "invalid_scope",
            1_002_012,
            &format!(
                "The provided value for scope {single} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    if !known_resource(resource) {
        return entra_error(
            inner,
            400,
            "invalid_resource",
            500_011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        );
    }
    let appidacr = {
        let world = inner.world();
        let Some(client) = world
            .tenants
            .get(&tenant.to_ascii_lowercase())
            .and_then(|t| t.clients.get(&client_id.to_ascii_lowercase()))
        else {
            drop(world);
            return entra_error(
                inner,
                400,
                "unauthorized_client",
                700_016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
                ),
            );
        };
        if let Some(secret) = p("client_secret") {
            if !client.secrets.iter().any(|s| s == secret) {
                drop(world);
                return entra_error(
                    inner,
                    401,
                    "invalid_client",
                    7_000_215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                );
            }
            "1"
        } else if let Some(assertion) = p("client_assertion") {
            if p("client_assertion_type") != Some(ASSERTION_TYPE) {
                drop(world);
                return entra_error(
                    inner,
                    400,
                    "invalid_request",
                    50_027,
                    "JWT token is invalid or malformed: client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
                );
            }
            if let Err((code, text)) =
                check_assertion(client, assertion, inner.cfg().token_clock_skew)
            {
                drop(world);
                return entra_error(inner, 401, "invalid_client", code, &text);
            }
            "2"
        } else {
            drop(world);
            return entra_error(
                inner,
                401,
                "invalid_client",
                7_000_218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        }
    };
    match issue(inner, tenant, client_id, resource, appidacr) {
        Ok((token, life)) => Resp::json(
            200,
            &json!({"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": token}),
        ),
        Err(e) => Resp::cloud_error(500, "InternalServerError", &e.to_string()),
    }
}

/// Checks a federated client assertion (a projected service-account JWT). The emulator cannot
/// verify the issuer's signature (it has no access to the cluster's keys); it checks the claims.
fn check_assertion(
    client: &crate::state::Client,
    assertion: &str,
    skew: Duration,
) -> Result<(), (u32, String)> {
    let claims = Jws::parse(assertion)
        .ok()
        .and_then(|j| j.claims())
        .filter(Value::is_object)
        .ok_or((50_027, "JWT token is invalid or malformed.".to_owned()))?;
    if client.federated.is_empty() {
        return Err((
            70_021,
            "No matching federated identity record found for presented assertion.".into(),
        ));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == FEDERATION_AUDIENCE,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(FEDERATION_AUDIENCE)),
        _ => false,
    };
    if !aud_ok {
        return Err((
            700_212,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'.",
                claims.get("aud").map(Value::to_string).unwrap_or_default()
            ),
        ));
    }
    let now = unix_seconds(SystemTime::now());
    let skew = i64::try_from(skew.as_secs()).unwrap_or(0);
    let exp = claims.get("exp").and_then(Value::as_i64);
    let nbf = claims.get("nbf").and_then(Value::as_i64);
    if exp.is_none_or(|e| e + skew <= now) || nbf.is_some_and(|n| n - skew > now) {
        return Err((
            700_024,
            "Client assertion is not within its valid time range.".into(),
        ));
    }
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if !client
        .federated
        .iter()
        .any(|f| f.issuer.as_deref().is_none_or(|i| i == iss))
    {
        return Err((
            700_211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'."
            ),
        ));
    }
    if !client.federated.iter().any(|f| {
        f.issuer.as_deref().is_none_or(|i| i == iss)
            && f.subject.as_deref().is_none_or(|s| s == sub)
    }) {
        return Err((
            700_213,
            format!(
                "No matching federated identity record found for presented assertion subject '{sub}'."
            ),
        ));
    }
    Ok(())
}

fn imds_error(status: u16, error: &str, description: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...` (header `Metadata: true`).
pub(crate) fn imds(inner: &Inner, req: &Req) -> Resp {
    if req.method != http::Method::GET {
        return imds_error(405, "invalid_request", "Only GET is supported");
    }
    if !req
        .header("metadata")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return imds_error(
            400,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    let Some(api) = req.api_version() else {
        return imds_error(
            400,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    };
    if !["2018-02-01", "2019-08-01", "2019-11-01", "2021-02-01"].contains(&api) {
        return imds_error(
            400,
            "invalid_request",
            &format!("Invalid api-version '{api}'"),
        );
    }
    let Some(resource) = req.q("resource") else {
        return imds_error(
            400,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    if !known_resource(resource) {
        return imds_error(
            400,
            "invalid_resource",
            &format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant."
            ),
        );
    }
    let client_id = {
        let world = inner.world();
        let mi = &world.managed_identities;
        match req.q("client_id") {
            Some(c)
                if mi.user.contains(&c.to_ascii_lowercase())
                    || mi
                        .system
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case(c)) =>
            {
                Some(c.to_owned())
            }
            Some(_) => None,
            None => mi.system.clone().or_else(|| match mi.user.as_slice() {
                [only] => Some(only.clone()),
                _ => None,
            }),
        }
    };
    let Some(client_id) = client_id else {
        return imds_error(400, "invalid_request", "Identity not found");
    };
    let tenant = inner.cfg().default_tenant;
    match issue(inner, &tenant, &client_id, resource, "2") {
        Ok((token, life)) => {
            let now = unix_seconds(SystemTime::now());
            let life_i = i64::try_from(life).unwrap_or(0);
            Resp::json(
                200,
                &json!({
                    "access_token": token,
                    "client_id": client_id,
                    "expires_in": life.to_string(),
                    "expires_on": (now + life_i).to_string(),
                    "ext_expires_in": life.to_string(),
                    "not_before": now.to_string(),
                    "resource": resource,
                    "token_type": "Bearer",
                }),
            )
        }
        Err(e) => imds_error(500, "server_error", &e.to_string()),
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenError {
    Missing,
    BadScheme,
    Invalid,
    Expired { exp: i64, now: i64 },
    NotYetValid { nbf: i64, now: i64 },
    Audience(String),
}

impl TokenError {
    /// ARM error code and message.
    pub(crate) fn arm(&self, allowed: &[&str]) -> (&'static str, String) {
        let utc = |s: i64| {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0));
            timefmt::format_status_timestamp(t)
        };
        match self {
            Self::Missing => ("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.".into()),
            Self::BadScheme => ("AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format.".into()),
            Self::Invalid => ("InvalidAuthenticationToken", "The access token is invalid.".into()),
            Self::Expired { exp, now } => (
                "ExpiredAuthenticationToken",
                format!("The access token expiry UTC time '{}' is earlier than current UTC time '{}'.", utc(*exp), utc(*now)),
            ),
            Self::NotYetValid { nbf, now } => (
                "InvalidAuthenticationToken",
                format!("The access token validity start UTC time '{}' is later than current UTC time '{}'.", utc(*nbf), utc(*now)),
            ),
            Self::Audience(aud) => {
                let list: Vec<String> =
                    allowed.iter().flat_map(|a| [format!("'{a}/'"), format!("'{a}'")]).collect();
                (
                    "InvalidAuthenticationTokenAudience",
                    format!("The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences {}.", list.join(",")),
                )
            }
        }
    }

    /// `error_description` for `WWW-Authenticate`.
    pub(crate) fn www_authenticate(&self, endpoint: &str) -> String {
        let desc = match self {
            Self::Missing => "The authentication failed because of missing 'Authorization' header.",
            Self::BadScheme => {
                "The authentication failed because of invalid 'Authorization' header."
            }
            Self::Expired { .. } => {
                "The access token expiry UTC time is earlier than current UTC time."
            }
            Self::Audience(_) => {
                "The access token has been obtained for wrong audience or resource."
            }
            Self::Invalid | Self::NotYetValid { .. } => "The access token is invalid.",
        };
        format!(
            "Bearer authorization_uri=\"{endpoint}/\", error=\"invalid_token\", error_description=\"{desc}\""
        )
    }
}

/// Validates `Authorization: Bearer` against the emulator's signing key, expiry and audience.
pub(crate) fn validate_bearer(
    inner: &Inner,
    req: &Req,
    audiences: &[&str],
) -> Result<Principal, TokenError> {
    let header = req.header("authorization").ok_or(TokenError::Missing)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(TokenError::BadScheme)?
        .trim();
    let claims = verified_claims(inner, token).ok_or(TokenError::Invalid)?;
    let now = unix_seconds(SystemTime::now());
    let skew = i64::try_from(inner.cfg().token_clock_skew.as_secs()).unwrap_or(0);
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(TokenError::Invalid)?;
    if exp + skew <= now {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(nbf) = claims
        .get("nbf")
        .and_then(Value::as_i64)
        .filter(|n| n - skew > now)
    {
        return Err(TokenError::NotYetValid { nbf, now });
    }
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if !audiences.iter().any(|a| norm_aud(a) == norm_aud(&aud)) {
        return Err(TokenError::Audience(aud));
    }
    Ok(Principal {
        appid: claims
            .get("appid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        tenant: claims
            .get("tid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    })
}

fn verified_claims(inner: &Inner, token: &str) -> Option<Value> {
    let jws = Jws::parse(token).ok()?;
    if jws.alg() != Some("RS256")
        || !inner
            .entra_key
            .verify_rs256(jws.signing_input.as_bytes(), &jws.signature)
    {
        return None;
    }
    jws.claims().filter(Value::is_object)
}

/// The caller's identity for the request log (signature checked, expiry not).
pub(crate) fn peek_principal(inner: &Inner, req: &Req) -> Option<String> {
    let header = req.header("authorization")?;
    let token = header.get(7..)?.trim();
    let claims = verified_claims(inner, token)?;
    claims
        .get("appid")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_normalisation() {
        assert!(known_resource("https://management.azure.com/"));
        assert!(known_resource("https://ATTEST.azure.net"));
        assert!(!known_resource("https://vault.azure.net"));
    }

    #[test]
    fn error_messages_name_allowed_audiences() {
        let (code, msg) =
            TokenError::Audience("https://attest.azure.net".into()).arm(&ARM_AUDIENCES);
        assert_eq!(code, "InvalidAuthenticationTokenAudience");
        assert!(msg.contains("'https://management.azure.com/'"));
    }
}
