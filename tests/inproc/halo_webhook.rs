//! halo-webhook's claim paths: action markers (Reserved → Sending → Sent) and the close.

use crate::support::{live_claim, reference, stale_claim, ticketed, Rig, BUDGET};
use cf_halo_bridge::directions::halo_webhook::{HaloWebhookError, HaloWebhookOutcome};
use cf_halo_bridge::domain::TicketId;
use cf_halo_bridge::store::{action_key, ActionMarker, MarkerState};
use sandbox::halo::NewAction;

fn note(rig: &Rig, ticket: TicketId, text: &str) -> i64 {
    rig.halo.add_action(ticket, NewAction::human("Sam Analyst", 5, &format!("<p>{text}</p>"), false))
}

fn comments(rig: &Rig, id: &str) -> Vec<String> {
    rig.cf.comments(id).into_iter().map(|c| c.content).collect()
}

/// A marker left on an action by another webhook, as it left it.
async fn seed_marker(
    rig: &Rig,
    ticket: TicketId,
    action: i64,
    state: MarkerState,
    claim: cf_halo_bridge::store::Claim,
) {
    rig.store.insert(&action_key(ticket, action), &ActionMarker { state, claim }).await.unwrap();
}

async fn sync(rig: &Rig, ticket: TicketId) -> HaloWebhookOutcome {
    rig.app.halo_webhook(BUDGET).unwrap().sync(ticket).await.unwrap()
}

#[tokio::test]
async fn a_public_note_is_forwarded_once_and_the_creation_never() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "h-fresh").await;
    note(&rig, ticket, "first look: benign");
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 1, closed: false, set_aside: 0 });
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 0, closed: false, set_aside: 0 });
    let sent = comments(&rig, "h-fresh");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("first look: benign"));
}

#[tokio::test]
async fn a_stale_reservation_is_taken_over_and_posted_once() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "h-stale").await;
    let action = note(&rig, ticket, "reserved by a crashed webhook");
    seed_marker(&rig, ticket, action, MarkerState::Reserved, stale_claim()).await;
    sync(&rig, ticket).await;
    assert_eq!(comments(&rig, "h-stale").len(), 1);
    let stored = rig.store.get::<ActionMarker>(&action_key(ticket, action)).await.unwrap().unwrap().value;
    assert_eq!(stored.state, MarkerState::Sent);
}

#[tokio::test]
async fn a_stale_send_of_unknown_outcome_is_never_repeated_and_does_not_block_the_next() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "h-unknown").await;
    let unknown = note(&rig, ticket, "posted, answer lost");
    note(&rig, ticket, "the next one");
    seed_marker(&rig, ticket, unknown, MarkerState::Sending, stale_claim()).await;
    sync(&rig, ticket).await;
    let sent = comments(&rig, "h-unknown");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("the next one"));
}

#[tokio::test]
async fn a_live_reservation_elsewhere_stops_the_webhook_to_keep_the_order() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "h-busy").await;
    let held = note(&rig, ticket, "being posted by another webhook");
    note(&rig, ticket, "after it");
    seed_marker(&rig, ticket, held, MarkerState::Reserved, live_claim()).await;
    // Not done: the work is tried again (queued, 2 s later) until the holder is done or its claim is stale.
    let busy = rig.app.halo_webhook(BUDGET).unwrap().sync(ticket).await;
    assert!(matches!(busy, Err(HaloWebhookError::InFlight)), "{busy:?}");
    assert!(comments(&rig, "h-busy").is_empty(), "nothing after an action in flight elsewhere is posted first");
}

#[tokio::test]
async fn our_own_reservation_landed_by_a_storage_retry_is_posted_once() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "h-own").await;
    note(&rig, ticket, "ambiguous insert");
    rig.table.answer_next_writes_ambiguously(1);
    sync(&rig, ticket).await;
    assert_eq!(comments(&rig, "h-own").len(), 1);
}

