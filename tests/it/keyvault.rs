//! Secrets read directly from Key Vault with a user-assigned identity, refreshed, rotated without downtime
//! (README, *Secrets*).

use crate::fake_vault::{FakeVault, CLIENT_ID};
use crate::support::*;
use reqwest::StatusCode;
use std::time::Duration;

const CF_V1: &str = "kv-cf-webhook-secret-v1-4d8e";
const CF_V2: &str = "kv-cf-webhook-secret-v2-9b1f";
const HALO_V1: &str = "kv-halo-webhook-secret-v1-77aa";
const HALO_V2: &str = "kv-halo-webhook-secret-v2-c3d0";
const SECRET_SETTINGS: [&str; 5] = [
    "CF_WEBHOOK_SECRET",
    "HALO_CLIENT_SECRET",
    "HALO_WEBHOOK_SECRET",
    "CF_SERVICE_ACCOUNT_CLIENT_SECRET",
    "STATUS_PAGE_KEY",
];

fn vault_for(b_halo_secret: &str, cf_secret: &str) -> FakeVault {
    FakeVault::start(&[
        ("cf-webhook-secret", CF_V1),
        ("halo-client-secret", b_halo_secret),
        ("halo-webhook-secret", HALO_V1),
        ("cf-service-account-client-secret", cf_secret),
        ("status-page-key", STATUS_PAGE_KEY),
    ])
}

/// A bridge whose five secrets come only from the vault (the app settings hold none of them).
async fn bridge_on_vault(refresh: u64, grace: u64) -> (Bridge, FakeVault) {
    let halo_secret = sandbox::halo::HaloConfig::test().client_secret;
    let cf_secret = sandbox::cf::CfConfig::test().client_secret;
    let vault = vault_for(&halo_secret, &cf_secret);
    let settings = vault.settings(refresh, grace);
    let b = Bridge::start_with(|env| {
        env.retain(|(k, _)| !SECRET_SETTINGS.contains(&k.as_str()));
        env.extend(settings);
    })
    .await;
    (b, vault)
}

async fn signed(b: &Bridge, secret: &str, event_id: &str, incident_id: &str) -> Answer {
    let raw = serde_json::to_vec(&incident(incident_id, 500)).unwrap();
    b.send_cf_signed(secret, event_id, &raw, &[]).await
}

async fn halo_with(b: &Bridge, secret: &str) -> StatusCode {
    b.send_halo_with(&serde_json::json!({"event": "ping"}), &[("x-halo-secret", secret)]).await.status
}

#[tokio::test]
async fn secrets_are_read_at_start_with_the_user_assigned_identity() {
    let (b, vault) = bridge_on_vault(300, 60).await;
    let a = signed(&b, CF_V1, "evt-kv-1", "inc-kv-1").await;
    assert_eq!(a.body["status"], "created", "{a:?}");
    assert_eq!(halo_with(&b, HALO_V1).await, StatusCode::OK);
    let token_requests = vault.token_requests();
    assert!(!token_requests.is_empty());
    assert!(
        token_requests.iter().all(|q| q.get("client_id").map(String::as_str) == Some(CLIENT_ID)),
        "{token_requests:?}"
    );
    assert_eq!(vault.secret_reads(), 5, "each secret read once at start; requests never wait on Key Vault");
    b.assert_not_logged(&[CF_V1, HALO_V1, "it-vault-token"]);
    b.assert_clean_logs();
}

