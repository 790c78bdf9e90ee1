//! Property tests for every parser that sees outside input, through the library's public API:
//! the CF signature headers and body, the Halo webhook body, Halo API responses, the external reference, and
//! HTML → text. Each must return (never panic, never hang) on any input, and keep its output bounded.
//!
//! Unit proptests in `src/` already cover short random strings; these add arbitrary JSON documents, deeply nested
//! bodies, huge strings and the output bounds. `cargo test --test parsers`; `PROPTEST_CASES=5000` for a longer run.
//!
//! The inputs come from a fixed seed, so the suite checks the same cases every time (a failure is reproducible, and
//! a run never fails by luck). To explore other inputs: `PROPTEST_RNG_SEED=<any number>`; a failure found that way
//! is written to `tests/parsers.proptest-regressions`, which every later run replays first.

use cf_halo_bridge::cf::event::{self, EventError};
use cf_halo_bridge::cf::signature::{sign, verify, MatchedSecret, SignatureError, SignatureHeaders};
use cf_halo_bridge::directions::halo_webhook::comment_for;
use cf_halo_bridge::domain::{EventId, ExternalRef, MAX_EVENT_ID_LEN};
use cf_halo_bridge::halo::model::{list_items, single_item, Action, Ticket};
use cf_halo_bridge::halo::text::{cap, html_to_text, MAX_COMMENT_CHARS};
use cf_halo_bridge::halo::webhook::ticket_id;
use cf_halo_bridge::wire::lenient_i64;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &[u8] = b"parsers-secret";

/// `default` cases, or `PROPTEST_CASES` when set (for a longer run); the fixed seed unless `PROPTEST_RNG_SEED` is set.
fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let mut config = ProptestConfig::with_cases(n);
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = proptest::test_runner::RngSeed::Fixed(SEED);
    }
    config
}
/// The inputs' seed when `PROPTEST_RNG_SEED` is not set.
const SEED: u64 = 0x5EED_C0DE_2026;
const NOW: i64 = 1_776_870_000;
const SKEW: Duration = Duration::from_secs(300);

/// Any JSON document: scalars (including huge and odd numbers and unicode strings), arrays and objects, a few levels
/// deep, with the keys the parsers look for mixed into random ones so the interesting branches are reached.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("id".to_string()),
        Just("object_id".to_string()),
        Just("ticket".to_string()),
        Just("ticket_id".to_string()),
        Just("data".to_string()),
        Just("incidentId".to_string()),
        Just("incidentNumber".to_string()),
        Just("source".to_string()),
        Just("title".to_string()),
        Just("isTest".to_string()),
        Just("type".to_string()),
        Just("actions".to_string()),
        Just("tickets".to_string()),
        Just("record_count".to_string()),
        Just("customfields".to_string()),
        Just("value".to_string()),
        Just("hiddenfromuser".to_string()),
        Just("hasbeenclosed".to_string()),
        Just("note_html".to_string()),
        Just("who_agentid".to_string()),
        Just("supplier_reference".to_string()),
        Just("alerts".to_string()),
        Just("entities".to_string()),
        Just("owner".to_string()),
        "\\PC{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        Just(json!(1e300)),
        Just(json!(-0.0)),
        Just(json!("99999999999999999999999")),
        Just(json!(" 42 ")),
        Just(json!("cf|sentinel|inc/1?#%'é")),
        "\\PC{0,40}".prop_map(Value::String),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bytes that are often almost JSON: a document with a few bytes changed, cut short or extended with junk.
fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (
            arb_json(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            any::<prop::sample::Index>()
        )
            .prop_map(|(v, edits, cut)| {
                let mut raw = serde_json::to_vec(&v).unwrap();
                for (at, byte) in edits {
                    if !raw.is_empty() {
                        let i = at.index(raw.len());
                        raw[i] = byte;
                    }
                }
                if raw.len() > 2 && cut.index(4) == 0 {
                    let keep = cut.index(raw.len());
                    raw.truncate(keep);
                }
                raw
            }),
    ]
}

/// `depth` nested arrays (or objects) around `inner`, as text: the parsers must refuse it, not overflow the stack.
fn nested(depth: usize, inner: &str, objects: bool) -> String {
    let (open, close) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
    let mut s = String::with_capacity(depth * (open.len() + close.len()) + inner.len());
    for _ in 0..depth {
        s.push_str(open);
    }
    s.push_str(inner);
    for _ in 0..depth {
        s.push_str(close);
    }
    s
}

