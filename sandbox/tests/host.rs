//! The stand-in host against the echo_handler test executable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use reqwest::{Client, StatusCode};
use sandbox::host::{
    Disposition, HostError, HostOptions, Invocation, InvocationReason, LogLevel, LogStream, MessageEncoding, Outcome,
    QueueOverrides, StandInHost,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = env!("CARGO_BIN_EXE_echo_handler");
/// How long a log line may take to show up before the test says it never did (generous: a loaded machine is slow).
const LOG_WAIT: Duration = Duration::from_secs(60);

fn app_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/app")
}

fn options() -> HostOptions {
    HostOptions::new(app_root()).executable(ECHO)
}

fn client() -> Client {
    Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn start(opts: HostOptions) -> StandInHost {
    StandInHost::start(opts).await.expect("host starts")
}

/// A temporary app root with the given host.json and functions.
fn temp_app(host_json: &str, functions: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sandbox-host-test-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("host.json"), host_json).unwrap();
    for (name, fj) in functions {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("function.json"), fj).unwrap();
    }
    dir
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
        ^ COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

async fn echo(c: &Client, host: &StandInHost, query: &str) -> (StatusCode, Value) {
    let resp = c
        .post(format!("{}?{query}", host.function_url("echo")))
        .header("x-functions-key", host.function_key())
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn keys_are_enforced_with_an_empty_401() {
    let host = start(options()).await;
    let c = client();
    let url = host.function_url("echo");
    assert_eq!(url, format!("{}/api/echo", host.url()));

    let resp = c.post(&url).body("x").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.bytes().await.unwrap().is_empty(), "401 has an empty body");

    let resp = c.post(&url).header("x-functions-key", "wrong").body("x").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = c.post(format!("{url}?code=test-function-key")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // The header takes precedence over ?code=.
    let resp = c
        .post(format!("{url}?code=test-function-key"))
        .header("x-functions-key", "wrong")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    for key in [host.function_key(), host.host_key(), host.master_key()] {
        let resp = c.post(&url).header("x-functions-key", key).body("x").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "key {key}");
    }
}

#[tokio::test]
async fn keys_can_be_turned_off_like_func_start() {
    let host = start(HostOptions { enforce_keys: false, ..options() }).await;
    let resp = client().post(host.function_url("echo")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn routing_is_case_insensitive_and_method_checked() {
    let host = start(options()).await;
    let c = client();
    let key = host.function_key().to_string();
    let resp = c.get(host.function_url("echo")).header("x-functions-key", &key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "GET is not allowed");
    let resp = c.post(format!("{}/api/nope", host.url())).header("x-functions-key", &key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c.post(format!("{}/echo", host.url())).header("x-functions-key", &key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "the route prefix is required");
    let resp =
        c.post(format!("{}/API/Echo", host.url())).header("x-functions-key", &key).body("x").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["path"], "/API/Echo", "the original path is forwarded");
}

#[tokio::test]
async fn request_is_forwarded_as_the_host_rebuilds_it() {
    let host = start(options()).await;
    let c = client();
    let payload: Vec<u8> = b"{\"a\":1}\xff\x00raw".to_vec();
    let resp = c
        .post(format!("{}?b=2&a=1&a=x%20y&r=cf%7Csentinel&code=test-function-key", host.function_url("echo")))
        .header("content-type", "application/json")
        .header("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ==")
        .header("content-encoding", "identity")
        .header("content-language", "en")
        .header("x-custom", "kept")
        .header("x-signature", "sha256=abc")
        .header("user-agent", "test-agent/1.0")
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-echo"], "1", "handler headers come back");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/api/echo");
    assert_eq!(
        body["query"], "b=2&a=1%2Cx%20y&r=cf%7Csentinel&code=test-function-key",
        "rebuilt: repeated keys joined, values re-encoded, code kept"
    );
    let h = &body["headers"];
    for dropped in ["content-md5", "content-encoding", "content-language"] {
        assert!(h.get(dropped).is_none(), "{dropped} must be dropped: {h}");
    }
    assert_eq!(h["content-type"][0], "application/json");
    assert_eq!(h["content-length"][0], payload.len().to_string());
    assert_eq!(h["x-custom"][0], "kept");
    assert_eq!(h["x-signature"][0], "sha256=abc");
    assert_eq!(h["user-agent"][0], "test-agent/1.0 Azure-Functions-Host/4.1037.0");
    assert_eq!(h["x-azure-functions-hostversion"][0], "4.1037.0");
    let invocation = h["x-azure-functions-invocationid"][0].as_str().unwrap();
    assert_eq!(invocation.len(), 36);
    assert!(h["host"][0].as_str().unwrap().ends_with(&host.port().to_string()));
    assert_eq!(body["body_len"], payload.len());
    let got = base64::engine::general_purpose::STANDARD.decode(body["body_b64"].as_str().unwrap()).unwrap();
    assert_eq!(got, payload, "raw bytes preserved");
}

#[tokio::test]
async fn a_chunked_body_arrives_empty() {
    let host = start(options()).await;
    let chunks: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>> = vec![
        Ok(hyper::body::Frame::data(bytes::Bytes::from_static(b"{\"part\":"))),
        Ok(hyper::body::Frame::data(bytes::Bytes::from_static(b"1}"))),
    ];
    let resp = client()
        .post(host.function_url("echo"))
        .header("x-functions-key", host.function_key())
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(futures::stream::iter(chunks))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["body_len"], 0);
    assert!(body["headers"].get("transfer-encoding").is_none());
}

