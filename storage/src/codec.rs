//! Value encoding (CBOR via ciborium) and key helpers.
//!
//! Every value is decoded through [`decode`], which turns any failure into
//! [`StoreError::Corrupt`] naming the tree, so a damaged entry is an error and
//! never a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;

/// Encodes a value as CBOR.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    // Most values are a few hundred bytes: skip the first doublings from empty.
    let mut out = Vec::with_capacity(256);
    ciborium::into_writer(value, &mut out).map_err(|e| StoreError::Encode {
        detail: e.to_string(),
    })?;
    Ok(out)
}

/// Decodes a CBOR value read from `tree`.
pub(crate) fn decode<T: DeserializeOwned>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::corrupt(tree, e))
}

/// Reads a fixed-size array from a key or value, or reports corruption.
pub(crate) fn fixed<const N: usize>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<[u8; N], StoreError> {
    bytes.try_into().map_err(|_| {
        StoreError::corrupt(tree, format!("expected {N} bytes, found {}", bytes.len()))
    })
}

/// Reads a big-endian `u64` (as written by `u64::to_be_bytes`).
pub(crate) fn be_u64(tree: &'static str, bytes: &[u8]) -> Result<u64, StoreError> {
    fixed(tree, bytes).map(u64::from_be_bytes)
}
