//! POST /api/cf-webhook end to end.

use crate::support::*;
use reqwest::StatusCode;
use sandbox::faults::{Fault, Rule};
use sandbox::halo::NewTicket;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_new_incident_becomes_one_ticket_with_one_halo_call() {
    let b = Bridge::start().await;
    let a = b.send_cf("evt-1", &incident("inc-create", 1234)).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.body["status"], "created");
    let id = a.body["ticketId"].as_i64().unwrap();
    let t = b.halo.ticket(id).expect("the ticket exists in Halo");
    assert_eq!(t.summary, "[CF #1234] Impossible travel");
    assert_eq!(t.priority_id, Some(1));
    assert_eq!(t.tickettype_id, Some(TICKET_TYPE));
    assert_eq!(t.client_id, Some(DEFAULT_CLIENT));
    assert_eq!(t.supplier_reference.as_deref(), Some("cf|sentinel|inc-create"));
    assert!(t.details_html.contains("Alex Analyst &lt;alex@example.com&gt;"), "{}", t.details_html);
    assert!(t.details_html.contains("<li>IP: 203.0.113.42</li>"));
    assert_eq!(b.halo.count("POST", "/api/Tickets"), 1);
    assert_eq!(b.halo.count("GET", "/api"), 0, "no lookup before a create");
    assert_eq!(b.halo.token_requests(), 1);
    // The request line carries values, never Rust's `Some(…)`/`None` debug form.
    let created = |l: &sandbox::host::LogLine| l.text.contains("outcome=\"created\"");
    let seen = b.host.wait_for_log(created, Duration::from_secs(60)).await;
    assert!(seen, "no request line:\n{}", b.log_text());
    let logs = b.log_text();
    let line = logs.lines().find(|l| l.contains("outcome=\"created\"")).unwrap_or_default();
    assert!(
        line.contains("reference=\"cf|sentinel|inc-create\"") && line.contains(&format!("ticket_id={id}")),
        "{line}"
    );
    assert!(!logs.contains("Some(") && !logs.contains("=None"), "{logs}");
    b.assert_clean_logs();
}

#[tokio::test]
async fn a_redelivered_event_is_a_duplicate_without_any_halo_call() {
    let b = Bridge::start().await;
    let first = b.send_cf("evt-dup", &incident("inc-dup", 1)).await;
    assert_eq!(first.body["status"], "created");
    b.halo.reset_requests();
    for _ in 0..3 {
        let again = b.send_cf("evt-dup", &incident("inc-dup", 1)).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body, json!({"status": "duplicate", "ticketId": first.body["ticketId"]}));
    }
    assert_eq!(b.halo.requests().len(), 0, "a duplicate makes no Halo call");
    assert_eq!(b.halo.tickets().len(), 1);
}

#[tokio::test]
async fn a_new_event_for_a_ticketed_incident_adds_one_private_note() {
    let b = Bridge::start().await;
    let created = b.send_cf("evt-a", &incident("inc-note", 2)).await;
    let id = created.body["ticketId"].as_i64().unwrap();
    let updated = b.send_cf("evt-<b>", &incident("inc-note", 2)).await;
    assert_eq!(updated.body, json!({"status": "updated", "ticketId": id}));
    let again = b.send_cf("evt-<b>", &incident("inc-note", 2)).await;
    assert_eq!(again.body["status"], "duplicate");
    let notes: Vec<_> = b.halo.actions(id).into_iter().filter(|a| a.outcome == "Private Note").collect();
    assert_eq!(notes.len(), 1, "one note per distinct later event");
    assert!(notes[0].hiddenfromuser);
    assert!(notes[0].note_html.contains("<code>evt-&lt;b&gt;</code>"), "event id escaped: {}", notes[0].note_html);
    assert_eq!(b.halo.tickets().len(), 1);
}

