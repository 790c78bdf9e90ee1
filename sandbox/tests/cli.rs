//! The `sandbox serve` binary prints the bridge's environment and stops on SIGTERM.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn serve_prints_env_and_stops_on_sigterm() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(["serve", "--halo-port", "0", "--cf-port", "0", "--print-env"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut env = BTreeMap::new();
    while env.len() < 10 {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("output in time")
            .unwrap()
            .expect("more output");
        let (name, value) = line.strip_prefix("export ").and_then(|l| l.split_once('=')).expect("export lines");
        env.insert(name.to_string(), value.trim_matches('\'').to_string());
    }
    for name in [
        "HALO_AUTH_URL",
        "HALO_API_BASE_URL",
        "HALO_CLIENT_ID",
        "HALO_CLIENT_SECRET",
        "HALO_INTEGRATION_APPLICATION",
        "HALO_INTEGRATION_AGENT_ID",
        "CF_API_BASE_URL",
        "CF_SERVICE_ACCOUNT_CLIENT_ID",
        "CF_SERVICE_ACCOUNT_CLIENT_SECRET",
        "CF_WORKSPACE_ID",
    ] {
        assert!(env.contains_key(name), "{name} missing: {env:?}");
    }
    assert!(env["CF_API_BASE_URL"].ends_with("/api/v2"));

    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = c
        .post(format!("{}/token", env["HALO_AUTH_URL"]))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", env["HALO_CLIENT_ID"].as_str()),
            ("client_secret", env["HALO_CLIENT_SECRET"].as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .post(format!("{}/workspaces/{}/incidents/i1/comments", env["CF_API_BASE_URL"], env["CF_WORKSPACE_ID"]))
        .basic_auth(&env["CF_SERVICE_ACCOUNT_CLIENT_ID"], Some(&env["CF_SERVICE_ACCOUNT_CLIENT_SECRET"]))
        .json(&serde_json::json!({"incidentId": "i1", "content": "hi", "source": "s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let pid = child.id().unwrap();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status =
        tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("exits after SIGTERM").unwrap();
    assert!(status.success(), "{status}");
}
