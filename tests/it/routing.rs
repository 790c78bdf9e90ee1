//! Customer routing through the real binary: each ContraForce account's incidents on its own Halo client (by
//! `HALO_CLIENT_MAP`, by an exact name match, or the default), and its comments and close in its own workspace.

use crate::support::*;
use sandbox::halo::{NewAction, CLOSED_STATUS_ID};
use serde_json::Value;

fn of_account(incident_id: &str, account_id: &str, account_name: &str) -> Value {
    let mut body = incident(incident_id, 500);
    body["data"]["accountId"] = account_id.into();
    body["data"]["accountName"] = account_name.into();
    body
}

/// The `POST /Tickets` body that created the ticket of `incident_id`.
fn created_body(b: &Bridge, incident_id: &str) -> Value {
    let wanted = format!("cf|sentinel|{incident_id}");
    b.halo
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/api/Tickets")
        .filter_map(|r| r.json())
        .map(|body| body[0].clone())
        .find(|t| t["supplier_reference"] == wanted.as_str())
        .unwrap_or_else(|| panic!("no create for {incident_id}"))
}

async fn created(b: &Bridge, incident_id: &str, body: &Value) -> Value {
    let a = b.send_cf(&format!("evt-{incident_id}"), body).await;
    assert_eq!(a.body["status"], "created", "{a:?}");
    created_body(b, incident_id)
}

/// The `routed` log line of one incident.
async fn routed_line(b: &Bridge, incident_id: &str) -> String {
    b.logged(&format!("reference=\"cf|sentinel|{incident_id}\" ticket_id")).await
}

#[tokio::test]
async fn each_account_lands_on_its_client_by_map_by_exact_name_or_by_default_and_a_name_costs_one_lookup() {
    let b = Bridge::start_with(|env| {
        env.push(("HALO_CLIENT_MAP".into(), "acct-mapped=7/70".into()));
        env.push(("HALO_CLIENT_MATCH_BY_NAME".into(), "true".into()));
    })
    .await;
    let contoso = b.halo.add_client("Contoso Ltd");
    b.halo.add_client("Contoso Ltd Holdings");
    b.halo.add_client("Fabrikam");
    b.halo.add_client("fabrikam ");

    // By the map: its client and site, without asking Halo.
    let t = created(&b, "r-mapped", &of_account("r-mapped", "ACCT-MAPPED", "Contoso Ltd")).await;
    assert_eq!((t["client_id"].as_i64(), t["site_id"].as_i64()), (Some(7), Some(70)), "{t}");
    assert!(routed_line(&b, "r-mapped").await.contains("routed_by=\"map\""));
    assert_eq!(b.halo.count("GET", "/api/Client"), 0, "a mapped account costs no lookup");

    // By the exact name (case and spacing ignored; "Contoso Ltd Holdings" also contains it and does not count).
    let t = created(&b, "r-name-0", &of_account("r-name-0", "acct-c", "  CONTOSO   ltd ")).await;
    assert_eq!(t["client_id"].as_i64(), Some(contoso), "{t}");
    assert!(t.get("site_id").is_none());
    assert!(routed_line(&b, "r-name-0").await.contains("routed_by=\"name\""));
    for n in 1..=20 {
        let id = format!("r-name-{n}");
        assert_eq!(
            created(&b, &id, &of_account(&id, "acct-c", "Contoso Ltd")).await["client_id"].as_i64(),
            Some(contoso)
        );
    }
    assert_eq!(b.halo.count("GET", "/api/Client"), 1, "21 incidents of one customer, one lookup within the TTL");

    // Two clients of one name: the default client, and the log says why.
    let t = created(&b, "r-twice", &of_account("r-twice", "acct-f", "Fabrikam")).await;
    assert_eq!(t["client_id"].as_i64(), Some(DEFAULT_CLIENT), "{t}");
    let line = routed_line(&b, "r-twice").await;
    assert!(line.contains("routed_by=\"default: 2 Halo clients have the account's name\""), "{line}");
    // No client of that name: the default too.
    let t = created(&b, "r-nobody", &of_account("r-nobody", "acct-n", "Northwind")).await;
    assert_eq!(t["client_id"].as_i64(), Some(DEFAULT_CLIENT));
    assert!(routed_line(&b, "r-nobody").await.contains("no Halo client has the account's name"));
    b.assert_clean_logs();
}

#[tokio::test]
async fn without_name_matching_an_unmapped_account_goes_to_the_default_client_with_no_lookup() {
    let b = Bridge::start().await;
    b.halo.add_client("Contoso Ltd");
    let t = created(&b, "r-off", &of_account("r-off", "acct-c", "Contoso Ltd")).await;
    assert_eq!(t["client_id"].as_i64(), Some(DEFAULT_CLIENT));
    assert!(routed_line(&b, "r-off").await.contains("routed_by=\"default\""));
    assert_eq!(b.halo.count("GET", "/api/Client"), 0);
}

