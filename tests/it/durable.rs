//! Durable work through the real binary under the stand-in host, with Azurite's queue service: what cannot be done
//! inline is answered `queued` and completed by the `work-items` queue trigger without any new webhook; a refusal
//! for good is dead-lettered and blocks nothing; exhausted retries reach the poison queue and become dead letters;
//! `handler replay` completes a dead letter once; a handler killed while it holds an item does nothing twice.

use crate::support::*;
use reqwest::StatusCode;
use sandbox::faults::{Fault, Rule};
use sandbox::halo::NewAction;
use sandbox::host::Outcome;
use serde_json::json;
use std::time::Duration;

const HUMAN: i64 = 5;

async fn ticket_for(b: &Bridge, incident_id: &str) -> i64 {
    let a = b.send_cf(&format!("evt-{incident_id}"), &incident(incident_id, 7)).await;
    assert_eq!(a.body["status"], "created", "{a:?}");
    a.body["ticketId"].as_i64().unwrap()
}

fn note(b: &Bridge, ticket: i64, text: &str) {
    b.halo.add_action(ticket, NewAction::human("Sam Agent", HUMAN, text, false));
}

fn texts(b: &Bridge, incident_id: &str) -> Vec<String> {
    b.cf.comments(incident_id).into_iter().map(|c| c.content.rsplit("\n\n").next().unwrap().to_string()).collect()
}

fn comments_path(b: &Bridge, incident_id: &str) -> String {
    format!("/api/v2/workspaces/{}/incidents/{incident_id}/comments", b.cf.config().workspace_id)
}

#[tokio::test]
async fn a_halo_webhook_answered_while_contraforce_is_down_completes_from_the_queue_without_a_new_webhook() {
    let b = Bridge::start().await;
    let t = ticket_for(&b, "dw-cf-down").await;
    note(&b, t, "triaged: benign");
    b.cf.faults().push(Rule::always("POST", "/api/v2/workspaces", Fault::status(503)));
    let a = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(
        (a.status, a.body.clone()),
        (StatusCode::OK, json!({"status": "queued", "workId": format!("halo-{t}")}))
    );
    assert!(b.handler_command(&["dead-letters"]).await.contains("Queued"), "the ledger holds the queued work");
    // ContraForce comes back; Halo sends nothing more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.cf.faults().clear();
    eventually("the queued comment arrives", || texts(&b, "dw-cf-down") == ["triaged: benign"]).await;
    ledger_empties(&b).await;
    assert!(b.host.invocations().iter().any(|i| i.function == "work-items" && matches!(i.outcome, Outcome::Failed(_))));
    assert_eq!(texts(&b, "dw-cf-down").len(), 1, "posted once");
    b.assert_clean_logs();
}

#[tokio::test]
async fn an_incident_arriving_while_halo_is_down_is_queued_and_becomes_exactly_one_ticket() {
    let b = Bridge::start().await;
    b.halo.faults().push(Rule::always("POST", "/api/Tickets", Fault::status(503)));
    let a = b.send_cf("evt-dw-halo-down", &incident("dw-halo-down", 8)).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.body["status"], "queued", "{a:?}");
    assert!(a.body["workId"].as_str().unwrap().starts_with("cf-"));
    assert!(b.halo.tickets().is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.halo.faults().clear();
    eventually("the queued incident becomes a ticket", || b.halo.tickets().len() == 1).await;
    let again = b.send_cf("evt-dw-halo-down", &incident("dw-halo-down", 8)).await;
    assert_eq!(again.body["status"], "duplicate", "{again:?}");
    assert_eq!(b.halo.tickets().len(), 1, "exactly one ticket");
}