#[tokio::test]
async fn a_close_is_mirrored_once_and_not_while_another_holds_it() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "h-close").await;
    rig.halo.set_status(ticket, 9, "Closed", true);
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 0, closed: true, set_aside: 0 });
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 0, closed: false, set_aside: 0 });
    assert_eq!(rig.cf.status_changes("h-close").len(), 1);

    let other = ticketed(&rig, "h-close-held").await;
    let key = cf_halo_bridge::store::ticket_key(other);
    rig.store
        .update::<cf_halo_bridge::store::TicketRecord, _>(&key, |r| {
            r.close = cf_halo_bridge::store::CloseState::Closing;
            r.close_claim = live_claim();
            true
        })
        .await
        .unwrap();
    rig.halo.set_status(other, 9, "Closed", true);
    let held = rig.app.halo_webhook(BUDGET).unwrap().sync(other).await;
    assert!(matches!(held, Err(HaloWebhookError::InFlight)), "the close is not done yet: {held:?}");
    assert!(rig.cf.status_changes("h-close-held").is_empty(), "the holder mirrors it, not us");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_webhooks_forward_each_note_once_in_order() {
    let rig = std::sync::Arc::new(Rig::new());
    let ticket = ticketed(&rig, "h-race").await;
    for n in 0..5 {
        note(&rig, ticket, &format!("note {n}"));
    }
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let rig = rig.clone();
            tokio::spawn(async move { rig.app.halo_webhook(BUDGET).unwrap().sync(ticket).await })
        })
        .collect();
    for task in tasks {
        // Done, or stopped behind another's in-flight action (then its work is queued and tried again).
        match task.await.unwrap() {
            Ok(_) | Err(HaloWebhookError::InFlight) => {}
            Err(e) => panic!("{e}"),
        }
    }
    // The retry of a webhook that stopped behind another's in-flight action.
    sync(&rig, ticket).await;
    let sent = comments(&rig, "h-race");
    let expected: Vec<String> = (0..5).map(|n| format!("note {n}")).collect();
    let order: Vec<String> = sent.iter().map(|c| c.lines().last().unwrap_or_default().to_string()).collect();
    assert_eq!(order, expected, "each note once, oldest first");
}

/// A ticket record written by an older bridge, which trusted a reference typed on the ticket: unless the incident's
/// own record names that ticket, nothing is posted or closed from it (and the real ticket still works).
#[tokio::test]
async fn a_ticket_record_the_incident_does_not_name_posts_and_closes_nothing() {
    use cf_halo_bridge::store::{ticket_key, TicketRecord};
    let rig = Rig::new();
    let real = ticketed(&rig, "h-forged").await;
    let copy = rig.halo.create_ticket_direct(sandbox::halo::NewTicket {
        summary: "a copy".into(),
        supplier_reference: Some(reference("h-forged").to_string()),
        ..Default::default()
    });
    rig.store.insert(&ticket_key(copy), &TicketRecord::new(reference("h-forged"), false)).await.unwrap();
    note(&rig, copy, "typed on the copy");
    rig.halo.set_status(copy, 9, "Closed", true);
    assert_eq!(sync(&rig, copy).await, HaloWebhookOutcome::Ignored("the incident's record does not name this ticket"));
    assert!(comments(&rig, "h-forged").is_empty());
    assert!(rig.cf.status_changes("h-forged").is_empty());
    note(&rig, real, "on the real ticket");
    assert_eq!(sync(&rig, real).await, HaloWebhookOutcome::Processed { forwarded: 1, closed: false, set_aside: 0 });
}