fn headers<'a>(signature: Option<&'a str>, timestamp: Option<&'a str>) -> SignatureHeaders<'a> {
    SignatureHeaders { signature, timestamp }
}

// ---------------------------------------------------------------------------------------------------------------
// X-CF-Signature / X-CF-Timestamp

proptest! {
    #![proptest_config(cases(512))]

    /// Any header text, any body, any clock: an answer, and `Ok` only for the exact signature of this body.
    #[test]
    fn signature_verification_is_total_and_only_accepts_the_exact_mac(
        sig in prop_oneof!["\\PC{0,100}", "sha256=[0-9a-f]{64}", "sha256=[0-9a-fA-F]{60,70}", Just(String::new())],
        ts in prop_oneof!["\\PC{0,30}", "[0-9]{0,25}", Just("1776870000".to_string()), Just(i64::MAX.to_string())],
        body in prop::collection::vec(any::<u8>(), 0..2048),
        now in prop_oneof![Just(NOW), any::<i64>(), Just(i64::MIN), Just(i64::MAX)],
        skew in prop_oneof![Just(SKEW), Just(Duration::ZERO), Just(Duration::MAX)],
        drop_sig in any::<bool>(),
        drop_ts in any::<bool>(),
    ) {
        let h = headers((!drop_sig).then_some(sig.as_str()), (!drop_ts).then_some(ts.as_str()));
        if let Ok(MatchedSecret(i, signed_at)) = verify(&[SECRET], h, &body, now, skew) {
            prop_assert_eq!(i, 0);
            let parsed: i64 = ts.parse().unwrap();
            prop_assert_eq!(signed_at, parsed);
            prop_assert_eq!(sig, sign(SECRET, parsed, &body));
        }
    }

    /// A real signature with one character changed, or checked against a changed body, never verifies.
    #[test]
    fn a_tampered_signature_or_body_never_verifies(
        body in prop::collection::vec(any::<u8>(), 0..1024),
        at in any::<prop::sample::Index>(),
        with in "[0-9a-f]",
        flip in any::<prop::sample::Index>(),
    ) {
        let good = sign(SECRET, NOW, &body);
        let ts = NOW.to_string();
        prop_assert_eq!(verify(&[SECRET], headers(Some(&good), Some(&ts)), &body, NOW, SKEW), Ok(MatchedSecret(0, NOW)));
        let i = 7 + at.index(64);
        let mut tampered = good.clone();
        tampered.replace_range(i..i + 1, &with);
        if tampered != good {
            prop_assert_eq!(
                verify(&[SECRET], headers(Some(&tampered), Some(&ts)), &body, NOW, SKEW),
                Err(SignatureError::Mismatch)
            );
        }
        let mut other = body.clone();
        if other.is_empty() {
            other.push(b'x');
        } else {
            let j = flip.index(other.len());
            other[j] ^= 0x01;
        }
        prop_assert_eq!(
            verify(&[SECRET], headers(Some(&good), Some(&ts)), &other, NOW, SKEW),
            Err(SignatureError::Mismatch)
        );
    }

    /// Old and future timestamps outside the window are refused even with a correct MAC.
    #[test]
    fn replayed_and_future_timestamps_are_refused(offset in 301i64..10_000_000, future in any::<bool>()) {
        let ts = if future { NOW + offset } else { NOW - offset };
        let body = br#"{"data":{}}"#;
        let sig = sign(SECRET, ts, body);
        let ts_text = ts.to_string();
        prop_assert!(matches!(
            verify(&[SECRET], headers(Some(&sig), Some(&ts_text)), body, NOW, SKEW),
            Err(SignatureError::OutsideWindow(_))
        ));
    }
}