#[tokio::test]
async fn contraforce_refusing_one_incidents_comments_dead_letters_them_and_nothing_else_waits() {
    let b = Bridge::start().await;
    let gone = ticket_for(&b, "dw-gone").await;
    let fine = ticket_for(&b, "dw-fine").await;
    b.cf.faults().push(Rule::always("POST", &comments_path(&b, "dw-gone"), Fault::status(404)));
    for n in 1..=2 {
        note(&b, gone, &format!("gone {n}"));
        note(&b, fine, &format!("fine {n}"));
    }
    b.halo.set_status(gone, 9, "Closed", true);
    let a = b.send_halo(&Bridge::halo_payload(gone)).await;
    assert_eq!(a.body, json!({"status": "processed", "actionsForwarded": 0, "closed": true, "setAside": 2}), "{a:?}");
    let a = b.send_halo(&Bridge::halo_payload(fine)).await;
    assert_eq!(a.body["actionsForwarded"], 2, "{a:?}");
    assert_eq!(texts(&b, "dw-fine"), ["fine 1", "fine 2"]);
    assert_eq!(b.cf.status_changes("dw-gone").len(), 1, "the close of the refused incident's ticket still goes");
    let posts = b.cf.count("POST", &comments_path(&b, "dw-gone"));
    b.send_halo(&Bridge::halo_payload(gone)).await;
    assert_eq!(b.cf.count("POST", &comments_path(&b, "dw-gone")), posts, "one attempt each: never retried");
    let listed = b.handler_command(&["dead-letters"]).await;
    assert_eq!(listed.matches("DeadLettered").count(), 2, "{listed}");
    assert!(listed.contains("404") && !listed.contains("Bearer"), "{listed}");

    // The cause is fixed: a replay completes each once, and a second replay does nothing.
    b.cf.faults().clear();
    let replayed = b.handler_command(&["replay", "--all"]).await;
    assert_eq!(replayed.matches(": queued").count(), 2, "{replayed}");
    eventually("the replayed comments arrive", || texts(&b, "dw-gone").len() == 2).await;
    ledger_empties(&b).await;
    let again = b.handler_command(&["replay", "--all"]).await;
    assert!(!again.contains("queued"), "{again}");
    let mut sent = texts(&b, "dw-gone");
    sent.sort();
    assert_eq!(sent, ["gone 1", "gone 2"], "each once");
}

#[tokio::test]
async fn exhausted_retries_reach_the_poison_queue_become_a_dead_letter_and_a_replay_completes_it() {
    let b = Bridge::start().await;
    let t = ticket_for(&b, "dw-poison").await;
    note(&b, t, "will wait");
    b.cf.faults().push(Rule::always("POST", "/api/v2/workspaces", Fault::status(503)));
    assert_eq!(b.send_halo(&Bridge::halo_payload(t)).await.body["status"], "queued");
    eventually("the poisoned item reaches the dead-letters function", || {
        b.host.invocations().iter().any(|i| i.function == "dead-letters" && i.outcome.succeeded())
    })
    .await;
    let tries = b.host.invocations().iter().filter(|i| i.function == "work-items").count() as u32;
    assert_eq!(tries, MAX_DEQUEUE, "the platform retried it maxDequeueCount times");
    let listed = b.handler_command(&["dead-letters"]).await;
    assert!(listed.contains(&format!("halo-{t}\tDeadLettered")) && listed.contains("retries exhausted"), "{listed}");
    assert!(texts(&b, "dw-poison").is_empty());

    b.cf.faults().clear();
    assert!(b.handler_command(&["replay", &format!("halo-{t}")]).await.contains("queued"));
    eventually("the replayed work completes", || texts(&b, "dw-poison") == ["will wait"]).await;
    let second = b.handler_command(&["replay", &format!("halo-{t}")]).await;
    ledger_empties(&b).await;
    assert!(second.contains("nothing to do") || second.contains("queued"), "{second}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(texts(&b, "dw-poison"), ["will wait"], "a second replay does nothing twice");
}

#[tokio::test]
async fn a_handler_killed_while_it_holds_a_queue_item_is_redelivered_and_nothing_is_done_twice() {
    // A short claim TTL: the killed handler's claim on the incident goes stale within seconds.
    let b = Bridge::start_with(|env| env.push(("CLAIM_TTL_SECONDS".into(), "3".into()))).await;
    b.halo.faults().push(Rule::always("POST", "/api/Tickets", Fault::status(503)));
    assert_eq!(b.send_cf("evt-dw-kill", &incident("dw-kill", 9)).await.body["status"], "queued");
    // The queued attempt's create hangs in Halo (and is then carried out): the handler is killed meanwhile.
    b.halo.faults().clear();
    b.halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::ApplyThenDelay(Duration::from_secs(30))));
    eventually("the queued attempt reaches Halo", || b.halo.tickets().len() == 1).await;
    b.host.restart_handler().await.unwrap();
    // Redelivered to the new handler, which takes over the stale claim and finds the ticket by its reference
    // instead of creating another; a redelivery of the event is then a duplicate.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let again = b.send_cf("evt-dw-kill", &incident("dw-kill", 9)).await;
        if again.body["status"] == "duplicate" {
            break;
        }
        assert!(tokio::time::Instant::now() < give_up, "the killed item never completed: {again:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(b.host.invocations().iter().any(|i| i.function == "work-items" && matches!(i.outcome, Outcome::Failed(_))));
    assert_eq!(b.halo.tickets().len(), 1, "one ticket");
}

