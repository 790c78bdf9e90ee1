//! Durable work in process: a comment or close ContraForce refuses for good is dead-lettered and blocks nothing; a
//! comment whose answer was lost is recorded as uncertain and never posted again by itself; a replay does the work
//! once, and a second replay nothing.

use crate::support::{ticketed, Rig, BUDGET};
use cf_halo_bridge::directions::halo_webhook::HaloWebhookOutcome;
use cf_halo_bridge::domain::TicketId;
use cf_halo_bridge::store::{action_key, ActionMarker, MarkerState, WorkState};
use cf_halo_bridge::work::{Replay, WorkItem};
use sandbox::faults::{Fault, Rule};
use sandbox::halo::NewAction;

fn note(rig: &Rig, ticket: TicketId, text: &str) -> i64 {
    rig.halo.add_action(ticket, NewAction::human("Sam Analyst", 5, &format!("<p>{text}</p>"), false))
}

fn texts(rig: &Rig, id: &str) -> Vec<String> {
    rig.cf.comments(id).into_iter().map(|c| c.content.rsplit("\n\n").next().unwrap().to_string()).collect()
}

/// Lets `pass` comment posts through, then answers the next one `status`.
fn fail_comment_after(rig: &Rig, pass: usize, status: u16) {
    for _ in 0..pass {
        rig.cf.faults().push(Rule::once("POST", "/api/v2/workspaces", Fault::DelayBefore(std::time::Duration::ZERO)));
    }
    rig.cf.faults().push(Rule::once("POST", "/api/v2/workspaces", Fault::status(status)));
}

async fn sync(rig: &Rig, ticket: TicketId) -> HaloWebhookOutcome {
    rig.app.halo_webhook(BUDGET).unwrap().sync(ticket).await.unwrap()
}

fn ledger(rig: &Rig) -> &cf_halo_bridge::work::Ledger {
    rig.app.ledger.as_ref().expect("the rig has a ledger")
}

#[tokio::test]
async fn a_refused_comment_is_dead_lettered_and_the_next_comment_and_the_close_still_go() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "d-404").await;
    let first = note(&rig, ticket, "refused");
    note(&rig, ticket, "accepted");
    rig.halo.set_status(ticket, 9, "Closed", true);
    fail_comment_after(&rig, 0, 404);
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 1, closed: true, set_aside: 1 });
    assert_eq!(texts(&rig, "d-404"), ["accepted"]);
    assert_eq!(rig.cf.status_changes("d-404").len(), 1, "the close is not blocked");
    let marker = rig.store.get::<ActionMarker>(&action_key(ticket, first)).await.unwrap().unwrap().value;
    assert_eq!(marker.state, MarkerState::DeadLettered);
    let dead = ledger(&rig).list().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (id, record) = &dead[0];
    assert_eq!(
        (id.as_str(), record.state),
        (WorkItem::HaloAction { ticket, action: first }.id().as_str(), WorkState::DeadLettered)
    );
    assert!(record.reason.contains("404"), "{}", record.reason);
    // Later webhooks do not retry it.
    sync(&rig, ticket).await;
    assert_eq!(texts(&rig, "d-404"), ["accepted"]);
    assert!(rig.queue.sent.lock().unwrap().is_empty(), "a dead letter is not queued");

    // The cause is fixed: a replay queues it, the queued item posts it once, and a second replay does nothing.
    assert_eq!(ledger(&rig).replay(id).await.unwrap(), Replay::Queued);
    let sent = rig.queue.sent.lock().unwrap().clone();
    let item = WorkItem::from_message(&sent[0].0).unwrap();
    assert_eq!(item, WorkItem::HaloAction { ticket, action: first });
    let done = rig.app.halo_webhook(BUDGET).unwrap().forward_action(ticket, first).await.unwrap();
    assert_eq!(done, HaloWebhookOutcome::Processed { forwarded: 1, closed: false, set_aside: 0 });
    ledger(&rig).completed(&item).await.unwrap();
    assert_eq!(texts(&rig, "d-404"), ["accepted", "refused"]);
    assert_eq!(ledger(&rig).replay(id).await.unwrap(), Replay::NothingToDo);
    rig.app.halo_webhook(BUDGET).unwrap().forward_action(ticket, first).await.unwrap();
    assert_eq!(texts(&rig, "d-404").len(), 2, "forwarding it again does nothing");
}

#[tokio::test]
async fn a_comment_answered_500_is_uncertain_never_reposted_and_blocks_nothing() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "d-500").await;
    note(&rig, ticket, "one");
    let second = note(&rig, ticket, "two");
    note(&rig, ticket, "three");
    fail_comment_after(&rig, 1, 500);
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 2, closed: false, set_aside: 1 });
    sync(&rig, ticket).await;
    assert_eq!(texts(&rig, "d-500"), ["one", "three"], "a 500 may have stored it: never posted again by itself");
    let records = ledger(&rig).list().await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0, WorkItem::HaloAction { ticket, action: second }.id());
    assert_eq!(records[0].1.state, WorkState::Uncertain);
}

#[tokio::test]
async fn a_comment_answered_503_fails_the_webhook_and_the_next_attempt_posts_it_once() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "d-503").await;
    note(&rig, ticket, "later");
    fail_comment_after(&rig, 0, 503);
    let failed = rig.app.halo_webhook(BUDGET).unwrap().sync(ticket).await;
    assert!(failed.is_err(), "a transient failure is not a 2xx: its work gets queued");
    assert!(texts(&rig, "d-503").is_empty());
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 1, closed: false, set_aside: 0 });
    assert_eq!(texts(&rig, "d-503"), ["later"]);
    assert!(ledger(&rig).list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_close_is_dead_lettered_once_and_a_replay_mirrors_it() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "d-close").await;
    rig.halo.set_status(ticket, 9, "Closed", true);
    rig.cf.faults().push(Rule::once("PUT", "/api/v2/workspaces", Fault::status(404)));
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 0, closed: false, set_aside: 1 });
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 0, closed: false, set_aside: 0 });
    assert!(rig.cf.status_changes("d-close").is_empty());
    let id = WorkItem::HaloClose { ticket }.id();
    assert_eq!(ledger(&rig).replay(&id).await.unwrap(), Replay::Queued);
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 0, closed: true, set_aside: 0 });
    assert_eq!(rig.cf.status_changes("d-close").len(), 1);
}
