//! The reference point: a bare warp server that only verifies the HMAC and parses the JSON, run by re-executing
//! this bench binary with `BENCH_BASELINE=1` (so it is measured exactly like the handler).

use bytes::Bytes;
use cf_halo_bridge::cf::signature::{self, SignatureHeaders};
use std::time::Duration;
use warp::http::{HeaderMap, StatusCode};
use warp::Filter;

pub const ENV: &str = "BENCH_BASELINE";

/// Serves on `FUNCTIONS_CUSTOMHANDLER_PORT` when this process is the baseline; returns false otherwise.
pub fn serve_if_asked() -> bool {
    if std::env::var(ENV).as_deref() != Ok("1") {
        return false;
    }
    let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(7071);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let ready = warp::path::end().and(warp::get()).map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));
        let cf = warp::path!("api" / "cf-webhook")
            .and(warp::post())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(|headers: HeaderMap, body: Bytes| {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                let signed = SignatureHeaders { signature: h("x-cf-signature"), timestamp: h("x-cf-timestamp") };
                let secret = crate::common::CF_SECRET.as_bytes();
                let now = cf_halo_bridge::domain::unix_now();
                if signature::verify(&[secret], signed, &body, now, Duration::from_secs(300)).is_err() {
                    return warp::reply::with_status(warp::reply::json(&"invalid signature"), StatusCode::UNAUTHORIZED);
                }
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(_) => warp::reply::with_status(
                        warp::reply::json(&serde_json::json!({"status": "test"})),
                        StatusCode::OK,
                    ),
                    Err(_) => warp::reply::with_status(warp::reply::json(&"bad json"), StatusCode::BAD_REQUEST),
                }
            });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        warp::serve(ready.or(cf)).incoming(listener).run().await;
    });
    true
}
