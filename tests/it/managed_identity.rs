//! Identity-based state storage, as deployed (`StateStorage__tableServiceUri` + `managedidentity` + a user-assigned
//! client id): bearer tokens from the App Service identity endpoint, over TLS to Azurite in OAuth mode.

use crate::fake_vault::{FakeVault, CLIENT_ID, IDENTITY_HEADER};
use crate::support::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA and a leaf certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=it-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// Azurite's table service over https with `--oauth basic`.
async fn azurite_oauth(dir: &Path, port: u16) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(sandbox::azurite::script_path())
        .args([
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--oauth",
            "basic",
            "--cert",
        ])
        .arg(dir.join("leaf.pem"))
        .arg("--key")
        .arg(dir.join("leaf.key"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("azurite-table");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("successfully started") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "Azurite (OAuth, https) started");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

#[tokio::test]
async fn state_storage_works_with_a_user_assigned_managed_identity_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let port = sandbox::free_port();
    let _azurite = azurite_oauth(dir.path(), port).await;
    let identity = FakeVault::start(&[]);
    let ca = dir.path().join("ca.pem").to_string_lossy().into_owned();
    let b = Bridge::start_with(|env| {
        env.retain(|(k, _)| k != "AzureWebJobsStorage");
        for (k, v) in [
            ("StateStorage__tableServiceUri", format!("https://127.0.0.1:{port}/devstoreaccount1")),
            ("StateStorage__credential", "managedidentity".into()),
            ("StateStorage__clientId", CLIENT_ID.into()),
            // The host's storage, identity-based as deployed: the work queue (not called on this happy path).
            ("AzureWebJobsStorage__queueServiceUri", format!("https://127.0.0.1:{port}/devstoreaccount1")),
            ("AzureWebJobsStorage__credential", "managedidentity".into()),
            ("AzureWebJobsStorage__clientId", CLIENT_ID.into()),
            ("IDENTITY_ENDPOINT", format!("{}/msi/token", identity.url)),
            ("IDENTITY_HEADER", IDENTITY_HEADER.into()),
            ("SSL_CERT_FILE", ca),
        ] {
            env.push((k.to_string(), v));
        }
    })
    .await;
    let first = b.send_cf("evt-mi-1", &incident("inc-mi", 80)).await;
    assert_eq!(first.body["status"], "created", "{first:?}");
    let again = b.send_cf("evt-mi-1", &incident("inc-mi", 80)).await;
    assert_eq!(again.body["status"], "duplicate", "state was written to and read from the OAuth table service");
    let storage_tokens: Vec<_> = identity
        .token_requests()
        .into_iter()
        .filter(|q| q.get("resource").map(String::as_str) == Some("https://storage.azure.com"))
        .collect();
    assert!(!storage_tokens.is_empty(), "a storage token was requested");
    assert!(storage_tokens.iter().all(|q| q.get("client_id").map(String::as_str) == Some(CLIENT_ID)));
    assert_eq!(storage_tokens.len(), 1, "the token is cached");
    b.assert_clean_logs();
}
