//! The emulator's error type (for its Rust API; HTTP errors are responses, never panics).

/// Errors from starting, seeding or controlling the emulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Socket or file I/O failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Certificate or key generation, or a cryptographic operation, failed.
    #[error("crypto error: {0}")]
    Crypto(String),
    /// TLS configuration failed.
    #[error("TLS error: {0}")]
    Tls(String),
    /// A fault definition is invalid (e.g. a bad regex).
    #[error("invalid fault: {0}")]
    InvalidFault(String),
    /// A seed document or seeding call is invalid.
    #[error("invalid seed: {0}")]
    InvalidSeed(String),
    /// The named resource does not exist.
    #[error("not found: {0}")]
    NotFound(String),
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Self::Crypto(e.to_string())
    }
}
