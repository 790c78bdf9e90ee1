//! Azurite starts, answers signed Table requests, pauses, and keeps data across restarts in
//! persistent mode. These tests FAIL (with the fix in the message) when Azurite is not
//! installed; they never pass silently.

use std::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Client, StatusCode};
use sandbox::azurite::{shared_key_lite, x_ms_date, Azurite, ACCOUNT_NAME};

type TestResult = Result<(), Box<dyn Error>>;

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

/// `POST /Tables` signed with SharedKeyLite; returns the status.
/// A bound on one request, so that an emulator that never answers fails the test (generous: a loaded machine is slow).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn create_table(c: &Client, az: &Azurite, name: &str, timeout: Duration) -> reqwest::Result<StatusCode> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let date = x_ms_date(secs);
    // Path-style emulator URLs put the account in the path, so it appears twice.
    let authorization = shared_key_lite(&date, &format!("/{ACCOUNT_NAME}/{ACCOUNT_NAME}/Tables"));
    let resp = c
        .post(format!("{}/Tables", az.table_endpoint()))
        .timeout(timeout)
        .header("x-ms-date", &date)
        .header("x-ms-version", "2019-02-02")
        .header("accept", "application/json;odata=nometadata")
        .header("content-type", "application/json")
        .header("dataserviceversion", "3.0;NetFx")
        .header("prefer", "return-no-content")
        .header("authorization", authorization)
        .body(format!("{{\"TableName\":\"{name}\"}}"))
        .send()
        .await?;
    Ok(resp.status())
}

#[tokio::test]
async fn in_memory_table_service_works() -> TestResult {
    let az = Azurite::start().await?;
    let (port, queue_port) = (az.port(), az.queue_port());
    assert_ne!(port, queue_port);
    assert_eq!(
        az.connection_string(),
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=\
             Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;\
             TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;\
             QueueEndpoint=http://127.0.0.1:{queue_port}/devstoreaccount1;"
        )
    );
    assert!(az.output().iter().any(|l| l.contains("successfully started")));
    let c = client();
    let t = REQUEST_TIMEOUT;
    assert_eq!(create_table(&c, &az, "dedupe", t).await?, StatusCode::NO_CONTENT);
    assert_eq!(create_table(&c, &az, "dedupe", t).await?, StatusCode::CONFLICT);
    // Unsigned requests are refused.
    let resp = c.get(format!("{}/Tables", az.table_endpoint())).send().await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // A paused emulator hangs; resumed it answers again.
    az.pause();
    let err = create_table(&c, &az, "paused", Duration::from_millis(500)).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    az.resume();
    assert_eq!(create_table(&c, &az, "resumed", t).await?, StatusCode::NO_CONTENT);
    Ok(())
}

#[tokio::test]
async fn persistent_mode_survives_a_restart_on_the_same_port() -> TestResult {
    let dir = std::env::temp_dir().join(format!("sandbox-azurite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut az = Azurite::start_persistent(&dir).await?;
    let port = az.port();
    let c = client();
    let t = REQUEST_TIMEOUT;
    assert_eq!(create_table(&c, &az, "kept", t).await?, StatusCode::NO_CONTENT);
    az.stop().await;
    assert!(az.pid().is_none());
    let down = create_table(&c, &az, "down", REQUEST_TIMEOUT).await;
    assert!(down.is_err(), "a stopped emulator answered: {down:?}");
    az.start_again().await?;
    assert_eq!(az.port(), port);
    assert_eq!(create_table(&c, &az, "kept", t).await?, StatusCode::CONFLICT, "data kept");
    drop(az);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
