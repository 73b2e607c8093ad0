//! RSA signing keys: generation (seeded, so reproducible), PKCS#8 encoding, RS256 signing.
//!
//! Keys are generated with `num-bigint` (Miller-Rabin primes) instead of the `rsa` crate, which
//! carries an unpatched advisory (RUSTSEC-2023-0071) that supply-chain checks would flag. Signing
//! and verification use `ring`. Generated keys are cached per (seed, slot, bits) for the life of the
//! process, so many emulators started by one test binary pay for key generation once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use num_bigint::BigUint;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use ring::signature::{self, KeyPair, RsaKeyPair};

use crate::Error;
use crate::jwt::b64url;

/// Public exponent used for every key.
const E: u32 = 65_537;

/// An RSA key pair usable for RS256 signing.
pub(crate) struct RsaKey {
    pkcs8: Vec<u8>,
    pair: RsaKeyPair,
    /// Big-endian modulus without leading zero.
    pub(crate) n: Vec<u8>,
    /// Big-endian public exponent.
    pub(crate) e: Vec<u8>,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey")
            .field("bits", &(self.n.len() * 8))
            .finish_non_exhaustive()
    }
}

impl RsaKey {
    /// Generates a key of `bits` bits from a deterministic RNG.
    #[allow(clippy::many_single_char_names)] // RSA notation: p, q, n, e, d
    pub(crate) fn generate(rng: &mut ChaCha20Rng, bits: usize) -> Result<Self, Error> {
        let e = BigUint::from(E);
        let one = BigUint::from(1u32);
        loop {
            let p = random_prime(rng, bits / 2);
            let q = random_prime(rng, bits - bits / 2);
            if p == q {
                continue;
            }
            let (p, q) = if p > q { (p, q) } else { (q, p) };
            let n = &p * &q;
            if usize::try_from(n.bits()).ok() != Some(bits) {
                continue;
            }
            let phi = (&p - &one) * (&q - &one);
            let Some(d) = e.modinv(&phi) else { continue };
            let dp = &d % (&p - &one);
            let dq = &d % (&q - &one);
            let Some(qinv) = q.modinv(&p) else { continue };
            let der = rsa_private_key_der(&[&BigUint::ZERO, &n, &e, &d, &p, &q, &dp, &dq, &qinv]);
            let pkcs8 = pkcs8_wrap(&der);
            let pair = RsaKeyPair::from_pkcs8(&pkcs8)
                .map_err(|err| Error::Crypto(format!("generated RSA key rejected: {err}")))?;
            return Ok(Self {
                pkcs8,
                pair,
                n: n.to_bytes_be(),
                e: e.to_bytes_be(),
            });
        }
    }

    /// PKCS#8 DER of the private key.
    pub(crate) fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// DER `RSAPublicKey` (PKCS#1).
    pub(crate) fn public_key_der(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature over `msg`.
    pub(crate) fn sign_rs256(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        let rng = ring::rand::SystemRandom::new();
        self.pair
            .sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .map_err(|err| Error::Crypto(format!("RS256 signing failed: {err}")))?;
        Ok(sig)
    }

    /// Verifies an RS256 signature made by this key.
    pub(crate) fn verify_rs256(&self, msg: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.public_key_der(),
        )
        .verify(msg, sig)
        .is_ok()
    }

    /// Base64url of the modulus (JWK `n`).
    pub(crate) fn n_b64(&self) -> String {
        b64url(&self.n)
    }

    /// Base64url of the exponent (JWK `e`).
    pub(crate) fn e_b64(&self) -> String {
        b64url(&self.e)
    }
}

/// Returns the cached key for (seed, slot, bits), generating it on first use. Concurrent
/// callers for the same key wait for one generation; different keys generate in parallel.
pub(crate) fn cached_key(seed: u64, slot: u64, bits: usize) -> Result<Arc<RsaKey>, Error> {
    type Cell = Arc<OnceLock<Result<Arc<RsaKey>, String>>>;
    type Cache = Mutex<HashMap<(u64, u64, usize), Cell>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cell: Cell = {
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let mut guard = cache.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(guard.entry((seed, slot, bits)).or_default())
    };
    cell.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ slot.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        RsaKey::generate(&mut rng, bits)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(Error::Crypto)
}

