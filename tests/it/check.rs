//! `handler --check` against the fakes: all green; a wrong Halo secret turns that line red only.

use crate::support::*;
use std::process::Stdio;

pub(crate) async fn check(env: &[(String, String)]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("--check")
        .env_clear()
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(output.stderr.is_empty(), "nothing on stderr: {}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

pub(crate) fn line<'a>(report: &'a str, what: &str) -> &'a str {
    report.lines().find(|l| l[6..].starts_with(what)).unwrap_or_else(|| panic!("no `{what}` line in:\n{report}"))
}

#[tokio::test]
async fn check_passes_against_the_fakes_and_names_a_wrong_halo_secret() {
    let b = Bridge::start().await;
    let env = base_env(&b.halo, &b.cf, &b.azurite);
    let (ok, report) = check(&env).await;
    assert!(ok, "{report}");
    for what in [
        "cf-webhook settings",
        "halo-webhook settings",
        "Table Storage",
        "Work queue",
        "Halo token",
        "Halo API",
        "ContraForce API",
        "Halo clients",
        "Halo statuses",
        "Halo ticket types",
        "Status page",
    ] {
        assert!(line(&report, what).starts_with("PASS"), "{report}");
    }
    assert!(line(&report, "Status page").contains("on: GET /api/status"), "{report}");
    assert!(report.contains("11 passed, 0 failed"), "{report}");

    // A queue service that does not answer turns the work queue's line red, and only it.
    let queue_at = b.azurite.queue_endpoint();
    let no_queue: Vec<(String, String)> =
        env.iter().map(|(k, v)| (k.clone(), v.replace(&queue_at, "http://127.0.0.1:9/devstoreaccount1"))).collect();
    assert_ne!(no_queue, env, "the connection string names the queue endpoint");
    let (ok, report) = check(&no_queue).await;
    assert!(!ok, "{report}");
    assert!(line(&report, "Work queue").starts_with("FAIL"), "{report}");
    assert!(line(&report, "Table Storage").starts_with("PASS"), "{report}");

    let wrong: Vec<(String, String)> =
        env.iter()
            .map(|(k, v)| {
                if k == "HALO_CLIENT_SECRET" {
                    (k.clone(), "wrong-secret".to_string())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
    let (ok, report) = check(&wrong).await;
    assert!(!ok, "a red line means a non-zero exit");
    assert!(line(&report, "Halo token").starts_with("FAIL"), "{report}");
    assert!(line(&report, "Halo token").contains("401"), "{report}");
    for what in ["cf-webhook settings", "halo-webhook settings", "Table Storage", "ContraForce API"] {
        assert!(line(&report, what).starts_with("PASS"), "{report}");
    }
    assert!(!report.contains("wrong-secret"), "the secret is not printed");
    // Nothing was changed: no ticket, no action, no comment.
    assert_eq!(b.halo.count("POST", "/api"), 0);
    assert!(b.cf.all_comments().is_empty());
}

/// Every configured Halo id is checked against Halo, one call per kind, and a wrong one is named by its setting and
/// value; each mapped ContraForce workspace must answer.
#[tokio::test]
async fn check_names_each_configured_id_halo_does_not_have_by_setting_and_value() {
    let b = Bridge::start().await;
    let site = b.halo.add_site(1, "HQ");
    let mut env = base_env(&b.halo, &b.cf, &b.azurite);
    let other = b.cf.config().other_workspaces[0].clone();
    env.extend([
        ("HALO_CLIENT_MAP".to_string(), format!("acme=1/{site},contoso=4242")),
        ("HALO_CLOSE_DECISION_MAP".to_string(), "9=FalsePositive/InaccurateData,555=Undetermined".to_string()),
        ("HALO_CLASSIFICATION_FIELD_ID".to_string(), "77".to_string()),
        ("CF_WORKSPACE_MAP".to_string(), format!("acme={other}")),
    ]);
    b.halo.reset_requests();
    let (ok, report) = check(&env).await;
    assert!(!ok, "a wrong id means a non-zero exit:\n{report}");
    let clients = line(&report, "Halo clients");
    assert!(
        clients.starts_with("FAIL") && clients.contains("HALO_CLIENT_MAP=contoso=4242: no such client"),
        "{report}"
    );
    assert!(!clients.contains("acme"), "the good ones are not named: {clients}");
    let statuses = line(&report, "Halo statuses");
    assert!(statuses.starts_with("FAIL") && statuses.contains("HALO_CLOSE_DECISION_MAP=555"), "{report}");
    for what in ["Halo sites", "Halo ticket types", "Halo custom fields", "ContraForce workspaces"] {
        assert!(line(&report, what).starts_with("PASS"), "{report}");
    }
    for path in ["/api/Client", "/api/Site", "/api/Status", "/api/TicketType", "/api/FieldInfo"] {
        assert_eq!(b.halo.count("GET", path), 1, "one call per kind: {path}");
    }
    // A site of another client is not that client's site.
    let mut elsewhere = env.clone();
    elsewhere.retain(|(k, _)| k != "HALO_CLIENT_MAP");
    elsewhere.push(("HALO_CLIENT_MAP".to_string(), format!("acme={}/{site}", b.halo.add_client("Acme"))));
    let (_, report) = check(&elsewhere).await;
    assert!(line(&report, "Halo sites").starts_with("FAIL"), "{report}");
}
