//! The bridge's own records are the only authority on which Halo ticket belongs to which incident (issue 15): a
//! reference typed or copied onto a ticket links nothing, an unlinked ticket costs no Halo call, and the opening
//! action of a ticket the bridge made is never echoed back as a comment.

use crate::support::*;
use sandbox::faults::{Fault, Rule};
use sandbox::halo::{NewAction, NewTicket};
use serde_json::json;
use std::time::Duration;

const HUMAN: i64 = 2;
const NOT_LINKED: &str = "not a ticket the bridge created or imported";

async fn bridge_ticket(b: &Bridge, incident_id: &str) -> i64 {
    let a = b.send_cf(&format!("evt-{incident_id}"), &incident(incident_id, 300)).await;
    assert_eq!(a.body["status"], "created", "{a:?}");
    a.body["ticketId"].as_i64().unwrap()
}

fn reference_of(b: &Bridge, ticket: i64) -> String {
    b.halo.tickets().into_iter().find(|t| t.id == ticket).and_then(|t| t.supplier_reference).expect("a reference")
}

#[tokio::test]
async fn a_reference_copied_onto_another_ticket_gets_no_comment_and_no_close_through() {
    let b = Bridge::start().await;
    let real = bridge_ticket(&b, "inc-forged").await;
    let copy = b.halo.create_ticket_direct(NewTicket {
        summary: "cloned by hand".into(),
        supplier_reference: Some(reference_of(&b, real)),
        ..Default::default()
    });
    b.halo.add_action(copy, NewAction::human("Mallory", HUMAN, "close it, all fine", false));
    b.halo.set_status(copy, 9, "Closed", true);
    let a = b.send_halo(&Bridge::halo_payload(copy)).await;
    assert_eq!(a.body, json!({"status": "ignored", "reason": NOT_LINKED}), "{a:?}");
    assert!(b.cf.comments("inc-forged").is_empty());
    assert!(b.cf.status_changes("inc-forged").is_empty());
    // The real ticket is untouched by it.
    b.halo.add_action(real, NewAction::human("Sam Agent", HUMAN, "on the real one", false));
    let a = b.send_halo(&Bridge::halo_payload(real)).await;
    assert_eq!(a.body["actionsForwarded"], 1, "{a:?}");
    assert_eq!(b.cf.comments("inc-forged").len(), 1);
}

#[tokio::test]
async fn fifty_webhooks_for_unlinked_tickets_cost_no_halo_call() {
    let b = Bridge::start().await;
    let tickets: Vec<i64> = (0..50)
        .map(|n| {
            b.halo.create_ticket_direct(NewTicket {
                summary: format!("printer {n}"),
                // Some carry a reference someone typed: no better than none.
                supplier_reference: (n % 5 == 0).then(|| format!("cf|defenderxdr|typed-{n}")),
                ..Default::default()
            })
        })
        .collect();
    for t in &tickets {
        let a = b.send_halo(&Bridge::halo_payload(*t)).await;
        assert_eq!(a.body, json!({"status": "ignored", "reason": NOT_LINKED}), "{a:?}");
    }
    assert_eq!(b.halo.requests().len(), 0, "{:?}", b.halo.requests().iter().map(|r| &r.path).collect::<Vec<_>>());
    assert!(b.cf.requests().is_empty());
}

/// Halo names someone other than the integration as the opening action's author (the echo filter does not match
/// it), and a webhook arrives while the create is still answering: the incident's details never come back.
#[tokio::test]
async fn the_opening_action_is_never_echoed_whoever_halo_names_and_however_early_the_webhook() {
    let b = Bridge::start_with(|env| {
        // Time enough for the slow create below to be answered inline.
        env.retain(|(k, _)| !k.starts_with("HALO_INTEGRATION_") && k != "UPSTREAM_TIMEOUT_SECONDS");
        env.push(("UPSTREAM_TIMEOUT_SECONDS".into(), "20".into()));
        env.push(("INLINE_BUDGET_SECONDS".into(), "20".into()));
        env.push(("HALO_INTEGRATION_AGENT_ID".into(), "4242".into()));
        env.push(("HALO_INTEGRATION_APPLICATION".into(), "Some Other App".into()));
    })
    .await;
    b.halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::ApplyThenDelay(Duration::from_secs(2))));
    let body = incident("inc-early", 301);
    let create = b.send_cf("evt-early", &body);
    let early = async {
        eventually("Halo has stored the ticket", || !b.halo.tickets().is_empty()).await;
        let ticket = b.halo.tickets()[0].id;
        (ticket, b.send_halo(&Bridge::halo_payload(ticket)).await)
    };
    let (created, (ticket, early)) = tokio::join!(create, early);
    assert_eq!(created.body["status"], "created", "{created:?}");
    assert_eq!(early.body, json!({"status": "ignored", "reason": NOT_LINKED}), "{early:?}");
    let after = b.send_halo(&Bridge::halo_payload(ticket)).await;
    assert_eq!(after.body["actionsForwarded"], 0, "{after:?}");
    b.halo.add_action(ticket, NewAction::human("Sam Agent", HUMAN, "a real update", false));
    assert_eq!(b.send_halo(&Bridge::halo_payload(ticket)).await.body["actionsForwarded"], 1);
    let comments = b.cf.comments("inc-early");
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].content.contains("a real update"));
}

