//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
//! keyed with the base64-decoded part of the endpoint's `whsec_…` secret.

use crate::error::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// The key a secret stands for.
pub fn key_of(secret: &str) -> Result<Vec<u8>> {
    let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
    STANDARD
        .decode(encoded)
        .map_err(|_| Error::validation("secret", "not a whsec_ secret of base64"))
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> hmac::Hmac<Sha256> {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// One `v1,…` signature.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(mac(key, id, timestamp, body).finalize().into_bytes())
    )
}

/// The `webhook-signature` header: one signature per key, space-separated (two while a
/// secret is being rotated).
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| sign(key, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any signature in `header` is `key`'s, checked in constant time.
pub fn verify(key: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|sig| {
        let Some(encoded) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(bytes) = STANDARD.decode(encoded) else {
            return false;
        };
        mac(key, id, timestamp, body).verify_slice(&bytes).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_standard_shape() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(key_of(&secret).unwrap().len(), 32);
        assert_ne!(secret, generate_secret());
        assert!(key_of("whsec_***").is_err());
    }

    #[test]
    fn signatures_verify_and_rotate() {
        let old = key_of(&generate_secret()).unwrap();
        let new = key_of(&generate_secret()).unwrap();
        let header = signature_header(&[new.clone(), old.clone()], "evt_1", 1_700_000_000, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&old, "evt_1", 1_700_000_000, b"{}", &header));
        assert!(verify(&new, "evt_1", 1_700_000_000, b"{}", &header));
        assert!(!verify(&new, "evt_1", 1_700_000_001, b"{}", &header));
        assert!(!verify(&new, "evt_2", 1_700_000_000, b"{}", &header));
        assert!(!verify(&new, "evt_1", 1_700_000_000, b"{ }", &header));
        assert!(!verify(&new, "evt_1", 1_700_000_000, b"{}", "v1,!!"));
    }
}
