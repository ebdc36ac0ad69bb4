//! Pure byte encodings shared by every Tessera component; no I/O.
//!
//! - [`keys`]: where things live in a store's engines — user data behind the `z` prefix,
//!   store- and region-local metadata behind `0x01`.
//! - [`bytes`]: memcomparable encoding of byte strings (order-preserving, self-delimiting).
//! - [`number`]: fixed-width integers, ascending and descending.
//! - [`mvcc`]: keys with a timestamp suffix, and cutting a key at a user-key boundary.
//! - [`escape`]: keys as readable text for logs and errors (`user\x00\x01`).
//!
//! Every decoder returns an [`Error`] on malformed input; none panics.

pub mod bytes;
pub mod escape;
pub mod keys;
pub mod mvcc;
pub mod number;

/// A malformed encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ended before the value did.
    #[error("unexpected end of input")]
    Eof,
    /// The bytes do not form a valid encoding.
    #[error("invalid encoding: {0}")]
    Invalid(String),
}

/// Result alias for decoders.
pub type Result<T> = std::result::Result<T, Error>;
