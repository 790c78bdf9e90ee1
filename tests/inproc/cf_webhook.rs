//! cf-webhook's claim paths, each with what must be true after it.

use crate::support::{event, incident, live_claim, reference, stale_claim, Rig, BUDGET};
use cf_halo_bridge::directions::cf_webhook::{CfWebhookError, Outcome};
use cf_halo_bridge::store::{incident_key, IncidentRecord, IncidentState};
use sandbox::halo::NewTicket;

/// An incident record claimed (not yet created) under `claim`.
fn claimed(r: &cf_halo_bridge::domain::ExternalRef, claim: cf_halo_bridge::store::Claim) -> IncidentRecord {
    IncidentRecord { claim, ..IncidentRecord::new(r.clone(), IncidentState::Claimed, None) }
}

async fn stored(rig: &Rig, id: &str) -> IncidentRecord {
    rig.store.get::<IncidentRecord>(&incident_key(&reference(id))).await.unwrap().expect("an incident record").value
}

#[tokio::test]
async fn fresh_incident_creates_one_ticket_and_links_it() {
    let rig = Rig::new();
    let out = rig
        .app
        .cf_webhook(BUDGET)
        .unwrap()
        .deliver(&event("e1"), "delivery-e1", &incident("i-fresh", 1))
        .await
        .unwrap();
    let Outcome::Created(ticket) = out else { panic!("{out:?}") };
    assert_eq!(rig.tickets(), 1);
    let record = stored(&rig, "i-fresh").await;
    assert_eq!((record.state, record.ticket_id), (IncidentState::Created, Some(ticket)));
    assert_eq!(record.created_by_event.as_deref(), Some("e1"));
    assert_eq!(rig.halo.count("GET", "/api/Tickets"), 0, "a fresh claim creates without looking first");
}

#[tokio::test]
async fn a_redelivery_is_a_duplicate_and_a_later_event_one_note_once() {
    let rig = Rig::new();
    let inc = incident("i-dup", 2);
    let created = rig.app.cf_webhook(BUDGET).unwrap().deliver(&event("e1"), "delivery-e1", &inc).await.unwrap();
    let again = rig.app.cf_webhook(BUDGET).unwrap().deliver(&event("e1"), "delivery-e1", &inc).await.unwrap();
    assert_eq!(again, Outcome::Duplicate(created.ticket_id()));
    let later = rig.app.cf_webhook(BUDGET).unwrap().deliver(&event("e2"), "delivery-e2", &inc).await.unwrap();
    assert_eq!(later, Outcome::Updated(created.ticket_id()));
    let later_again = rig.app.cf_webhook(BUDGET).unwrap().deliver(&event("e2"), "delivery-e2", &inc).await.unwrap();
    assert_eq!(later_again, Outcome::Duplicate(created.ticket_id()));
    assert_eq!(rig.halo.count("POST", "/api/Tickets"), 1);
    assert_eq!(rig.halo.count("POST", "/api/Actions"), 1, "one note for the later event, however often it comes");
}

#[tokio::test]
async fn a_stale_claim_is_taken_over_and_finds_the_ticket_its_holder_created() {
    let rig = Rig::new();
    let r = reference("i-stale");
    // The crashed holder's create reached Halo; its answer never came back.
    let existing = rig.halo.create_ticket_direct(NewTicket {
        summary: "[CF #3] Impossible travel".into(),
        supplier_reference: Some(r.to_string()),
        client_id: Some(crate::support::DEFAULT_CLIENT),
        ..NewTicket::default()
    });
    let record = claimed(&r, stale_claim());
    rig.store.insert(&incident_key(&r), &record).await.unwrap();
    let out = rig
        .app
        .cf_webhook(BUDGET)
        .unwrap()
        .deliver(&event("e1"), "delivery-e1", &incident("i-stale", 3))
        .await
        .unwrap();
    assert_eq!(out, Outcome::Created(existing), "the ticket the crashed attempt made is linked, not a second one");
    assert_eq!(rig.halo.count("POST", "/api/Tickets"), 0);
    assert_eq!(stored(&rig, "i-stale").await.ticket_id, Some(existing));
}