#[tokio::test]
async fn handler_status_headers_and_redirects_pass_through_unchanged() {
    let host = start(options()).await;
    let c = client();
    let (status, body) = echo(&c, &host, "x_status=418").await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
    assert_eq!(body["method"], "POST");
    let resp = c
        .post(format!("{}?x_redirect=1", host.function_url("echo")))
        .header("x-functions-key", host.function_key())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND, "redirects are not followed");
    assert_eq!(resp.headers()["location"], "/elsewhere");
}

#[tokio::test]
async fn the_handler_gets_the_host_environment() {
    let host = start(options().env("MY_SETTING", "v1")).await;
    let (_, body) = echo(&client(), &host, "x_env=1").await;
    let env = &body["env"];
    let port = host.handler_port().unwrap().to_string();
    assert_eq!(env["FUNCTIONS_CUSTOMHANDLER_PORT"], port.as_str());
    assert_eq!(env["FUNCTIONS_HTTPWORKER_PORT"], port.as_str());
    assert_eq!(env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"], env["FUNCTIONS_HTTPWORKER_ID"]);
    assert_eq!(env["FUNCTIONS_APP_ROOT_PATH"], app_root().display().to_string());
    assert_eq!(env["MY_SETTING"], "v1");
    assert!(env.get("PATH").is_some());
    assert!(env.get("CARGO_MANIFEST_DIR").is_none(), "the environment is cleared");
    assert_eq!(body["cwd"], app_root().display().to_string());
}

#[tokio::test]
async fn logs_are_captured_with_host_levels() {
    let host = start(options()).await;
    assert!(host.wait_for_log(|l| l.stream == LogStream::Stdout && l.text.contains("listening"), LOG_WAIT).await);
    let c = client();
    echo(&c, &host, "x_stdout=hello%20out&x_stderr=boom%20error").await;
    assert!(host.wait_for_log(|l| l.text == "boom error", LOG_WAIT).await);
    let logs = host.logs();
    let find = |t: &str| logs.iter().find(|l| l.text.contains(t)).unwrap().clone();
    assert_eq!(find("listening").level, LogLevel::Information);
    let warn = find("test double");
    assert_eq!(warn.stream, LogStream::Stderr);
    assert_eq!(warn.level, LogLevel::Warning);
    assert_eq!(find("hello out").level, LogLevel::Information);
    assert_eq!(find("boom error").level, LogLevel::Error);
    assert!(logs.iter().all(|l| l.generation == 1));
}

#[tokio::test]
async fn restart_handler_answers_503_meanwhile() {
    // The new handler takes 3 s to listen, so the request below surely falls into the restart.
    let host = Arc::new(start(options().env("ECHO_STARTUP_DELAY_MS", "3000")).await);
    let c = client();
    let first_pid = host.handler_pid().unwrap();
    let restarting = {
        let host = host.clone();
        tokio::spawn(async move { host.restart_handler().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = c
        .post(host.function_url("echo"))
        .header("x-functions-key", host.function_key())
        .body("x")
        .send()
        .await
        .expect("the host keeps listening (no connection refused)");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    restarting.await.unwrap().expect("restart works");
    let second_pid = host.handler_pid().unwrap();
    assert_ne!(first_pid, second_pid);
    let (status, _) = echo(&c, &host, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(host.unexpected_exits().is_empty(), "a requested kill is not unexpected");
    assert!(host.logs().iter().any(|l| l.generation == 2));
}

#[tokio::test]
async fn graceful_stop_sends_sigterm() {
    let host = start(options()).await;
    let status = host.stop_handler_gracefully().await;
    assert!(status.success(), "{status}");
    assert!(host.logs().iter().any(|l| l.text.contains("SIGTERM received")));
    assert_eq!(host.handler_pid(), None);
    let (status, _) = echo(&client(), &host, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    host.shutdown().await;
}

#[tokio::test]
async fn an_unexpected_exit_is_reported() {
    let host = start(options()).await;
    let c = client();
    let resp = c
        .post(format!("{}?x_exit=5", host.function_url("echo")))
        .header("x-functions-key", host.function_key())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_server_error());
    for _ in 0..6_000 {
        if host.handler_exited().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exited = host.handler_exited().expect("the host noticed the handler's exit");
    assert_eq!(exited.code(), Some(5));
    assert_eq!(host.unexpected_exits().len(), 1);
    let (status, _) = echo(&c, &host, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_slow_handler_gets_a_502() {
    let host = start(HostOptions { request_timeout: Some(Duration::from_millis(300)), ..options() }).await;
    let (status, _) = echo(&client(), &host, "x_sleep_ms=3000").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn an_oversized_body_gets_a_413() {
    let host = start(options()).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", host.port())).await.unwrap();
    let req = format!(
        "POST /api/echo HTTP/1.1\r\nhost: 127.0.0.1\r\nx-functions-key: {}\r\n\
         content-length: 104857601\r\n\r\nabc",
        host.function_key()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf)).await.expect("an answer").unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

/// The host picks a free port and the handler binds it later: another process may take it in between. Then the host
/// starts the handler again on a new port (as the Functions host restarts a failed worker), and that failed start is
/// not an unexpected exit of a running handler.
#[tokio::test]
async fn a_port_taken_before_the_handler_binds_it_is_replaced_by_a_new_one() {
    let marker = std::env::temp_dir().join(format!("sandbox-port-taken-{}-{}", std::process::id(), rand_suffix()));
    let host = start(options().env("ECHO_PORT_TAKEN_ONCE", marker.to_str().unwrap())).await;
    assert!(marker.exists(), "the first handler found its port taken");
    let (status, _) = echo(&client(), &host, "").await;
    assert_eq!(status, StatusCode::OK, "the second handler, on a new port, serves");
    let logs = host.logs();
    assert!(
        logs.iter().any(|l| l.generation == 1 && l.text.contains("Address already in use")),
        "the first start failed on its port: {logs:?}"
    );
    assert!(logs.iter().any(|l| l.generation == 2 && l.text.contains("listening")), "{logs:?}");
    assert!(host.unexpected_exits().is_empty(), "a failed start is not an unexpected exit");
    let _ = std::fs::remove_file(&marker);
}

/// Ports handed out for children to bind are distinct and, on Linux, below the ephemeral range (where no `bind(0)`
/// and no outgoing connection can take them meanwhile).
#[test]
fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
    let ports: Vec<u16> = (0..200).map(|_| sandbox::free_port()).collect();
    let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").expect("Linux port range");
    let first_ephemeral: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    assert!(ports.iter().all(|p| *p < first_ephemeral), "{ports:?} vs ephemeral ports from {first_ephemeral}");
    for port in ports {
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "{port} is not free");
    }
}

#[tokio::test]
async fn a_handler_that_dies_at_start_fails_with_its_stderr() {
    let err = StandInHost::start(options().env("ECHO_FAIL_AT_START", "1")).await.unwrap_err();
    match &err {
        HostError::HandlerExited { status, stderr_tail } => {
            assert_eq!(status.code(), Some(3));
            assert!(stderr_tail.contains("fatal: ECHO_FAIL_AT_START"), "{stderr_tail}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("fatal"));
}

#[tokio::test]
async fn envelope_mode_is_refused_with_a_500() {
    let http_fn = r#"{"bindings":[
        {"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","methods":["post"]},
        {"type":"http","direction":"out","name":"res"}]}"#;
    let queue_fn = r#"{"bindings":[
        {"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous"},
        {"type":"http","direction":"out","name":"res"},
        {"type":"queue","direction":"out","name":"msg","queueName":"q"}]}"#;
    let forwarding = r#"{"version":"2.0","extensions":{"http":{"routePrefix":"api"}},
        "customHandler":{"description":{"defaultExecutablePath":"handler"},"enableForwardingHttpRequest":true}}"#;
    let dir = temp_app(forwarding, &[("plain", http_fn), ("with-queue", queue_fn)]);
    let host = start(HostOptions::new(&dir).executable(ECHO)).await;
    let c = client();
    let resp = c.post(host.function_url("plain")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "anonymous in-and-out is forwarded");
    let resp = c.post(host.function_url("with-queue")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(resp.text().await.unwrap().contains("envelope mode not supported"));
    drop(host);

    let envelope = r#"{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"}}}"#;
    let dir2 = temp_app(envelope, &[("plain", http_fn)]);
    let host = start(HostOptions::new(&dir2).executable(ECHO)).await;
    let resp = c.post(host.function_url("plain")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    drop(host);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}

#[tokio::test]
async fn bad_configuration_is_reported() {
    let bad_version = r#"{"version":"1.0","customHandler":{"description":{"defaultExecutablePath":"handler"}}}"#;
    let dir = temp_app(bad_version, &[]);
    let err = StandInHost::start(HostOptions::new(&dir).executable(ECHO)).await.unwrap_err();
    assert!(matches!(err, HostError::Config(_)), "{err}");

    let admin_route = r#"{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","route":"admin/x"},
        {"type":"http","direction":"out","name":"res"}]}"#;
    let ok_host = r#"{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"},"enableForwardingHttpRequest":true}}"#;
    let dir2 = temp_app(ok_host, &[("bad", admin_route)]);
    let err = StandInHost::start(HostOptions::new(&dir2).executable(ECHO)).await.unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");

    let err = StandInHost::start(HostOptions::new(dir2.join("missing"))).await.unwrap_err();
    assert!(matches!(err, HostError::Config(_)));
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}

#[tokio::test]
async fn the_home_page_answers_while_the_handler_runs() {
    let host = start(options()).await;
    let c = client();
    let resp = c.get(format!("{}/", host.url())).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    host.stop_handler_gracefully().await;
    let resp = c.get(format!("{}/", host.url())).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

// --- queue and timer triggers --------------------------------------------------------------------------------------

const QUEUE_HOST_JSON: &str = r#"{"version":"2.0",
    "extensionBundle":{"id":"Microsoft.Azure.Functions.ExtensionBundle","version":"[4.*, 5.0.0)"},
    "extensions":{"queues":{"maxPollingInterval":"00:00:10","visibilityTimeout":"00:01:00","batchSize":4,
        "newBatchThreshold":2,"maxDequeueCount":3}},
    "customHandler":{"description":{"defaultExecutablePath":"handler"},"enableForwardingHttpRequest":true}}"#;
const WORK_FN: &str = r#"{"bindings":[{"type":"queueTrigger","direction":"in","name":"item",
    "queueName":"work-items","connection":"AzureWebJobsStorage"}]}"#;
const TICK_FN: &str =
    r#"{"bindings":[{"type":"timerTrigger","name":"timer","schedule":"0 */5 * * * *","direction":"in"}]}"#;

/// Options for a host on `dir` against `azurite`, with a fast poll and a 1 s visibility timeout (host.json says
/// 10 s and 1 min: the overrides must win).
fn queue_options(dir: &Path, azurite: &sandbox::azurite::Azurite) -> HostOptions {
    HostOptions {
        queues: QueueOverrides {
            max_polling_interval: Some(Duration::from_millis(200)),
            visibility_timeout: Some(Duration::from_secs(1)),
            ..QueueOverrides::default()
        },
        ..HostOptions::new(dir).executable(ECHO).env("AzureWebJobsStorage", azurite.connection_string())
    }
}

/// The envelopes echo_handler received for `path`, in arrival order.
fn envelopes(host: &StandInHost, path: &str) -> Vec<Value> {
    let prefix = format!("envelope {path} ");
    host.logs()
        .iter()
        .filter_map(|l| l.text.strip_prefix(&prefix).map(|json| serde_json::from_str(json).expect("envelope JSON")))
        .collect()
}

fn of_message<'a>(invocations: &'a [Invocation], id: &str) -> Vec<&'a Invocation> {
    invocations.iter().filter(|i| i.message_id.as_deref() == Some(id)).collect()
}

