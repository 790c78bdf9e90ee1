//! Every fault kind, on both fakes.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use sandbox::cf::{CfConfig, FakeCf};
use sandbox::faults::{Fault, Rule};
use sandbox::halo::{FakeHalo, HaloConfig};
use serde_json::{json, Value};

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

async fn token(halo: &FakeHalo, c: &Client) -> String {
    let body: Value = c
        .post(format!("{}/token", halo.auth_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "test-halo-client"),
            ("client_secret", "test-halo-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

async fn post_ticket(halo: &FakeHalo, c: &Client, tok: &str) -> reqwest::Result<reqwest::Response> {
    c.post(format!("{}/Tickets", halo.api_url()))
        .bearer_auth(tok)
        .json(&json!([{"summary": "s", "details_html": "<p>d</p>"}]))
        .send()
        .await
}

#[tokio::test]
async fn status_fault_answers_without_applying() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    halo.faults().push(Rule::times("POST", "/api/Tickets", Fault::Status { code: 429, retry_after: Some(7) }, 2));
    for _ in 0..2 {
        let resp = post_ticket(&halo, &c, &tok).await.unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["retry-after"], "7");
    }
    assert!(halo.tickets().is_empty());
    let resp = post_ticket(&halo, &c, &tok).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the rule is spent");
    assert_eq!(halo.tickets().len(), 1);
    assert_eq!(halo.faults().injected()["status"], 2);
    assert_eq!(halo.count("POST", "/api/Tickets"), 3, "faulted requests are counted");
    let recs = halo.requests();
    assert_eq!(recs[1].status, 429);
    assert_eq!(recs[1].fault.as_deref(), Some("status"));
    assert_eq!(recs[3].fault, None);
}

#[tokio::test]
async fn token_endpoint_faults() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    halo.faults().push(Rule::once("*", "/auth/token", Fault::status(503)));
    let resp = c
        .post(format!("{}/token", halo.auth_url()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(halo.token_requests(), 1);
    assert_eq!(halo.tokens_issued(), 0);
}

/// Waits (generously: a bound only so that a fake that never gets there fails) until `ready` holds.
async fn until(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..6_000 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} never happened");
}

/// The delay comes before the operation: while the fake holds the request, nothing is applied and nothing is
/// answered; then both happen. (The delay is long so that "while it holds" is not a race.)
#[tokio::test]
async fn delay_before_then_applies() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::DelayBefore(Duration::from_secs(3))));
    let pending = {
        let (halo_api, c, tok) = (halo.api_url(), c.clone(), tok.clone());
        tokio::spawn(async move {
            c.post(format!("{halo_api}/Tickets"))
                .bearer_auth(tok)
                .json(&json!([{"summary": "s", "details_html": "<p>d</p>"}]))
                .send()
                .await
        })
    };
    until("the delay fault on POST /api/Tickets", || halo.faults().injected().get("delay_before") == Some(&1)).await;
    assert!(halo.tickets().is_empty(), "nothing is applied while the request is held");
    assert!(!pending.is_finished(), "nothing is answered while the request is held");
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(halo.tickets().len(), 1);
    assert_eq!(halo.faults().injected()["delay_before"], 1);
}

#[tokio::test]
async fn delay_before_past_the_client_timeout_still_applies_later() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::DelayBefore(Duration::from_secs(3))));
    let err = c
        .post(format!("{}/Tickets", halo.api_url()))
        .bearer_auth(&tok)
        .timeout(Duration::from_millis(100))
        .json(&json!([{"summary": "s"}]))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(halo.tickets().is_empty(), "not applied yet");
    until("the held ticket create", || halo.tickets().len() == 1).await;
    assert_eq!(halo.faults().injected()["delay_before"], 1, "the server still handled it, after the delay");
}

#[tokio::test]
async fn apply_then_delay_is_an_ambiguous_outcome() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::ApplyThenDelay(Duration::from_secs(2))));
    let err = c
        .post(format!("{}/Tickets", halo.api_url()))
        .bearer_auth(&tok)
        .timeout(Duration::from_millis(200))
        .json(&json!([{"summary": "s"}]))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(halo.tickets().len(), 1, "created although the client timed out");
    assert_eq!(halo.actions(1001).len(), 1);
    let rec = halo.requests().into_iter().last().unwrap();
    assert_eq!(rec.status, 200);
    assert_eq!(rec.fault.as_deref(), Some("apply_then_delay"));
}

#[tokio::test]
async fn apply_then_break_creates_but_breaks_the_body() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::ApplyThenBreak));
    let resp = post_ticket(&halo, &c, &tok).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the status line arrives");
    assert!(resp.json::<Value>().await.is_err(), "then the body breaks");
    assert_eq!(halo.tickets().len(), 1);
    assert_eq!(halo.requests().last().unwrap().status, 200);
    assert_eq!(halo.faults().injected()["apply_then_break"], 1);
}

#[tokio::test]
async fn break_does_not_apply() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::Break));
    let err = post_ticket(&halo, &c, &tok).await.unwrap_err();
    assert!(err.is_request(), "the connection is cut before a status: {err:?}");
    assert!(halo.tickets().is_empty());
    assert_eq!(halo.requests().last().unwrap().status, 0);
    assert_eq!(halo.faults().injected()["break"], 1);
    // The fake keeps working afterwards.
    assert_eq!(post_ticket(&halo, &c, &tok).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn rates_are_deterministic_per_seed() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let halo = FakeHalo::start(HaloConfig::test());
        let c = client();
        let tok = token(&halo, &c).await;
        halo.faults().set_rate("GET", "/api/Tickets", Fault::status(503), 0.5, seed);
        let mut out = Vec::new();
        for _ in 0..20 {
            let s =
                c.get(format!("{}/Tickets", halo.api_url())).bearer_auth(&tok).send().await.unwrap().status().as_u16();
            out.push(s);
        }
        out
    }
    let a = pattern(42).await;
    assert_eq!(a, pattern(42).await);
    assert!(a.contains(&503) && a.contains(&200), "{a:?}");
}

#[tokio::test]
async fn clear_removes_rules() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    halo.faults().push(Rule::always("*", "/api", Fault::status(500)));
    assert_eq!(post_ticket(&halo, &c, &tok).await.unwrap().status(), 500);
    halo.faults().clear();
    assert_eq!(post_ticket(&halo, &c, &tok).await.unwrap().status(), 200);
    assert_eq!(halo.faults().injected_total(), 1);
}

#[tokio::test]
async fn cf_faults_match_paths_relative_to_the_api_base() {
    let cf = FakeCf::start(CfConfig::test());
    let c = client();
    cf.faults().push(Rule::once("POST", "/workspaces", Fault::status(502)));
    cf.faults().push(Rule::once("POST", "/workspaces", Fault::ApplyThenBreak));
    let url = format!("{}/workspaces/{}/incidents/i1/comments", cf.base_url(), cf.config().workspace_id);
    let send = || {
        c.post(&url)
            .basic_auth("test-cf-client", Some("test-cf-secret"))
            .json(&json!({"incidentId": "i1", "content": "hi", "source": "s"}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), StatusCode::BAD_GATEWAY);
    assert!(cf.comments("i1").is_empty());
    let resp = send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.is_err());
    assert_eq!(cf.comments("i1").len(), 1, "applied before breaking");
    assert_eq!(send().await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(cf.comments("i1").len(), 2);
    let injected = cf.faults().injected();
    assert_eq!(injected["status"], 1);
    assert_eq!(injected["apply_then_break"], 1);
}
