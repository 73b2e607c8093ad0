//! JWS/JWT decoding: never panics on any token; nothing built from fuzzed parts verifies against the instance's
//! key (RS256 only); claims of any shape are checked without panicking; a policy JWS round-trips its text.
#![no_main]

use std::sync::LazyLock;
use std::time::SystemTime;

use guest_attestation_operator::azure::{
    JsonWebKeySet, PolicySigner, check_claims, decode_policy_jws, parse_jwt, unsigned_policy_jws,
    verify_jwt,
};
use libfuzzer_sys::fuzz_target;
use url::Url;

static KEYS: LazyLock<JsonWebKeySet> = LazyLock::new(|| {
    PolicySigner::from_pem(
        include_bytes!("../../src/azure/testdata/policy-signer.key.pem"),
        include_bytes!("../../src/azure/testdata/policy-signer.cert.pem"),
    )
    .expect("the test signer loads")
    .certificates()
});

static INSTANCE: LazyLock<Url> =
    LazyLock::new(|| Url::parse("https://prov.eus.attest.azure.net").expect("a URL"));

fuzz_target!(|token: &str| {
    if let Ok(jwt) = parse_jwt(token) {
        assert_ne!(verify_jwt(&KEYS, &jwt), Ok(true), "a fuzzed token verified");
        let _ = check_claims(&jwt, &INSTANCE, SystemTime::now());
    }
    let _ = decode_policy_jws(token);
    assert_eq!(
        decode_policy_jws(&unsigned_policy_jws(token)),
        Ok(Some(token.to_owned()))
    );
});