#[tokio::test]
async fn a_queue_message_is_delivered_as_an_envelope_and_deleted_after_success() {
    let azurite = sandbox::azurite::Azurite::start().await.expect("Azurite (npm ci)");
    let dir = temp_app(QUEUE_HOST_JSON, &[("work", WORK_FN), ("tick", TICK_FN)]);
    let host = start(queue_options(&dir, &azurite)).await;
    let settings = host.queue_settings();
    assert_eq!((settings.batch_size, settings.new_batch_threshold, settings.max_dequeue_count), (4, 2, 3));
    assert_eq!(settings.visibility_timeout, Duration::from_secs(1), "the override wins over host.json");
    let names: Vec<String> = host.triggered_functions().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["tick", "work"]);

    let queue = azurite.queues().queue("work-items");
    queue.create_if_missing().await.unwrap();
    queue.put_base64(r#"{"job":1}"#).await.unwrap();
    assert!(host.wait_for_invocations(|all| !all.is_empty(), LOG_WAIT).await, "no invocation: {:?}", host.logs());
    let invocation = host.invocations()[0].clone();
    assert_eq!(invocation.function, "work");
    assert_eq!(invocation.reason, InvocationReason::QueueMessage);
    assert_eq!(invocation.outcome, Outcome::Succeeded);
    assert_eq!(invocation.disposition, Some(Disposition::Deleted));
    assert_eq!(invocation.dequeue_count, Some(1));
    assert_eq!(invocation.input, Value::String(r#"{"job":1}"#.into()), "base64-decoded, passed as a JSON string");
    assert!(queue.peek(32).await.unwrap().is_empty(), "deleted after the 2xx");

    let sent = envelopes(&host, "/work");
    assert_eq!(sent.len(), 1);
    let (data, meta) = (&sent[0]["Data"], &sent[0]["Metadata"]);
    assert_eq!(data, &serde_json::json!({"item": "{\"job\":1}"}));
    assert_eq!(meta["DequeueCount"], 1);
    assert_eq!(meta["Id"].as_str(), invocation.message_id.as_deref());
    assert!(!meta["PopReceipt"].as_str().unwrap().is_empty());
    for time in ["InsertionTime", "ExpirationTime", "NextVisibleTime"] {
        let t = meta[time].as_str().unwrap();
        assert!(t.len() == 25 && t.ends_with("+00:00"), "{time} {t}");
    }
    assert_eq!(meta["sys"]["MethodName"], "work");
    assert!(meta["sys"]["UtcNow"].as_str().unwrap().ends_with('Z'));
    assert_eq!(meta["sys"]["RandGuid"].as_str().unwrap().len(), 36);

    let id = &invocation.id;
    let logs = host.logs();
    let host_lines: Vec<&str> = logs.iter().filter(|l| l.stream == LogStream::Host).map(|l| l.text.as_str()).collect();
    assert!(
        host_lines.contains(
            &format!("Executing 'Functions.work' (Reason='New queue message detected on 'work-items'.', Id={id})")
                .as_str()
        ),
        "{host_lines:#?}"
    );
    assert!(host_lines.iter().any(|l| l.starts_with(&format!("Executed 'Functions.work' (Succeeded, Id={id}"))));
    assert!(host_lines.contains(&"echo handler: /work"), "the answer's Logs are logged: {host_lines:#?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failing_message_is_retried_with_a_growing_dequeue_count_then_moved_to_poison() {
    let azurite = sandbox::azurite::Azurite::start().await.expect("Azurite (npm ci)");
    let dir = temp_app(QUEUE_HOST_JSON, &[("work", WORK_FN)]);
    let host = start(queue_options(&dir, &azurite)).await;
    let queue = azurite.queues().queue("work-items");
    queue.create_if_missing().await.unwrap();
    queue.put_base64("fail-always").await.unwrap();
    queue.put_base64("fail-1 then fine").await.unwrap();
    let settled = |all: &[Invocation]| {
        all.iter().any(|i| i.disposition == Some(Disposition::Poisoned))
            && all.iter().any(|i| i.disposition == Some(Disposition::Deleted))
    };
    assert!(host.wait_for_invocations(settled, LOG_WAIT).await, "{:#?}", host.invocations());
    let all = host.invocations();
    let id_of =
        |text: &str| all.iter().find(|i| i.input == Value::String(text.into())).unwrap().message_id.clone().unwrap();

    let poisoned = of_message(&all, &id_of("fail-always"));
    let counts: Vec<Option<u32>> = poisoned.iter().map(|i| i.dequeue_count).collect();
    assert_eq!(counts, [Some(1), Some(2), Some(3)], "maxDequeueCount is 3");
    assert!(poisoned.iter().all(|i| matches!(i.outcome, Outcome::Failed(_))));
    let dispositions: Vec<Option<Disposition>> = poisoned.iter().map(|i| i.disposition).collect();
    assert_eq!(dispositions, [Some(Disposition::Released), Some(Disposition::Released), Some(Disposition::Poisoned)]);

    let recovered = of_message(&all, &id_of("fail-1 then fine"));
    assert_eq!(recovered.len(), 2, "{recovered:#?}");
    assert!(matches!(recovered[0].outcome, Outcome::Failed(_)));
    assert_eq!(recovered[0].disposition, Some(Disposition::Released));
    assert_eq!((recovered[1].dequeue_count, recovered[1].disposition), (Some(2), Some(Disposition::Deleted)));

    let in_poison = azurite.queues().queue("work-items-poison").peek(32).await.unwrap();
    assert_eq!(in_poison.len(), 1);
    assert_eq!(in_poison[0].decoded_text().as_deref(), Some("fail-always"), "copied as it was (base64)");
    assert!(queue.peek(32).await.unwrap().is_empty());
    assert!(host
        .logs()
        .iter()
        .any(|l| l.text == "Message has reached MaxDequeueCount of 3. Moving message to queue 'work-items-poison'."));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn message_encoding_decides_how_the_text_is_read() {
    let azurite = sandbox::azurite::Azurite::start().await.expect("Azurite (npm ci)");
    let dir = temp_app(QUEUE_HOST_JSON, &[("work", WORK_FN)]);
    // base64 (the default): a message that is not base64 fails without reaching the handler.
    let opts = queue_options(&dir, &azurite);
    let host =
        start(HostOptions { queues: QueueOverrides { max_dequeue_count: Some(1), ..opts.queues.clone() }, ..opts })
            .await;
    let queue = azurite.queues().queue("work-items");
    queue.create_if_missing().await.unwrap();
    queue.put("plain text!", None).await.unwrap();
    assert!(host.wait_for_invocations(|all| !all.is_empty(), LOG_WAIT).await);
    let first = host.invocations()[0].clone();
    assert!(matches!(&first.outcome, Outcome::Failed(why) if why.contains("base64")), "{first:?}");
    assert_eq!(first.disposition, Some(Disposition::Poisoned));
    assert!(envelopes(&host, "/work").is_empty(), "the handler never saw it");
    host.shutdown().await;

    // none: the text as it is.
    let opts = queue_options(&dir, &azurite);
    let raw = QueueOverrides { message_encoding: Some(MessageEncoding::None), ..opts.queues.clone() };
    let host = start(HostOptions { queues: raw, ..opts }).await;
    queue.put("plain text!", None).await.unwrap();
    assert!(host.wait_for_invocations(|all| !all.is_empty(), LOG_WAIT).await);
    assert_eq!(host.invocations()[0].input, Value::String("plain text!".into()));
    assert_eq!(host.invocations()[0].outcome, Outcome::Succeeded);
    let _ = std::fs::remove_dir_all(dir);
}

/// As the Functions host: a timer schedule named by an app setting (`%NAME%`) is that setting's value, and a
/// setting that is missing stops the host at start.
#[tokio::test]
async fn a_timer_schedule_from_a_missing_app_setting_stops_the_host() {
    let from_setting = r#"{"bindings":[{"type":"timerTrigger","name":"timer","schedule":"%TICK_SCHEDULE%"}]}"#;
    let dir = temp_app(QUEUE_HOST_JSON, &[("tick", from_setting)]);
    let Err(refused) = StandInHost::start(HostOptions::new(&dir).executable(ECHO)).await else {
        panic!("a timer whose schedule setting is missing started")
    };
    assert!(refused.to_string().contains("%TICK_SCHEDULE%"), "{refused}");
    let mut opts = HostOptions::new(&dir).executable(ECHO);
    opts.env.push(("TICK_SCHEDULE".into(), "0 */5 * * * *".into()));
    let host = start(opts).await;
    assert!(host.triggered_functions().iter().any(|f| f.name == "tick"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_admin_api_invokes_a_timer_function_with_the_master_key_only() {
    let dir = temp_app(QUEUE_HOST_JSON, &[("tick", TICK_FN), ("work", WORK_FN)]);
    // No AzureWebJobsStorage: the queue listener cannot start (logged), the timer still runs on demand.
    let host = start(HostOptions::new(&dir).executable(ECHO)).await;
    assert!(
        host.wait_for_log(|l| l.text.contains("'Functions.work' was unable to start"), LOG_WAIT).await,
        "{:#?}",
        host.logs()
    );
    let c = client();
    let url = format!("{}/admin/functions/tick", host.url());
    let body = r#"{"input":""}"#;
    let resp = c.post(&url).body(body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = c.post(&url).header("x-functions-key", host.function_key()).body(body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "a function key is not enough");
    let resp = c.post(format!("{}/admin/functions/nope", host.url())).header("x-functions-key", host.master_key());
    assert_eq!(resp.body(body).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert!(host.invocations().is_empty());

    let resp = c.post(&url).header("x-functions-key", host.master_key()).body(body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(host.wait_for_invocations(|all| !all.is_empty(), LOG_WAIT).await);
    let timer = host.invocations()[0].clone();
    assert_eq!((timer.function.as_str(), &timer.reason), ("tick", &InvocationReason::HostApi));
    assert_eq!(timer.outcome, Outcome::Succeeded);
    let sent = envelopes(&host, "/tick");
    assert_eq!(
        sent[0]["Data"]["timer"],
        serde_json::json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false})
    );
    assert_eq!(sent[0]["Metadata"]["sys"]["MethodName"], "tick");
    assert!(host.logs().iter().any(|l| l.text.starts_with(
        "Executing 'Functions.tick' (Reason='This function was programmatically called via the host APIs.'"
    )));

    // A queue function gets the input text; the handler's 500 fails it.
    let invocation = host.invoke("work", "fail-always").await.unwrap();
    assert_eq!(invocation.input, Value::String("fail-always".into()));
    assert!(matches!(invocation.outcome, Outcome::Failed(ref why) if why.contains("500")), "{invocation:?}");
    assert!(matches!(host.invoke("nope", "").await, Err(HostError::NoSuchFunction(_))));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_invocation_during_a_handler_restart_waits_for_the_new_handler() {
    // The new handler takes 3 s to listen, so the invocation below surely starts during the restart.
    let dir = temp_app(QUEUE_HOST_JSON, &[("tick", TICK_FN)]);
    let host = Arc::new(start(HostOptions::new(&dir).executable(ECHO).env("ECHO_STARTUP_DELAY_MS", "3000")).await);
    let restarting = {
        let host = host.clone();
        tokio::spawn(async move { host.restart_handler().await })
    };
    let deadline = std::time::Instant::now() + LOG_WAIT;
    while host.handler_pid().is_some() {
        assert!(std::time::Instant::now() < deadline, "the restart never began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let invocation = host.invoke("tick", "").await.unwrap();
    assert_eq!(invocation.outcome, Outcome::Succeeded, "held until the new handler was ready, not failed");
    restarting.await.unwrap().expect("restart works");
    // The handler's stderr is read on its own task: its line may land just after the answer.
    let seen = host.wait_for_log(|l| l.generation == 2 && l.text.starts_with("envelope /tick "), LOG_WAIT).await;
    assert!(seen, "{:#?}", host.logs());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn two_hosts_on_one_queue_process_each_message_exactly_once() {
    const N: usize = 24;
    let azurite = sandbox::azurite::Azurite::start().await.expect("Azurite (npm ci)");
    let dir = temp_app(QUEUE_HOST_JSON, &[("work", WORK_FN)]);
    let one = start(queue_options(&dir, &azurite)).await;
    let two = start(queue_options(&dir, &azurite)).await;
    let queue = azurite.queues().queue("work-items");
    queue.create_if_missing().await.unwrap();
    for i in 0..N {
        queue.put_base64(&format!("message {i}")).await.unwrap();
    }
    let done = || one.invocations().len() + two.invocations().len() >= N;
    let deadline = std::time::Instant::now() + LOG_WAIT;
    while !done() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all: Vec<Invocation> = one.invocations().into_iter().chain(two.invocations()).collect();
    let mut inputs: Vec<String> = all.iter().map(|i| i.input.as_str().unwrap().to_string()).collect();
    inputs.sort();
    let mut expected: Vec<String> = (0..N).map(|i| format!("message {i}")).collect();
    expected.sort();
    assert_eq!(inputs, expected, "each message exactly once across both hosts");
    assert!(all.iter().all(|i| i.outcome.succeeded() && i.disposition == Some(Disposition::Deleted)));
    let ids: std::collections::BTreeSet<&str> = all.iter().filter_map(|i| i.message_id.as_deref()).collect();
    assert_eq!(ids.len(), N);
    assert!(queue.peek(32).await.unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}
