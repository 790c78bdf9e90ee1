//! Lasting outages (docs/reliability.md, "Lasting outages"): two app instances (the stand-in host started twice,
//! sharing Azurite's tables and queues, as Flex Consumption scales out), a ContraForce-like sender with a short retry
//! budget, and a Halo that does not retry its webhooks at all, through three outages one after the other:
//!
//! 1. Halo down (every Halo call answered 503, its token endpoint too), while incidents arrive and Halo users write;
//! 2. ContraForce down (every ContraForce call 503), while Halo users write public notes and close tickets;
//! 3. a Halo 429 storm (every call 429 with `Retry-After`), while incidents arrive and Halo users write;
//!
//! with one handler SIGKILLed and restarted in each outage, while it holds queue items. The end state: no delivery
//! lost (every one answered 2xx within the sender's budget), one ticket per incident, every public note once as a
//! comment, every close once, and an empty work ledger. The time from the end of each outage until its last item was
//! done is printed (a figure, never asserted).
//!
//! Scaled down by default: the sender tries 3 times within `OUTAGE_SENDER_WINDOW_SECS` (6; a minute in production)
//! and each outage lasts `OUTAGE_SECS` (20; "several minutes" in production), so an outage always outlasts the
//! sender's patience. Full size: `OUTAGE_SECS=180 OUTAGE_SENDER_WINDOW_SECS=60 cargo test --release --test it
//! outage -- --nocapture`.

use crate::soak::{cf_request, comment_text, halo_request, http_client, incident_id, reference, ticket_in_halo};
use crate::support::*;
use sandbox::faults::{Fault, Rule};
use sandbox::halo::NewAction;
use sandbox::host::{LogLevel, LogStream, StandInHost};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const HUMAN_AGENT: i64 = 2;
const CLOSED: i64 = 9;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default))
}

/// One app instance as a sender sees it.
struct Instance {
    cf_url: String,
    halo_url: String,
    key: String,
}

impl Instance {
    fn of(host: &StandInHost) -> Instance {
        Instance {
            cf_url: host.function_url("cf-webhook"),
            halo_url: host.function_url("halo-webhook"),
            key: host.function_key().to_string(),
        }
    }
}

/// What the senders expect to see in the end, and what they could not deliver.
#[derive(Default)]
struct Expected {
    incidents: Vec<usize>,
    /// incident → its public notes, in the order they were written.
    public: BTreeMap<usize, Vec<String>>,
    /// incident → how many times its ticket was closed.
    closes: BTreeMap<usize, usize>,
    /// Deliveries that never got a 2xx (lost work), with the last answer.
    lost: Vec<String>,
    /// Answers by `status` field (`created`, `queued`, ...) or HTTP status.
    answers: BTreeMap<String, usize>,
}

impl Expected {
    fn saw(&mut self, status: u16, body: &Value) {
        let key = body["status"].as_str().map(str::to_string).unwrap_or_else(|| status.to_string());
        *self.answers.entry(key).or_default() += 1;
    }
}

/// ContraForce's sender: 3 tries spread over `window` (at 0, window/2, window); lost when none is a 2xx.
async fn send_incident(http: &reqwest::Client, to: &Instance, i: usize, window: Duration, expected: &mut Expected) {
    let event = format!("evt-outage-{i}");
    let raw = serde_json::to_vec(&incident(&incident_id(i), 50_000 + i as i64)).unwrap();
    expected.incidents.push(i);
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(window / 2).await;
        }
        let (status, _, body) = cf_request(http, &to.cf_url, &to.key, &event, &raw).await;
        expected.saw(status, &body);
        if (200..300).contains(&status) {
            return;
        }
        last = format!("{status} {body}");
    }
    expected.lost.push(format!("incident {i}: {last}"));
}

/// Halo's webhook: sent once, as Halo does (it never retries); lost unless answered 2xx.
async fn send_webhook(http: &reqwest::Client, to: &Instance, ticket: i64, expected: &mut Expected) {
    let (status, _, body) = halo_request(http, &to.halo_url, &to.key, ticket).await;
    expected.saw(status, &body);
    if !(200..300).contains(&status) {
        expected.lost.push(format!("webhook for ticket {ticket}: {status} {body}"));
    }
}

/// What is expected but not (yet) visible in the fakes: incidents without a ticket, public notes without their
/// comment, closes not mirrored. Empty once everything is done.
fn missing(b: &Bridge, expected: &Expected) -> Vec<String> {
    let mut missing = Vec::new();
    let no_ticket: Vec<usize> =
        expected.incidents.iter().copied().filter(|i| ticket_in_halo(b, *i).is_none()).collect();
    if !no_ticket.is_empty() {
        missing.push(format!("incidents without a ticket: {no_ticket:?}"));
    }
    for (i, texts) in &expected.public {
        let seen: Vec<String> =
            b.cf.comments(&incident_id(*i)).iter().map(|c| comment_text(&c.content).to_string()).collect();
        for text in texts.iter().filter(|t| !seen.contains(t)) {
            missing.push(format!("incident {i} (ticket {:?}): no comment {text:?}", ticket_in_halo(b, *i)));
        }
    }
    for (i, n) in &expected.closes {
        let seen = b.cf.status_changes(&incident_id(*i)).len();
        if seen < *n {
            missing.push(format!("incident {i} (ticket {:?}): {seen} of {n} closes", ticket_in_halo(b, *i)));
        }
    }
    missing
}