#[tokio::test]
async fn test_deliveries_and_other_schemas_touch_nothing() {
    let b = Bridge::start().await;
    let raw = br#"{"type":"incident.created.v1","isTest":true}"#;
    let by_body = b.send_cf_raw("evt-test-1", raw, &[]).await;
    assert_eq!((by_body.status, by_body.body.clone()), (StatusCode::OK, json!({"status": "test"})));
    let body = serde_json::to_vec(&incident("inc-test", 3)).unwrap();
    let by_header = b.send_cf_raw("evt-test-2", &body, &[("x-cf-test", "true")]).await;
    assert_eq!(by_header.body, json!({"status": "test"}));
    let other = b.send_cf_raw("evt-other", &body, &[("x-cf-schema", "incident.updated.v1")]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body["status"], "ignored");
    assert!(other.body["reason"].as_str().unwrap().contains("unhandled schema"));
    assert_eq!(b.halo.requests().len(), 0);
    // An unsigned test delivery is still a 401: the signature is checked first.
    let unsigned = b
        .http
        .post(b.host.function_url("cf-webhook"))
        .header("x-functions-key", b.host.function_key())
        .header("x-cf-event-id", "evt-x")
        .header("x-cf-test", "true")
        .body(raw.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn test_events_are_processed_when_configured() {
    let b = Bridge::start_with(|env| env.push(("CF_PROCESS_TEST_EVENTS".into(), "true".into()))).await;
    let body = serde_json::to_vec(&incident("inc-test-processed", 4)).unwrap();
    let a = b.send_cf_raw("evt-t", &body, &[("x-cf-test", "true")]).await;
    assert_eq!(a.body["status"], "created");
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_and_no_upstream_call() {
    let b = Bridge::start().await;
    let url = b.host.function_url("cf-webhook");
    let key = b.host.function_key().to_string();
    let good = serde_json::to_vec(&incident("inc-bad", 5)).unwrap();
    let ts = unix_now();
    let sig = cf_halo_bridge::cf::signature::sign(CF_SECRET.as_bytes(), ts, &good);
    let send = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut r = b.http.post(&url).header("x-functions-key", &key).header("content-type", "application/json");
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move { Answer::from(r.body(body).send().await.unwrap()).await }
    };
    let signed = |eid: &str| {
        vec![("x-cf-event-id", eid.to_string()), ("x-cf-timestamp", ts.to_string()), ("x-cf-signature", sig.clone())]
    };

    let too_large = send(signed("evt-big"), vec![b' '; 1024 * 1024 + 1]).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    let empty = send(signed("evt-empty"), Vec::new()).await;
    assert_eq!((empty.status, empty.body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("empty body")));
    let no_event = send(signed("")[1..].to_vec(), good.clone()).await;
    assert_eq!(
        (no_event.status, no_event.body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing X-CF-Event-Id"))
    );

    let upper = sig.replace("sha256=", "").to_uppercase();
    let old_ts = (ts - 301).to_string();
    let old_sig = cf_halo_bridge::cf::signature::sign(CF_SECRET.as_bytes(), ts - 301, &good);
    let wrong_secret = cf_halo_bridge::cf::signature::sign(b"guess", ts, &good);
    let bad_signatures: Vec<Vec<(&'static str, String)>> = vec![
        vec![
            ("x-cf-event-id", "e".into()),
            ("x-cf-timestamp", ts.to_string()),
            ("x-cf-signature", format!("sha256={upper}")),
        ],
        vec![
            ("x-cf-event-id", "e".into()),
            ("x-cf-timestamp", ts.to_string()),
            ("x-cf-signature", sig.replace("sha256=", "")),
        ],
        vec![("x-cf-event-id", "e".into()), ("x-cf-timestamp", old_ts), ("x-cf-signature", old_sig)],
        vec![("x-cf-event-id", "e".into()), ("x-cf-timestamp", ts.to_string()), ("x-cf-signature", wrong_secret)],
        vec![("x-cf-event-id", "e".into()), ("x-cf-timestamp", ts.to_string())],
        vec![("x-cf-event-id", "e".into()), ("x-cf-signature", sig.clone())],
    ];
    for headers in bad_signatures {
        let a = send(headers, good.clone()).await;
        assert_eq!((a.status, a.body.clone()), (StatusCode::UNAUTHORIZED, json!({"error": "invalid signature"})));
    }
    // A signature for another body.
    let mut other = good.clone();
    other.push(b' ');
    let a = send(signed("evt-other-body"), other).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // A non-ASCII signature header is a 401, not a 500.
    let non_ascii = reqwest::header::HeaderValue::from_bytes("sha256=é".as_bytes()).unwrap();
    let r = b
        .http
        .post(&url)
        .header("x-functions-key", &key)
        .header("x-cf-event-id", "evt-na")
        .header("x-cf-timestamp", ts.to_string())
        .header("x-cf-signature", non_ascii)
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A valid signature on a malformed body: 400 naming the field.
    for (raw, field) in [
        (&br#"{"data":{"incidentId":"i","source":"s","incidentNumber":1}}"#[..], "data.title"),
        (&b"{not json"[..], ""),
    ] {
        let ts = unix_now();
        let sig = cf_halo_bridge::cf::signature::sign(CF_SECRET.as_bytes(), ts, raw);
        let a = send(
            vec![("x-cf-event-id", "evt-m".into()), ("x-cf-timestamp", ts.to_string()), ("x-cf-signature", sig)],
            raw.to_vec(),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{a:?}");
        assert!(a.body["error"].as_str().unwrap().contains(field));
    }

    // Wrong content type, wrong method, no function key.
    let text = b
        .http
        .post(&url)
        .header("x-functions-key", &key)
        .header("content-type", "text/plain")
        .header("x-cf-event-id", "e")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let get = b.http.get(&url).header("x-functions-key", &key).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::NOT_FOUND, "the host routes POST only");
    let no_key = b.http.post(&url).body(good.clone()).send().await.unwrap();
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(b.halo.requests().len(), 0, "no bad request reaches Halo");
    b.assert_clean_logs();
}

#[tokio::test]
async fn halo_500_on_create_then_a_redelivery_makes_exactly_one_ticket() {
    let b = Bridge::start().await;
    b.halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::status(500)));
    let first = b.send_cf("evt-500", &incident("inc-500", 6)).await;
    assert_eq!(first.body["status"], "queued", "never `created` for a failed create: {first:?}");
    // A 5xx may hide a created ticket: the incident settles, then the redelivery looks before creating.
    let (second, _) = b.send_cf_until_done("evt-500", &incident("inc-500", 6)).await;
    assert!(["created", "duplicate"].contains(&second.body["status"].as_str().unwrap()), "{second:?}");
    assert_eq!(b.halo.tickets().len(), 1);
    assert_eq!(b.halo.count("GET", "/api/Tickets"), 1, "the redelivery looked first");
}

#[tokio::test]
async fn a_create_that_timed_out_is_found_not_repeated() {
    let b = Bridge::start().await;
    // Halo creates the ticket but answers after our 2 s call timeout.
    b.halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::ApplyThenDelay(Duration::from_secs(4))));
    let first = b.send_cf("evt-slow", &incident("inc-slow", 7)).await;
    assert_eq!(first.body["status"], "queued", "{first:?}");
    assert_eq!(b.halo.tickets().len(), 1, "Halo did create it");
    let (second, _) = b.send_cf_until_done("evt-slow", &incident("inc-slow", 7)).await;
    assert!(["created", "duplicate"].contains(&second.body["status"].as_str().unwrap()), "{second:?}");
    assert_eq!(second.body["ticketId"], b.halo.tickets()[0].id);
    assert_eq!(b.halo.tickets().len(), 1, "still exactly one ticket");
    assert_eq!(b.halo.count("POST", "/api/Tickets"), 1, "the create was not repeated");
}

