//! FakeHalo behaves like the real Halo API (docs/halo-api.md) and records what it got.

use reqwest::{Client, StatusCode};
use sandbox::halo::{FakeHalo, HaloConfig, NewAction, NewTicket};
use serde_json::{json, Value};

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

async fn token(halo: &FakeHalo, c: &Client) -> String {
    let cfg = halo.config();
    let resp = c
        .post(format!("{}/token", halo.auth_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", cfg.client_id.as_str()),
            ("client_secret", cfg.client_secret.as_str()),
            ("scope", "all"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

async fn create(halo: &FakeHalo, c: &Client, tok: &str, item: Value) -> (StatusCode, Value) {
    let resp =
        c.post(format!("{}/Tickets", halo.api_url())).bearer_auth(tok).json(&json!([item])).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get_json(c: &Client, url: String, tok: &str) -> (StatusCode, Value) {
    let resp = c.get(url).bearer_auth(tok).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn token_is_issued_for_client_credentials() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let resp = c
        .post(format!("{}/token", halo.auth_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "test-halo-client"),
            ("client_secret", "test-halo-secret"),
            ("scope", "all"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["access_token"].as_str().unwrap().len() >= 32);
    assert_eq!(halo.token_requests(), 1);
    assert_eq!(halo.tokens_issued(), 1);
    let rec = &halo.requests()[0];
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.path, "/auth/token");
    assert_eq!(rec.status, 200);
    assert_eq!(rec.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert!(rec.body_text().contains("grant_type=client_credentials"));
}

#[tokio::test]
async fn bad_credentials_and_wrong_grant_are_rejected() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let url = format!("{}/token", halo.auth_url());
    let resp = c
        .post(&url)
        .form(&[("grant_type", "client_credentials"), ("client_id", "test-halo-client"), ("client_secret", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"error": "invalid_client"}));
    let resp =
        c.post(&url).form(&[("grant_type", "password"), ("client_id", "test-halo-client")]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(halo.tokens_issued(), 0);
    assert_eq!(halo.token_requests(), 2);
}

#[tokio::test]
async fn tenant_must_be_in_the_query_string() {
    let halo = FakeHalo::start(HaloConfig { tenant: Some("acme".into()), ..HaloConfig::test() });
    let c = client();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "test-halo-client"),
        ("client_secret", "test-halo-secret"),
        ("tenant", "acme"),
    ];
    // Only as a form field: rejected.
    let resp = c.post(format!("{}/token", halo.auth_url())).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = c.post(format!("{}/token?tenant=acme", halo.auth_url())).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = c.post(format!("{}/token?tenant=other", halo.auth_url())).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn api_requires_a_valid_unexpired_token() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let url = format!("{}/Tickets", halo.api_url());
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = c.get(&url).bearer_auth("made-up").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let tok = token(&halo, &c).await;
    let resp = c.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    halo.expire_all_tokens();
    let resp = c.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(halo.count("GET", "/api/Tickets"), 4);
}

#[tokio::test]
async fn short_token_ttl_expires() {
    let halo = FakeHalo::start(HaloConfig { token_ttl_secs: 0, ..HaloConfig::test() });
    let c = client();
    let tok = token(&halo, &c).await;
    let (status, _) = get_json(&c, format!("{}/Tickets", halo.api_url()), &tok).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn create_returns_a_single_object_and_makes_a_first_action() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    let (status, body) = create(
        &halo,
        &c,
        &tok,
        json!({
            "summary": "Suspicious sign-in",
            "details_html": "<p>Incident <b>42</b> &amp; more</p>",
            "client_id": 12,
            "tickettype_id": 29,
            "priority_id": 2,
            "supplier_reference": "cf|sentinel|abc",
            "thirdpartynumber": "cf|sentinel|abc",
            "customfields": [{"id": 171, "value": "cf|sentinel|abc"}],
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_object(), "a single object, not an array: {body}");
    assert_eq!(body["id"], 1001);
    assert_eq!(body["status_id"], 1);
    assert_eq!(body["status_name"], "New");
    assert_eq!(body["hasbeenclosed"], false);
    assert_eq!(body["thirdpartynumber"], "cf|sentinel|abc");
    assert_eq!(body["customfields"], json!([{"id": 171, "name": "CF171", "value": "cf|sentinel|abc"}]));

    let t = halo.ticket(1001).unwrap();
    assert_eq!(t.summary, "Suspicious sign-in");
    assert_eq!(t.client_id, Some(12));
    assert_eq!(t.supplier_reference.as_deref(), Some("cf|sentinel|abc"));

    let actions = halo.actions(1001);
    assert_eq!(actions.len(), 1);
    let a = &actions[0];
    assert_eq!(a.outcome, "New Ticket");
    assert_eq!(a.note, "Incident 42 & more");
    assert!(!a.hiddenfromuser);
    assert_eq!(a.who, "ContraForce Integration");
    assert_eq!(a.who_agentid, 38);
    assert_eq!(a.actionby_application_id.as_deref(), Some("ContraForce Bridge"));

    // GET /Tickets/{id} returns the same object; an unknown id is a 404.
    let (status, got) = get_json(&c, format!("{}/Tickets/1001", halo.api_url()), &tok).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, body);
    let (status, _) = get_json(&c, format!("{}/Tickets/999", halo.api_url()), &tok).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A second create gets the next id.
    let (_, second) = create(&halo, &c, &tok, json!({"summary": "two", "id": null})).await;
    assert_eq!(second["id"], 1002);
}

#[tokio::test]
async fn update_merges_and_closes() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    create(&halo, &c, &tok, json!({"summary": "s", "priority_id": 3, "customfields": [{"id": 1, "value": "a"}]})).await;
    let (status, body) =
        create(&halo, &c, &tok, json!({"id": 1001, "status_id": 9, "customfields": [{"id": 2, "value": "b"}]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], 1001);
    assert_eq!(body["summary"], "s");
    assert_eq!(body["priority_id"], 3);
    assert_eq!(body["status_id"], 9);
    assert_eq!(body["status_name"], "Closed");
    assert_eq!(body["hasbeenclosed"], true);
    assert_eq!(body["customfields"].as_array().unwrap().len(), 2);
    assert_eq!(halo.tickets().len(), 1);
    assert_eq!(halo.actions(1001).len(), 1, "an update makes no action");
    let (status, _) = create(&halo, &c, &tok, json!({"id": 5555, "summary": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn non_integer_ids_are_rejected() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    for field in ["priority_id", "client_id", "tickettype_id"] {
        let (status, body) = create(&halo, &c, &tok, json!({"summary": "s", field: "1"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        let (status, _) = create(&halo, &c, &tok, json!({"summary": "s", field: 1.5})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}");
    }
    assert!(halo.tickets().is_empty());
    // Not an array: 400.
    let resp = c
        .post(format!("{}/Tickets", halo.api_url()))
        .bearer_auth(&tok)
        .json(&json!({"summary": "s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn returnall_returns_an_array() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    let resp = c
        .post(format!("{}/Tickets?returnall=true", halo.api_url()))
        .bearer_auth(&tok)
        .json(&json!([{"summary": "a"}, {"summary": "b"}]))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body.as_array().unwrap().len(), 2);
    let resp = c
        .post(format!("{}/Tickets", halo.api_url()))
        .bearer_auth(&tok)
        .json(&json!([{"summary": "c"}, {"summary": "d"}]))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["summary"], "d", "without returnall only the last one");
}

#[tokio::test]
async fn actions_are_listed_descending_with_html_only_on_request() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    create(&halo, &c, &tok, json!({"summary": "s", "details_html": "<p>first</p>"})).await;
    let human = halo.add_action(1001, NewAction::human("Jane Agent", 5, "<p>Hello <i>there</i></p>", false));
    let private = halo.add_action(1001, NewAction::human("Jane Agent", 5, "<p>secret</p>", true));
    assert!(private > human);

    let (status, body) = get_json(&c, format!("{}/Actions?ticket_id=1001", halo.api_url()), &tok).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["record_count"], 3);
    let list = body["actions"].as_array().unwrap();
    let ids: Vec<i64> = list.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "descending id order");
    assert!(list.iter().all(|a| a.get("note_html").is_none()));
    assert!(list.iter().all(|a| a.get("agent_id").is_none()));
    assert_eq!(list[1]["note"], "Hello there");
    assert_eq!(list[1]["who"], "Jane Agent");
    assert_eq!(list[1]["who_agentid"], 5);
    assert!(list[1].get("actionby_application_id").is_none());
    assert_eq!(list[0]["hiddenfromuser"], true);
    assert!(list[0]["datetime"].as_str().unwrap().ends_with('Z'));

    let (_, body) = get_json(&c, format!("{}/Actions?ticket_id=1001&includehtmlnote=true", halo.api_url()), &tok).await;
    assert_eq!(body["actions"][1]["note_html"], "<p>Hello <i>there</i></p>");

    let (_, body) = get_json(&c, format!("{}/Actions?ticket_id=1001&excludeprivate=true", halo.api_url()), &tok).await;
    assert_eq!(body["record_count"], 2);
}

#[tokio::test]
async fn actions_are_limited_by_default_and_by_count() {
    let halo = FakeHalo::start(HaloConfig { default_actions_count: 5, ..HaloConfig::test() });
    let c = client();
    let tok = token(&halo, &c).await;
    create(&halo, &c, &tok, json!({"summary": "s"})).await;
    for i in 0..9 {
        halo.add_action(1001, NewAction::human("A", 5, &format!("<p>n{i}</p>"), false));
    }
    let (_, body) = get_json(&c, format!("{}/Actions?ticket_id=1001", halo.api_url()), &tok).await;
    assert_eq!(body["record_count"], 10);
    let list = body["actions"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    assert_eq!(list[0]["note"], "n8", "the newest ones");
    let (_, body) = get_json(&c, format!("{}/Actions?ticket_id=1001&count=2", halo.api_url()), &tok).await;
    assert_eq!(body["actions"].as_array().unwrap().len(), 2);
    let (_, body) = get_json(&c, format!("{}/Actions?ticket_id=1001&count=50", halo.api_url()), &tok).await;
    assert_eq!(body["actions"].as_array().unwrap().len(), 10);
    let (_, body) = get_json(&c, format!("{}/Actions?ticket_id=77", halo.api_url()), &tok).await;
    assert_eq!(body, json!({"record_count": 0, "actions": []}));
}

#[tokio::test]
async fn thirdpartynumber_filter_is_ignored_like_real_halo() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    create(&halo, &c, &tok, json!({"summary": "a", "thirdpartynumber": "cf|x|1"})).await;
    create(&halo, &c, &tok, json!({"summary": "b", "thirdpartynumber": "cf|x|2"})).await;
    let (status, body) =
        get_json(&c, format!("{}/Tickets?count=1&thirdpartynumber=cf%7Cx%7C2", halo.api_url()), &tok).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["record_count"], 2, "unknown params do not filter");
    assert_eq!(body["tickets"].as_array().unwrap().len(), 1);
    assert_eq!(body["tickets"][0]["thirdpartynumber"], "cf|x|1", "an unrelated ticket");
    let rec = halo.requests().into_iter().last().unwrap();
    assert_eq!(rec.query_param("thirdpartynumber").as_deref(), Some("cf|x|2"));
}

#[tokio::test]
async fn search_supplier_reference_is_a_case_insensitive_substring_search() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    create(&halo, &c, &tok, json!({"summary": "a", "supplier_reference": "cf|sentinel|ABC"})).await;
    create(&halo, &c, &tok, json!({"summary": "b", "supplier_reference": "cf|sentinel|ABCD"})).await;
    halo.create_ticket_direct(NewTicket {
        summary: "old logic app ticket".into(),
        thirdpartynumber: Some("cf|sentinel|abc".into()),
        client_id: Some(3),
        ..NewTicket::default()
    });
    let (_, body) =
        get_json(&c, format!("{}/Tickets?search_supplier_reference=CF%7Csentinel%7Cabc", halo.api_url()), &tok).await;
    assert_eq!(body["record_count"], 2, "substring: both ABC and ABCD: {body}");
    let (_, body) = get_json(&c, format!("{}/Tickets?search_supplier_reference=abcd", halo.api_url()), &tok).await;
    assert_eq!(body["record_count"], 1);
    assert_eq!(body["tickets"][0]["id"], 1002);
    let (_, body) = get_json(&c, format!("{}/Tickets?client_id=3", halo.api_url()), &tok).await;
    assert_eq!(body["tickets"][0]["summary"], "old logic app ticket");
    let (_, body) = get_json(&c, format!("{}/Tickets?order=id&orderdesc=true&count=2", halo.api_url()), &tok).await;
    assert_eq!(body["record_count"], 3);
    assert_eq!(body["tickets"][0]["id"], 1003);
    assert_eq!(body["tickets"][1]["id"], 1002);
}

/// What the recovery lookup and `handler import-links` send: a search read newest first in pages, each answer with
/// the search's whole `record_count`.
#[tokio::test]
async fn searches_are_ordered_and_paged_with_the_whole_record_count() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    for n in 0..120 {
        let reference = format!("cf|defenderxdr|12{n}");
        halo.create_ticket_direct(NewTicket { supplier_reference: Some(reference), ..NewTicket::default() });
    }
    halo.create_ticket_direct(NewTicket { supplier_reference: Some("cf|other|1".into()), ..NewTicket::default() });
    let page = |n: u32| {
        format!(
            "{}/Tickets?search_supplier_reference=cf%7Cdefenderxdr%7C12&order=id&orderdesc=true\
             &pageinate=true&page_size=50&page_no={n}",
            halo.api_url()
        )
    };
    let ids = |body: &Value| {
        body["tickets"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    let (_, first) = get_json(&c, page(1), &tok).await;
    assert_eq!(first["record_count"], 120, "the whole search, not the page");
    assert_eq!(ids(&first), (1071..=1120).rev().collect::<Vec<_>>(), "newest first");
    let (_, third) = get_json(&c, page(3), &tok).await;
    assert_eq!(ids(&third), (1001..=1020).rev().collect::<Vec<_>>(), "the last 20");
    let (_, beyond) = get_json(&c, page(4), &tok).await;
    assert_eq!((beyond["record_count"].as_i64(), ids(&beyond).len()), (Some(120), 0));
    let (_, big) =
        get_json(&c, format!("{}/Tickets?pageinate=true&page_size=500&page_no=1", halo.api_url()), &tok).await;
    assert_eq!(ids(&big).len(), 100, "a page holds at most 100");
    let (_, by_ref) = get_json(&c, format!("{}/Tickets?order=supplier_reference&count=1", halo.api_url()), &tok).await;
    assert_eq!(by_ref["tickets"][0]["supplier_reference"], "cf|defenderxdr|120", "ordered by the named field");
}

#[tokio::test]
async fn post_actions_validates_and_stamps_the_application() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    create(&halo, &c, &tok, json!({"summary": "s"})).await;
    let url = format!("{}/Actions", halo.api_url());
    let post = |body: Value| {
        let c = c.clone();
        let url = url.clone();
        let tok = tok.clone();
        async move {
            let resp = c.post(url).bearer_auth(tok).json(&body).send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, _) = post(json!([{"ticket_id": 1001, "note": "no outcome"}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(json!([{"outcome": "Private Note", "note": "no ticket"}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(json!([{"ticket_id": 4242, "outcome": "Private Note"}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(json!({"ticket_id": 1001, "outcome": "Private Note"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not an array");

    let (status, body) = post(json!([{
        "ticket_id": 1001,
        "outcome": "Private Note",
        "note_html": "<p>ContraForce re-delivered event <code>e1</code></p>",
        "hiddenfromuser": true,
        "who": "someone else",
    }]))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_object());
    assert_eq!(body["id"], 2);
    assert_eq!(body["ticket_id"], 1001);
    assert_eq!(body["who"], "ContraForce Integration");
    assert_eq!(body["who_agentid"], 38);
    assert_eq!(body["actionby_application_id"], "ContraForce Bridge");
    assert_eq!(body["note"], "ContraForce re-delivered event e1");
    assert_eq!(body["hiddenfromuser"], true);

    // outcome_id and a string ticket_id (as sample 01 sends) are accepted.
    let (status, body) = post(json!([{"ticket_id": "1001", "outcome_id": 7, "note": "x"}])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], 3);

    // A new ticket's first action shares the id counter.
    create(&halo, &c, &tok, json!({"summary": "t2"})).await;
    assert_eq!(halo.actions(1002)[0].id, 4);
    assert_eq!(halo.actions(1001).len(), 3);
}

#[tokio::test]
async fn admin_endpoints_drive_the_fake_like_a_human() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let id = halo.create_ticket_direct(NewTicket {
        summary: "direct".into(),
        details_html: "<p>d</p>".into(),
        customfields: vec![(171, json!("cf|x|1"))],
        ..NewTicket::default()
    });
    assert_eq!(id, 1001);
    assert!(halo.actions(id).is_empty());
    let resp = c
        .post(format!("{}/_sandbox/tickets/{id}/actions", halo.base_url()))
        .json(&json!({"note_html": "<p>from the UI</p>", "who": "Jane", "who_agentid": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = c
        .post(format!("{}/_sandbox/tickets/{id}/status", halo.base_url()))
        .json(&json!({"status_id": 9, "status_name": "Closed", "closed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let all: Value = c.get(format!("{}/_sandbox/tickets", halo.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(all[0]["hasbeenclosed"], true);
    assert_eq!(all[0]["customfields"][0]["name"], "CF171");
    assert_eq!(all[0]["actions"][0]["note"], "from the UI");
    assert_eq!(all[0]["actions"][0]["who"], "Jane");
    assert!(halo.requests().is_empty(), "admin calls are not recorded");

    halo.set_status(id, 2, "In Progress", false);
    assert!(!halo.ticket(id).unwrap().hasbeenclosed);
}

#[tokio::test]
async fn requests_are_recorded_and_can_be_reset() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    get_json(&c, format!("{}/tickets?client_id=4", halo.api_url()), &tok).await;
    let recs = halo.requests();
    assert_eq!(recs.len(), 2);
    let r = &recs[1];
    assert_eq!(r.path, "/api/tickets");
    assert_eq!(r.query, "client_id=4");
    assert_eq!(r.status, 200);
    assert!(r.header("authorization").unwrap().starts_with("Bearer "));
    assert_eq!(halo.count("GET", "/API/TICKETS"), 1, "paths match case-insensitively");
    assert_eq!(halo.count("*", "/"), 2);
    halo.reset_requests();
    assert!(halo.requests().is_empty());
    assert_eq!(halo.token_requests(), 0);
}

#[tokio::test]
async fn an_outage_answers_every_call_503_until_it_is_lifted() {
    let halo = FakeHalo::start(HaloConfig::test());
    let c = client();
    let tok = token(&halo, &c).await;
    let outage = format!("{}/_sandbox/outage", halo.base_url());
    assert_eq!(c.post(&outage).json(&json!({})).send().await.unwrap().status(), StatusCode::OK);
    let (status, _) = get_json(&c, format!("{}/Tickets/1001", halo.api_url()), &tok).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let token_call = c.post(format!("{}/token", halo.auth_url())).form(&[("grant_type", "client_credentials")]);
    assert_eq!(token_call.send().await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    // The admin endpoints still answer (the demo watches the tickets through them).
    let tickets = c.get(format!("{}/_sandbox/tickets", halo.base_url())).send().await.unwrap();
    assert_eq!(tickets.status(), StatusCode::OK);
    assert_eq!(c.delete(&outage).send().await.unwrap().status(), StatusCode::OK);
    let (status, _) = create(&halo, &c, &tok, json!({"summary": "after the outage"})).await;
    assert_eq!(status, StatusCode::OK);
}
