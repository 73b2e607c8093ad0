//! ARM resource ids: never panics; what parses prints a text that parses to an equal id (case-insensitively,
//! with the same hash); the typed ids accept nothing the generic parser refuses.
#![no_main]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use guest_attestation_operator::azure::{ClusterId, MachineId, ProviderId, ResourceId};
use libfuzzer_sys::fuzz_target;

fn hash_of(id: &ResourceId) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

fuzz_target!(|s: &str| {
    match ResourceId::parse(s) {
        Ok(id) => {
            let again = ResourceId::parse(&id.to_string()).expect("a printed id parses");
            assert_eq!(again, id);
            let upper = ResourceId::parse(&s.to_ascii_uppercase()).expect("ids ignore ASCII case");
            assert_eq!(upper, id);
            assert_eq!(hash_of(&upper), hash_of(&id));
        }
        Err(e) => {
            assert!(e.input.len() <= 300);
            assert!(MachineId::parse(s).is_err());
            assert!(ClusterId::parse(s).is_err());
            assert!(ProviderId::parse(s).is_err());
        }
    }
    if let Ok(m) = MachineId::parse(s) {
        for child in [m.vm_instance_id(), m.attestation_status_id()] {
            assert_eq!(ResourceId::parse(&child.to_string()).as_ref(), Ok(&child));
        }
    }
});
