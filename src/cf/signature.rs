//! `X-CF-Signature` verification, exactly as ContraForce specifies it (docs/contraforce-contract.md, Signature):
//! `sha256=` + lowercase hex of HMAC-SHA256(secret, `"{ts}." + raw body`), `|now − ts| ≤ max skew`, constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// The only accepted scheme prefix.
pub(crate) const SIGNATURE_PREFIX: &str = "sha256=";
const HEX_DIGEST_LEN: usize = 64;
/// Longest accepted timestamp (digits); more would overflow an i64.
const MAX_TIMESTAMP_DIGITS: usize = 18;

type HmacSha256 = Hmac<Sha256>;

/// Every way a delivery's signature can be wrong. All of them answer the same 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-CF-Signature is missing")]
    MissingSignature,
    #[error("X-CF-Timestamp is missing")]
    MissingTimestamp,
    #[error("X-CF-Timestamp is not a decimal number of seconds")]
    MalformedTimestamp,
    #[error("X-CF-Timestamp is {0} s away from now, outside the accepted window")]
    OutsideWindow(i64),
    #[error("X-CF-Signature is not sha256= followed by 64 lowercase hex digits")]
    MalformedSignature,
    #[error("X-CF-Signature does not match the body")]
    Mismatch,
}

/// The signature headers as received; `None` when absent or not visible ASCII.
#[derive(Debug, Clone, Copy)]
pub struct SignatureHeaders<'a> {
    pub signature: Option<&'a str>,
    pub timestamp: Option<&'a str>,
}

/// Which of the accepted secrets matched (the previous one only during a rotation's grace window), and the signed time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchedSecret(pub usize, pub i64);

/// The header value a sender computes: `sha256=<lowercase hex>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("{SIGNATURE_PREFIX}{}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn parse_timestamp(raw: &str) -> Result<i64, SignatureError> {
    if raw.is_empty() || raw.len() > MAX_TIMESTAMP_DIGITS || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedTimestamp);
    }
    raw.parse().map_err(|_| SignatureError::MalformedTimestamp)
}

fn parse_signature(raw: &str) -> Result<[u8; 32], SignatureError> {
    let hex_part = raw.strip_prefix(SIGNATURE_PREFIX).ok_or(SignatureError::MalformedSignature)?;
    if hex_part.len() != HEX_DIGEST_LEN || !hex_part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(SignatureError::MalformedSignature);
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut digest).map_err(|_| SignatureError::MalformedSignature)?;
    Ok(digest)
}

/// What identifies one signed delivery whatever event id comes with it (the id is not signed): its signed time
/// and body. A captured delivery sent again with new event ids is still this one delivery.
pub fn delivery_id(signed_at: i64, body: &[u8]) -> String {
    use sha2::Digest;
    let digest = Sha256::new().chain_update(signed_at.to_string()).chain_update(b".").chain_update(body).finalize();
    hex::encode(&digest[..16])
}

