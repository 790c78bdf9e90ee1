//! The reconcile timer (`reconcile`, a timerTrigger) through the stand-in host, against Azurite and the fakes: the
//! Halo webhooks that never arrived are caught anyway, within Halo's API budget, once.

use crate::support::*;
use sandbox::faults::{Fault, Rule};
use sandbox::halo::{NewAction, NewTicket, CLOSED_STATUS_ID};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const HUMAN: i64 = 2;

fn note(text: &str) -> NewAction {
    NewAction::human("Sam Agent", HUMAN, text, false)
}

async fn bridge_ticket(b: &Bridge, incident_id: &str) -> i64 {
    let a = b.send_cf(&format!("evt-{incident_id}"), &incident(incident_id, 100)).await;
    assert_eq!(a.body["status"], "created", "{a:?}");
    a.body["ticketId"].as_i64().unwrap()
}

fn texts(b: &Bridge, incident_id: &str) -> Vec<String> {
    let comments = b.cf.comments(incident_id);
    comments.iter().map(|c| c.content.rsplit("\n\n").next().unwrap().to_string()).collect()
}

/// The fields of one run's log line (`route="reconcile"`), unquoted.
type Run = HashMap<String, String>;

fn fields(line: &str) -> Run {
    let mut found = HashMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].rsplit(' ').next().unwrap_or_default().to_string();
        let after = &rest[eq + 1..];
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (&quoted[..end], &quoted[(end + 1).min(quoted.len())..])
            }
            None => {
                let end = after.find(' ').unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        found.insert(key, value.to_string());
        rest = next;
    }
    found
}

fn runs(b: &Bridge) -> Vec<Run> {
    let lines = b.host.logs();
    lines.iter().filter(|l| l.text.contains("route=\"reconcile\"")).map(|l| fields(&l.text)).collect()
}

/// Fires the timer now, as the host's admin API does, and returns the run's log line.
async fn reconcile(b: &Bridge) -> Run {
    let before = runs(b).len();
    let invocation = b.host.invoke("reconcile", "").await.expect("the reconcile function exists");
    assert!(invocation.outcome.succeeded(), "{invocation:?}");
    eventually("the run's log line", || runs(b).len() > before).await;
    runs(b).pop().unwrap()
}

fn number(run: &Run, field: &str) -> u64 {
    run.get(field).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {field} in {run:?}"))
}

/// Halo API calls (tokens not included) since the last reset.
fn halo_api_calls(b: &Bridge) -> u64 {
    b.halo.requests().iter().filter(|r| r.path.starts_with("/api/")).count() as u64
}

/// The Halo webhook never arrives (it is never sent): notes and closes made in Halo on 20 linked tickets reach
/// ContraForce within two runs, each once and in order; closed tickets leave the watch list.
#[tokio::test]
async fn notes_and_closes_no_webhook_announced_reach_contraforce_within_two_runs_each_once_in_order() {
    let b = Bridge::start().await;
    let mut tickets = Vec::new();
    for n in 0..20 {
        tickets.push((format!("rc-{n}"), bridge_ticket(&b, &format!("rc-{n}")).await));
    }
    for (n, (_, t)) in tickets.iter().enumerate() {
        b.halo.add_action(*t, note(&format!("{n} first")));
        b.halo.add_action(*t, note(&format!("{n} second")));
        if n % 2 == 0 {
            b.halo.set_status(*t, CLOSED_STATUS_ID, "Closed", true);
        }
    }
    b.halo.reset_requests();
    let first = reconcile(&b).await;
    assert_eq!(first["cut_short"], "no", "21 calls fit the default 30: {first:?}");
    assert_eq!((number(&first, "halo_calls"), halo_api_calls(&b)), (21, 21), "one listing, one actions read each");
    let second = reconcile(&b).await;
    for (n, (incident, _)) in tickets.iter().enumerate() {
        assert_eq!(texts(&b, incident), [format!("{n} first"), format!("{n} second")], "{incident}: once, in order");
        assert_eq!(b.cf.status_changes(incident).len(), usize::from(n % 2 == 0), "{incident}: one close");
    }
    assert_eq!(number(&first, "comments") + number(&second, "comments"), 40, "{first:?} {second:?}");
    assert_eq!(number(&first, "closes") + number(&second, "closes"), 10);
    // The closed ones have left the watch list; nothing changed since, so a run is one list call and no sync.
    b.halo.reset_requests();
    let third = reconcile(&b).await;
    assert_eq!((number(&third, "watched"), number(&third, "synced")), (10, 0), "{third:?}");
    assert_eq!((number(&third, "halo_calls"), halo_api_calls(&b)), (1, 1));
    b.assert_clean_logs();
}

