//! `handler import-links` against Azurite and the Halo fake: the cut-over from Logic App 01.

use crate::support::*;
use sandbox::faults::{Fault, Rule};
use sandbox::halo::{NewAction, NewTicket, CLOSED_STATUS_ID};
use serde_json::Value;
use std::time::Duration;

/// A ticket as Logic App 01 made it: the reference in `thirdpartynumber`.
fn legacy(b: &Bridge, reference: &str, closed: bool) -> i64 {
    b.halo.create_ticket_direct(NewTicket {
        summary: format!("[CF] {reference}"),
        thirdpartynumber: Some(reference.to_string()),
        client_id: Some(DEFAULT_CLIENT),
        status_id: closed.then_some(CLOSED_STATUS_ID),
        ..NewTicket::default()
    })
}

fn lines_with<'a>(out: &'a str, word: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with("ticket ") && l.contains(word)).collect()
}

fn summary(out: &str) -> &str {
    out.lines().last().unwrap_or_default()
}

/// 200 tickets of Logic App 01, two of which claim one incident, plus one claiming an incident the bridge already
/// linked to its own ticket, and a few tickets of nobody's: a dry run writes nothing; the import links the 198
/// and reports the 3 (never overwriting the bridge's link) through 429s; the second run links nothing new; and the
/// imported links behave like the bridge's own in both directions.
#[tokio::test]
async fn legacy_tickets_are_imported_once_conflicts_reported_and_the_history_not_forwarded_again() {
    let b = Bridge::start().await;
    let own = b.send_cf("evt-own", &incident("own-1", 1)).await;
    assert_eq!(own.body["status"], "created", "{own:?}");
    let own_ticket = own.body["ticketId"].as_i64().unwrap();
    let mut legacy_ids = Vec::new();
    for n in 0..198 {
        legacy_ids.push(legacy(&b, &format!("cf|sentinel|legacy-{n}"), n % 10 == 9));
    }
    let pair = [legacy(&b, "cf|sentinel|twice", false), legacy(&b, "cf|sentinel|twice", false)];
    let against_own = legacy(&b, "cf|sentinel|own-1", false);
    for n in 0..3 {
        b.halo.create_ticket_direct(NewTicket { summary: format!("printer {n}"), ..NewTicket::default() });
    }
    // Logic App 03 already forwarded these two.
    let history = legacy_ids[0];
    b.halo.add_action(history, NewAction::human("Sam Agent", 2, "<p>seen by Logic App 03</p>", false));
    b.halo.add_action(history, NewAction::human("Sam Agent", 2, "<p>also seen</p>", false));
    let tickets = b.halo.tickets().len();
    assert_eq!(tickets, 1 + 198 + 2 + 1 + 3);

    b.halo.reset_requests();
    let dry = b.handler_command(&["import-links", "--dry-run"]).await;
    assert_eq!(lines_with(&dry, "would link").len(), 198, "{dry}");
    assert!(summary(&dry).starts_with("dry run, nothing written"), "{dry}");
    let dry_requests = b.halo.requests();
    assert!(dry_requests.iter().all(|r| r.method != "POST" || r.path == "/auth/token"), "reads only");
    let pages = tickets.div_ceil(100);
    assert_eq!(b.halo.count("GET", "/api/Tickets"), pages, "one call per page of 100");
    assert_eq!(b.halo.count("GET", "/api/Actions"), 0);
    eprintln!("dry run: {} Halo requests for {tickets} tickets", dry_requests.len());

    // Rate limited in the middle: the second page five times (more than one call's own retries), an action list once.
    b.halo.reset_requests();
    b.halo.faults().push(Rule::once("GET", "/api/Tickets", Fault::DelayBefore(Duration::ZERO)));
    b.halo.faults().push(Rule::times("GET", "/api/Tickets", Fault::Status { code: 429, retry_after: Some(1) }, 5));
    b.halo.faults().push(Rule::times("GET", "/api/Actions", Fault::DelayBefore(Duration::ZERO), 50));
    b.halo.faults().push(Rule::once("GET", "/api/Actions", Fault::Status { code: 429, retry_after: Some(1) }));
    let out = b.handler_command(&["import-links"]).await;
    assert_eq!(b.halo.faults().pending_rules(), 0, "every 429 was answered and waited out");
    let linked = lines_with(&out, "\tlinked");
    assert_eq!(linked.len(), 198, "{out}");
    let conflicts = lines_with(&out, "CONFLICT");
    assert_eq!(conflicts.len(), 3, "{out}");
    for t in pair {
        let line = conflicts.iter().find(|l| l.starts_with(&format!("ticket {t}\t"))).expect("the pair is reported");
        assert!(line.contains(&format!("tickets {}, {} all claim this incident", pair[0], pair[1])), "{line}");
    }
    let line = conflicts.iter().find(|l| l.starts_with(&format!("ticket {against_own}\t"))).unwrap();
    assert!(line.contains(&format!("already linked this incident to ticket {own_ticket}")), "{line}");
    assert_eq!(lines_with(&out, "already linked").len(), 1 + 1, "the bridge's own ticket, and the conflict's why");
    assert!(summary(&out).contains("linked 198,") && summary(&out).contains("conflicts 3"), "{out}");
    let run_requests = b.halo.requests().len();
    let actions_calls = b.halo.count("GET", "/api/Actions");
    assert_eq!(actions_calls, 198 + 1, "one action list per linked ticket (one answered 429 first)");
    eprintln!("import: {run_requests} Halo requests (6 of them answered 429) for {tickets} tickets, 198 linked");

    b.halo.reset_requests();
    let again = b.handler_command(&["import-links"]).await;
    assert_eq!(lines_with(&again, "\tlinked").len(), 0, "{again}");
    assert_eq!(lines_with(&again, "skipped: already linked").len(), 198 + 1, "{again}");
    assert_eq!(b.halo.count("GET", "/api/Actions"), 0, "nothing to link: no action lists");
    assert_eq!(b.halo.count("GET", "/api/Tickets"), pages);
    eprintln!("second run: {} Halo requests", b.halo.requests().len());

    // Halo → ContraForce: what Logic App 03 forwarded stays; the next note goes once.
    b.halo.add_action(history, NewAction::human("Sam Agent", 2, "<p>after the cut-over</p>", false));
    let synced = b.send_halo(&Bridge::halo_payload(history)).await;
    assert_eq!(synced.body["actionsForwarded"], 1, "{synced:?}");
    let comments: Vec<String> = b.cf.comments("legacy-0").into_iter().map(|c| c.content).collect();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].contains("after the cut-over"));
    // A closed ticket's close was mirrored by Logic App 03: not again.
    let closed = b.send_halo(&Bridge::halo_payload(legacy_ids[9])).await;
    assert_eq!(
        (closed.body["closed"].clone(), closed.body["actionsForwarded"].clone()),
        (Value::Bool(false), 0.into())
    );
    assert!(b.cf.status_changes("legacy-9").is_empty());
    // ContraForce → Halo: a later event of an imported incident is a note on its ticket, not a second ticket.
    let later = b.send_cf("evt-legacy-5-later", &incident("legacy-5", 5)).await;
    assert_eq!(
        (later.body["status"].clone(), later.body["ticketId"].clone()),
        ("updated".into(), legacy_ids[5].into())
    );
    assert_eq!(b.halo.tickets().len(), tickets, "no ticket created");
}
