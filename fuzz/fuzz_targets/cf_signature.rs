//! X-CF-Signature / X-CF-Timestamp verification: the input is split into the two header values and the body.
//! Any input must give an answer, and `Ok` only for the exact MAC of this body and timestamp.
#![no_main]

use cf_halo_bridge::cf::signature::{sign, verify, SignatureHeaders};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const SECRETS: [&[u8]; 2] = [b"fuzz-current-secret", b"fuzz-previous-secret"];

fuzz_target!(|data: &[u8]| {
    // Layout: signature \n timestamp \n now(8 bytes, optional) body...
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let signature = parts.next().and_then(|s| std::str::from_utf8(s).ok());
    let timestamp = parts.next().and_then(|s| std::str::from_utf8(s).ok());
    let rest = parts.next().unwrap_or_default();
    let (now, body) = if rest.len() >= 8 {
        (i64::from_le_bytes(rest[..8].try_into().unwrap()), &rest[8..])
    } else {
        (1_776_870_000, rest)
    };
    let headers = SignatureHeaders { signature, timestamp };
    if let Ok(matched) = verify(&SECRETS, headers, body, now, Duration::from_secs(300)) {
        let ts: i64 = timestamp.unwrap().parse().unwrap();
        assert_eq!(signature.unwrap(), sign(SECRETS[matched.0], ts, body));
    }
    // The signed form of this body always verifies.
    let good = sign(SECRETS[0], now, body);
    let now_text = now.to_string();
    // (Timestamps are at most 18 digits by design: more could not be an i64 of seconds in a sane window.)
    if (0..1_000_000_000_000_000_000).contains(&now) {
        let headers = SignatureHeaders { signature: Some(&good), timestamp: Some(&now_text) };
        assert!(verify(&SECRETS, headers, body, now, Duration::from_secs(300)).is_ok());
    }
});