#[test]
fn signature_checks_handle_huge_bodies_and_headers() {
    let body = vec![b'{'; 4 * 1024 * 1024];
    let sig = sign(SECRET, NOW, &body);
    let ts = NOW.to_string();
    assert_eq!(verify(&[SECRET], headers(Some(&sig), Some(&ts)), &body, NOW, SKEW), Ok(MatchedSecret(0, NOW)));
    let huge_header = format!("sha256={}", "a".repeat(64 * 1024));
    let huge_ts = "1".repeat(64 * 1024);
    assert_eq!(
        verify(&[SECRET], headers(Some(&huge_header), Some(&ts)), &body, NOW, SKEW),
        Err(SignatureError::MalformedSignature)
    );
    assert_eq!(
        verify(&[SECRET], headers(Some(&sig), Some(&huge_ts)), &body, NOW, SKEW),
        Err(SignatureError::MalformedTimestamp)
    );
    // Two signatures in one header (a duplicated header joined by a proxy) are malformed, not "one of them".
    let joined = format!("{sig}, {sig}");
    assert_eq!(
        verify(&[SECRET], headers(Some(&joined), Some(&ts)), &body, NOW, SKEW),
        Err(SignatureError::MalformedSignature)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The incident.created.v1 body

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn event_parsing_is_total_on_bytes(body in arb_body()) {
        let _ = event::is_test_body(&body);
        if let Ok(envelope) = event::parse(&body) {
            let i = envelope.incident;
            let (source, id) = (i.reference.source(), i.reference.incident_id());
            prop_assert!(!id.is_empty() && !i.title.is_empty() && !source.is_empty());
            prop_assert!(!source.contains('|'));
            prop_assert_eq!(ExternalRef::parse(&i.reference.to_string()), Some(i.reference.clone()));
        }
    }

    #[test]
    fn event_parsing_is_total_on_documents(doc in arb_json(), data in arb_json()) {
        let mut doc = doc;
        if let Value::Object(map) = &mut doc {
            map.insert("data".into(), data);
        }
        let raw = serde_json::to_vec(&doc).unwrap();
        match event::parse(&raw) {
            Ok(envelope) => {
                let i = envelope.incident;
                let id = i.reference.incident_id();
                prop_assert_eq!(id.trim(), id);
                prop_assert_eq!(i.title.trim(), i.title.as_str());
                // Everything parsed came from the body: the output is no larger than the input.
                let out = id.len() + i.title.len() + i.reference.source().len()
                    + i.description.as_ref().map_or(0, String::len)
                    + i.alerts.len() + i.entities.len() + i.alert_product_names.iter().map(String::len).sum::<usize>();
                prop_assert!(out <= raw.len());
            }
            Err(EventError::InvalidJson(_)) => prop_assert!(false, "serialised JSON must parse"),
            Err(_) => {}
        }
    }

    /// A well-formed incident parses back to exactly its fields, whatever unicode they hold.
    #[test]
    fn valid_incidents_round_trip(
        id in "[^\\s|][^\\s]{0,30}",
        source in "[^|\\s]{1,20}",
        number in any::<i64>(),
        quoted in any::<bool>(),
        title in "\\PC*[^\\s]",
        description in prop::option::of("\\PC{0,200}"),
    ) {
        // `.` and `..` are refused on purpose (no URL path segment can carry them).
        prop_assume!(![".", ".."].contains(&id.as_str()) && ![".", ".."].contains(&source.as_str()));
        let number_json = if quoted { json!(number.to_string()) } else { json!(number) };
        let body = json!({"type": "incident.created.v1", "data": {
            "incidentId": id, "source": source, "incidentNumber": number_json, "title": title,
            "description": description, "alerts": [{"title": "a"}, 5, null], "entities": "not a list"}});
        let raw = serde_json::to_vec(&body).unwrap();
        let parsed = event::parse(&raw).unwrap();
        prop_assert_eq!(parsed.kind.as_deref(), Some("incident.created.v1"));
        let i = parsed.incident;
        prop_assert_eq!(i.reference.incident_id(), id.as_str());
        prop_assert_eq!(i.reference.source(), source.as_str());
        prop_assert_eq!(i.incident_number, number);
        prop_assert_eq!(i.title, title.trim().to_string());
        prop_assert_eq!(i.alerts.len(), 1);
        prop_assert!(i.entities.is_empty());
        prop_assert_eq!(ExternalRef::parse(&i.reference.to_string()), Some(i.reference));
    }
}

#[test]
fn deeply_nested_bodies_are_refused_without_overflowing_the_stack() {
    for depth in [129, 1_000, 100_000] {
        for objects in [false, true] {
            let raw = nested(depth, "1", objects);
            assert!(matches!(event::parse(raw.as_bytes()), Err(EventError::InvalidJson(_))), "depth {depth}");
            assert!(!event::is_test_body(raw.as_bytes()));
            let inside = format!(
                r#"{{"data":{{"incidentId":"i","source":"s","incidentNumber":1,"title":"t","description":{}}}}}"#,
                nested(depth, "1", objects)
            );
            assert!(matches!(event::parse(inside.as_bytes()), Err(EventError::InvalidJson(_))), "depth {depth}");
        }
    }
    // Within serde_json's limit, nesting is just data.
    let ok = format!(
        r#"{{"data":{{"incidentId":"i","source":"s","incidentNumber":1,"title":"t","alerts":{}}}}}"#,
        nested(100, "1", false)
    );
    assert!(event::parse(ok.as_bytes()).is_ok());
}

#[test]
fn huge_strings_and_numbers_in_the_event_body() {
    let title = "T".repeat(2 * 1024 * 1024);
    let body = json!({"data": {"incidentId": "i", "source": "s", "incidentNumber": 1, "title": title}});
    let parsed = event::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(parsed.incident.title.len(), title.len());
    for number in [json!(1e300), json!("99999999999999999999"), json!(u64::MAX), json!(1.5), json!("1e3"), json!(null)]
    {
        let body = json!({"data": {"incidentId": "i", "source": "s", "incidentNumber": number, "title": "t"}});
        assert_eq!(
            event::parse(&serde_json::to_vec(&body).unwrap()),
            Err(EventError::Field("data.incidentNumber")),
            "{number}"
        );
    }
    let huge_literal =
        format!(r#"{{"data":{{"incidentId":"i","source":"s","incidentNumber":{},"title":"t"}}}}"#, "9".repeat(100_000));
    assert!(event::parse(huge_literal.as_bytes()).is_err());
    for junk in [&b"\xff\xfe{}"[..], b"{\"data\":\"\xc3\x28\"}", b"{\"a\":\"\0\"}", b"\0", b"nul\0l"] {
        assert!(event::parse(junk).is_err());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The Halo webhook body

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn halo_webhook_ticket_id_is_total_and_positive(doc in arb_json()) {
        if let Some(id) = ticket_id(&doc) {
            prop_assert!(id > 0);
            let candidates = [doc.get("object_id"), doc.get("ticket").and_then(|t| t.get("id")), doc.get("ticket_id"), doc.get("id")];
            prop_assert!(candidates.into_iter().flatten().filter_map(lenient_i64).any(|c| c == id));
        }
    }

    #[test]
    fn halo_webhook_bytes_never_panic(body in arb_body()) {
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            let _ = ticket_id(&v);
        }
    }
}

#[test]
fn halo_webhook_edge_values() {
    for (doc, expected) in [
        (json!({"object_id": 1e300}), None),
        (json!({"object_id": "99999999999999999999"}), None),
        // The first numeric candidate decides; a non-positive one means "no ticket" (no fall-through).
        (json!({"object_id": -5, "ticket_id": 7}), None),
        (json!({"object_id": "x", "ticket_id": 7}), Some(7)),
        (json!({"object_id": " 12 "}), Some(12)),
        (json!({"object_id": i64::MAX}), Some(i64::MAX)),
        (json!({"ticket": [1]}), None),
        (json!({"ticket": {"id": {"id": 3}}}), None),
    ] {
        assert_eq!(ticket_id(&doc), expected, "{doc}");
    }
    assert!(serde_json::from_str::<Value>(&nested(100_000, "{\"object_id\":1}", false)).is_err());
}

// ---------------------------------------------------------------------------------------------------------------
// Halo API responses

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn halo_models_parse_any_document_without_panicking(doc in arb_json()) {
        // (serde also accepts a struct as an array of its fields: harmless, the id is still checked.)
        if let Ok(t) = serde_json::from_value::<Ticket>(doc.clone()) {
            if doc.is_object() {
                prop_assert_eq!(Some(t.id), doc.get("id").and_then(lenient_i64));
            }
            for r in t.candidate_references(cf_halo_bridge::domain::RefLocation::CustomField(1)) {
                let _ = ExternalRef::parse(r);
            }
        }
        if let Ok(a) = serde_json::from_value::<Action>(doc.clone()) {
            if doc.is_object() {
                prop_assert_eq!(Some(a.id), doc.get("id").and_then(lenient_i64));
            }
        }
        let bytes = serde_json::to_vec(&doc).unwrap();
        let (actions, _) = list_items::<Action>(&bytes, "actions").unwrap();
        let (tickets, count) = list_items::<Ticket>(&bytes, "tickets").unwrap();
        let bound = |key: &str| match &doc {
            Value::Array(items) => items.len(),
            Value::Object(m) => m.get(key).and_then(Value::as_array).map_or(0, Vec::len),
            _ => 0,
        };
        prop_assert!(actions.len() <= bound("actions"));
        prop_assert!(tickets.len() <= bound("tickets"));
        if !matches!(doc, Value::Object(_)) {
            prop_assert_eq!(count, None);
        }
        if let Some(item) = single_item(doc.clone()) {
            prop_assert!(item.is_object() || matches!(doc, Value::Array(_)));
        }
    }

    /// The same through the byte parsers the client uses, on near-JSON bytes: a list answer is an error exactly
    /// when the bytes are not JSON. "JSON" is the syntax (UTF-8 text, RFC 8259), not what `serde_json::Value` can
    /// hold: `1E309` is valid JSON that no f64 holds, and a list whose items are skipped or kept raw may contain it.
    #[test]
    fn halo_models_parse_any_bytes_without_panicking(body in arb_body()) {
        let _ = serde_json::from_slice::<Ticket>(&body);
        let _ = serde_json::from_slice::<Action>(&body);
        let json = serde_json::from_slice::<Value>(&body).ok();
        let json_text =
            std::str::from_utf8(&body).is_ok() && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
        let blank = body.iter().all(u8::is_ascii_whitespace);
        prop_assert_eq!(list_items::<Action>(&body, "actions").is_ok(), json_text || blank);
        let _ = list_items::<Ticket>(&body, "tickets");
        if let Some(v) = json {
            let _ = single_item(v);
        }
    }

    /// Lenient fields: ids as numbers or numeric strings, flags as bools, numbers, strings or null.
    #[test]
    fn lenient_fields_accept_what_halo_sends(
        id in 1i64..i64::MAX,
        as_text in any::<bool>(),
        flag in prop_oneof![Just(json!(true)), Just(json!(false)), Just(json!(1)), Just(json!(0)), Just(json!("True")), Just(json!("1")), Just(json!(null)), Just(json!("yes"))],
    ) {
        let id_json = if as_text { json!(format!(" {id} ")) } else { json!(id) };
        let a: Action = serde_json::from_value(json!({"id": id_json, "hiddenfromuser": flag, "who_agentid": "x"})).unwrap();
        prop_assert_eq!(a.id, id);
        prop_assert_eq!(a.who_agentid, None);
        let expected = matches!(flag.as_str().map(str::to_ascii_lowercase).as_deref(), Some("true") | Some("1"))
            || flag == json!(true) || flag == json!(1);
        prop_assert_eq!(a.hiddenfromuser, expected);
    }
}

#[test]
fn halo_responses_with_deep_nesting_and_huge_values() {
    // A deep document inside a field we ignore: refused by serde_json's recursion limit, no stack overflow.
    for depth in [200, 100_000] {
        let raw = format!(r#"{{"id":1,"customfields":[{{"id":1,"value":{}}}]}}"#, nested(depth, "null", false));
        assert!(serde_json::from_str::<Ticket>(&raw).is_err());
        let list = format!(r#"{{"record_count":1,"actions":[{}]}}"#, nested(depth, "{}", true));
        // Refused whole, or the deep item dropped: never an action, never a stack overflow.
        let parsed = list_items::<Action>(list.as_bytes(), "actions");
        assert!(parsed.map_or(true, |(items, _)| items.is_empty()), "depth {depth}");
    }
    // Within the limit, nesting in ignored or untyped fields is just data.
    let raw = format!(
        r#"{{"id":1,"customfields":[{{"id":1,"value":{}}}],"extra":{}}}"#,
        nested(100, "1", false),
        nested(100, "1", true)
    );
    assert_eq!(serde_json::from_str::<Ticket>(&raw).unwrap().id, 1);
    // Huge strings and numbers.
    let note = "n".repeat(4 * 1024 * 1024);
    let a: Action = serde_json::from_value(json!({"id": 1, "note_html": note, "who_agentid": 1e300})).unwrap();
    assert_eq!(a.note_html.map(|n| n.len()), Some(4 * 1024 * 1024));
    assert_eq!(a.who_agentid, None);
    assert!(serde_json::from_value::<Ticket>(json!({"id": "99999999999999999999"})).is_err());
    assert!(serde_json::from_value::<Ticket>(json!({"id": null})).is_err());
    let many: Vec<Value> = (0..50_000).map(|i| json!({"id": i, "note": "x"})).collect();
    let body = serde_json::to_vec(&json!({"record_count": "50000", "actions": many})).unwrap();
    let (actions, count) = list_items::<Action>(&body, "actions").unwrap();
    assert_eq!((actions.len(), count), (50_000, Some(50_000)));
}

// ---------------------------------------------------------------------------------------------------------------
// The external reference and event ids

proptest! {
    #![proptest_config(cases(2048))]

    /// Whatever parses prints back as the (trimmed) input, and has the `cf|source|id` shape.
    #[test]
    fn external_ref_parse_is_exact(raw in prop_oneof!["\\PC{0,80}", "cf\\|[^|]{0,10}\\|\\PC{0,30}", " *cf\\|.{0,20}"]) {
        if let Some(r) = ExternalRef::parse(&raw) {
            prop_assert_eq!(r.to_string(), raw.trim());
            prop_assert!(!r.source().is_empty() && !r.source().contains('|') && !r.incident_id().is_empty());
        }
    }

    /// Any reference we build from an incident (ids as CF sends them: trimmed) parses back to itself.
    #[test]
    fn external_refs_round_trip_with_any_characters(source in "[^|\\s]\\PC{0,15}", id in "\\PC{0,40}[^\\s]") {
        prop_assume!(!source.contains('|'));
        let id = id.trim_start().to_string();
        // `.` and `..` are refused on purpose: no URL path can carry them as a segment.
        let dots = |part: &str| part == "." || part == "..";
        prop_assume!(!dots(&source) && !dots(&id));
        let r = ExternalRef::new(&source, &id).unwrap();
        prop_assert_eq!(ExternalRef::parse(&r.to_string()), Some(r));
    }

    #[test]
    fn event_ids_are_bounded_and_free_of_control_characters(raw in prop_oneof!["\\PC{0,300}", ".{0,300}"]) {
        if let Some(id) = EventId::parse(&raw) {
            prop_assert!(!id.as_str().is_empty() && id.as_str().len() <= MAX_EVENT_ID_LEN);
            prop_assert!(!id.as_str().chars().any(char::is_control));
            prop_assert_eq!(id.as_str(), raw.trim());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// HTML → text, and the comment cap

/// Output may grow over the input by a constant factor (list bullets and numbering; a struck-through character
/// becomes the character plus U+0336, 3 bytes), never with the product of two input sizes.
fn text_bound(input: &str) -> usize {
    8 * input.len() + 64
}

fn html_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,20}",
        Just("<p>".to_string()),
        Just("</p>".to_string()),
        Just("<br>".to_string()),
        Just("<ul><li>".to_string()),
        Just("</li></ul>".to_string()),
        Just("<ol start=\"99999999\"><li>".to_string()),
        Just("<table><tr><td>".to_string()),
        Just("</td><td>".to_string()),
        Just("</td></tr></table>".to_string()),
        Just("<pre>   x   </pre>".to_string()),
        Just("<script>alert(1)</script>".to_string()),
        Just("<style>p{}</style>".to_string()),
        Just("&amp;&lt;&#0;&#x10FFFF;&#99999999;&bogus;".to_string()),
        Just("<a href=\"javascript:x\">l</a>".to_string()),
        Just("<img src=x alt=\"y\">".to_string()),
        Just("<!-- c -->".to_string()),
        Just("<![CDATA[x]]>".to_string()),
        Just("<h1>".to_string()),
        Just("<blockquote>".to_string()),
        Just("\u{0}\u{202e}\u{feff}".to_string()),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn html_to_text_is_total_and_linear(parts in prop::collection::vec(html_fragment(), 0..60)) {
        let html = parts.concat();
        let text = html_to_text(&html);
        prop_assert!(text.len() <= text_bound(&html), "{} bytes of text from {} bytes of HTML", text.len(), html.len());
        prop_assert_eq!(text.trim_end(), text.as_str());
    }

    #[test]
    fn cap_respects_its_bound_and_keeps_a_prefix(text in "\\PC{0,300}", max in 0usize..400) {
        let capped = cap(&text, max);
        let chars = text.chars().count();
        if chars <= max {
            prop_assert_eq!(capped, text);
        } else {
            let kept: String = text.chars().take(max).collect();
            prop_assert!(capped.starts_with(&kept));
            prop_assert!(capped.chars().count() <= max + 64);
        }
    }

    #[test]
    fn comments_stay_within_the_cap(text in "\\PC{0,100}", repeat in 0usize..200, who in prop::option::of("\\PC{0,40}")) {
        let text = text.repeat(repeat);
        let action: Action = serde_json::from_value(json!({"id": 1, "who": who})).unwrap();
        let comment = comment_for(1001, &action, &text);
        prop_assert!(comment.chars().count() <= MAX_COMMENT_CHARS + 64 + 40 + 40);
        prop_assert!(comment.starts_with("[Halo ticket #1001 note by "));
    }
}

/// Runs `f` on a thread with the stack a tokio worker has (2 MiB), so a stack overflow fails here the way it would
/// abort the handler; gives up (fails) after `limit`, so a hang is a failure, not a stuck test run.
fn on_worker_stack<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("no answer within {limit:?} (a panic or a hang)"))
}

/// How long a conversion may run before the test calls it a hang: generous on purpose, since speed is the
/// benchmarks' business (`cargo bench --bench in_process`); the property here is that it returns, bounded.
const HANG: Duration = Duration::from_secs(300);

/// Moderate nesting (what real notes have) is rendered, on a worker-sized stack.
#[test]
fn html_to_text_handles_ordinary_nesting() {
    for depth in [10, 100, 500] {
        let html =
            format!("{}x{}", "<div><blockquote><ul><li>".repeat(depth), "</li></ul></blockquote></div>".repeat(depth));
        let text = on_worker_stack(HANG, move || html_to_text(&html));
        assert!(text.contains('x'), "depth {depth}");
    }
}

/// A webhook body may be 1 MiB; a Halo note can be as large. 100,000 nested list items (1.8 MB) must not hang the
/// conversion (it runs on the async runtime's worker thread) or overflow its stack.
#[test]
fn html_to_text_of_very_deep_nesting_returns_bounded() {
    let html = "<ul><li>".repeat(100_000) + "x";
    let input = html.len();
    let text = on_worker_stack(HANG, move || html_to_text(&html));
    assert!(text.len() <= 8 * input + 64, "{} bytes of text", text.len());
}

/// Converts `html` on a worker-sized stack and asserts the text stays within `text_bound` of it.
fn assert_text_linear_on_worker_stack(html: String) {
    let text = on_worker_stack(HANG, {
        let html = html.clone();
        move || html_to_text(&html)
    });
    assert!(text.len() <= text_bound(&html), "{} bytes of HTML became {} bytes of text", html.len(), text.len());
}

/// Nested quotes prefix every line with `> ` per level: the text must stay linear in the input.
#[test]
fn html_to_text_of_nested_quotes_is_linear() {
    assert_text_linear_on_worker_stack(format!("{}{}", "<blockquote>".repeat(200), "<br>line".repeat(20_000)));
}

#[test]
fn html_to_text_of_huge_notes_is_linear() {
    for html in [
        "word ".repeat(400_000),
        "<p>para</p>".repeat(100_000),
        "&amp;".repeat(200_000),
        format!("<pre>{}</pre>", "x ".repeat(200_000)),
        format!("<ol start=\"2147483647\">{}</ol>", "<li>i</li>".repeat(50_000)),
    ] {
        let text = on_worker_stack(HANG, {
            let html = html.clone();
            move || html_to_text(&html)
        });
        assert!(text.len() <= text_bound(&html), "{} -> {}", html.len(), text.len());
        let capped = cap(&text, MAX_COMMENT_CHARS);
        assert!(capped.chars().count() <= MAX_COMMENT_CHARS + 64);
    }
}

/// Each level of `<s>` adds a combining stroke to every character below it: text × depth.
#[test]
fn html_to_text_of_nested_strikethrough_is_linear() {
    assert_text_linear_on_worker_stack(format!("{}{}", "<s>".repeat(200), "x".repeat(20_000)));
}

/// A table whose one wide cell pads every other row: output grows with rows × width, not with the input.
#[test]
fn html_to_text_of_a_padded_table_is_linear() {
    let rows = 2_000;
    let html = format!(
        "<table><tr><td>{}</td><td>b</td></tr>{}</table>",
        "w".repeat(5_000),
        "<tr><td>a</td><td>b</td></tr>".repeat(rows)
    );
    let text = html_to_text(&html);
    assert!(text.len() <= text_bound(&html), "{} bytes of HTML became {} bytes of text", html.len(), text.len());
}
