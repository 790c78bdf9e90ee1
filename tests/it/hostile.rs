//! Hostile HTTP input: each request gets the right 4xx, and nothing reaches Halo or ContraForce.
//!
//! `cf_webhook::bad_requests_get_a_clear_4xx_and_no_upstream_call` already covers a declared 1 MiB + 1 body, an empty
//! body, a missing event id, upper-case/prefix-less/old/wrong-secret/missing signatures, a signature for another
//! body, a non-ASCII signature, two malformed signed bodies, text/plain, GET and a missing function key. This file
//! adds the rest, through the stand-in host and, where the host would hide the case, straight to the handler's port.

use crate::support::*;
use cf_halo_bridge::cf::signature::sign;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use sandbox::faults::{Fault, Rule};
use sandbox::halo::NewAction;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Signed CF headers for `raw` at `ts`, with the function key.
fn cf_headers(b: &Bridge, event_id: &str, ts: i64, raw: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-functions-key", HeaderValue::from_str(b.host.function_key()).unwrap());
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-cf-event-id", HeaderValue::from_str(event_id).unwrap());
    h.insert("x-cf-timestamp", HeaderValue::from_str(&ts.to_string()).unwrap());
    h.insert("x-cf-signature", HeaderValue::from_str(&sign(CF_SECRET.as_bytes(), ts, raw)).unwrap());
    h.insert("x-cf-schema", HeaderValue::from_static("incident.created.v1"));
    h
}

async fn post(b: &Bridge, function: &str, headers: HeaderMap, body: Vec<u8>) -> Answer {
    let r = b.http.post(b.host.function_url(function)).headers(headers).body(body).send().await;
    Answer::from(r.expect("host reachable")).await
}

/// A signed delivery of `raw`, with `edit` applied to the headers last.
async fn cf_signed(b: &Bridge, raw: &[u8], edit: impl FnOnce(&mut HeaderMap)) -> Answer {
    let mut h = cf_headers(b, "evt-hostile", unix_now(), raw);
    edit(&mut h);
    post(b, "cf-webhook", h, raw.to_vec()).await
}

/// A Halo webhook with the right secret (unless `edit` changes it).
async fn halo_authed(b: &Bridge, raw: &[u8], edit: impl FnOnce(&mut HeaderMap)) -> Answer {
    let mut h = HeaderMap::new();
    h.insert("x-functions-key", HeaderValue::from_str(b.host.function_key()).unwrap());
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-halo-secret", HeaderValue::from_static(HALO_WEBHOOK_SECRET));
    edit(&mut h);
    post(b, "halo-webhook", h, raw.to_vec()).await
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    h.insert(name, HeaderValue::from_bytes(value.as_bytes()).unwrap());
}

fn basic(user_pass: &[u8]) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_pass))
}

/// Writes a raw HTTP/1.1 request to 127.0.0.1:`port` and returns the status code (0 when the connection closed
/// without one) and the raw response text. Bounded (generously) so that a server that never answers fails the test.
async fn raw_http(port: u16, head: &str, body: &[u8]) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The server may answer (and close) before reading everything, so the answer is read while the body is still
    // being written: read only after the write, a reset that follows the answer could discard it unread (RFC 9112
    // §9.6). A failed write is not an error here.
    let mut sent = head.as_bytes().to_vec();
    sent.extend_from_slice(body);
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&sent).await;
        let _ = writer.flush().await;
        writer
    });
    let exchange = async {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.len() > 4 * 1024 * 1024 {
                        break;
                    }
                }
            }
        }
        out
    };
    let out = tokio::time::timeout(Duration::from_secs(120), exchange).await.expect("the server never answered");
    // Keep the write half open until the answer is read (dropping it would half-close the connection early).
    drop(write.await);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk * 8 + 8);
    for part in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A header name and its raw value bytes.
