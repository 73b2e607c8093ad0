//! The attestation timestamp parser: never panics; what it accepts round-trips through RFC 3339; what it
//! refuses is an error that carries the input.
#![no_main]

use guest_attestation_operator::attestation_status::timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    match timestamp::parse(s) {
        Ok(ts) => assert_eq!(timestamp::parse(&ts.to_string()), Ok(ts)),
        Err(e) => assert_eq!(e.raw, s),
    }
});
