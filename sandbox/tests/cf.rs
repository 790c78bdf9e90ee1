//! FakeCf accepts comments and status changes with Basic auth and records them.

use reqwest::{Client, StatusCode};
use sandbox::cf::{CfConfig, FakeCf};
use serde_json::{json, Value};

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn ws() -> String {
    CfConfig::test().workspace_id
}

#[tokio::test]
async fn comment_is_recorded_with_the_decoded_incident_id() {
    let cf = FakeCf::start(CfConfig::test());
    let c = client();
    let incident = "inc/42 a|b";
    let encoded = "inc%2F42%20a%7Cb";
    let resp = c
        .post(format!("{}/workspaces/{}/incidents/{encoded}/comments", cf.base_url(), ws()))
        .basic_auth("test-cf-client", Some("test-cf-secret"))
        .json(&json!({
            "incidentId": incident,
            "commentId": null,
            "content": "[Halo ticket #1001 note by Jane]\n\nhello",
            "extensionId": null,
            "source": "Sentinel",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"].as_str().unwrap().len(), 36);

    let comments = cf.comments(incident);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].incident_id, incident);
    assert_eq!(comments[0].content, "[Halo ticket #1001 note by Jane]\n\nhello");
    assert_eq!(comments[0].source, "Sentinel");
    assert_eq!(comments[0].body["extensionId"], Value::Null);
    assert_eq!(cf.all_comments().len(), 1);
    assert_eq!(cf.count("POST", "/workspaces"), 1);
    assert_eq!(cf.count("POST", "/api/v2/workspaces"), 1);
    let rec = &cf.requests()[0];
    assert_eq!(rec.status, 201);
    assert!(rec.path.ends_with(&format!("/incidents/{encoded}/comments")));
    assert!(rec.header("authorization").unwrap().starts_with("Basic "));
}

#[tokio::test]
async fn close_is_recorded() {
    let cf = FakeCf::start(CfConfig::test());
    let c = client();
    let body = json!({
        "incidentId": "abc",
        "source": "Sentinel",
        "status": "Closed",
        "comment": "Closed in HaloPSA (ticket #1001, status 'Closed').",
        "classification": "Undetermined",
        "classificationReason": "InaccurateData",
    });
    let resp = c
        .put(format!("{}/workspaces/{}/incidents/abc/status", cf.base_url(), ws().to_uppercase()))
        .basic_auth("test-cf-client", Some("test-cf-secret"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(cf.status_changes("abc"), vec![body]);
    assert!(cf.comments("abc").is_empty());

    let admin: Value =
        c.get(format!("{}/_sandbox/incidents", cf.root_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(admin["abc"]["status_changes"][0]["status"], "Closed");
    assert_eq!(cf.requests().len(), 1, "admin calls are not recorded");
}

#[tokio::test]
async fn basic_auth_is_required() {
    let cf = FakeCf::start(CfConfig::test());
    let c = client();
    let url = format!("{}/workspaces/{}/incidents/abc/comments", cf.base_url(), ws());
    let body = json!({"incidentId": "abc", "content": "x", "source": "s"});
    let resp = c.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = c.post(&url).basic_auth("test-cf-client", Some("nope")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = c.post(&url).bearer_auth("test-cf-secret").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(cf.all_comments().is_empty());
    assert_eq!(cf.count("*", "/workspaces"), 3);
}

#[tokio::test]
async fn bad_comments_and_unknown_workspaces_are_rejected() {
    let cf = FakeCf::start(CfConfig::test());
    let c = client();
    let post = |path: String, body: Value| {
        let c = c.clone();
        async move {
            c.post(path).basic_auth("test-cf-client", Some("test-cf-secret")).json(&body).send().await.unwrap().status()
        }
    };
    let url = format!("{}/workspaces/{}/incidents/abc/comments", cf.base_url(), ws());
    assert_eq!(
        post(url.clone(), json!({"incidentId": "abc", "content": "", "source": "s"})).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(url.clone(), json!({"incidentId": "other", "content": "x", "source": "s"})).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(
            format!("{}/workspaces/00000000-0000-0000-0000-000000000000/incidents/abc/comments", cf.base_url()),
            json!({"incidentId": "abc", "content": "x", "source": "s"})
        )
        .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(url.clone(), json!({"incidentId": "abc", "content": "ok", "source": 1})).await,
        StatusCode::CREATED
    );
    assert_eq!(cf.comments("abc")[0].source, "1");
    assert_eq!(cf.all_comments().len(), 1);
}
