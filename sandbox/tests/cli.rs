//! `sandbox serve` prints the bridge's environment and stops on SIGTERM; `sandbox host` runs a handler under the
//! stand-in host.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// Starts a `sandbox` command with its stdout read line by line (stderr dropped); killed when dropped.
fn spawn_sandbox(
    command: &mut tokio::process::Command,
) -> (tokio::process::Child, tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) {
    let mut child =
        command.stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true).spawn().expect("sandbox starts");
    let lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    (child, lines)
}

#[tokio::test]
async fn serve_prints_env_and_stops_on_sigterm() {
    let (mut child, mut lines) = spawn_sandbox(tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox")).args([
        "serve",
        "--halo-port",
        "0",
        "--cf-port",
        "0",
        "--print-env",
    ]));
    let mut env = BTreeMap::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("output in time")
            .unwrap()
            .expect("more output");
        if line == "# end of the bridge's environment" {
            break;
        }
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
        "HALO_CLIENT_MAP",
        "HALO_CLIENT_MATCH_BY_NAME",
        "CF_WORKSPACE_MAP",
        "HALO_CLOSE_DECISION_MAP",
    ] {
        assert!(env.contains_key(name), "{name} missing: {env:?}");
    }
    // The customers' routing: the mapped account's client and site exist in the sandbox Halo, and each mapped
    // workspace in the sandbox ContraForce.
    let northwind = sandbox::customers::NORTHWIND;
    assert!(env["HALO_CLIENT_MAP"].starts_with(&format!("{}=2/2", northwind.account_id)), "{env:?}");
    assert!(env["CF_WORKSPACE_MAP"].contains(northwind.workspace_id.unwrap()), "{env:?}");
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

/// `sandbox host` runs a handler (here echo_handler) on the given port with this process's environment, with keys
/// off as `func start`; its queue trigger reads Azurite's queue; SIGTERM stops the handler gracefully.
#[tokio::test]
async fn host_runs_a_handler_with_queue_triggers_until_sigterm() {
    let azurite = sandbox::azurite::Azurite::start().await.expect("Azurite (npm ci)");
    let dir = std::env::temp_dir().join(format!("sandbox-cli-host-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("work")).unwrap();
    std::fs::create_dir_all(dir.join("echo")).unwrap();
    std::fs::write(
        dir.join("host.json"),
        r#"{"version":"2.0","extensions":{"queues":{"maxPollingInterval":"00:00:00.200"}},
        "customHandler":{"description":{"defaultExecutablePath":"handler"},"enableForwardingHttpRequest":true}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("work/function.json"),
        r#"{"bindings":[{"type":"queueTrigger","direction":"in","name":"item","queueName":"jobs"}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("echo/function.json"),
        r#"{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","methods":["post"]},
        {"type":"http","direction":"out","name":"res"}]}"#,
    )
    .unwrap();
    let port = sandbox::free_port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox"));
    command
        .args(["host", "--app-root", dir.to_str().unwrap(), "--port", &port.to_string()])
        .args(["--executable", env!("CARGO_BIN_EXE_echo_handler")])
        .env("AzureWebJobsStorage", azurite.connection_string())
        .env("MY_SETTING", "passed through");
    let (mut child, mut lines) = spawn_sandbox(&mut command);
    let mut next_line = async move || {
        tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.expect("output in time").unwrap()
    };
    while !next_line().await.expect("the host says it runs").contains("stand-in Functions host on") {}

    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let echoed: serde_json::Value = c
        .post(format!("http://127.0.0.1:{port}/api/echo?x_env=1"))
        .body("x")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["env"]["MY_SETTING"], "passed through", "no key needed; the environment passed through");

    let queue = azurite.queues().queue("jobs");
    queue.create_if_missing().await.unwrap();
    queue.put_base64("hello").await.unwrap();
    loop {
        let line = next_line().await.expect("the invocation is logged");
        if line.starts_with("[host] Executed 'Functions.work' (Succeeded") {
            break;
        }
    }
    assert!(queue.peek(1).await.unwrap().is_empty(), "the message was deleted");

    let pid = child.id().unwrap();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let mut saw_handler_stop = false;
    while let Some(line) = next_line().await {
        saw_handler_stop |= line.contains("SIGTERM received");
    }
    assert!(saw_handler_stop, "the handler was stopped with SIGTERM");
    let status =
        tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("exits after SIGTERM").unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}