type RawHeader = (&'static str, Vec<u8>);

fn assert_untouched(b: &Bridge) {
    // Method and path only: a recorded token request carries the client secret in its body.
    let reached: Vec<String> = b.halo.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(reached.len(), 0, "no hostile request may reach Halo: {reached:?}");
    assert_eq!(b.cf.requests().len(), 0, "no hostile request may reach ContraForce");
    assert!(b.halo.tickets().is_empty());
    assert!(b.host.unexpected_exits().is_empty(), "the handler died: {:?}", b.host.unexpected_exits());
    b.assert_clean_logs();
}

#[tokio::test]
async fn oversized_bodies_and_headers_are_refused_without_reading_on() {
    let b = Bridge::start().await;
    let handler = b.host.handler_port().expect("the handler runs");
    let big = vec![b' '; 2 * 1024 * 1024];

    // Straight to the handler: a declared length over 1 MiB is a 413 before the body is read, and a chunked body
    // (length undeclared) is a 411, whatever its size.
    for path in ["/api/cf-webhook", "/api/halo-webhook"] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-halo-secret: {HALO_WEBHOOK_SECRET}\r\nconnection: close\r\n\r\n",
            big.len()
        );
        let (status, _) = raw_http(handler, &head, &big).await;
        assert_eq!(status, 413, "{path}: declared 2 MiB");
        let huge_declared = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 99999999999999\r\nx-halo-secret: {HALO_WEBHOOK_SECRET}\r\nconnection: close\r\n\r\n"
        );
        let (status, _) = raw_http(handler, &huge_declared, b"{}").await;
        assert_eq!(status, 413, "{path}: declared 99 TB");
        for body in [&big[..], &b"{}"[..]] {
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nx-halo-secret: {HALO_WEBHOOK_SECRET}\r\nconnection: close\r\n\r\n"
            );
            let (status, _) = raw_http(handler, &head, &chunked(body, 64 * 1024)).await;
            assert_eq!(status, 411, "{path}: chunked {} bytes", body.len());
        }
        // A length that is not a number is a 400 (from the HTTP layer), not a 500.
        let bad_length =
            format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 12abc\r\nconnection: close\r\n\r\n{{}}");
        let (status, _) = raw_http(handler, &bad_length, b"").await;
        assert_eq!(status, 400, "{path}: unparseable Content-Length");
    }

    // Through the host: a chunked body reaches the handler empty (the host forwards no body without a length),
    // which is a 400, not a crash; an over-limit declared body is a 413.
    let key = b.host.function_key().to_string();
    let host = b.host.port();
    let signed_head = |extra: &str| {
        let ts = unix_now();
        format!(
            "POST /api/cf-webhook HTTP/1.1\r\nhost: x\r\nx-functions-key: {key}\r\ncontent-type: application/json\r\nx-cf-event-id: evt-chunked\r\nx-cf-timestamp: {ts}\r\nx-cf-signature: {}\r\n{extra}connection: close\r\n\r\n",
            sign(CF_SECRET.as_bytes(), ts, &big)
        )
    };
    let (status, text) = raw_http(host, &signed_head("transfer-encoding: chunked\r\n"), &chunked(&big, 100_000)).await;
    assert_eq!(status, 400, "chunked via the host: {}", &text[..text.len().min(300)]);
    assert!(text.contains(r#""error":"empty body""#), "chunked via the host: {}", &text[..text.len().min(300)]);
    let (status, _) = raw_http(host, &signed_head(&format!("content-length: {}\r\n", big.len())), &big).await;
    assert_eq!(status, 413);

    // Oversized headers: a 64 KB signature, event id, timestamp, secret or Authorization is a 4xx; a header block far
    // over any sane size is refused by the HTTP layer (431) or the connection is closed, never processed.
    let good = serde_json::to_vec(&incident("inc-hostile-h", 1)).unwrap();
    let huge = "a".repeat(64 * 1024);
    let a = cf_signed(&b, &good, |h| set(h, "x-cf-signature", &format!("sha256={huge}"))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    let a = cf_signed(&b, &good, |h| set(h, "x-cf-timestamp", &"1".repeat(64 * 1024))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    let a = cf_signed(&b, &good, |h| set(h, "x-cf-event-id", &huge)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{a:?}");
    let a = halo_authed(&b, br#"{"object_id":1}"#, |h| set(h, "x-halo-secret", &huge)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    let a = halo_authed(&b, br#"{"object_id":1}"#, |h| {
        h.remove("x-halo-secret");
        set(h, "authorization", &format!("Basic {huge}"))
    })
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    let block: String = (0..64).map(|i| format!("x-junk-{i}: {}\r\n", "j".repeat(16 * 1024))).collect();
    for port in [host, handler] {
        let head = format!(
            "POST /api/halo-webhook HTTP/1.1\r\nhost: x\r\nx-functions-key: {key}\r\nx-halo-secret: {HALO_WEBHOOK_SECRET}\r\ncontent-type: application/json\r\ncontent-length: 15\r\n{block}connection: close\r\n\r\n"
        );
        let (status, _) = raw_http(port, &head, br#"{"object_id":1}"#).await;
        assert!(status == 431 || status == 400 || status == 0, "a 1 MB header block got {status}");
    }
    assert_untouched(&b);
}

#[tokio::test]
async fn wrong_methods_and_content_types_are_refused() {
    let b = Bridge::start().await;
    let handler = b.host.handler_port().unwrap();
    let key = b.host.function_key().to_string();
    for path in ["/api/cf-webhook", "/api/halo-webhook"] {
        for method in ["PUT", "GET", "DELETE", "PATCH", "OPTIONS"] {
            // The host routes POST only (function.json), so it answers 404; the handler itself answers 405.
            let url = format!("{}{path}", b.host.url());
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = b.http.request(m, &url).header("x-functions-key", &key).body("{}").send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path} via the host");
            let head = format!(
                "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\nx-halo-secret: {HALO_WEBHOOK_SECRET}\r\nconnection: close\r\n\r\n"
            );
            let (status, text) = raw_http(handler, &head, b"{}").await;
            assert_eq!(status, 405, "{method} {path} to the handler: {text}");
        }
    }
    let good = serde_json::to_vec(&incident("inc-hostile-ct", 2)).unwrap();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/json",
        "application/jsonx",
    ] {
        let a = cf_signed(&b, &good, |h| set(h, "content-type", ct)).await;
        assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "cf-webhook {ct}: {a:?}");
        let a = halo_authed(&b, br#"{"object_id":1}"#, |h| set(h, "content-type", ct)).await;
        assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "halo-webhook {ct}: {a:?}");
    }
    // The secret is checked before the content type: a wrong secret with a wrong type is still a 401.
    let a = halo_authed(&b, b"x=1", |h| {
        set(h, "content-type", "text/plain");
        set(h, "x-halo-secret", "guess");
    })
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_untouched(&b);
}

#[tokio::test]
async fn timestamps_outside_the_window_and_garbled_signatures_are_401() {
    let b = Bridge::start().await;
    let good = serde_json::to_vec(&incident("inc-hostile-ts", 3)).unwrap();
    let now = unix_now();
    // A replay of a delivery signed 10 minutes ago, one "from the future", and absurd clocks: all correctly signed.
    // (Each is far outside the 300 s window, so no slowness of this machine can bring one inside it; the exact
    // edges are unit tests of `cf::signature` with a fixed clock.)
    for ts in [now - 600, now + 900, now + 86_400 * 365, 0, 1] {
        let a = cf_signed(&b, &good, |h| {
            set(h, "x-cf-timestamp", &ts.to_string());
            set(h, "x-cf-signature", &sign(CF_SECRET.as_bytes(), ts, &good));
        })
        .await;
        assert_eq!(
            (a.status, a.body.clone()),
            (StatusCode::UNAUTHORIZED, json!({"error": "invalid signature"})),
            "{ts}"
        );
    }
    let sig = sign(CF_SECRET.as_bytes(), now, &good);
    // (Surrounding spaces are not part of an HTTP header value, so `"{sig} "` is the signature itself.)
    let garbled = [
        format!("{} {}", &sig[..20], &sig[20..]),
        format!("sha256= {}", &sig[7..]),
        format!("SHA256={}", &sig[7..]),
        format!("sha256={}", &sig[7..70]),
        format!("{sig}00"),
        format!("sha512={}", &sig[7..]),
        format!("{sig},{sig}"),
        "sha256=".to_string(),
        "sha256=\u{e9}".to_string(),
    ];
    for s in &garbled {
        let a = cf_signed(&b, &good, |h| {
            set(h, "x-cf-timestamp", &now.to_string());
            h.insert("x-cf-signature", HeaderValue::from_bytes(s.as_bytes()).unwrap());
        })
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{s:?}: {a:?}");
    }
    for ts in ["-1", "+1", "1e9", "0x10", "99999999999999999999999", " ", "١٢٣"] {
        let a = cf_signed(&b, &good, |h| {
            h.insert("x-cf-timestamp", HeaderValue::from_bytes(ts.as_bytes()).unwrap()).map(drop).unwrap_or(())
        })
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{ts:?}: {a:?}");
    }
    // Invalid UTF-8 in the signature header bytes.
    let a = cf_signed(&b, &good, |h| {
        h.insert("x-cf-signature", HeaderValue::from_bytes(b"sha256=\xff\xfe").unwrap());
    })
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_untouched(&b);
}

/// Two `X-CF-Signature` headers (or two timestamps, or two event ids) are ambiguous: which one a proxy or the
/// Functions host keeps is not defined, so the request must be refused whatever their order.
#[tokio::test]
async fn duplicate_signature_headers_are_refused() {
    let b = Bridge::start().await;
    let good = serde_json::to_vec(&incident("inc-hostile-dup", 4)).unwrap();
    let ts = unix_now();
    let valid = sign(CF_SECRET.as_bytes(), ts, &good);
    let invalid = sign(b"guessed", ts, &good);
    for (first, second) in [(&invalid, &valid), (&valid, &invalid), (&valid, &valid)] {
        let a = cf_signed(&b, &good, |h| {
            h.remove("x-cf-signature");
            h.append("x-cf-signature", HeaderValue::from_str(first).unwrap());
            h.append("x-cf-signature", HeaderValue::from_str(second).unwrap());
        })
        .await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "two signatures ({}) got {a:?}",
            if first == &valid { "valid first" } else { "invalid first" }
        );
    }
    let a = cf_signed(&b, &good, |h| {
        h.append("x-cf-timestamp", HeaderValue::from_str(&(ts - 1000).to_string()).unwrap());
    })
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "two timestamps: {a:?}");
    let a = cf_signed(&b, &good, |h| {
        h.append("x-cf-event-id", HeaderValue::from_static("evt-other"));
    })
    .await;
    assert!(a.status.is_client_error(), "two event ids: {a:?}");
    assert_untouched(&b);
    // Two Content-Types: the host forwards one, so this case is seen only straight at the handler's port.
    let handler = b.host.handler_port().expect("the handler runs");
    let head = "POST /api/cf-webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-type: text/plain\r\nx-cf-event-id: evt-two-types\r\ncontent-length: 2\r\nconnection: close\r\n\r\n";
    let (status, text) = raw_http(handler, head, b"{}").await;
    assert_eq!(status, 415, "two content types: {text}");
}