#[tokio::test]
async fn the_bridges_own_note_is_marked_with_its_event_and_never_forwarded_even_when_public() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "h-own-note").await;
    let inc = crate::support::incident("h-own-note", 1);
    let later = rig.app.cf_webhook(BUDGET).unwrap().deliver(&crate::support::event("e2"), "d-e2", &inc).await;
    assert!(matches!(later, Ok(cf_halo_bridge::directions::cf_webhook::Outcome::Updated(t)) if t == ticket));
    let note_id = rig.halo.actions(ticket).last().unwrap().id;
    // The event's Done and the own-note mark went in one write to the incident's partition, nothing to the ticket's.
    let incident = cf_halo_bridge::store::incident_key(&reference("h-own-note"));
    let own = cf_halo_bridge::store::own_note_key(&incident, note_id);
    assert!(rig.store.get::<ActionMarker>(&own).await.unwrap().is_some(), "the note is marked as the bridge's");
    assert!(rig.store.get::<ActionMarker>(&action_key(ticket, note_id)).await.unwrap().is_none());
    let batches = rig.table.writes.lock().unwrap().iter().filter(|(_, key, _)| key == &own).count();
    assert_eq!(batches, 1);

    // An action the bridge wrote, public and authored by a person as far as Halo says: its mark alone keeps it
    // from being forwarded; the human note after it goes.
    let public_own = note(&rig, ticket, "looks like ours, and is");
    rig.store
        .insert(
            &cf_halo_bridge::store::own_note_key(&incident, public_own),
            &ActionMarker { state: MarkerState::Own, claim: cf_halo_bridge::store::Claim::default() },
        )
        .await
        .unwrap();
    note(&rig, ticket, "a real analyst note");
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 1, closed: false, set_aside: 0 });
    let sent = comments(&rig, "h-own-note");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("a real analyst note"));
}

#[tokio::test]
async fn each_comment_costs_two_round_trips_its_sending_mark_and_a_batch_that_reserves_the_next() {
    let rig = Rig::new();
    let ticket = ticketed(&rig, "h-writes").await;
    let ids: Vec<i64> = (0..3).map(|n| note(&rig, ticket, &format!("comment {n}"))).collect();
    let before = rig.table.writes.lock().unwrap().len();
    let batches_before = rig.table.batches.lock().unwrap().len();
    assert_eq!(sync(&rig, ticket).await, HaloWebhookOutcome::Processed { forwarded: 3, closed: false, set_aside: 0 });
    let state = |props: &serde_json::Map<String, serde_json::Value>| {
        props.get("State").and_then(|v| v.as_str()).map(str::to_string)
    };
    let writes: Vec<(String, Option<String>)> = rig.table.writes.lock().unwrap()[before..]
        .iter()
        .map(|(op, key, props)| (format!("{op} {}", key.row), state(props)))
        .collect();
    let marker = |n: usize| action_key(ticket, ids[n]).row;
    let w = |op: &str, row: String, state: Option<&str>| (format!("{op} {row}"), state.map(str::to_string));
    assert_eq!(
        writes,
        [
            w("insert", marker(0), Some("Reserved")),
            w("replace", marker(0), Some("Sending")),
            w("replace", marker(0), Some("Sent")),
            w("replace", "ticket".into(), None),
            w("insert", marker(1), Some("Reserved")),
            w("replace", marker(1), Some("Sending")),
            w("replace", marker(1), Some("Sent")),
            w("replace", "ticket".into(), None),
            w("insert", marker(2), Some("Reserved")),
            w("replace", marker(2), Some("Sending")),
            w("replace", marker(2), Some("Sent")),
            w("replace", "ticket".into(), None),
        ],
    );
    // Round trips: the first reservation, each comment's Sending, and each Sent with the progress (and the next
    // comment's reservation) in one batch: 1 + 2 per comment.
    assert_eq!(rig.table.batches.lock().unwrap()[batches_before..], [3, 3, 2]);
    let key = cf_halo_bridge::store::ticket_key(ticket);
    let stored = rig.store.get::<cf_halo_bridge::store::TicketRecord>(&key).await.unwrap().unwrap();
    assert_eq!(stored.value.last_action_id, ids[2]);
    assert_eq!(comments(&rig, "h-writes").len(), 3);
}
