//! A tiny custom handler for testing the stand-in host.
//!
//! Listens on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT. `GET /` answers 200 "ready"; every other
//! request is echoed as JSON: method, path, query, headers, body length and body (base64).
//! Query switches (read from the raw query): `x_status=N` answers that status,
//! `x_sleep_ms=N` sleeps first, `x_redirect=1` answers 302, `x_stdout=TEXT` / `x_stderr=TEXT`
//! print a line, `x_env=1` adds the environment, `x_exit=N` exits the process at once.
//! Environment: `ECHO_FAIL_AT_START=1` prints to stderr and exits 3 before listening;
//! `ECHO_STARTUP_DELAY_MS=N` waits before listening; `ECHO_PORT_TAKEN_ONCE=<file>`: when the file does not exist, it
//! creates it and holds its own port before binding it, so the bind fails as if another process had taken the port
//! (the next start, with the file present, is normal). SIGTERM stops it gracefully (exit 0).
//!
//! An invocation envelope (a JSON `POST` whose body has `Data`) is printed on stdout as one line
//! `envelope <path> <body>` and answered `{"Outputs":{},"Logs":["echo handler: <path>"],"ReturnValue":null}`, unless
//! the trigger's text asks otherwise: `fail-always` answers 500; `fail-N` (e.g. `fail-2 rest`) answers 500 while
//! `Metadata.DequeueCount` is at most N; `not-json` answers 200 with a text body.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

fn param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

async fn echo(
    method: Method,
    path: warp::path::FullPath,
    query: String,
    headers: HeaderMap,
    body: Bytes,
) -> warp::reply::Response {
    let path = path.as_str().to_string();
    if method == Method::GET && path == "/" {
        return warp::reply::Response::new("ready".into());
    }
    if method == Method::POST {
        if let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(&body) {
            if envelope.get("Data").is_some_and(serde_json::Value::is_object) {
                return answer_envelope(&path, &envelope);
            }
        }
    }
    if let Some(code) = param(&query, "x_exit").and_then(|v| v.parse::<i32>().ok()) {
        eprintln!("echo handler: exiting with {code} as asked");
        std::process::exit(code);
    }
    if let Some(ms) = param(&query, "x_sleep_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(text) = param(&query, "x_stdout") {
        println!("{text}");
    }
    if let Some(text) = param(&query, "x_stderr") {
        eprintln!("{text}");
    }
    if param(&query, "x_redirect").is_some() {
        let mut r = warp::reply::Response::new("moved".into());
        *r.status_mut() = StatusCode::FOUND;
        r.headers_mut().insert("location", warp::http::HeaderValue::from_static("/elsewhere"));
        return r;
    }
    let mut header_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &headers {
        header_map.entry(k.as_str().to_string()).or_default().push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let mut doc = serde_json::json!({
        "method": method.as_str(),
        "path": path,
        "query": query,
        "headers": header_map,
        "body_len": body.len(),
        "body_b64": base64::engine::general_purpose::STANDARD.encode(&body),
    });
    if param(&query, "x_env").is_some() {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        doc["env"] = serde_json::json!(env);
        doc["cwd"] = serde_json::json!(std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default());
    }
    let status = param(&query, "x_status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let mut r = warp::reply::Response::new(serde_json::to_vec(&doc).unwrap_or_default().into());
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("application/json"));
    r.headers_mut().insert("x-echo", warp::http::HeaderValue::from_static("1"));
    r
}

/// Answers an invocation envelope as its trigger text asks (see the module docs).
fn answer_envelope(path: &str, envelope: &serde_json::Value) -> warp::reply::Response {
    println!("envelope {path} {envelope}");
    let text: String = envelope["Data"]
        .as_object()
        .map(|d| d.values().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect())
        .unwrap_or_default();
    let dequeue_count = envelope["Metadata"]["DequeueCount"].as_u64().unwrap_or(0);
    let fail_first = text.split_whitespace().find_map(|word| word.strip_prefix("fail-")).map(|n| {
        if n == "always" {
            u64::MAX
        } else {
            n.parse().unwrap_or(0)
        }
    });
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut r = warp::reply::Response::new(body.into());
        *r.status_mut() = status;
        r.headers_mut().insert("content-type", warp::http::HeaderValue::from_static(content_type));
        r
    };
    if fail_first.is_some_and(|n| dequeue_count <= n) {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "application/json", r#"{"error":"asked to fail"}"#.into());
    }
    if text.split_whitespace().any(|w| w == "not-json") {
        return reply(StatusCode::OK, "text/plain", "done".into());
    }
    let answer = serde_json::json!({"Outputs": {}, "Logs": [format!("echo handler: {path}")], "ReturnValue": null});
    reply(StatusCode::OK, "application/json", answer.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::var("ECHO_FAIL_AT_START").is_ok_and(|v| v == "1") {
        eprintln!("fatal: ECHO_FAIL_AT_START is set, refusing to start");
        std::process::exit(3);
    }
    if let Some(ms) = std::env::var("ECHO_STARTUP_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let port: u16 = match std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT").ok().and_then(|v| v.parse().ok()) {
        Some(p) => p,
        None => {
            eprintln!("fatal: FUNCTIONS_CUSTOMHANDLER_PORT is not set");
            std::process::exit(2);
        }
    };
    let routes = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(echo);
    let _taken = std::env::var_os("ECHO_PORT_TAKEN_ONCE").filter(|marker| !std::path::Path::new(marker).exists()).map(
        |marker| {
            std::fs::write(&marker, b"taken once").expect("ECHO_PORT_TAKEN_ONCE file");
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("holding the port")
        },
    );
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fatal: cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(2);
        }
    };
    println!("echo handler listening on 127.0.0.1:{port}");
    eprintln!("warning: echo handler is a test double");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
    warp::serve(routes)
        .incoming(listener)
        .graceful(async move {
            term.recv().await;
            println!("echo handler: SIGTERM received, shutting down");
        })
        .run()
        .await;
    println!("echo handler: stopped");
}