#[tokio::test]
async fn twenty_concurrent_deliveries_of_one_incident_make_one_ticket() {
    let b = std::sync::Arc::new(Bridge::start().await);
    b.halo.faults().push(Rule::always("POST", "/api/Tickets", Fault::DelayBefore(Duration::from_millis(300))));
    // Five events of one incident (each its own delivery), each delivered four times at once.
    let bodies: Vec<_> = (0..5).map(|_| incident("inc-race", 8)).collect();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let b = b.clone();
            let body = bodies[i % 5].clone();
            tokio::spawn(async move { b.send_cf_until_done(&format!("evt-race-{}", i % 5), &body).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let (answer, _) = t.await.unwrap();
        assert!(answer.status.is_success());
        statuses.push(answer.body["status"].as_str().unwrap().to_string());
    }
    assert_eq!(b.halo.tickets().len(), 1, "exactly one ticket");
    let id = b.halo.tickets()[0].id;
    let notes = b.halo.actions(id).into_iter().filter(|a| a.outcome == "Private Note").count();
    assert_eq!(notes, 4, "one note for each of the 4 later event ids");
    assert_eq!(statuses.iter().filter(|s| *s == "created").count(), 1, "{statuses:?}");
    b.assert_clean_logs();
}

#[tokio::test]
async fn state_survives_a_restart_of_the_binary() {
    let b = Bridge::start().await;
    let first = b.send_cf("evt-r1", &incident("inc-restart", 9)).await;
    assert_eq!(first.body["status"], "created");
    b.host.restart_handler().await.unwrap();
    b.halo.reset_requests();
    let dup = b.send_cf("evt-r1", &incident("inc-restart", 9)).await;
    assert_eq!(dup.body["status"], "duplicate");
    assert_eq!(b.halo.requests().len(), 0);
    let later = b.send_cf("evt-r2", &incident("inc-restart", 9)).await;
    assert_eq!(later.body["status"], "updated");
    assert_eq!(b.halo.tickets().len(), 1);
}

#[tokio::test]
async fn storage_down_answers_503_and_nothing_is_lost_once_it_is_back() {
    let b = Bridge::start().await;
    b.azurite.pause();
    let during = b.send_cf("evt-down", &incident("inc-down", 10)).await;
    assert_eq!(during.status, StatusCode::SERVICE_UNAVAILABLE, "{during:?}");
    assert!(during.retry_after.is_some(), "a 503 says when to retry: {during:?}");
    assert_eq!(b.halo.count("POST", "/api/Tickets"), 0, "nothing created without a claim");
    b.azurite.resume();
    let (after, _) = b.send_cf_until_done("evt-down", &incident("inc-down", 10)).await;
    assert_eq!(after.body["status"], "created");
    assert_eq!(b.halo.tickets().len(), 1);
}

#[tokio::test]
async fn the_token_is_shared_and_custom_fields_and_client_maps_apply() {
    let b = Bridge::start_with(|env| {
        env.push(("HALO_EXTERNAL_REF_FIELD_ID".into(), "42".into()));
        env.push(("HALO_CLIENT_MAP".into(), "0B6F1C8E-3C1E-4A4E-9F4E-0D1A2B3C4D5E=7".into()));
    })
    .await;
    for n in 0..3 {
        let a = b.send_cf(&format!("evt-cf-{n}"), &incident(&format!("inc-cf-{n}"), 20 + n)).await;
        assert_eq!(a.body["status"], "created");
    }
    assert_eq!(b.halo.token_requests(), 1, "one token for all requests");
    let t = &b.halo.tickets()[0];
    assert_eq!(t.client_id, Some(7), "HALO_CLIENT_MAP routes the account to its Halo client");
    assert_eq!(t.customfields.len(), 1);
    assert_eq!(t.customfields[0].id, 42);
    assert!(t.customfields[0].value.as_str().unwrap().starts_with("cf|sentinel|inc-cf-"));
    assert!(t.supplier_reference.is_none());
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_retried() {
    let b = Bridge::start().await;
    assert_eq!(b.send_cf("evt-t1", &incident("inc-t1", 30)).await.body["status"], "created");
    b.halo.expire_all_tokens();
    assert_eq!(b.send_cf("evt-t2", &incident("inc-t2", 31)).await.body["status"], "created");
    assert_eq!(b.halo.token_requests(), 2);
    assert_eq!(b.halo.tickets().len(), 2);
}

#[tokio::test]
async fn halo_rate_limiting_queues_the_work_for_after_the_wait() {
    let b = Bridge::start().await;
    b.halo.faults().push(Rule::once("POST", "/auth/token", Fault::Status { code: 429, retry_after: Some(60) }));
    let a = b.send_cf("evt-429", &incident("inc-429", 40)).await;
    assert_eq!((a.status, a.body["status"].as_str()), (StatusCode::OK, Some("queued")), "{a:?}");
    assert_eq!(b.halo.count("POST", "/api/Tickets"), 0);
    assert_eq!(b.send_cf("evt-429", &incident("inc-429", 40)).await.body["status"], "created");
}

#[tokio::test]
async fn the_tenant_goes_in_the_token_query_and_form() {
    let halo = sandbox::halo::HaloConfig { tenant: Some("contoso".into()), ..sandbox::halo::HaloConfig::test() };
    let b = Bridge::start_with_halo(halo, |env| env.push(("HALO_TENANT".into(), "contoso".into()))).await;
    assert_eq!(b.send_cf("evt-tenant", &incident("inc-tenant", 70)).await.body["status"], "created");
    let token = b.halo.requests().into_iter().find(|r| r.path == "/auth/token").unwrap();
    assert_eq!(token.query_param("tenant").as_deref(), Some("contoso"));
    let form = token.body_text();
    assert!(
        form.contains("tenant=contoso") && form.contains("grant_type=client_credentials") && form.contains("scope=all"),
        "{form}"
    );
}

#[tokio::test]
async fn with_a_custom_field_a_lost_create_is_found_among_the_clients_recent_tickets() {
    let b = Bridge::start_with(|env| env.push(("HALO_EXTERNAL_REF_FIELD_ID".into(), "42".into()))).await;
    b.halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::ApplyThenBreak));
    let first = b.send_cf("evt-cfld", &incident("inc-cfld", 71)).await;
    assert_eq!(first.body["status"], "queued", "{first:?}");
    let (second, _) = b.send_cf_until_done("evt-cfld", &incident("inc-cfld", 71)).await;
    assert!(["created", "duplicate"].contains(&second.body["status"].as_str().unwrap()), "{second:?}");
    assert_eq!(b.halo.tickets().len(), 1);
    assert_eq!(b.halo.tickets()[0].customfields[0].value, "cf|sentinel|inc-cfld");
    assert_eq!(b.halo.tickets()[0].thirdpartynumber, None, "never written");
    let lookup = b.halo.requests().into_iter().find(|r| r.method == "GET" && r.path == "/api/Tickets").unwrap();
    assert_eq!(lookup.query_param("client_id").as_deref(), Some("1"), "the client's recent tickets");
    assert_eq!(lookup.query_param("orderdesc").as_deref(), Some("true"), "newest first");
}

