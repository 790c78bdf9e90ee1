//! The custom-handler foundation: the host files against their schemas, readiness, shutdown, configuration.

use crate::support::*;
use cf_halo_bridge::config::{Config, Env};
use cf_halo_bridge::settings::SETTINGS;
use reqwest::StatusCode;
use sandbox::faults::{Fault, Rule};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;

/// A JSON file of the repository; a missing or broken one fails naming its path.
fn read_json(path: &str) -> Value {
    let path = repo_root().join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A JSON Schema vendored in `tests/schemas/` (its README names the origin of each).
fn schema(name: &str) -> Value {
    read_json(&format!("tests/schemas/{name}"))
}

#[test]
fn host_and_function_files_match_their_schemas() {
    let host = jsonschema::validator_for(&schema("host.schema.json")).unwrap();
    // function.json declares draft-04 but uses `const`: validate it as draft-07 (tests/schemas/README.md).
    let function =
        jsonschema::options().with_draft(jsonschema::Draft::Draft7).build(&schema("function.schema.json")).unwrap();
    let host_json = read_json("host.json");
    assert!(host.is_valid(&host_json), "{:?}", host.iter_errors(&host_json).map(|e| e.to_string()).collect::<Vec<_>>());
    assert_eq!(host_json["version"], "2.0");
    assert_eq!(host_json["customHandler"]["description"]["defaultExecutablePath"], "handler");
    assert_eq!(host_json["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(host_json["extensions"]["http"]["routePrefix"], "api");
    for name in ["cf-webhook", "halo-webhook"] {
        let f = read_json(&format!("{name}/function.json"));
        assert!(
            function.is_valid(&f),
            "{name}: {:?}",
            function.iter_errors(&f).map(|e| e.to_string()).collect::<Vec<_>>()
        );
        let bindings = f["bindings"].as_array().unwrap();
        assert_eq!(bindings.len(), 2, "exactly one trigger and one http output keep forwarding on");
        assert_eq!(bindings[0]["type"], "httpTrigger");
        assert_eq!(bindings[0]["authLevel"], "function");
        assert_eq!(bindings[0]["methods"], serde_json::json!(["post"]));
        assert_eq!(bindings[0]["route"], name);
        assert_eq!(bindings[1]["type"], "http");
    }
    // The validators are not vacuous: a typo and a wrong authLevel are rejected.
    let mut typo = host_json.clone();
    typo["customHandler"]["enableForwardingHttpRequests"] = Value::Bool(true);
    assert!(!host.is_valid(&typo));
    let mut bad = read_json("cf-webhook/function.json");
    bad["bindings"][0]["authLevel"] = "Function".into();
    assert!(!function.is_valid(&bad));
}

#[test]
fn the_local_settings_example_is_complete_and_starts_as_is() {
    let example = read_json("local.settings.json.example");
    let values = example["Values"].as_object().unwrap();
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    assert_eq!(values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");
    for s in SETTINGS {
        assert!(values.contains_key(s.name), "{} is missing from local.settings.json.example", s.name);
    }
    let env = Env::from_pairs(values.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())));
    let config = Config::from_env(&env).expect("copied unchanged, the example must not stop the start");
    assert!(config.cf_webhook.ready().is_some());
    assert!(config.halo_webhook.ready().is_some());
}

#[test]
fn the_readme_documents_every_setting() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for s in SETTINGS {
        assert!(readme.contains(&format!("`{}`", s.name)), "README.md does not document {}", s.name);
    }
}

#[tokio::test]
async fn readiness_answers_at_once_and_unknown_paths_are_json_404() {
    let b = Bridge::start().await;
    let port = b.host.handler_port().unwrap();
    let direct = reqwest::get(format!("http://127.0.0.1:{port}/")).await.unwrap();
    assert_eq!(direct.status(), StatusCode::OK);
    let missing = reqwest::get(format!("http://127.0.0.1:{port}/api/nothing")).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "not found");
    let wrong_method = reqwest::get(format!("http://127.0.0.1:{port}/api/cf-webhook")).await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_then_exits_cleanly() {
    let b = std::sync::Arc::new(Bridge::start().await);
    b.halo.faults().push(Rule::once("POST", "/api/Tickets", Fault::DelayBefore(Duration::from_millis(1500))));
    let sender = {
        let b = b.clone();
        tokio::spawn(async move { b.send_cf("evt-term", &incident("inc-term", 50)).await })
    };
    // SIGTERM once the request is surely in flight: the handler has called Halo, which holds the create 1.5 s.
    for _ in 0..30_000 {
        if b.halo.count("POST", "/api/Tickets") > 0 || sender.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.halo.count("POST", "/api/Tickets"), 1, "the delivery reached Halo before the stop");
    let status = b.host.stop_handler_gracefully().await;
    let answer = sender.await.unwrap();
    assert_eq!(answer.body["status"], "created", "{answer:?}");
    assert!(status.success(), "{status:?}");
    b.logged("SIGTERM: finishing requests in flight").await;
}

#[tokio::test]
async fn a_direction_without_its_settings_answers_503_and_the_other_keeps_working() {
    let b = Bridge::start_with(|env| env.retain(|(k, _)| k != "HALO_DEFAULT_TICKETTYPE_ID")).await;
    let a = b.send_cf("evt-off", &incident("inc-off", 60)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body["error"], "cf-webhook is not configured");
    assert_eq!(a.body["problems"], serde_json::json!(["HALO_DEFAULT_TICKETTYPE_ID is not set"]));
    let other = b.send_halo(&serde_json::json!({"event": "x"})).await;
    assert_eq!(other.status, StatusCode::OK, "{other:?}");
    assert_eq!(other.body["reason"], "no ticket id in payload");
}

#[tokio::test]
async fn an_unresolved_key_vault_reference_is_reported_by_name() {
    let reference = "@Microsoft.KeyVault(VaultName=kv-bridge;SecretName=cf-webhook-secret)";
    let b = Bridge::start_with(|env| {
        env.retain(|(k, _)| k != "CF_WEBHOOK_SECRET");
        env.push(("CF_WEBHOOK_SECRET".into(), reference.into()));
    })
    .await;
    let a = b.send_cf("evt-kv", &incident("inc-kv", 61)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let problem = a.body["problems"][0].as_str().unwrap();
    assert!(problem.starts_with("CF_WEBHOOK_SECRET is an unresolved Key Vault reference"), "{problem}");
    assert!(problem.contains("Key Vault Secrets User"));
    b.logged("CF_WEBHOOK_SECRET is an unresolved Key Vault reference").await; // said at startup too
}

/// The handler started with one setting (and its port) only; how it ended.
async fn start_with_only(name: &str, value: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .env_clear()
        .env(name, value)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_invalid_setting_stops_the_start_naming_the_variable() {
    let output = start_with_only("HALO_DEFAULT_CLIENT_ID", "one").await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid setting HALO_DEFAULT_CLIENT_ID"), "{stderr}");
}

/// `thirdpartynumber` is not a Halo ticket field: a start asked to write the reference there stops, saying why and
/// what to use instead.
#[tokio::test]
async fn writing_the_reference_to_thirdpartynumber_is_refused_at_start() {
    let output = start_with_only("HALO_EXTERNAL_REF_FIELD", "thirdpartynumber").await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for says in
        ["invalid setting HALO_EXTERNAL_REF_FIELD", "Halo drops it", "supplier_reference", "HALO_EXTERNAL_REF_FIELD_ID"]
    {
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
}

/// Every invalid value is named in one start, `LOG_LEVEL` included (a bare word would otherwise silence every log
/// line), and `--check` says the same with its summary line.
#[tokio::test]
async fn every_invalid_setting_is_named_at_once_and_check_sums_them_up() {
    let run = |args: &'static [&'static str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .args(args)
            .env_clear()
            .env("HALO_DEFAULT_CLIENT_ID", "one")
            .env("LOG_LEVEL", "verbose")
            .env("CF_MAX_SKEW_SECONDS", "five")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
    };
    let serve = run(&[]).await.unwrap();
    assert_eq!(serve.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&serve.stderr);
    for name in ["HALO_DEFAULT_CLIENT_ID", "LOG_LEVEL", "CF_MAX_SKEW_SECONDS"] {
        assert!(stderr.contains(&format!("invalid setting {name}")), "{name} not named: {stderr}");
    }
    let check = run(&["--check"]).await.unwrap();
    assert_eq!(check.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("FAIL  configuration: invalid setting")).count(), 3, "{stdout}");
    assert_eq!(stdout.lines().last(), Some("0 passed, 3 failed"), "{stdout}");
}

#[tokio::test]
async fn help_prints_usage_and_exits_zero_and_a_typo_exits_two() {
    for flag in ["--help", "-h"] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler")).arg(flag).output().await.unwrap();
        assert!(out.status.success(), "{flag}: {:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("Usage: handler"), "{text}");
        for command in ["--check", "--list-settings", "--version", "dead-letters", "replay", "import-links"] {
            assert!(text.contains(command), "{flag} does not list {command}");
        }
    }
    let typo = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler")).arg("--chek").output().await.unwrap();
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("unknown argument `--chek`"));
}

#[tokio::test]
async fn without_a_host_port_it_serves_the_func_start_port() {
    // 7071 is what `func start` uses; skip nothing: if it is taken, the start must fail naming it.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut ready = false;
    // Bounded (generously) so that a handler that never listens fails the test rather than hanging it.
    for _ in 0..2_400 {
        if let Ok(r) = reqwest::get("http://127.0.0.1:7071/").await {
            ready =
                r.status() == StatusCode::OK && r.json::<Value>().await.map(|v| v["status"] == "ok").unwrap_or(false);
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            use tokio::io::AsyncReadExt;
            child.stderr.take().unwrap().read_to_string(&mut err).await.unwrap();
            assert!(err.contains("127.0.0.1:7071"), "{status:?} {err}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.ok();
    assert!(ready, "GET http://127.0.0.1:7071/ answered the readiness body");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