#[tokio::test]
async fn malformed_bodies_with_valid_signatures_are_400() {
    let b = Bridge::start().await;
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let deep_in_data =
        format!(r#"{{"data":{{"incidentId":"i","source":"s","incidentNumber":1,"title":"t","entities":{}}}}}"#, deep);
    let valid_start = br#"{"data":{"incidentId":"i","source":"s","incidentNumber":1,"title":""#;
    let with = |tail: &[u8]| [&valid_start[..], tail, b"\"}}"].concat();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("100,000 nested arrays", deep.into_bytes()),
        ("100,000 nested objects", deep_objects.into_bytes()),
        ("deep nesting inside data", deep_in_data.into_bytes()),
        ("a NUL byte in a string", with(b"a\0b")),
        ("a raw NUL byte between tokens", b"{\"data\":\0{}}".to_vec()),
        ("invalid UTF-8 in a string", with(b"\xc3\x28\xff")),
        ("a lone surrogate escape", with(br"\ud800")),
        ("a UTF-8 BOM", [&b"\xef\xbb\xbf"[..], &with(b"t")].concat()),
        ("a JSON array", b"[1,2,3]".to_vec()),
        ("null", b"null".to_vec()),
        ("data is a string", br#"{"data":"x"}"#.to_vec()),
        (
            "incidentNumber with 400 digits",
            format!(r#"{{"data":{{"incidentId":"i","source":"s","incidentNumber":{},"title":"t"}}}}"#, "9".repeat(400))
                .into_bytes(),
        ),
        (
            "incidentNumber 1e400",
            br#"{"data":{"incidentId":"i","source":"s","incidentNumber":1e400,"title":"t"}}"#.to_vec(),
        ),
        (
            "incidentNumber over i64",
            br#"{"data":{"incidentId":"i","source":"s","incidentNumber":99999999999999999999,"title":"t"}}"#.to_vec(),
        ),
        (
            "incidentNumber a float",
            br#"{"data":{"incidentId":"i","source":"s","incidentNumber":1.5,"title":"t"}}"#.to_vec(),
        ),
        (
            "a pipe in the source",
            br#"{"data":{"incidentId":"i","source":"a|b","incidentNumber":1,"title":"t"}}"#.to_vec(),
        ),
        (
            "whitespace-only incidentId",
            br#"{"data":{"incidentId":"  ","source":"s","incidentNumber":1,"title":"t"}}"#.to_vec(),
        ),
        ("trailing garbage", [&with(b"t")[..], b"xyz"].concat()),
        ("truncated", with(b"t")[..30].to_vec()),
    ];
    for (what, body) in &bodies {
        let a = cf_signed(&b, body, |_| {}).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}: {a:?}");
        assert!(a.body["error"].is_string(), "{what}: a JSON error body");
    }
    for (what, body) in &bodies[..8] {
        let a = halo_authed(&b, body, |_| {}).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "halo-webhook, {what}: {a:?}");
    }
    // Valid JSON without a usable ticket id is a 200 "ignored" (Halo does not retry; nothing to do), never fetched.
    for payload in [
        json!({"object_id": 1e300}),
        json!({"object_id": "99999999999999999999"}),
        json!({"object_id": -1}),
        json!([[[]]]),
    ] {
        let a = halo_authed(&b, &serde_json::to_vec(&payload).unwrap(), |_| {}).await;
        assert_eq!(
            (a.status, a.body["reason"].as_str()),
            (StatusCode::OK, Some("no ticket id in payload")),
            "{payload}"
        );
    }
    assert!(b.host.handler_exited().is_none(), "the handler is still up");
    assert_untouched(&b);
}