/// A Halo search matches every reference that *contains* ours: with numeric incident ids, `cf|sentinel|12` also
/// finds `…|120`, `…|1200`. After a lost create, the retry must find the one real ticket among 60 older and 60
/// newer such decoys (newest first in pages of 50: on the second page) and create no second one.
#[tokio::test]
async fn a_lost_create_is_found_exactly_among_tickets_whose_reference_contains_it() {
    let b = Bridge::start().await;
    let decoys = |range: std::ops::Range<i64>| {
        for n in range {
            let reference = format!("cf|sentinel|12{n}");
            b.halo.create_ticket_direct(NewTicket { supplier_reference: Some(reference), ..NewTicket::default() });
        }
    };
    decoys(0..60);
    b.halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::ApplyThenBreak));
    let first = b.send_cf("evt-12", &incident("12", 12)).await;
    assert_eq!(first.body["status"], "queued", "{first:?}");
    let real = b.halo.tickets().last().unwrap().id;
    // Created before the retry can look (the lost create's claim settles for seconds first).
    decoys(60..120);
    let (second, _) = b.send_cf_until_done("evt-12", &incident("12", 12)).await;
    assert!(["created", "duplicate"].contains(&second.body["status"].as_str().unwrap()), "{second:?}");
    assert_eq!(second.body["ticketId"], real, "the real ticket");
    assert_eq!(b.halo.count("POST", "/api/Tickets"), 1, "no second ticket");
    let lookups: Vec<_> =
        b.halo.requests().into_iter().filter(|r| r.method == "GET" && r.path == "/api/Tickets").collect();
    let first_lookup = &lookups[0];
    assert_eq!(first_lookup.query_param("search_supplier_reference").as_deref(), Some("cf|sentinel|12"));
    assert_eq!(first_lookup.query_param("order").as_deref(), Some("id"));
    assert_eq!(first_lookup.query_param("orderdesc").as_deref(), Some("true"));
    assert_eq!(first_lookup.query_param("pageinate").as_deref(), Some("true"));
    assert!(lookups.iter().any(|r| r.query_param("page_no").as_deref() == Some("2")), "read on to the second page");
}

