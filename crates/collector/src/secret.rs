//! Secrets: node keys, enroll secrets and operator tokens are random 256-bit values shown
//! once; the database keeps only their SHA-256.
//!
//! Must never: log or store a secret in the clear.

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("the system's random source failed: {0}")]
pub struct RandomError(String);

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
    Ok(hex(&buf))
}

/// A new 256-bit secret (node key, enroll secret, token).
pub fn new_secret() -> Result<String, RandomError> {
    random_hex(32)
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_256_bit_hex_and_hash_stably() {
        let a = super::new_secret().expect("random");
        let b = super::new_secret().expect("random");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(
            super::hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
