//! The operator's status page, served by the real binary under the stand-in host and driven in a real headless
//! Chromium (`tests/browser/status_page.mjs`): after a created ticket, a duplicate and a dead-lettered comment, the
//! page shows each with its outcome, its chart agrees with its counts, its Replay button completes the dead letter,
//! and nothing secret is in its source. Without the key it answers 401 and shows nothing; a wrong method is a 405.

use crate::support::*;
use reqwest::StatusCode;
use sandbox::faults::{Fault, Rule};
use sandbox::halo::NewAction;
use serde_json::Value;

const HALO_WEB: &str = "https://halo.example.test";

fn status_url(b: &Bridge) -> String {
    format!("{}/api/status", b.host.url())
}

/// The page's JSON with the key, as a script reads it.
async fn status_json(b: &Bridge, query: &str) -> Value {
    let response = b
        .http
        .get(format!("{}{query}", status_url(b)))
        .header("accept", "application/json")
        .header("x-status-key", STATUS_PAGE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The page's JSON once `done` holds of it (the run records are written after each answer).
async fn view_when(b: &Bridge, query: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let view = status_json(b, query).await;
        if done(&view) {
            return view;
        }
        assert!(tokio::time::Instant::now() < give_up, "never happened: {what}: {view:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn total(view: &Value, outcome: &str) -> u64 {
    view["totals"][outcome].as_u64().unwrap_or(0)
}

/// What the browser saw.
async fn browse(b: &Bridge, screenshot: &std::path::Path) -> Value {
    let output = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/browser/status_page.mjs"))
        .arg(status_url(b))
        .arg(STATUS_PAGE_KEY)
        .arg(screenshot)
        .current_dir(repo_root())
        .output()
        .await
        .expect("node runs (scripts/install-dev-deps installs playwright-core and chromium)");
    assert!(
        output.status.success(),
        "the browser script failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).expect("the browser script prints JSON")
}

#[tokio::test]
async fn the_status_page_shows_each_delivery_and_its_replay_button_completes_a_dead_letter() {
    let b = Bridge::start_with(|env| env.push(("HALO_WEB_URL".into(), HALO_WEB.into()))).await;

    // The scenario: a created ticket, a duplicate, and a comment ContraForce refuses for good (dead-lettered).
    let created = b.send_cf("evt-sp-1", &incident("sp-inc", 4101)).await;
    assert_eq!(created.body["status"], "created", "{created:?}");
    let ticket = created.body["ticketId"].as_i64().unwrap();
    assert_eq!(b.send_cf("evt-sp-1", &incident("sp-inc", 4101)).await.body["status"], "duplicate");
    let comments = format!("/api/v2/workspaces/{}/incidents/sp-inc/comments", b.cf.config().workspace_id);
    b.cf.faults().push(Rule::always("POST", &comments, Fault::status(404)));
    b.halo.add_action(ticket, NewAction::human("Sam Agent", 5, "refused by ContraForce", false));
    let a = b.send_halo(&Bridge::halo_payload(ticket)).await;
    assert_eq!(a.body["setAside"], 1, "{a:?}");
    let view = view_when(&b, "", "three run records", |v| v["runs"].as_array().map_or(0, Vec::len) == 3).await;
    assert_eq!(
        (total(&view, "created"), total(&view, "duplicate"), total(&view, "dead-lettered")),
        (1, 1, 1),
        "{view:#}"
    );
    let dead: Vec<&Value> = view["work"].as_array().unwrap().iter().filter(|w| w["state"] == "DeadLettered").collect();
    assert_eq!(dead.len(), 1, "{view:#}");

    // Without the key: 401, and nothing of the data; a wrong method: 405.
    let bare = b.http.get(status_url(&b)).header("accept", "application/json").send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let text = bare.text().await.unwrap();
    assert!(!text.contains("sp-inc") && !text.contains(&ticket.to_string()), "{text}");
    let wrong = b.http.get(status_url(&b)).header("x-status-key", "not-the-key").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(!wrong.text().await.unwrap().contains("sp-inc"));
    let post = b.http.post(status_url(&b)).header("x-status-key", STATUS_PAGE_KEY).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    let get_replay = b.http.get(format!("{}/replay?id=x", status_url(&b))).header("x-status-key", STATUS_PAGE_KEY);
    assert_eq!(get_replay.send().await.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED, "nothing changes on a GET");
    let forged = b
        .http
        .post(format!("{}/replay", status_url(&b)))
        .header("x-status-key", STATUS_PAGE_KEY)
        .form(&[("id", dead[0]["id"].as_str().unwrap()), ("csrf", "00")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "a replay without the page's CSRF token is refused");

    // The browser: sign in, read the page, replay.
    let shots = tempfile::tempdir().unwrap();
    let screenshot = shots.path().join("status-page.png");
    b.cf.faults().clear();
    let seen = browse(&b, &screenshot).await;
    assert_eq!(seen["unauthenticated"]["status"], 401, "{seen:#}");
    let login_text = seen["unauthenticated"]["text"].as_str().unwrap();
    assert!(login_text.contains("Sign in") && !login_text.contains("sp-inc"), "{login_text}");
    let cookie = &seen["cookies"][0];
    assert_eq!((cookie["httpOnly"].as_bool(), cookie["sameSite"].as_str()), (Some(true), Some("Strict")), "{seen:#}");
    let before = &seen["before"];
    let outcomes: Vec<&str> =
        before["runs"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["dead-lettered", "duplicate", "created"], "newest first: {seen:#}");
    assert_eq!(before["totals"], before["chart"], "the chart's bars add up to the counts: {seen:#}");
    assert_eq!(before["totals"], serde_json::json!({"created": 1, "duplicate": 1, "dead-lettered": 1}));
    assert_eq!(before["work"][0]["state"], "DeadLettered", "{seen:#}");
    assert_eq!(before["replayButtons"], 1);
    assert!(
        before["haloLinks"].as_array().unwrap().iter().any(|l| l == format!("{HALO_WEB}/tickets?id={ticket}").as_str()),
        "the ticket links to Halo: {seen:#}"
    );
    assert_eq!(seen["externalRequests"], serde_json::json!([]), "no external asset is loaded");
    assert!(
        seen["phone"]["scrollWidth"].as_i64() <= seen["phone"]["innerWidth"].as_i64(),
        "the page fits a phone's width: {seen:#}"
    );
    let html = seen["html"].as_str().unwrap();
    let host = [b.host.master_key(), b.host.host_key(), b.host.function_key()];
    for (n, secret) in [STATUS_PAGE_KEY, CF_SECRET, HALO_WEBHOOK_SECRET].iter().chain(host.iter()).enumerate() {
        assert!(!secret.is_empty() && !html.contains(secret), "the page source holds secret {n}");
    }
    let halo = b.halo.config();
    assert!(!html.contains(&halo.client_secret) && !html.contains(&b.cf.config().client_secret));
    assert!(std::fs::metadata(&screenshot).map(|m| m.len() > 10_000).unwrap_or(false), "a screenshot was taken");
    if let Some(keep) = std::env::var_os("STATUS_PAGE_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).unwrap();
    }

    // The Replay button queued the dead letter; the queue trigger posts the comment once.
    assert!(seen["afterReplay"]["notice"].as_str().unwrap_or("").contains("put back on the queue"), "{seen:#}");
    eventually("the replayed comment arrives", || b.cf.comments("sp-inc").len() == 1).await;
    ledger_empties(&b).await;
    let view = view_when(&b, "", "the replay's completed run", |v| total(v, "completed") == 1).await;
    assert!(view["work"].as_array().unwrap().is_empty(), "nothing waits any more: {view:#}");
    // The incident's timeline, oldest first.
    let reference = view["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["reference"].as_str().filter(|r| r.ends_with("|sp-inc")))
        .unwrap()
        .to_string();
    let timeline = status_json(&b, &format!("?incident={}", reference.replace('|', "%7C"))).await;
    let steps: Vec<&str> =
        timeline["runs"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(steps, ["created", "duplicate"], "{timeline:#}");
    let of_ticket = status_json(&b, &format!("?ticket={ticket}")).await;
    let steps: Vec<&str> =
        of_ticket["runs"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(steps, ["created", "duplicate", "dead-lettered", "completed"], "{of_ticket:#}");
}

/// `handler runs` prints the same history in a terminal, `--failed` keeps what failed, and the hourly
/// `housekeeping` timer deletes what is older than `RUN_RETENTION_DAYS` and keeps the rest.
#[tokio::test]
async fn handler_runs_prints_the_history_and_housekeeping_keeps_only_the_retention_window() {
    let b = Bridge::start_with(|env| env.push(("RUN_RETENTION_DAYS".into(), "7".into()))).await;
    let created = b.send_cf("evt-runs-1", &incident("runs-inc", 4201)).await;
    assert_eq!(created.body["status"], "created", "{created:?}");
    let refused = b.send_cf_signed("not-the-secret", "evt-runs-2", b"{}", &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    view_when(&b, "", "two run records", |v| v["runs"].as_array().map_or(0, Vec::len) == 2).await;

    let all = b.handler_command(&["runs"]).await;
    assert!(all.contains("cf-webhook") && all.contains("created") && all.contains("cf|sentinel|runs-inc"), "{all}");
    assert!(all.contains("unauthorized") && all.contains("2 deliveries listed"), "{all}");
    let failed = b.handler_command(&["runs", "--failed"]).await;
    assert!(failed.contains("0 deliveries listed"), "a refused signature is not work that failed: {failed}");
    let one = b.handler_command(&["runs", "--incident", "cf|sentinel|runs-inc"]).await;
    let listed: Vec<&str> = one.lines().filter(|l| l.contains("  cf-webhook ")).collect();
    assert_eq!(listed.len(), 1, "{one}");
    assert!(listed[0].contains("created") && one.contains("1 deliveries listed"), "{one}");

    // A record from 30 days ago, past the 7 days kept; the timer deletes it and keeps today's.
    let app = cf_halo_bridge::app::App::new(
        cf_halo_bridge::config::Config::from_env(&cf_halo_bridge::config::Env::from_pairs(b.env.clone())).unwrap(),
    )
    .unwrap();
    let store = app.store.clone().unwrap();
    let old = cf_halo_bridge::store::runs::RunRecord {
        received_ms: (unix_now() - 30 * 86_400) * 1000,
        function: "cf-webhook".into(),
        outcome: "created".into(),
        correlation_id: "0ld0ld0ld0ld0ld0".into(),
        ..Default::default()
    };
    store.record_run(&old).await.unwrap();
    assert!(b.handler_command(&["runs", "--since", "60d"]).await.contains("3 deliveries listed"));
    let invocation = b.host.invoke("housekeeping", "").await.expect("the housekeeping function exists");
    assert!(invocation.outcome.succeeded(), "{invocation:?}");
    let left = b.handler_command(&["runs", "--since", "60d"]).await;
    assert!(left.contains("2 deliveries listed"), "the old record is gone, today's stay: {left}");
}