#[tokio::test]
async fn comments_and_the_close_of_an_account_with_its_own_workspace_go_there() {
    let cf = sandbox::cf::CfConfig::test();
    let other = cf.other_workspaces[0].clone();
    let b = Bridge::start_with(|env| env.push(("CF_WORKSPACE_MAP".into(), format!("acct-b={other}")))).await;
    let default = b.cf.config().workspace_id.clone();
    let mut tickets = Vec::new();
    for (incident_id, account) in [("w-b", "ACCT-B"), ("w-a", "acct-a")] {
        let a = b.send_cf(&format!("evt-{incident_id}"), &of_account(incident_id, account, "Any")).await;
        assert_eq!(a.body["status"], "created", "{a:?}");
        tickets.push(a.body["ticketId"].as_i64().unwrap());
    }
    for t in &tickets {
        b.halo.add_action(*t, NewAction::human("Sam Agent", 2, "analyst note", false));
        b.halo.set_status(*t, CLOSED_STATUS_ID, "Closed", true);
        let a = b.send_halo(&Bridge::halo_payload(*t)).await;
        assert_eq!((a.body["actionsForwarded"].as_i64(), a.body["closed"].as_bool()), (Some(1), Some(true)), "{a:?}");
    }
    let workspace_of = |incident_id: &str| b.cf.comments(incident_id)[0].workspace_id.to_lowercase();
    assert_eq!(workspace_of("w-b"), other.to_lowercase(), "account B's comments in B's workspace");
    assert_eq!(workspace_of("w-a"), default.to_lowercase(), "an unmapped account's in the default one");
    let closes: Vec<String> =
        b.cf.requests().into_iter().filter(|r| r.method == "PUT").map(|r| r.path.to_lowercase()).collect();
    assert!(closes.iter().any(|p| p.contains(&other.to_lowercase()) && p.contains("/w-b/")), "{closes:?}");
    assert!(closes.iter().any(|p| p.contains(&default.to_lowercase()) && p.contains("/w-a/")), "{closes:?}");
}

/// The analyst's decision flows back: a close with a status mapped to FalsePositive closes the incident as
/// FalsePositive with the mapped reason, naming the status and quoting the closing note; the classification field,
/// when set, wins over the status; other statuses keep the default.
#[tokio::test]
async fn a_close_carries_the_analysts_decision_by_status_or_by_field_and_the_closing_note() {
    let b = Bridge::start_with(|env| {
        env.push(("HALO_CLOSE_DECISION_MAP".into(), "21=FalsePositive/IncorrectAlertLogic,22=undetermined".into()));
        env.push(("HALO_CLASSIFICATION_FIELD_ID".into(), "77".into()));
    })
    .await;
    let mut tickets = Vec::new();
    for id in ["d-fp", "d-und", "d-field", "d-default"] {
        let a = b.send_cf(&format!("evt-{id}"), &of_account(id, "acct", "Any")).await;
        tickets.push(a.body["ticketId"].as_i64().unwrap());
    }
    let closes =
        [(21, "Closed - False Positive"), (22, "Closed - Unknown"), (21, "Closed - False Positive"), (9, "Closed")];
    for (t, (status, name)) in tickets.iter().zip(closes) {
        b.halo.add_action(*t, NewAction::human("Sam Agent", 2, &format!("decided on {t}"), false));
        b.halo.set_status(*t, status, name, true);
    }
    b.halo.set_custom_field(tickets[2], 77, "TruePositive/SuspiciousActivity");
    for t in &tickets {
        let a = b.send_halo(&Bridge::halo_payload(*t)).await;
        assert_eq!(a.body["closed"], true, "{a:?}");
    }
    let close = |id: &str| b.cf.status_changes(id)[0].clone();
    let fp = close("d-fp");
    assert_eq!(
        (fp["classification"].as_str(), fp["classificationReason"].as_str()),
        (Some("FalsePositive"), Some("IncorrectAlertLogic"))
    );
    let comment = fp["comment"].as_str().unwrap();
    assert!(
        comment.contains("status 'Closed - False Positive'") && comment.contains("FalsePositive / IncorrectAlertLogic"),
        "{comment}"
    );
    assert!(comment.ends_with(&format!("Closing note: decided on {}", tickets[0])), "{comment}");
    let und = close("d-und");
    assert_eq!(und["classification"], "Undetermined");
    assert!(und.get("classificationReason").is_none(), "no reason mapped, none sent: {und}");
    let field = close("d-field");
    assert_eq!(
        (field["classification"].as_str(), field["classificationReason"].as_str()),
        (Some("TruePositive"), Some("SuspiciousActivity"))
    );
    let default = close("d-default");
    assert_eq!(
        (default["classification"].as_str(), default["classificationReason"].as_str()),
        (Some("Undetermined"), Some("InaccurateData"))
    );
}
