//! POST /api/halo-webhook end to end.

use crate::support::*;
use reqwest::StatusCode;
use sandbox::faults::{Fault, Rule};
use sandbox::halo::{NewAction, NewTicket};
use serde_json::json;
use std::sync::Arc;

const HUMAN: i64 = 2;

/// A ticket the bridge created through cf-webhook, with its incident id.
async fn bridge_ticket(b: &Bridge, incident_id: &str) -> i64 {
    let a = b.send_cf(&format!("evt-{incident_id}"), &incident(incident_id, 100)).await;
    assert_eq!(a.body["status"], "created", "{a:?}");
    a.body["ticketId"].as_i64().unwrap()
}

fn note(text: &str) -> NewAction {
    NewAction::human("Sam Agent", HUMAN, text, false)
}

fn contents(b: &Bridge, incident_id: &str) -> Vec<String> {
    b.cf.comments(incident_id).into_iter().map(|c| c.content).collect()
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_401_before_anything_is_fetched() {
    let b = Bridge::start().await;
    let payload = Bridge::halo_payload(1001);
    let prefix = &HALO_WEBHOOK_SECRET[..HALO_WEBHOOK_SECRET.len() - 1];
    for headers in [
        vec![],
        vec![("x-halo-secret", "wrong")],
        vec![("x-halo-secret", prefix)],
        vec![("authorization", "Basic Og==")],
    ] {
        let a = b.send_halo_with(&payload, &headers).await;
        assert_eq!((a.status, a.body.clone()), (StatusCode::UNAUTHORIZED, json!({"error": "invalid callback secret"})));
    }
    // Not even a body that is not JSON is looked at before the secret.
    let raw = b
        .http
        .post(b.host.function_url("halo-webhook"))
        .header("x-functions-key", b.host.function_key())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(b.halo.requests().len(), 0, "nothing fetched");
}

#[tokio::test]
async fn payloads_without_a_ticket_or_for_unlinked_tickets_are_ignored() {
    let b = Bridge::start().await;
    let none = b.send_halo(&json!({"id": "5b0c7c8e-guid", "event": "x"})).await;
    assert_eq!(none.body, json!({"status": "ignored", "reason": "no ticket id in payload"}));
    let unlinked = b.halo.create_ticket_direct(NewTicket { summary: "printer on fire".into(), ..Default::default() });
    let a = b.send_halo(&Bridge::halo_payload(unlinked)).await;
    assert_eq!(a.body, json!({"status": "ignored", "reason": "not a ticket the bridge created or imported"}));
    let missing = b.send_halo(&Bridge::halo_payload(999_999)).await;
    assert_eq!(missing.body, a.body);
    assert_eq!(b.halo.requests().len(), 0, "an unlinked ticket costs no Halo call");
    let invalid = b.send_halo_with(&json!("just a string"), &[("x-halo-secret", HALO_WEBHOOK_SECRET)]).await;
    assert_eq!(invalid.body["reason"], "no ticket id in payload");
    assert_eq!(b.cf.requests().len(), 0);
}

#[tokio::test]
async fn public_actions_are_forwarded_once_and_private_empty_and_own_ones_are_not() {
    let b = Bridge::start().await;
    let t = bridge_ticket(&b, "inc-h1").await;
    let agent = b.halo.config().agent_id;
    b.halo.add_action(t, note("<p>Customer called &amp; <b>confirmed</b></p><script>x()</script>"));
    b.halo.add_action(t, NewAction::human("Sam Agent", HUMAN, "internal only", true));
    b.halo.add_action(t, NewAction::human("Sam Agent", HUMAN, "<p> </p>", false));
    b.halo.add_action(t, NewAction::human("Bridge agent", agent, "written as the bridge's agent", false));
    b.halo.add_action(
        t,
        NewAction { actionby_application_id: Some(b.halo.config().app_name.clone()), ..note("by the app") },
    );
    let a = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(a.body, json!({"status": "processed", "actionsForwarded": 1, "closed": false, "setAside": 0}), "{a:?}");
    assert_eq!(
        contents(&b, "inc-h1"),
        vec![format!("[Halo ticket #{t} note by Sam Agent]\n\nCustomer called & confirmed")]
    );
    let c = &b.cf.comments("inc-h1")[0];
    assert_eq!(c.source, "sentinel");
    assert_eq!(c.body["incidentId"], "inc-h1");
    let list = b.halo.requests().into_iter().find(|r| r.path == "/api/Actions" && r.method == "GET").unwrap();
    assert_eq!(list.query_param("includehtmlnote").as_deref(), Some("true"));
    assert!(list.query_param("count").is_some());
    // A second webhook forwards nothing new.
    let again = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(again.body["actionsForwarded"], 0);
    assert_eq!(b.cf.comments("inc-h1").len(), 1);
    b.assert_clean_logs();
}

#[tokio::test]
async fn actions_added_between_webhooks_all_arrive_in_order() {
    let b = Bridge::start().await;
    let t = bridge_ticket(&b, "inc-order").await;
    b.halo.add_action(t, note("one"));
    assert_eq!(b.send_halo(&Bridge::halo_payload(t)).await.body["actionsForwarded"], 1);
    for text in ["two", "three", "four"] {
        b.halo.add_action(t, note(text));
    }
    assert_eq!(b.send_halo(&Bridge::halo_payload(t)).await.body["actionsForwarded"], 3);
    assert_eq!(texts(&b, "inc-order"), vec!["one", "two", "three", "four"]);
}

#[tokio::test]
async fn a_close_is_mirrored_once_and_a_reopen_then_close_again() {
    let b = Bridge::start().await;
    let t = bridge_ticket(&b, "inc-close").await;
    b.halo.set_status(t, 9, "Closed", true);
    let a = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(a.body["closed"], true, "{a:?}");
    assert_eq!(b.send_halo(&Bridge::halo_payload(t)).await.body["closed"], false);
    assert_eq!(b.cf.status_changes("inc-close").len(), 1);
    let close = &b.cf.status_changes("inc-close")[0];
    assert_eq!(close["status"], "Closed");
    assert_eq!(close["classification"], "Undetermined");
    assert_eq!(close["classificationReason"], "InaccurateData");
    assert_eq!(
        close["comment"],
        format!("Closed in HaloPSA (ticket #{t}, status 'Closed'): Undetermined / InaccurateData.")
    );
    b.halo.set_status(t, 2, "In Progress", false);
    assert_eq!(b.send_halo(&Bridge::halo_payload(t)).await.body["closed"], false);
    b.halo.set_status(t, 9, "Closed", true);
    assert_eq!(b.send_halo(&Bridge::halo_payload(t)).await.body["closed"], true);
    assert_eq!(b.cf.status_changes("inc-close").len(), 2);
}

/// Lets the next comment through, then answers the one after `status`.
fn fail_second_comment(b: &Bridge, status: u16) {
    b.cf.faults().push(Rule::once("POST", "/api/v2/workspaces", Fault::DelayBefore(std::time::Duration::ZERO)));
    b.cf.faults().push(Rule::once("POST", "/api/v2/workspaces", Fault::status(status)));
}

fn texts(b: &Bridge, incident_id: &str) -> Vec<String> {
    contents(b, incident_id).iter().map(|c| c.rsplit("\n\n").next().unwrap().to_string()).collect()
}

/// The 503 leaves the rest of the ticket's work to the queue trigger (retries a second apart in tests), which posts
/// the remaining comments, each once and in order; the webhook after it has nothing left to forward.
#[tokio::test]
async fn cf_503_on_the_second_of_three_comments_is_queued_and_the_retry_posts_each_once() {
    let b = Bridge::start().await;
    let t = bridge_ticket(&b, "inc-partial").await;
    for text in ["first", "second", "third"] {
        b.halo.add_action(t, note(text));
    }
    fail_second_comment(&b, 503);
    let failed = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(
        failed.body,
        json!({"status": "queued", "workId": format!("halo-{t}")}),
        "never `processed`: {failed:?}"
    );
    ledger_empties(&b).await;
    assert_eq!(texts(&b, "inc-partial"), vec!["first", "second", "third"], "each comment exactly once, in order");
    assert_eq!(b.cf.count("POST", "/workspaces"), 4, "the first once, the second refused then posted, the third once");
    let after = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(after.body, json!({"status": "processed", "actionsForwarded": 0, "closed": false, "setAside": 0}));
}

#[tokio::test]
async fn cf_500_on_a_comment_is_set_aside_as_uncertain_never_posted_again_and_blocks_nothing() {
    let b = Bridge::start().await;
    let t = bridge_ticket(&b, "inc-uncertain").await;
    for text in ["first", "second", "third"] {
        b.halo.add_action(t, note(text));
    }
    fail_second_comment(&b, 500);
    let a = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(a.body, json!({"status": "processed", "actionsForwarded": 2, "closed": false, "setAside": 1}), "{a:?}");
    b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(texts(&b, "inc-uncertain"), vec!["first", "third"], "a 500 may have stored it: not posted twice");
    let listed = b.handler_command(&["dead-letters"]).await;
    assert!(listed.contains("-act-") && listed.contains("Uncertain"), "{listed}");
}

#[tokio::test]
async fn ten_concurrent_webhooks_for_one_ticket_forward_each_action_once() {
    let b = Arc::new(Bridge::start().await);
    let t = bridge_ticket(&b, "inc-conc").await;
    for n in 0..5 {
        b.halo.add_action(t, note(&format!("note {n}")));
    }
    b.halo.set_status(t, 9, "Closed", true);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.send_halo(&Bridge::halo_payload(t)).await })
        })
        .collect();
    let (mut forwarded, mut queued) = (0, 0);
    for task in tasks {
        let a = task.await.unwrap();
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        // A webhook that finds an action or the close claimed by another is not done: it is queued.
        match a.body["status"].as_str() {
            Some("processed") => forwarded += a.body["actionsForwarded"].as_i64().unwrap(),
            Some("queued") => queued += 1,
            _ => panic!("neither processed nor queued: {a:?}"),
        }
    }
    ledger_empties(&b).await;
    assert_eq!(b.cf.comments("inc-conc").len(), 5, "each action once");
    assert!(forwarded <= 5 && (queued > 0 || forwarded == 5), "the counts add up: {forwarded} forwarded inline");
    assert_eq!(b.cf.status_changes("inc-conc").len(), 1, "one close");
    // Anything a concurrent webhook left for later is done by the next one.
    assert_eq!(b.send_halo(&Bridge::halo_payload(t)).await.body["actionsForwarded"], 0);
}