/// Odd primes below 2000, for trial division.
fn small_primes() -> &'static [u32] {
    static PRIMES: OnceLock<Vec<u32>> = OnceLock::new();
    PRIMES.get_or_init(|| {
        let limit = 2000usize;
        let mut composite = vec![false; limit];
        let mut out = Vec::new();
        for i in 2..limit {
            if !composite[i] {
                if i > 2 {
                    out.push(u32::try_from(i).unwrap_or(3));
                }
                let mut j = i * i;
                while j < limit {
                    composite[j] = true;
                    j += i;
                }
            }
        }
        out
    })
}

fn random_odd(rng: &mut ChaCha20Rng, bits: usize) -> BigUint {
    let mut bytes = vec![0u8; bits.div_ceil(8)];
    rng.fill_bytes(&mut bytes);
    let excess = bytes.len() * 8 - bits;
    if let Some(first) = bytes.first_mut() {
        *first &= 0xFF >> excess;
        // Top two bits set so that p*q has exactly 2*bits bits.
        *first |= 0xC0 >> excess;
    }
    if let Some(last) = bytes.last_mut() {
        *last |= 1;
    }
    BigUint::from_bytes_be(&bytes)
}

fn random_prime(rng: &mut ChaCha20Rng, bits: usize) -> BigUint {
    let e = BigUint::from(E);
    let one = BigUint::from(1u32);
    loop {
        let candidate = random_odd(rng, bits);
        if small_primes()
            .iter()
            .any(|&sp| (&candidate % sp) == BigUint::ZERO)
        {
            continue;
        }
        if ((&candidate - &one) % &e) == BigUint::ZERO {
            continue;
        }
        if miller_rabin(&candidate, 12, rng) {
            return candidate;
        }
    }
}

#[allow(clippy::many_single_char_names)] // Miller-Rabin notation
fn miller_rabin(n: &BigUint, rounds: usize, rng: &mut ChaCha20Rng) -> bool {
    let one = BigUint::from(1u32);
    let two = BigUint::from(2u32);
    let n_minus_one = n - &one;
    let mut d = n_minus_one.clone();
    let mut s = 0u32;
    while (&d % 2u32) == BigUint::ZERO {
        d >>= 1;
        s += 1;
    }
    let byte_len = usize::try_from(n.bits().div_ceil(8)).unwrap_or(1);
    'witness: for _ in 0..rounds {
        let mut buf = vec![0u8; byte_len];
        rng.fill_bytes(&mut buf);
        let a = BigUint::from_bytes_be(&buf) % (n - 3u32) + &two;
        let mut x = a.modpow(&d, n);
        if x == one || x == n_minus_one {
            continue;
        }
        for _ in 1..s {
            x = x.modpow(&two, n);
            if x == n_minus_one {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// DER length octets.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
        out.extend_from_slice(&bytes);
    }
}

pub(crate) fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

fn der_uint(v: &BigUint) -> Vec<u8> {
    let mut bytes = v.to_bytes_be();
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    der_tlv(0x02, &bytes)
}

fn rsa_private_key_der(ints: &[&BigUint]) -> Vec<u8> {
    let content: Vec<u8> = ints.iter().flat_map(|i| der_uint(i)).collect();
    der_tlv(0x30, &content)
}

fn pkcs8_wrap(rsa_der: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }
    const ALG: [u8; 15] = [
        0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut content = vec![0x02, 0x01, 0x00];
    content.extend_from_slice(&ALG);
    content.extend(der_tlv(0x04, rsa_der));
    der_tlv(0x30, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_signs_and_verifies_and_is_reproducible() {
        let a = cached_key(7, 99, 2048).expect("key");
        let b = {
            let mut rng = ChaCha20Rng::seed_from_u64(7 ^ 99u64.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            RsaKey::generate(&mut rng, 2048).expect("key")
        };
        assert_eq!(a.n, b.n, "same seed gives the same key");
        assert_eq!(a.n.len(), 256);
        assert_eq!(a.e_b64(), "AQAB");
        let sig = a.sign_rs256(b"hello").expect("sign");
        assert!(a.verify_rs256(b"hello", &sig));
        assert!(!a.verify_rs256(b"hellp", &sig));
    }

    #[test]
    fn der_length_forms() {
        assert_eq!(der_tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der_tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2C]);
    }
}
