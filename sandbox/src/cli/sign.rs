//! The ContraForce webhook signature, computed as ContraForce computes it (the bridge verifies it in
//! `src/cf/signature.rs`; the sandbox does not depend on the bridge, so the sender's side lives here).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `X-CF-Signature`: `sha256=` + lowercase hex of HMAC-SHA256(secret, `"{timestamp}." + raw body`).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_test_vector() {
        assert_eq!(
            sign(b"test-secret", 1776870000, br#"{"type":"incident.created.v1","isTest":true}"#),
            "sha256=e3de0faf4c98950fa79c55150593c176583557c172250e88f7a81ce7da4f59ae"
        );
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_every_body_byte() {
        let base = sign(b"s", 1, b"{}");
        assert_ne!(base, sign(b"s", 2, b"{}"));
        assert_ne!(base, sign(b"s", 1, b"{} "));
        assert_ne!(base, sign(b"t", 1, b"{}"));
    }
}