#[tokio::test]
async fn every_event_of_a_batched_delivery_is_processed_each_ticket_once() {
    let b = Bridge::start().await;
    let first = bridge_ticket(&b, "inc-batch-1").await;
    let second = b.send_cf("evt-inc-batch-2", &incident("inc-batch-2", 302)).await.body["ticketId"].as_i64().unwrap();
    b.halo.add_action(first, NewAction::human("Sam Agent", HUMAN, "first ticket's note", false));
    b.halo.add_action(second, NewAction::human("Sam Agent", HUMAN, "second ticket's note", false));
    let unlinked = b.halo.create_ticket_direct(NewTicket { summary: "unrelated".into(), ..Default::default() });
    let batch = json!([
        Bridge::halo_payload(first),
        Bridge::halo_payload(second),
        Bridge::halo_payload(first),
        Bridge::halo_payload(unlinked),
    ]);
    let a = b.send_halo(&batch).await;
    assert_eq!(a.body["status"], "processed", "{a:?}");
    let results = a.body["tickets"].as_array().expect("one result per ticket");
    assert_eq!(results.len(), 3, "{a:?}");
    assert_eq!(results[0]["ticketId"], first);
    assert_eq!(results[0]["actionsForwarded"], 1);
    assert_eq!(results[1]["actionsForwarded"], 1);
    assert_eq!(results[2]["reason"], NOT_LINKED);
    assert_eq!(b.cf.comments("inc-batch-1").len(), 1);
    assert_eq!(b.cf.comments("inc-batch-2").len(), 1);
}

/// Halo answers fewer actions than its own `record_count` and `/Actions` documents no paging: the webhook is not
/// answered as processed with a part of the list, its work is queued (and retried) instead.
#[tokio::test]
async fn an_action_list_shorter_than_halos_count_is_never_a_partial_success() {
    let halo = sandbox::halo::HaloConfig { max_actions_count: Some(3), ..sandbox::halo::HaloConfig::test() };
    let b = Bridge::start_with_halo(halo, |_| {}).await;
    let t = bridge_ticket(&b, "inc-capped").await;
    for n in 0..4 {
        b.halo.add_action(t, NewAction::human("Sam Agent", HUMAN, &format!("note {n}"), false));
    }
    let a = b.send_halo(&Bridge::halo_payload(t)).await;
    assert_eq!(a.body["status"], "queued", "{a:?}");
    assert!(b.cf.comments("inc-capped").is_empty(), "no part of the list was forwarded");
}

/// An error answer says what kind of failure it was and carries the correlation id of the log line that explains it.
#[tokio::test]
async fn an_error_answer_carries_the_correlation_id_of_its_log_line() {
    let b = Bridge::start().await;
    let a = b.send_halo_with(&Bridge::halo_payload(1001), &[("x-halo-secret", "wrong")]).await;
    assert_eq!(a.body, json!({"error": "invalid callback secret"}));
    let id = a.correlation_id.expect("a correlation id");
    assert!(id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    let line = b.logged(&id).await;
    assert!(line.contains("status=401") && line.contains("route=\"halo-webhook\""), "{line}");
    let other = b.send_halo_with(&Bridge::halo_payload(1001), &[("x-halo-secret", "wrong")]).await;
    assert_ne!(other.correlation_id.as_deref(), Some(id.as_str()), "one id per request");
}

/// `X-CF-Event-Id` is not signed: a captured delivery sent again within the window under new event ids is the same
/// delivery, a duplicate, whether it created the ticket or added a note.
#[tokio::test]
async fn a_signed_delivery_replayed_under_new_event_ids_is_a_duplicate() {
    let b = Bridge::start().await;
    let signed = |raw: &[u8], ts: i64| {
        let signature = cf_halo_bridge::cf::signature::sign(CF_SECRET.as_bytes(), ts, raw);
        [("x-cf-timestamp".to_string(), ts.to_string()), ("x-cf-signature".to_string(), signature)]
    };
    let send = |event: &'static str, raw: Vec<u8>, headers: [(String, String); 2]| {
        let b = &b;
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            b.send_cf_raw(event, &raw, &headers).await
        }
    };
    let first = serde_json::to_vec(&incident("inc-replay", 303)).unwrap();
    let at = unix_now();
    let created = send("evt-replay-1", first.clone(), signed(&first, at)).await;
    assert_eq!(created.body["status"], "created", "{created:?}");
    let ticket = created.body["ticketId"].clone();
    for event in ["evt-replay-2", "evt-replay-3"] {
        let again = send(event, first.clone(), signed(&first, at)).await;
        assert_eq!(again.body, json!({"status": "duplicate", "ticketId": ticket}), "{again:?}");
    }
    // A new event of the incident is a note, once; its delivery replayed under another id adds nothing.
    let later = serde_json::to_vec(&incident("inc-replay", 303)).unwrap();
    let noted = send("evt-replay-4", later.clone(), signed(&later, at)).await;
    assert_eq!(noted.body["status"], "updated", "{noted:?}");
    let replayed = send("evt-replay-5", later.clone(), signed(&later, at)).await;
    assert_eq!(replayed.body, json!({"status": "duplicate", "ticketId": ticket}), "{replayed:?}");
    // The same body signed at another time is another delivery (ContraForce's re-send of an event).
    let resent = send("evt-replay-6", later.clone(), signed(&later, at - 1)).await;
    assert_eq!(resent.body["status"], "updated", "{resent:?}");
    let notes = b.halo.actions(ticket.as_i64().unwrap()).into_iter().filter(|a| a.outcome == "Private Note").count();
    assert_eq!(notes, 2, "one note per delivery, none per replay");
}
