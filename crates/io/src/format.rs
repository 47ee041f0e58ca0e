//! The on-disk envelope of every tapegrad file, and the one place that knows the
//! encoding (serde + bincode 2), so moving to another format touches this file only.
//!
//! Layout (little-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | magic `TAPEGRAD` |
//! | 4 | format version (u32) |
//! | 8 | payload length in bytes (u64) |
//! | 8 | FNV-1a 64 checksum of the payload (u64) |
//! | n | payload: the bincode 2 (standard config) encoding of the value |
//!
//! Decoding checks each field in that order, so a bad file is reported as not ours,
//! too new, truncated, or corrupted. bincode's allocation limit is set from the payload
//! length, so a hostile length prefix cannot make the decoder allocate gigabytes.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::IoError;

const MAGIC: &[u8; 8] = b"TAPEGRAD";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 8 + 8;

/// FNV-1a, 64 bits: catches torn writes and flipped bits (not an adversary).
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The value's encoding inside the envelope.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, IoError> {
    let payload = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| IoError::Corrupt(format!("cannot encode: {e}")))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Checks the envelope and decodes the value; never panics on any input.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, IoError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(if MAGIC.starts_with(bytes) && !bytes.is_empty() {
            IoError::Truncated {
                expected: HEADER_LEN as u64,
                got: bytes.len() as u64,
            }
        } else {
            IoError::BadMagic
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(IoError::Truncated {
            expected: HEADER_LEN as u64,
            got: bytes.len() as u64,
        });
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(IoError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let (len, sum) = (u64_at(12), u64_at(20));
    let payload = &bytes[HEADER_LEN..];
    if (payload.len() as u64) < len {
        return Err(IoError::Truncated {
            expected: len,
            got: payload.len() as u64,
        });
    }
    if (payload.len() as u64) > len {
        return Err(IoError::Corrupt(format!(
            "{} bytes after the payload",
            payload.len() as u64 - len
        )));
    }
    if checksum(payload) != sum {
        return Err(IoError::ChecksumMismatch);
    }
    decode_payload(payload)
}

/// Decodes a bare payload (no envelope checks), with bincode's allocation limit a small
/// multiple of the payload's size, so no claimed length can ask for more memory than
/// a few times the file's own size. Public for the fuzz target, which must reach the
/// decoder without first forging a checksum.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, IoError> {
    use bincode::config::standard;
    let n = payload.len();
    let result = if n <= 1 << 16 {
        bincode::serde::decode_from_slice(payload, standard().with_limit::<{ 1 << 20 }>())
    } else if n <= 1 << 22 {
        bincode::serde::decode_from_slice(payload, standard().with_limit::<{ 1 << 26 }>())
    } else if n <= 1 << 28 {
        bincode::serde::decode_from_slice(payload, standard().with_limit::<{ 1 << 32 }>())
    } else {
        bincode::serde::decode_from_slice(payload, standard().with_limit::<{ 1 << 38 }>())
    };
    let (value, read) = result.map_err(|e| IoError::Corrupt(e.to_string()))?;
    if read != n {
        return Err(IoError::Corrupt(format!(
            "{} unread payload bytes",
            n - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_each_kind_of_damage() {
        let value: (Vec<f32>, String) = (vec![1.0, 2.5], "w".into());
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<(Vec<f32>, String)>(&bytes).unwrap(), value);
        assert_eq!(
            decode::<(Vec<f32>, String)>(b"PK\x03\x04 not ours").unwrap_err(),
            IoError::BadMagic
        );
        assert!(matches!(
            decode::<(Vec<f32>, String)>(&bytes[..bytes.len() - 3]),
            Err(IoError::Truncated { .. })
        ));
        assert!(matches!(
            decode::<(Vec<f32>, String)>(&bytes[..10]),
            Err(IoError::Truncated { .. })
        ));
        let mut newer = bytes.clone();
        newer[8] = 2;
        assert_eq!(
            decode::<(Vec<f32>, String)>(&newer).unwrap_err(),
            IoError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        );
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            decode::<(Vec<f32>, String)>(&flipped).unwrap_err(),
            IoError::ChecksumMismatch
        );
    }

    #[test]
    fn an_absurd_length_prefix_is_an_error_not_an_allocation() {
        // A payload claiming a Vec<f32> of 2⁶⁰ elements, with a valid envelope around it.
        let mut payload = vec![0xFF];
        payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&checksum(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        assert!(matches!(
            decode::<Vec<f32>>(&bytes),
            Err(IoError::Corrupt(_))
        ));
    }
}