/// Webhooks and a reconcile racing on one ticket: the same claims, so each comment and the close happen once.
#[tokio::test]
async fn a_webhook_and_a_reconcile_racing_on_one_ticket_do_nothing_twice() {
    let b = Arc::new(Bridge::start().await);
    let t = bridge_ticket(&b, "rc-race").await;
    for n in 0..5 {
        b.halo.add_action(t, note(&format!("race {n}")));
    }
    b.halo.set_status(t, CLOSED_STATUS_ID, "Closed", true);
    // Slow comments widen the window in which both hold work for the same ticket.
    b.cf.faults().push(Rule::always("POST", "/api/v2/workspaces", Fault::DelayBefore(Duration::from_millis(150))));
    let webhooks: Vec<_> = (0..3)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.send_halo(&Bridge::halo_payload(t)).await })
        })
        .collect();
    let run = reconcile(&b).await;
    for webhook in webhooks {
        let answer = webhook.await.unwrap();
        assert!(["processed", "queued"].contains(&answer.body["status"].as_str().unwrap_or_default()), "{answer:?}");
    }
    ledger_empties(&b).await;
    let expected: Vec<String> = (0..5).map(|n| format!("race {n}")).collect();
    assert_eq!(texts(&b, "rc-race"), expected, "each once, in order ({run:?})");
    assert_eq!(b.cf.status_changes("rc-race").len(), 1, "one close");
    let after = reconcile(&b).await;
    assert_eq!((number(&after, "watched"), number(&after, "synced")), (0, 0), "{after:?}");
}

/// 2,000 linked open tickets (imported with `handler import-links`), 10 changed: one run lists them in 20 calls
/// and reads the 10 changed ones' actions, 30 calls in all, the default budget. Then 200 changed: the runs that
/// follow drain them, none over the budget.
#[tokio::test]
async fn two_thousand_watched_tickets_cost_one_call_per_hundred_and_two_hundred_changes_drain_within_the_budget() {
    let b = Bridge::start().await;
    let mut tickets = Vec::new();
    for n in 0..2000 {
        let t = b.halo.create_ticket_direct(NewTicket {
            summary: format!("[CF] bulk {n}"),
            supplier_reference: Some(format!("cf|sentinel|bulk-{n}")),
            client_id: Some(DEFAULT_CLIENT),
            ..NewTicket::default()
        });
        b.halo.add_action(t, note("opened"));
        tickets.push(t);
    }
    let imported = b.handler_command(&["import-links"]).await;
    assert!(imported.lines().last().unwrap_or_default().contains("linked 2000,"), "{imported}");
    let changed: Vec<usize> = (0..10).map(|k| k * 197 + 3).collect();
    for &n in &changed {
        b.halo.add_action(tickets[n], note(&format!("change {n}")));
    }
    b.halo.reset_requests();
    let run = reconcile(&b).await;
    assert_eq!((number(&run, "watched"), number(&run, "checked")), (2000, 2000), "{run:?}");
    assert_eq!((number(&run, "synced"), number(&run, "comments")), (10, 10), "{run:?}");
    assert_eq!((number(&run, "halo_calls"), halo_api_calls(&b)), (30, 30), "20 listings + 10 action reads");
    assert_eq!(run["cut_short"], "no");
    for &n in &changed {
        assert_eq!(texts(&b, &format!("bulk-{n}")), [format!("change {n}")]);
    }

    // 200 more changes: every run stays within 30 calls, and they all arrive, once.
    for n in (5..2000).step_by(10) {
        b.halo.add_action(tickets[n], note(&format!("later {n}")));
    }
    let mut runs_needed = 0;
    while b.cf.all_comments().len() < 210 {
        runs_needed += 1;
        assert!(runs_needed <= 12, "not drained after 12 runs: {} comments", b.cf.all_comments().len());
        b.halo.reset_requests();
        let run = reconcile(&b).await;
        assert!(number(&run, "halo_calls") <= 30 && halo_api_calls(&b) <= 30, "over the budget: {run:?}");
        assert_eq!(number(&run, "halo_calls"), halo_api_calls(&b), "the run counts what it spends");
    }
    println!("200 changes among 2000 watched tickets drained in {runs_needed} runs of at most 30 Halo calls");
    for n in (5..2000).step_by(10) {
        assert_eq!(texts(&b, &format!("bulk-{n}")).last().unwrap(), &format!("later {n}"), "bulk-{n}");
    }
    assert_eq!(b.cf.all_comments().len(), 210, "each once");
}