#[tokio::test]
async fn a_restart_between_webhooks_forwards_nothing_again() {
    let b = Bridge::start().await;
    let t = bridge_ticket(&b, "inc-restart-h").await;
    b.halo.add_action(t, note("before restart"));
    b.halo.set_status(t, 9, "Closed", true);
    assert_eq!(b.send_halo(&Bridge::halo_payload(t)).await.body["actionsForwarded"], 1);
    b.host.restart_handler().await.unwrap();
    let after = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(after.body, json!({"status": "processed", "actionsForwarded": 0, "closed": false, "setAside": 0}));
    assert_eq!(b.cf.comments("inc-restart-h").len(), 1);
    assert_eq!(b.cf.status_changes("inc-restart-h").len(), 1);
}

#[tokio::test]
async fn halo_500_on_the_ticket_is_queued_not_processed() {
    let b = Bridge::start().await;
    let t = bridge_ticket(&b, "inc-h500").await;
    b.halo.faults().push(Rule::always("GET", "/api/Tickets", Fault::status(500)));
    let a = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(a.body, json!({"status": "queued", "workId": format!("halo-{t}")}), "{a:?}");
}

/// A ticket Logic App 01 made carries a reference the bridge did not write: it is not trusted until an operator
/// imports it (`handler import-links`). Basic auth is accepted as the webhook's secret.
#[tokio::test]
async fn a_logic_app_ticket_is_not_trusted_until_imported_and_basic_auth_is_accepted() {
    let b = Bridge::start().await;
    let t = b.halo.create_ticket_direct(NewTicket {
        summary: "[CF #7] Old incident".into(),
        thirdpartynumber: Some("cf|defenderxdr|old|id".into()),
        ..Default::default()
    });
    b.halo.add_action(t, note("history one"));
    let basic = format!("Basic {}", base64_encode(&format!("halo:{HALO_WEBHOOK_SECRET}")));
    let a = b.send_halo_with(&Bridge::halo_payload(t), &[("authorization", basic.as_str())]).await;
    assert_eq!(a.body, json!({"status": "ignored", "reason": "not a ticket the bridge created or imported"}));
    assert!(b.cf.comments("old|id").is_empty());
    assert_eq!(b.halo.requests().len(), 0);
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn without_echo_settings_the_creation_of_a_bridge_ticket_is_not_echoed() {
    let b = Bridge::start_with(|env| env.retain(|(k, _)| !k.starts_with("HALO_INTEGRATION_"))).await;
    let t = bridge_ticket(&b, "inc-no-echo").await;
    b.halo.add_action(t, note("a real update"));
    let a = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(a.body["actionsForwarded"], 1, "{a:?}");
    assert_eq!(texts(&b, "inc-no-echo"), vec!["a real update"]);
}

/// The common webhook (any ticket update with nothing new to forward) reads its ticket record once, writes
/// nothing and makes one Halo call (the ticket: its `lastactiondate` says no action is new); forwarding one note
/// costs the incident's record (the link check), its marker's three writes and moving the ticket's progress on.
#[tokio::test]
async fn a_webhook_with_nothing_new_reads_one_record_and_writes_nothing() {
    let b = Bridge::start_counting_storage().await;
    let t = bridge_ticket(&b, "inc-h-costs").await;
    b.halo.add_action(t, note("one"));
    let before = b.storage_counts();
    assert_eq!(b.send_halo(&Bridge::halo_payload(t)).await.body["actionsForwarded"], 1);
    let after = b.storage_counts();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (2, 3),
        "record, link (with any own notes); the marker Reserved, Sending, then Sent with the progress in one batch"
    );
    for _ in 0..3 {
        let before = b.storage_counts();
        let halo_before = b.halo.requests().len();
        let a = b.send_halo(&Bridge::halo_payload(t)).await;
        assert_eq!(
            a.body,
            json!({"status": "processed", "actionsForwarded": 0, "closed": false, "setAside": 0}),
            "{a:?}"
        );
        let after = b.storage_counts();
        assert_eq!((after.0 - before.0, after.1 - before.1), (1, 0));
        let calls: Vec<String> = b.halo.requests()[halo_before..].iter().map(|r| r.path.clone()).collect();
        assert_eq!(calls, vec![format!("/api/Tickets/{t}")], "one Halo call, no action list");
    }
    assert_eq!(b.cf.comments("inc-h-costs").len(), 1);
}
