//! Azurite starts, answers signed Table requests, pauses, and keeps data across restarts in
//! persistent mode. These tests FAIL (with the fix in the message) when Azurite is not
//! installed; they never pass silently.

use std::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Client, StatusCode};
use sandbox::azurite::{shared_key_lite, x_ms_date, Azurite, ACCOUNT_NAME};
use sandbox::queues::QueueError;

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
    let port = az.port();
    let qport = az.queue_port();
    assert_ne!(port, qport);
    assert_eq!(
        az.connection_string(),
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=\
             Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;\
             TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:{qport}/devstoreaccount1;"
        )
    );
    assert_eq!(az.queue_endpoint(), format!("http://127.0.0.1:{qport}/devstoreaccount1"));
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

const HIDDEN: Duration = Duration::from_secs(3600);

/// The queue service: put, get (hidden meanwhile, dequeue count counted), release, delete, peek.
#[tokio::test]
async fn in_memory_queue_service_works() -> TestResult {
    let az = Azurite::start().await?;
    assert!(az.queue_pid().is_some());
    let queue = az.queues().queue("jobs");
    assert!(matches!(queue.peek(1).await, Err(QueueError::Status { status: 404, .. })), "no queue yet");
    queue.create_if_missing().await?;
    queue.create_if_missing().await?;
    queue.put_base64("a <b> & c").await?;
    // Hidden for an hour: no slowness of this machine can make it visible again before the release below.
    let got = queue.get(32, HIDDEN).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].decoded_text().as_deref(), Some("a <b> & c"));
    assert_eq!(got[0].dequeue_count, 1);
    assert!(queue.get(32, HIDDEN).await?.is_empty(), "hidden while processed");
    queue.release(&got[0], Duration::ZERO).await?;
    let again = queue.get(32, Duration::from_secs(30)).await?;
    assert_eq!(again.len(), 1, "released: visible again");
    assert_eq!(again[0].id, got[0].id);
    assert_eq!(again[0].dequeue_count, 2);
    queue.delete(&again[0]).await?;
    assert!(queue.peek(32).await?.is_empty());

    az.pause();
    let paused = tokio::time::timeout(Duration::from_millis(500), queue.peek(1)).await;
    assert!(paused.is_err(), "a paused queue service answered");
    az.resume();
    assert!(queue.peek(1).await?.is_empty());
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
    let queue = az.queues().queue("kept");
    queue.create_if_missing().await?;
    queue.put("kept message", None).await?;
    az.stop().await;
    assert!(az.pid().is_none());
    assert!(az.queue_pid().is_none());
    let down = create_table(&c, &az, "down", REQUEST_TIMEOUT).await;
    assert!(down.is_err(), "a stopped emulator answered: {down:?}");
    az.start_again().await?;
    assert_eq!(az.port(), port);
    assert_eq!(create_table(&c, &az, "kept", t).await?, StatusCode::CONFLICT, "data kept");
    let kept = queue.peek(32).await?;
    assert_eq!(kept.len(), 1, "queue messages kept");
    assert_eq!(kept[0].text, "kept message");
    drop(az);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