/// What each kind of event costs upstream: Table Storage calls counted by a proxy in front of Azurite (an entity
/// group transaction is one call), Halo and ContraForce calls by the fakes. docs/benchmarks.md has the table and
/// why each call is there.
#[tokio::test]
async fn each_event_costs_the_fewest_upstream_calls() {
    let b = Bridge::start_counting_storage().await;
    // Warm up: the table exists and the Halo token is cached, so what follows is the steady state.
    assert_eq!(b.send_cf("evt-warm", &incident("inc-warm", 1)).await.body["status"], "created");
    assert_eq!(b.halo.token_requests(), 1);
    let step = |before: (u64, u64)| {
        let (reads, writes) = b.storage_counts();
        (reads - before.0, writes - before.1)
    };

    b.halo.reset_requests();
    let before = b.storage_counts();
    let created = b.send_cf("evt-new", &incident("inc-costs", 2)).await;
    assert_eq!(created.body["status"], "created", "{created:?}");
    assert_eq!(step(before), (1, 3), "new incident: one read; claim, ticket link, created");
    assert_eq!((b.halo.count("POST", "/api/Tickets"), b.halo.requests().len()), (1, 1));
    let ticket = created.body["ticketId"].as_i64().unwrap();

    b.halo.reset_requests();
    let before = b.storage_counts();
    assert_eq!(b.send_cf("evt-new", &incident("inc-costs", 2)).await.body["status"], "duplicate");
    assert_eq!(step(before), (1, 0), "the creating event again: one read");
    assert_eq!(b.halo.requests().len(), 0);

    let before = b.storage_counts();
    assert_eq!(b.send_cf("evt-later", &incident("inc-costs", 2)).await.body["status"], "updated");
    assert_eq!(
        step(before),
        (1, 2),
        "later event: one read; event and delivery claimed together, done and own-note mark together"
    );
    assert_eq!((b.halo.count("POST", "/api/Actions"), b.halo.requests().len()), (1, 1));

    b.halo.reset_requests();
    let before = b.storage_counts();
    assert_eq!(b.send_cf("evt-later", &incident("inc-costs", 2)).await.body["status"], "duplicate");
    assert_eq!(step(before), (1, 0), "a later event again: one read");
    assert_eq!(b.halo.requests().len(), 0);
    assert_eq!(b.halo.tokens_issued(), 1, "one token served every event");

    // halo-webhook. A ticket the bridge has no record of: one read, no Halo call.
    let unlinked = b.halo.create_ticket_direct(NewTicket::default());
    b.halo.reset_requests();
    let before = b.storage_counts();
    assert_eq!(b.send_halo(&Bridge::halo_payload(unlinked)).await.body["status"], "ignored");
    assert_eq!((step(before), b.halo.requests().len()), ((1, 0), 0), "unlinked ticket: one read, nothing else");

    // A linked ticket whose actions are unchanged since the bridge last looked (the common webhook: any update).
    assert_eq!(b.send_halo(&Bridge::halo_payload(ticket)).await.body["status"], "processed");
    b.halo.reset_requests();
    let before = b.storage_counts();
    let quiet = b.send_halo(&Bridge::halo_payload(ticket)).await;
    assert_eq!((quiet.body["status"].as_str(), quiet.body["actionsForwarded"].as_i64()), (Some("processed"), Some(0)));
    assert_eq!((step(before), b.halo.requests().len()), ((1, 0), 1), "quiet webhook: one read, the ticket");

    // One new public note: the ticket's record and the incident's (the link, and any own notes among the new
    // actions) read; the marker Reserved, Sending, then Sent with the ticket's progress in one batch.
    b.halo.add_action(ticket, sandbox::halo::NewAction::human("Sam Analyst", 5, "<p>checked: benign</p>", false));
    b.halo.reset_requests();
    let comments = b.cf.comments("inc-costs").len();
    let before = b.storage_counts();
    assert_eq!(b.send_halo(&Bridge::halo_payload(ticket)).await.body["actionsForwarded"], 1);
    assert_eq!(step(before), (2, 3), "one comment: two reads; Reserved, Sending, then Sent with the progress");
    assert_eq!(
        (b.halo.requests().len(), b.cf.comments("inc-costs").len() - comments),
        (2, 1),
        "ticket, actions; one comment"
    );
    // And each of the nine deliveries wrote its run record, after its answer.
    eventually("each delivery's run record is written", || b.run_history_writes() == 9).await;
}
