//! What the three controllers share: settings, the context, conditions, durations, errors.

pub mod azure_reason;
pub mod cache;
pub mod companions;
pub mod conditions;
pub mod context;
pub mod duration;
pub mod events;
pub mod fleet;
pub mod memory;
pub mod runner;
pub mod turns;

pub use context::{Context, Error, Settings};
pub use runner::Action;

/// The name of one controller's run in one namespace (`*`: all namespaces), e.g.
/// `attestationstatus/team-a`: the key of its fleet count and the name of its task.
pub fn scope(controller: &str, namespace: Option<&str>) -> String {
    format!("{controller}/{}", namespace.unwrap_or("*"))
}

/// A 16-byte SHA-256 digest of `parts` (joined by NUL): what the controllers keep to recognise a
/// long value again without keeping the value.
pub type Digest = [u8; 16];

/// The [`Digest`] of `parts`.
pub fn digest(parts: &[&str]) -> Digest {
    let digest = ring::digest::digest(&ring::digest::SHA256, parts.join("\0").as_bytes());
    let mut d = [0; 16];
    d.copy_from_slice(&digest.as_ref()[..16]);
    d
}

/// Drops what the controllers never read before an object enters a cache: managedFields and
/// the last-applied annotation (the largest parts of a small object).
pub fn strip_for_cache<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}
