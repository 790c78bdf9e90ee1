//! Halo's API budget: a burst beyond it is paced to it by the bridge (a call waits for a slot, or is queued with the
//! wait) instead of bouncing off Halo's 429s, and every incident still gets exactly one ticket.

use crate::support::*;
use sandbox::halo::{Budget, HaloConfig};
use std::time::Duration;

#[tokio::test]
async fn a_burst_beyond_halos_budget_is_paced_with_one_ticket_each_and_no_429() {
    // The tenant allows 5 API calls in any 4 s; the bridge is set a little below it, as an operator would
    // (5 in any 5 s), so the two clocks never meet at the window's edge.
    let budget = Budget { requests: 5, window: Duration::from_secs(4), retry_after: false };
    let halo = HaloConfig { budget: Some(budget), ..HaloConfig::test() };
    let b = Bridge::start_with_halo(halo, |env| {
        set(env, "HALO_RATE_LIMIT", "5");
        set(env, "HALO_RATE_WINDOW_SECONDS", "5");
        set(env, "INLINE_BUDGET_SECONDS", "1");
    })
    .await;
    let sends = (0..12).map(|n| {
        let b = &b;
        async move { b.send_cf(&format!("evt-burst-{n}"), &incident(&format!("inc-burst-{n}"), 100 + n)).await }
    });
    let answers = futures::future::join_all(sends).await;
    let statuses: Vec<&str> = answers.iter().map(|a| a.body["status"].as_str().unwrap_or("?")).collect();
    assert!(statuses.iter().all(|s| ["created", "queued"].contains(s)), "{answers:?}");
    let queued = statuses.iter().filter(|s| **s == "queued").count();
    assert!(queued >= 7, "at most the budget is created at once; the rest is queued with the wait: {statuses:?}");
    eventually("every incident has its ticket", || b.halo.tickets().len() == 12).await;
    ledger_empties(&b).await;
    assert_eq!(b.halo.count("POST", "/api/Tickets"), 12, "one create per incident");
    assert_eq!(b.halo.rate_limited(), 0, "Halo never had to refuse a call");
    let mut references: Vec<_> = b.halo.tickets().into_iter().map(|t| t.supplier_reference).collect();
    references.sort();
    references.dedup();
    assert_eq!(references.len(), 12, "one ticket per incident");
}