#[tokio::test]
async fn halo_webhook_secrets_are_exact_and_only_the_basic_password() {
    let b = Bridge::start().await;
    let payload = br#"{"object_id":1001}"#;
    let s = HALO_WEBHOOK_SECRET;
    let prefix = &s[..s.len() - 1];
    let mut upper = s.to_string();
    upper.make_ascii_uppercase();
    let cases: Vec<(&str, Vec<RawHeader>)> = vec![
        ("the secret as the Basic user", vec![("authorization", basic(format!("{s}:").as_bytes()).into_bytes())]),
        (
            "the secret as the Basic user, any password",
            vec![("authorization", basic(format!("{s}:x").as_bytes()).into_bytes())],
        ),
        ("the secret without a colon", vec![("authorization", basic(s.as_bytes()).into_bytes())]),
        (
            "a guessed prefix as the password",
            vec![("authorization", basic(format!("halo:{prefix}").as_bytes()).into_bytes())],
        ),
        ("the secret plus a suffix", vec![("x-halo-secret", format!("{s}x").into_bytes())]),
        ("the secret upper-cased", vec![("x-halo-secret", upper.clone().into_bytes())]),
        ("the secret with a space inside", vec![("x-halo-secret", format!("{} {}", &s[..4], &s[4..]).into_bytes())]),
        ("an empty X-Halo-Secret", vec![("x-halo-secret", Vec::new())]),
        ("Bearer with the secret", vec![("authorization", format!("Bearer {s}").into_bytes())]),
        ("Basic without credentials", vec![("authorization", b"Basic".to_vec())]),
        ("Basic with non-base64", vec![("authorization", b"Basic !!!***".to_vec())]),
        ("Basic of invalid UTF-8", vec![("authorization", basic(b"\xff\xfe:\xff").into_bytes())]),
        ("Basic, empty password", vec![("authorization", basic(b"halo:").into_bytes())]),
        ("Digest", vec![("authorization", b"Digest username=\"x\", response=\"y\"".to_vec())]),
        ("non-ASCII Authorization bytes", vec![("authorization", b"Basic \xe9\xe9".to_vec())]),
        (
            "a wrong X-Halo-Secret beside a right Basic password",
            vec![
                ("x-halo-secret", b"wrong".to_vec()),
                ("authorization", basic(format!("halo:{s}").as_bytes()).into_bytes()),
            ],
        ),
    ];
    for (what, headers) in cases {
        let mut h = HeaderMap::new();
        h.insert("x-functions-key", HeaderValue::from_str(b.host.function_key()).unwrap());
        h.insert("content-type", HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            h.append(HeaderName::from_static(name), HeaderValue::from_bytes(&value).unwrap());
        }
        let a = post(&b, "halo-webhook", h, payload.to_vec()).await;
        assert_eq!(
            (a.status, a.body.clone()),
            (StatusCode::UNAUTHORIZED, json!({"error": "invalid callback secret"})),
            "{what}"
        );
    }
    // The secret in the query string is not a credential either.
    let url = format!("{}?secret={s}&x-halo-secret={s}", b.host.function_url("halo-webhook"));
    let r =
        b.http.post(url).header("x-functions-key", b.host.function_key()).body(payload.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_untouched(&b);
}

/// Incident ids are outside text: every character must survive the trip CF → Halo reference → the ContraForce
/// comment and close URLs, and the dedupe keys must keep working for them.
#[tokio::test]
async fn awkward_incident_ids_round_trip_to_halo_and_back_to_the_cf_urls() {
    let b = Bridge::start().await;
    let ids = [
        "a/b'c#d?e%f",
        "%2F..%2f..%00",
        "ünï/cödé ✓ 😀",
        "pipes|in|the|id",
        "x?code=stolen&y=#frag",
        "  spaced  out  ",
        "'; DROP TABLE x;--",
    ];
    round_trip(&b, &ids, 7000).await;
    b.assert_clean_logs();
}

/// `.` and `..` are path segments a URL library drops or resolves: an incident with such an id must still get its
/// comments and close at its own URL, not at `/incidents/comments` or the workspace's parent.
#[tokio::test]
async fn dot_segment_incident_ids_are_refused_because_no_url_can_carry_them() {
    // `.` and `..` as a path segment are removed by URL normalisation (even percent-encoded): ContraForce's
    // `/incidents/{id}/comments` would become another URL. Such ids are refused at the door, and a Halo ticket that
    // carries one is not treated as CF-linked.
    let b = Bridge::start().await;
    for (n, id) in ["..", "."].iter().enumerate() {
        let a = b.send_cf(&format!("evt-dot-{n}"), &incident(id, 8000 + n as i64)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{id:?}: {a:?}");
        assert!(a.body["error"].as_str().unwrap().contains("data.incidentId"), "{a:?}");
        let t = b.halo.create_ticket_direct(sandbox::halo::NewTicket {
            supplier_reference: Some(format!("cf|sentinel|{id}")),
            ..Default::default()
        });
        b.halo.add_action(t, NewAction::human("Sam Agent", 2, "reply", false));
        let h = b.send_halo(&Bridge::halo_payload(t)).await;
        assert_eq!(
            h.body,
            json!({"status": "ignored", "reason": "not a ticket the bridge created or imported"}),
            "{id:?}"
        );
    }
    assert_eq!(b.halo.count("POST", "/api/Tickets"), 0);
    assert!(b.cf.requests().is_empty());
}

async fn round_trip(b: &Bridge, ids: &[&str], first_number: i64) {
    for (n, id) in ids.iter().enumerate() {
        let number = first_number + n as i64;
        // The first create is cut off after Halo stored it: the redelivery must find the ticket by its exact
        // reference (a search with these characters in the query) instead of creating a second one.
        b.halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::ApplyThenBreak));
        let event = format!("evt-{number}-a");
        let first = b.send_cf(&event, &incident(id, number)).await;
        assert_eq!(first.body["status"], "queued", "{id:?}: {first:?}");
        let (created, _) = b.send_cf_until_done(&event, &incident(id, number)).await;
        assert!(["created", "duplicate"].contains(&created.body["status"].as_str().unwrap()), "{id:?}: {created:?}");
        let ticket = created.body["ticketId"].as_i64().unwrap();
        let trimmed = id.trim();
        let t = b.halo.ticket(ticket).unwrap();
        assert_eq!(t.supplier_reference.as_deref(), Some(format!("cf|sentinel|{trimmed}").as_str()), "{id:?}");
        let same: Vec<_> =
            b.halo.tickets().into_iter().filter(|t| t.summary.contains(&format!("#{number}]"))).collect();
        assert_eq!(same.len(), 1, "{id:?}: one ticket");
        // A later event, and a duplicate of it.
        for _ in 0..2 {
            let later = b.send_cf(&format!("evt-{number}-b"), &incident(id, number)).await;
            assert!(later.status.is_success(), "{id:?}: {later:?}");
        }
        let notes = b.halo.actions(ticket).into_iter().filter(|a| a.outcome == "Private Note").count();
        assert_eq!(notes, 1, "{id:?}");
        // Back: a public note and a close reach ContraForce under exactly this incident id.
        b.halo.add_action(ticket, NewAction::human("Sam Agent", 2, &format!("reply for {n}"), false));
        b.halo.set_status(ticket, 9, "Closed", true);
        let a = b.send_halo(&Bridge::halo_payload(ticket)).await;
        assert_eq!(
            a.body,
            json!({"status": "processed", "actionsForwarded": 1, "closed": true, "setAside": 0}),
            "{id:?}"
        );
        let comments = b.cf.comments(trimmed);
        assert_eq!(comments.len(), 1, "{id:?}: {:?}", b.cf.all_comments());
        assert_eq!(comments[0].body["incidentId"], Value::from(trimmed));
        assert_eq!(b.cf.status_changes(trimmed).len(), 1, "{id:?}");
    }
    assert_eq!(b.cf.all_comments().len(), ids.len(), "no comment went to a truncated or re-routed id");
    // Nothing escaped the incident segment: every CF request stayed under /workspaces/{ws}/incidents/<one segment>/.
    for r in b.cf.requests() {
        let segments: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        assert_eq!(segments.len(), 7, "{}", r.path);
        assert!(r.query.is_empty(), "{}?{}", r.path, r.query);
    }
}