/// Verifies a delivery against each accepted secret (current first). `now` is Unix seconds.
pub fn verify(
    secrets: &[&[u8]],
    headers: SignatureHeaders<'_>,
    body: &[u8],
    now: i64,
    max_skew: Duration,
) -> Result<MatchedSecret, SignatureError> {
    let signature = headers.signature.filter(|s| !s.is_empty()).ok_or(SignatureError::MissingSignature)?;
    let timestamp =
        parse_timestamp(headers.timestamp.filter(|t| !t.is_empty()).ok_or(SignatureError::MissingTimestamp)?)?;
    let skew = now.saturating_sub(timestamp);
    if skew.unsigned_abs() > max_skew.as_secs() {
        return Err(SignatureError::OutsideWindow(skew));
    }
    let digest = parse_signature(signature)?;
    // Check every secret (no early exit); `verify_slice` compares in constant time.
    let mut matched = None;
    for (index, secret) in secrets.iter().enumerate() {
        if mac(secret, timestamp, body).verify_slice(&digest).is_ok() && matched.is_none() {
            matched = Some(MatchedSecret(index, timestamp));
        }
    }
    matched.ok_or(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"test-secret";
    const TS: i64 = 1776870000;
    const BODY: &[u8] = br#"{"type":"incident.created.v1","isTest":true}"#;
    const VECTOR: &str = "sha256=e3de0faf4c98950fa79c55150593c176583557c172250e88f7a81ce7da4f59ae";
    const SKEW: Duration = Duration::from_secs(300);

    #[test]
    fn a_delivery_is_its_signed_time_and_body() {
        assert_eq!(delivery_id(TS, BODY), delivery_id(TS, BODY));
        assert_ne!(delivery_id(TS, BODY), delivery_id(TS + 1, BODY));
        assert_ne!(delivery_id(TS, BODY), delivery_id(TS, b"{}"));
        // The separator keeps the time and the body apart.
        assert_ne!(delivery_id(1, b"2{}"), delivery_id(12, b"{}"));
        assert_eq!(delivery_id(TS, BODY).len(), 32);
    }

    fn headers<'a>(signature: &'a str, timestamp: &'a str) -> SignatureHeaders<'a> {
        SignatureHeaders { signature: Some(signature), timestamp: Some(timestamp) }
    }

    #[test]
    fn the_contract_test_vector_signs_and_verifies() {
        assert_eq!(sign(SECRET, TS, BODY), VECTOR);
        assert_eq!(verify(&[SECRET], headers(VECTOR, "1776870000"), BODY, TS, SKEW), Ok(MatchedSecret(0, TS)));
    }

    #[test]
    fn skew_edges_are_inclusive_at_300_seconds_both_ways() {
        for now in [TS + 300, TS - 300] {
            assert!(verify(&[SECRET], headers(VECTOR, "1776870000"), BODY, now, SKEW).is_ok(), "{now}");
        }
        assert_eq!(
            verify(&[SECRET], headers(VECTOR, "1776870000"), BODY, TS + 301, SKEW),
            Err(SignatureError::OutsideWindow(301))
        );
        assert_eq!(
            verify(&[SECRET], headers(VECTOR, "1776870000"), BODY, TS - 301, SKEW),
            Err(SignatureError::OutsideWindow(-301))
        );
    }

    #[test]
    fn case_prefix_and_format_must_be_exact() {
        let upper = format!("sha256={}", VECTOR[7..].to_uppercase());
        let no_prefix = &VECTOR[7..];
        let wrong_scheme = VECTOR.replace("sha256=", "sha1=");
        let two = format!("{VECTOR},{VECTOR}");
        let spaced = format!(" {VECTOR}");
        for bad in
            [upper.as_str(), no_prefix, wrong_scheme.as_str(), two.as_str(), spaced.as_str(), "sha256=", "sha256=zz"]
        {
            assert_eq!(
                verify(&[SECRET], headers(bad, "1776870000"), BODY, TS, SKEW),
                Err(SignatureError::MalformedSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn wrong_secret_body_or_timestamp_does_not_match() {
        assert_eq!(verify(&[b"other"], headers(VECTOR, "1776870000"), BODY, TS, SKEW), Err(SignatureError::Mismatch));
        assert_eq!(verify(&[SECRET], headers(VECTOR, "1776870000"), b"{}", TS, SKEW), Err(SignatureError::Mismatch));
        assert_eq!(verify(&[SECRET], headers(VECTOR, "1776870001"), BODY, TS, SKEW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn timestamps_are_digits_only() {
        for bad in ["+1776870000", "-1", " 1776870000", "1776870000.0", "1_776_870_000", "abc", "99999999999999999999"]
        {
            assert_eq!(
                verify(&[SECRET], headers(VECTOR, bad), BODY, TS, SKEW),
                Err(SignatureError::MalformedTimestamp),
                "{bad}"
            );
        }
        // Leading zeros: the signed text is the re-formatted integer, as the samples compute it.
        assert!(verify(&[SECRET], headers(VECTOR, "01776870000"), BODY, TS, SKEW).is_ok());
    }

    #[test]
    fn missing_or_empty_headers_are_named() {
        let none = SignatureHeaders { signature: None, timestamp: Some("1") };
        assert_eq!(verify(&[SECRET], none, BODY, TS, SKEW), Err(SignatureError::MissingSignature));
        let empty = SignatureHeaders { signature: Some(VECTOR), timestamp: Some("") };
        assert_eq!(verify(&[SECRET], empty, BODY, TS, SKEW), Err(SignatureError::MissingTimestamp));
        // A non-ASCII header reaches us as None (HeaderValue::to_str fails): the same 401, not a 500.
        let non_ascii = SignatureHeaders { signature: None, timestamp: None };
        assert_eq!(verify(&[SECRET], non_ascii, BODY, TS, SKEW), Err(SignatureError::MissingSignature));
        let unicode = format!("sha256={}é", &VECTOR[7..70]);
        assert_eq!(
            verify(&[SECRET], headers(&unicode, "1776870000"), BODY, TS, SKEW),
            Err(SignatureError::MalformedSignature)
        );
    }

    #[test]
    fn the_previous_secret_matches_during_a_rotation() {
        assert_eq!(verify(&[b"new", SECRET], headers(VECTOR, "1776870000"), BODY, TS, SKEW), Ok(MatchedSecret(1, TS)));
        assert_eq!(verify(&[], headers(VECTOR, "1776870000"), BODY, TS, SKEW), Err(SignatureError::Mismatch));
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic(sig in "\\PC{0,90}", ts in "\\PC{0,25}", body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = verify(&[SECRET], headers(&sig, &ts), &body, TS, SKEW);
        }

        #[test]
        fn a_signature_verifies_only_its_own_body(body in proptest::collection::vec(any::<u8>(), 0..256), other in proptest::collection::vec(any::<u8>(), 0..256)) {
            let sig = sign(SECRET, TS, &body);
            prop_assert!(verify(&[SECRET], headers(&sig, "1776870000"), &body, TS, SKEW).is_ok());
            if other != body {
                prop_assert_eq!(verify(&[SECRET], headers(&sig, "1776870000"), &other, TS, SKEW), Err(SignatureError::Mismatch));
            }
        }
    }
}