#[tokio::test]
async fn a_rotation_keeps_the_old_webhook_secrets_for_the_grace_window_only() {
    // The grace window is long enough for the checks inside it to finish on a loaded machine (they are not a speed
    // test), and the checks after it wait until it has surely ended.
    const GRACE: Duration = Duration::from_secs(20);
    let (b, vault) = bridge_on_vault(1, GRACE.as_secs()).await;
    vault.set("cf-webhook-secret", CF_V2);
    vault.set("halo-webhook-secret", HALO_V2);
    let rotated_log = |name: &'static str| {
        move |l: &sandbox::host::LogLine| l.text.contains(name) && l.text.contains("secret rotated")
    };
    let rotated = b.host.wait_for_log(rotated_log("CF_WEBHOOK_SECRET"), Duration::from_secs(120)).await
        && b.host.wait_for_log(rotated_log("HALO_WEBHOOK_SECRET"), Duration::from_secs(120)).await;
    assert!(rotated, "the refresh picked up the new values");
    // Both windows started before their log lines, so both have ended by then.
    let windows_over = tokio::time::Instant::now() + GRACE + Duration::from_secs(1);
    // Inside the grace window both values work, and the old one is logged as such.
    let inside = signed(&b, CF_V1, "evt-rot-1", "inc-rot-1").await;
    assert_eq!(inside.body["status"], "created", "{inside:?}");
    assert_eq!(signed(&b, CF_V2, "evt-rot-2", "inc-rot-2").await.body["status"], "created");
    assert_eq!(halo_with(&b, HALO_V1).await, StatusCode::OK);
    assert_eq!(halo_with(&b, HALO_V2).await, StatusCode::OK);
    b.logged("signature matched the previous CF webhook secret").await;
    b.logged("Halo webhook authenticated with the previous secret").await;
    // After it, only the new values.
    tokio::time::sleep_until(windows_over).await;
    assert_eq!(signed(&b, CF_V1, "evt-rot-3", "inc-rot-3").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(halo_with(&b, HALO_V1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(signed(&b, CF_V2, "evt-rot-4", "inc-rot-4").await.body["status"], "created");
    assert_eq!(halo_with(&b, HALO_V2).await, StatusCode::OK);
    b.assert_not_logged(&[CF_V1, CF_V2, HALO_V1, HALO_V2]);
}

#[tokio::test]
async fn key_vault_down_keeps_the_last_good_values_and_no_request_fails() {
    let (b, vault) = bridge_on_vault(1, 60).await;
    vault.set_down(true);
    let failed = b.host.wait_for_log(|l| l.text.contains("Key Vault read failed"), Duration::from_secs(120)).await;
    assert!(failed, "the refresh noticed");
    for n in 0..3 {
        let a = signed(&b, CF_V1, &format!("evt-down-{n}"), &format!("inc-down-{n}")).await;
        assert_eq!(a.body["status"], "created", "{a:?}");
        assert_eq!(halo_with(&b, HALO_V1).await, StatusCode::OK);
    }
    b.logged("keeping_last_good_value=true").await;
    b.assert_not_logged(&[CF_V1, HALO_V1]);
}

#[tokio::test]
async fn a_secret_missing_from_the_vault_turns_only_its_direction_off_naming_it() {
    // A vault that lacks the Halo webhook secret.
    let halo_secret = sandbox::halo::HaloConfig::test().client_secret;
    let cf_secret = sandbox::cf::CfConfig::test().client_secret;
    let partial = FakeVault::start(&[
        ("cf-webhook-secret", CF_V1),
        ("halo-client-secret", &halo_secret),
        ("cf-service-account-client-secret", &cf_secret),
    ]);
    let settings = partial.settings(300, 60);
    let b = Bridge::start_with(|env| {
        env.retain(|(k, _)| !SECRET_SETTINGS.contains(&k.as_str()));
        env.extend(settings);
    })
    .await;
    let a = b.send_halo_with(&serde_json::json!({"object_id": 1}), &[("x-halo-secret", HALO_V1)]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let problem = a.body["problems"][0].as_str().unwrap();
    assert!(problem.contains("HALO_WEBHOOK_SECRET") && problem.contains("halo-webhook-secret"), "{problem}");
    assert_eq!(signed(&b, CF_V1, "evt-partial", "inc-partial-kv").await.body["status"], "created");
}