/// The stand-in hosts' own warnings (a message that could not be settled stays invisible for the 10-minute
/// processing visibility; listener errors; poison moves), without the per-invocation "Executed" lines.
fn host_warnings(hosts: &[&StandInHost]) -> Vec<String> {
    hosts
        .iter()
        .enumerate()
        .flat_map(|(n, h)| h.logs().into_iter().map(move |l| (n, l)))
        .filter(|(_, l)| {
            l.stream == LogStream::Host && l.level >= LogLevel::Warning && !l.text.starts_with("Executed '")
        })
        .map(|(n, l)| format!("[instance {n}] {}", l.text))
        .collect()
}

/// Waits (bounded, so a bridge that never gets there fails instead of hanging) until everything expected is done;
/// how long that took. On giving up, says what is missing, what the work ledger holds and what the handlers
/// warned about. The bound outlasts the host's processing visibility (10 minutes, `sandbox::host::listener`): a
/// message fetched and never settled (an answer lost around a kill) is visible again only then, and is done then.
async fn until_converged(b: &Bridge, others: &[&StandInHost], expected: &Expected, phase: &str) -> Duration {
    let from = Instant::now();
    let give_up = from + Duration::from_secs(900);
    let mut missing_now = missing(b, expected);
    while !missing_now.is_empty() {
        if Instant::now() >= give_up {
            let ledger = b.handler_command(&["dead-letters"]).await;
            let mut warnings = String::new();
            for (n, host) in std::iter::once(&b.host).chain(others.iter().copied()).enumerate() {
                let lines: Vec<String> = host
                    .logs()
                    .into_iter()
                    .filter(|l| l.level >= LogLevel::Warning)
                    .map(|l| format!("[instance {n}, handler {}] {}", l.generation, l.text))
                    .collect();
                let tail = lines.len().saturating_sub(80);
                warnings.push_str(&format!("instance {n}: {} warnings, the last ones:\n", lines.len()));
                warnings.push_str(&lines[tail..].join("\n"));
                warnings.push('\n');
            }
            // A kill between a comment's `Sending` marker and ContraForce's answer leaves its outcome unknown: by
            // design it is not posted again (docs/reliability.md, limit 2).
            let unknown = std::iter::once(&b.host)
                .chain(others.iter().copied())
                .flat_map(|h| h.logs())
                .filter(|l| l.text.contains("an earlier comment post has an unknown outcome"))
                .count();
            let hosts: Vec<&StandInHost> = std::iter::once(&b.host).chain(others.iter().copied()).collect();
            panic!(
                "the work of {phase} was never done ({} s after it ended); missing:\n{}\n{unknown} comments of \
                 unknown outcome (killed mid-post)\nthe work ledger (handler dead-letters):\n{ledger}\nthe hosts' \
                 own warnings:\n{}\n{warnings}answers so far: {:?}; lost: {:?}",
                from.elapsed().as_secs(),
                missing_now.join("\n"),
                host_warnings(&hosts).join("\n"),
                expected.answers,
                expected.lost
            );
        }
        // Progress once a minute (a diagnostic, never asserted): what is still missing, and the hosts' warnings.
        let waited = from.elapsed().as_secs();
        if waited > 0 && waited % 60 == 0 && from.elapsed().subsec_millis() < 200 {
            let hosts: Vec<&StandInHost> = std::iter::once(&b.host).chain(others.iter().copied()).collect();
            println!(
                "{phase}: after {waited} s still missing {missing_now:?}; hosts warned {:?}",
                host_warnings(&hosts)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        missing_now = missing(b, expected);
    }
    from.elapsed()
}

/// A Halo user's public note on incident `i`'s ticket.
fn write_public(b: &Bridge, expected: &mut Expected, i: usize, ticket: i64, phase: &str) {
    let text = format!("{phase}: public note on {i}");
    b.halo.add_action(ticket, NewAction::human("Sam Agent", HUMAN_AGENT, &text, false));
    expected.public.entry(i).or_default().push(text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_lose_nothing_through_halo_and_contraforce_outages_and_a_429_storm() {
    let outage = env_secs("OUTAGE_SECS", 20);
    let window = env_secs("OUTAGE_SENDER_WINDOW_SECS", 6);
    let per_phase = 6;
    // Retries a second apart, and enough of them to outlast an outage twice over before the poison queue.
    let mut settings = test_queue_overrides();
    settings.max_dequeue_count = Some(outage.as_secs() as u32 * 2 + 30);
    let b = Bridge::start_with_queues(settings.clone()).await;
    let second = start_host_with_queues(b.env.clone(), settings).await;
    let instances = [Instance::of(&b.host), Instance::of(&second)];
    let http = http_client();
    let mut expected = Expected::default();
    let mut figures: Vec<(String, Duration, Duration)> = Vec::new();

    // Before any outage: the first incidents, so Halo users have tickets to write on.
    for i in 0..per_phase {
        send_incident(&http, &instances[i % 2], i, window, &mut expected).await;
    }
    until_converged(&b, &[&second], &expected, "the first incidents").await;
    let mut next = per_phase;

    for phase in ["halo-down", "contraforce-down", "halo-429-storm"] {
        let started = Instant::now();
        println!("{phase}: starts");
        match phase {
            "halo-down" => b.halo.faults().push(Rule::always("*", "/", Fault::status(503))),
            "contraforce-down" => b.cf.faults().push(Rule::always("*", "/", Fault::status(503))),
            _ => b.halo.faults().push(Rule::always("*", "/", Fault::Status { code: 429, retry_after: Some(2) })),
        }
        // New incidents (ContraForce → Halo), except while only ContraForce is down.
        if phase != "contraforce-down" {
            for i in next..next + per_phase {
                send_incident(&http, &instances[i % 2], i, window, &mut expected).await;
            }
            next += per_phase;
        }
        // Halo users write on the tickets that exist; in the ContraForce outage they also close half of them.
        let ticketed: Vec<(usize, i64)> =
            expected.incidents.iter().filter_map(|i| ticket_in_halo(&b, *i).map(|t| (*i, t))).collect();
        for (n, (i, ticket)) in ticketed.iter().enumerate() {
            write_public(&b, &mut expected, *i, *ticket, phase);
            if phase == "contraforce-down" && n % 2 == 0 {
                b.halo.set_status(*ticket, CLOSED, "Closed", true);
                *expected.closes.entry(*i).or_default() += 1;
            }
            send_webhook(&http, &instances[n % 2], *ticket, &mut expected).await;
        }
        // One instance's handler is killed while it holds queue items (both retry them every second).
        let victim = if phase == "contraforce-down" { &second } else { &b.host };
        victim.restart_handler().await.expect("the killed handler comes back");
        // The rest of the outage (its length is the scenario, nothing is asserted on time).
        if let Some(rest) = outage.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        b.halo.faults().clear();
        b.cf.faults().clear();
        let lasted = started.elapsed();
        let caught_up = until_converged(&b, &[&second], &expected, phase).await;
        println!(
            "{phase}: lasted {:.1} s, its work done {:.1} s later; answers so far {:?}",
            lasted.as_secs_f64(),
            caught_up.as_secs_f64(),
            expected.answers
        );
        figures.push((phase.to_string(), lasted, caught_up));
    }

    // ---- The end state.
    assert!(expected.lost.is_empty(), "lost deliveries: {:?}", expected.lost);
    let mut by_reference: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for t in b.halo.tickets() {
        by_reference.entry(t.supplier_reference.clone().unwrap_or_default()).or_default().push(t.id);
    }
    for i in &expected.incidents {
        assert_eq!(by_reference.get(&reference(*i)).map(Vec::len), Some(1), "tickets of incident {i}");
    }
    assert_eq!(by_reference.len(), expected.incidents.len(), "tickets for unknown incidents: {by_reference:?}");
    for (i, texts) in &expected.public {
        let mut seen: Vec<String> =
            b.cf.comments(&incident_id(*i)).iter().map(|c| comment_text(&c.content).to_string()).collect();
        seen.sort();
        let mut want = texts.clone();
        want.sort();
        assert_eq!(seen, want, "the comments of incident {i}, each once");
    }
    for i in &expected.incidents {
        let closes = expected.closes.get(i).copied().unwrap_or(0);
        assert_eq!(b.cf.status_changes(&incident_id(*i)).len(), closes, "closes of incident {i}, each once");
    }
    // A record goes just after its work is visible: waited for (bounded), with the listing when it never empties.
    ledger_empties(&b).await;
    assert!(
        expected.answers.get("queued").copied().unwrap_or(0) > 0,
        "the outages never made the bridge queue work: {:?}",
        expected.answers
    );
    for host in [&b.host, &second] {
        let exits = host.unexpected_exits();
        assert!(exits.len() <= 1, "only the killed handler may have exited: {exits:?}");
    }
    b.assert_clean_logs();

    println!("\n| outage | lasted | last item done after it ended |");
    println!("|---|---|---|");
    for (phase, lasted, caught_up) in &figures {
        println!("| {phase} | {:.1} s | {:.1} s |", lasted.as_secs_f64(), caught_up.as_secs_f64());
    }
    println!(
        "\n{} incidents, {} public notes, {} closes; answers {:?}; sender window {} s, 3 tries",
        expected.incidents.len(),
        expected.public.values().map(Vec::len).sum::<usize>(),
        expected.closes.values().sum::<usize>(),
        expected.answers,
        window.as_secs()
    );
    let warned = host_warnings(&[&b.host, &second]);
    println!("the hosts' own warnings: {}", warned.len());
    for line in warned.iter().take(20) {
        println!("  {line}");
    }
    second.shutdown().await;
}