/// Two runs at once (the timer on one instance, an operator's `handler reconcile` on another): one does the work,
/// the other exits at once. A 429 ends a run and keeps the next one from asking Halo before its Retry-After.
#[tokio::test]
async fn one_run_at_a_time_across_instances_and_a_429_holds_every_run_off_until_its_retry_after() {
    // Calls may take 14 s (a run's step has 15): the held listing below is slow, not failed.
    let b = Arc::new(
        Bridge::start_with(|env| {
            env.retain(|(k, _)| k != "UPSTREAM_TIMEOUT_SECONDS");
            env.push(("UPSTREAM_TIMEOUT_SECONDS".into(), "14".into()));
        })
        .await,
    );
    let t = bridge_ticket(&b, "rc-lease").await;
    b.halo.add_action(t, note("leased"));
    b.halo.reset_requests();
    b.halo.faults().push(Rule::once("GET", "/api/Tickets", Fault::DelayBefore(Duration::from_secs(12))));
    let timer = {
        let b = b.clone();
        tokio::spawn(async move { reconcile(&b).await })
    };
    eventually("the timer's run is asking Halo", || b.halo.count("GET", "/api/Tickets") == 1).await;
    let other = b.handler_command(&["reconcile"]).await;
    assert!(other.contains("another run holds the lease"), "{other}");
    let done = timer.await.unwrap();
    assert_eq!(number(&done, "synced"), 1, "{done:?}");
    assert_eq!(b.halo.count("GET", "/api/Tickets"), 1, "the other run asked Halo nothing");
    assert_eq!(texts(&b, "rc-lease"), ["leased"]);

    b.halo.add_action(t, note("after the storm"));
    b.halo.faults().push(Rule::once("GET", "/api/Tickets", Fault::Status { code: 429, retry_after: Some(600) }));
    b.halo.reset_requests();
    let limited = reconcile(&b).await;
    assert_eq!(limited["cut_short"], "halo-rate-limited", "{limited:?}");
    assert_eq!(halo_api_calls(&b), 1, "the 429 ended the run: not waited out, not asked again");
    b.halo.reset_requests();
    let waiting = reconcile(&b).await;
    assert_eq!(waiting["outcome"], "waiting", "{waiting:?}");
    assert_eq!(halo_api_calls(&b), 0, "nothing asked of Halo before its Retry-After");
    // An operator can still sync the one ticket that matters, as a webhook would.
    let one = b.handler_command(&["reconcile", "--ticket", &t.to_string()]).await;
    assert!(one.contains("forwarded: 1"), "{one}");
    assert_eq!(texts(&b, "rc-lease"), ["leased", "after the storm"]);
}

/// `handler reconcile --dry-run` lists what a run would sync and what it would cost, and changes nothing.
#[tokio::test]
async fn a_dry_run_says_what_it_would_sync_and_syncs_nothing() {
    let b = Bridge::start().await;
    let quiet = bridge_ticket(&b, "rc-quiet").await;
    let busy = bridge_ticket(&b, "rc-busy").await;
    let closing = bridge_ticket(&b, "rc-closing").await;
    // Every ticket synced once: the bridge knows each one's last action date.
    reconcile(&b).await;
    b.halo.add_action(busy, note("new"));
    b.halo.set_status(closing, CLOSED_STATUS_ID, "Closed", true);
    let dry = b.handler_command(&["reconcile", "--dry-run"]).await;
    assert!(dry.contains(&format!("would sync ticket {busy}: ReadActions")), "{dry}");
    assert!(dry.contains(&format!("would sync ticket {closing}: CloseOnly")), "{dry}");
    assert!(!dry.contains(&format!("ticket {quiet}:")), "{dry}");
    assert!(dry.contains("3 of 3 watched tickets checked with 1 Halo calls; the syncs would add 1"), "{dry}");
    assert!(b.cf.comments("rc-busy").is_empty() && b.cf.status_changes("rc-closing").is_empty(), "nothing synced");
    let run = reconcile(&b).await;
    assert_eq!((number(&run, "synced"), number(&run, "comments"), number(&run, "closes")), (2, 1, 1), "{run:?}");
}