fn status_path(b: &Bridge, incident_id: &str) -> String {
    format!("/api/v2/workspaces/{}/incidents/{incident_id}/status", b.cf.config().workspace_id)
}

#[tokio::test]
async fn a_note_written_while_the_one_before_it_is_being_posted_arrives_without_a_new_webhook() {
    // The first comment is held in ContraForce for 4 s: slow, not failed (10 s per call, 20 s inline).
    let b = std::sync::Arc::new(
        Bridge::start_with(|env| {
            set(env, "UPSTREAM_TIMEOUT_SECONDS", "10");
            set(env, "INLINE_BUDGET_SECONDS", "20");
        })
        .await,
    );
    let t = ticket_for(&b, "dw-behind").await;
    let comments = comments_path(&b, "dw-behind");
    note(&b, t, "first");
    b.cf.faults().push(Rule::once("POST", &comments, Fault::DelayBefore(Duration::from_secs(4))));
    let posting = {
        let b = b.clone();
        tokio::spawn(async move { b.send_halo(&Bridge::halo_payload(t)).await })
    };
    eventually("the first comment is being posted", || b.cf.count("POST", &comments) == 1).await;
    // Halo's one webhook for the second note arrives while the first is in flight: it finds that action claimed,
    // and the delivery holding it read the actions before the second note existed.
    note(&b, t, "second");
    let behind = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(behind.body["status"], "queued", "not done while the action before it is in flight: {behind:?}");
    let first = posting.await.unwrap();
    assert_eq!(first.body["actionsForwarded"], 1, "{first:?}");
    // Halo sends nothing more: the queue does the rest.
    eventually("the second comment arrives", || texts(&b, "dw-behind") == ["first", "second"]).await;
    ledger_empties(&b).await;
    assert_eq!(texts(&b, "dw-behind"), ["first", "second"], "each once");
}

#[tokio::test]
async fn a_close_held_by_a_killed_handler_is_mirrored_from_the_queue_once_its_claim_goes_stale() {
    // Claims go stale after 10 s: the redelivered item meets the killed handler's close claim while it is live.
    let b = Bridge::start_with(|env| set(env, "CLAIM_TTL_SECONDS", "10")).await;
    let t = ticket_for(&b, "dw-close-kill").await;
    let status = status_path(&b, "dw-close-kill");
    b.halo.set_status(t, 9, "Closed", true);
    // ContraForce asks to wait 5 s: the queued attempt holds the close claim while it waits, and is killed.
    b.cf.faults().push(Rule::always("PUT", &status, Fault::Status { code: 503, retry_after: Some(5) }));
    assert_eq!(b.send_halo(&Bridge::halo_payload(t)).await.body["status"], "queued");
    eventually("the queued attempt asks ContraForce", || b.cf.count("PUT", &status) >= 2).await;
    b.host.restart_handler().await.unwrap();
    b.cf.faults().clear();
    // Halo sends nothing more: the redelivered item waits for the dead claim to go stale, then closes.
    eventually("the close is mirrored", || b.cf.status_changes("dw-close-kill").len() == 1).await;
    ledger_empties(&b).await;
    assert_eq!(b.cf.status_changes("dw-close-kill").len(), 1, "once");
}
