//! The deployable package: `scripts/package` builds `dist/app.zip`; the packaged app starts under the
//! stand-in host exactly as Azure would start it from the zip, and answers a signed test delivery.

use crate::support::*;
use reqwest::StatusCode;
use sandbox::host::{HostOptions, StandInHost};
use std::process::Command;

fn build_package() -> std::path::PathBuf {
    let status = Command::new(repo_root().join("scripts/package"))
        .current_dir(repo_root())
        .status()
        .expect("scripts/package runs");
    assert!(status.success(), "scripts/package failed");
    repo_root().join("dist/app.zip")
}

/// Unzips with Python's zipfile (as a deployment would, the bits are then restored from the zip's external
/// attributes — which zipfile's extractall does not do, so the test restores them from the archive itself).
fn unzip(zip: &std::path::Path, into: &std::path::Path) -> Vec<(String, u32)> {
    let script = r#"
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
for info in z.infolist():
    z.extract(info, sys.argv[2])
    mode = (info.external_attr >> 16) & 0o777
    os.chmod(os.path.join(sys.argv[2], info.filename), mode)
    print(f"{info.filename} {mode:o}")
"#;
    let out = Command::new("python3").args(["-c", script]).arg(zip).arg(into).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (name, mode) = l.rsplit_once(' ').unwrap();
            (name.to_string(), u32::from_str_radix(mode, 8).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn the_packaged_app_starts_under_the_host_and_answers_a_signed_test_delivery() {
    let zip = tokio::task::spawn_blocking(build_package).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut entries = unzip(&zip, dir.path());
    entries.sort();
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "cf-webhook/function.json",
            "dead-letters/function.json",
            "halo-webhook/function.json",
            "handler",
            "host.json",
            "housekeeping/function.json",
            "reconcile/function.json",
            "status/function.json",
            "work-items/function.json"
        ]
    );
    let handler_mode = entries.iter().find(|(n, _)| n == "handler").unwrap().1;
    assert_eq!(handler_mode & 0o111, 0o111, "handler keeps its execute bit");

    // Started from the unzipped folder by host.json's defaultExecutablePath, as on Flex Consumption.
    let azurite = sandbox::azurite::Azurite::start().await.unwrap();
    let halo = sandbox::halo::FakeHalo::start(sandbox::halo::HaloConfig::test());
    let cf = sandbox::cf::FakeCf::start(sandbox::cf::CfConfig::test());
    let mut options = HostOptions::new(dir.path());
    options.env = base_env(&halo, &cf, &azurite);
    let host = StandInHost::start(options).await.expect("the packaged handler starts");
    assert_eq!(host.executable(), dir.path().join("handler"));

    let raw = br#"{"type":"incident.created.v1","isTest":true}"#;
    let ts = unix_now();
    let answer = reqwest::Client::new()
        .post(host.function_url("cf-webhook"))
        .header("x-functions-key", host.function_key())
        .header("content-type", "application/json")
        .header("x-cf-event-id", "evt-package")
        .header("x-cf-timestamp", ts.to_string())
        .header("x-cf-signature", cf_halo_bridge::cf::signature::sign(CF_SECRET.as_bytes(), ts, raw))
        .header("x-cf-schema", "incident.created.v1")
        .header("x-cf-test", "true")
        .body(raw.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"status": "test"}));
    assert_eq!(halo.requests().len(), 0, "a test delivery touches nothing");
    host.shutdown().await;
}