/// The search also finds every reference that contains ours (`…|12` finds `…|120`): the one with exactly ours is
/// found newest first on the second page, behind 60 newer decoys (and not hidden by 60 older ones).
#[tokio::test]
async fn a_stale_claim_finds_its_ticket_exactly_among_prefix_matching_decoys() {
    let rig = Rig::new();
    let r = reference("12");
    let decoy = |n: i64| {
        rig.halo.create_ticket_direct(NewTicket {
            supplier_reference: Some(format!("{r}{n}")),
            client_id: Some(crate::support::DEFAULT_CLIENT),
            ..NewTicket::default()
        });
    };
    (0..60).for_each(decoy);
    let existing = rig.halo.create_ticket_direct(NewTicket {
        supplier_reference: Some(r.to_string()),
        client_id: Some(crate::support::DEFAULT_CLIENT),
        ..NewTicket::default()
    });
    (60..120).for_each(decoy);
    rig.store.insert(&incident_key(&r), &claimed(&r, stale_claim())).await.unwrap();
    let out =
        rig.app.cf_webhook(BUDGET).unwrap().deliver(&event("e1"), "delivery-e1", &incident("12", 12)).await.unwrap();
    assert_eq!(out, Outcome::Created(existing), "the real ticket, not a decoy and not a second ticket");
    assert_eq!(rig.halo.count("POST", "/api/Tickets"), 0);
    assert_eq!(rig.halo.count("GET", "/api/Tickets"), 2, "the second page had it");
}

#[tokio::test]
async fn our_own_claim_landed_by_a_storage_retry_is_recognised() {
    let rig = Rig::new();
    // The claim's insert lands, but answers 409 as a retried insert meeting its own first attempt would.
    rig.table.answer_next_writes_ambiguously(1);
    let out =
        rig.app.cf_webhook(BUDGET).unwrap().deliver(&event("e1"), "delivery-e1", &incident("i-own", 4)).await.unwrap();
    assert!(matches!(out, Outcome::Created(_)), "{out:?}: our own claim must not be waited on as another's");
    assert_eq!(rig.tickets(), 1);
    assert_eq!(stored(&rig, "i-own").await.state, IncidentState::Created);
}

#[tokio::test]
async fn our_own_takeover_landed_by_a_storage_retry_still_looks_first() {
    let rig = Rig::new();
    let r = reference("i-own-takeover");
    let record = claimed(&r, stale_claim());
    rig.store.insert(&incident_key(&r), &record).await.unwrap();
    rig.table.answer_next_writes_ambiguously(1);
    let out = rig
        .app
        .cf_webhook(BUDGET)
        .unwrap()
        .deliver(&event("e1"), "delivery-e1", &incident("i-own-takeover", 5))
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Created(_)), "{out:?}");
    assert_eq!(rig.halo.count("GET", "/api/Tickets"), 1, "a takeover looks in Halo before creating");
    assert_eq!(rig.tickets(), 1);
}

#[tokio::test]
async fn a_live_claim_is_waited_on_then_given_up_without_calling_halo() {
    let rig = Rig::new();
    let r = reference("i-busy");
    let record = claimed(&r, live_claim());
    rig.store.insert(&incident_key(&r), &record).await.unwrap();
    let err = rig
        .app
        .cf_webhook(BUDGET)
        .unwrap()
        .deliver(&event("e1"), "delivery-e1", &incident("i-busy", 6))
        .await
        .unwrap_err();
    assert!(matches!(err, CfWebhookError::InFlight), "{err:?}");
    assert_eq!(rig.halo.requests().len(), 0, "nothing reaches Halo while another delivery holds the incident");
    assert_eq!(stored(&rig, "i-busy").await.claim, record.claim, "the holder's claim is left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_of_one_new_incident_make_one_ticket_and_one_note_each() {
    let rig = std::sync::Arc::new(Rig::new());
    let inc = incident("i-race", 7);
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (rig, inc) = (rig.clone(), inc.clone());
            tokio::spawn(async move {
                rig.app
                    .cf_webhook(BUDGET)
                    .unwrap()
                    .deliver(&event(&format!("e{n}")), &format!("delivery-{n}"), &inc)
                    .await
            })
        })
        .collect();
    let mut retry = Vec::new();
    for (n, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => {}
            Err(CfWebhookError::InFlight) => retry.push(n),
            Err(e) => panic!("e{n}: {e}"),
        }
    }
    // The sender retries what was answered 503; each retry completes.
    for n in retry {
        rig.app
            .cf_webhook(BUDGET)
            .unwrap()
            .deliver(&event(&format!("e{n}")), &format!("delivery-{n}"), &inc)
            .await
            .unwrap();
    }
    assert_eq!(rig.tickets(), 1, "one ticket however the deliveries interleave");
    assert_eq!(rig.halo.count("POST", "/api/Actions"), 7, "one note per later event");
    for n in 0..8 {
        let out = rig
            .app
            .cf_webhook(BUDGET)
            .unwrap()
            .deliver(&event(&format!("e{n}")), &format!("delivery-{n}"), &inc)
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Duplicate(_)), "e{n}: {out:?}");
    }
}
