//! One TLS trust configuration for every outgoing client (README, `SSL_CERT_FILE`): the platform roots plus the
//! file's authorities, for Halo, ContraForce, Table Storage, Key Vault and the managed-identity endpoint alike.
//! Each upstream is put behind its own TLS proxy (`sandbox::tls`) with a certificate authority made here.

use crate::check::{check, line};
use crate::fake_vault::FakeVault;
use crate::support::*;
use sandbox::azurite::Azurite;
use sandbox::cf::{CfConfig, FakeCf};
use sandbox::halo::{FakeHalo, HaloConfig, NewAction};
use sandbox::tls::{TestCa, TlsProxy};
use serde_json::json;
use std::path::Path;

/// A part of the bridge that calls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Halo,
    ContraForce,
    TableStorage,
    KeyVault,
    IdentityEndpoint,
}

impl Part {
    const ALL: [Part; 5] = [Part::Halo, Part::ContraForce, Part::TableStorage, Part::KeyVault, Part::IdentityEndpoint];

    /// The settings that carry its address.
    fn settings(self) -> &'static [&'static str] {
        match self {
            Part::Halo => &["HALO_AUTH_URL", "HALO_API_BASE_URL"],
            Part::ContraForce => &["CF_API_BASE_URL"],
            Part::TableStorage => &["AzureWebJobsStorage"],
            Part::KeyVault => &["KEY_VAULT_URI"],
            Part::IdentityEndpoint => &["IDENTITY_ENDPOINT"],
        }
    }

    /// The `--check` line that shows whether it works.
    fn check_line(self) -> &'static str {
        match self {
            Part::Halo => "Halo token",
            Part::ContraForce => "ContraForce API",
            Part::TableStorage => "Table Storage",
            Part::KeyVault | Part::IdentityEndpoint => "Key Vault",
        }
    }

    /// What that line names when this part refused the server's certificate.
    fn refused(self) -> &'static str {
        match self {
            Part::Halo => "Halo token could not be reached",
            Part::ContraForce => "ContraForce API could not be reached",
            Part::TableStorage => "Table Storage is unavailable",
            Part::KeyVault => "Key Vault could not be reached",
            Part::IdentityEndpoint => "managed identity endpoint could not be reached",
        }
    }
}

/// Settings whose `http://127.0.0.1:<port>` addresses now point at TLS proxies, and the proxies by part.
struct OverTls {
    env: Vec<(String, String)>,
    proxies: Vec<(Part, TlsProxy)>,
}

impl OverTls {
    /// Puts every part behind a proxy with `ca`'s certificate, except `odd` (behind one with `other`'s).
    fn wrap(mut env: Vec<(String, String)>, ca: &TestCa, other: &TestCa, odd: Option<Part>) -> OverTls {
        let mut proxies = Vec::new();
        for part in Part::ALL {
            let ca = if odd == Some(part) { other } else { ca };
            for (_, value) in env.iter_mut().filter(|(k, _)| part.settings().contains(&k.as_str())) {
                let start = value.find("http://127.0.0.1:").expect("a loopback http address") + "http://".len();
                let authority = &value[start..];
                let end = authority.find(['/', ';']).unwrap_or(authority.len());
                let port: u16 = authority["127.0.0.1:".len()..end].parse().unwrap();
                let proxy = TlsProxy::start(ca, port);
                *value = value.replace(&format!("http://127.0.0.1:{port}"), &proxy.url());
                proxies.push((part, proxy));
            }
        }
        OverTls { env, proxies }
    }

    fn handshakes(&self, part: Part) -> u64 {
        self.proxies.iter().filter(|(p, _)| *p == part).map(|(_, proxy)| proxy.handshakes()).sum()
    }
}

/// A vault holding the five secrets the fakes (and the status page) expect.
fn vault() -> FakeVault {
    FakeVault::start(&[
        ("cf-webhook-secret", CF_SECRET),
        ("halo-client-secret", &HaloConfig::test().client_secret),
        ("halo-webhook-secret", HALO_WEBHOOK_SECRET),
        ("cf-service-account-client-secret", &CfConfig::test().client_secret),
        ("status-page-key", STATUS_PAGE_KEY),
    ])
}

/// `env` reading its five secrets from `vault` instead of the app settings.
fn on_vault(env: &mut Vec<(String, String)>, vault: &FakeVault) {
    let secrets = [
        "CF_WEBHOOK_SECRET",
        "HALO_CLIENT_SECRET",
        "HALO_WEBHOOK_SECRET",
        "CF_SERVICE_ACCOUNT_CLIENT_SECRET",
        "STATUS_PAGE_KEY",
    ];
    env.retain(|(k, _)| !secrets.contains(&k.as_str()));
    env.extend(vault.settings(300, 60));
}

fn trusting(mut env: Vec<(String, String)>, ca_file: &Path) -> Vec<(String, String)> {
    env.push(("SSL_CERT_FILE".into(), ca_file.to_string_lossy().into_owned()));
    env
}

#[tokio::test]
async fn every_client_works_over_https_trusting_the_ca_in_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("it-trusted-ca");
    let ca_file = ca.write_pem(dir.path());
    let vault = vault();
    let mut tls = None;
    let b = Bridge::start_with(|env| {
        on_vault(env, &vault);
        let wrapped = OverTls::wrap(trusting(env.clone(), &ca_file), &ca, &ca, None);
        *env = wrapped.env.clone();
        tls = Some(wrapped);
    })
    .await;
    let tls = tls.unwrap();
    // cf-webhook: Key Vault (with its token) at start, then Table Storage and Halo.
    let created = b.send_cf("evt-tls-1", &incident("inc-tls", 90)).await;
    assert_eq!(created.body["status"], "created", "{created:?}");
    // halo-webhook: Halo, Table Storage and ContraForce.
    let ticket = created.body["ticketId"].as_i64().unwrap();
    b.halo.add_action(ticket, NewAction::human("Sam Agent", 2, "seen over TLS", false));
    let synced = b.send_halo(&Bridge::halo_payload(ticket)).await;
    assert_eq!(
        (&synced.body["status"], &synced.body["actionsForwarded"]),
        (&json!("processed"), &json!(1)),
        "{synced:?}"
    );
    assert_eq!(b.cf.comments("inc-tls").len(), 1);
    // `--check` with the same settings: every part answers.
    let (ok, report) = check(&tls.env).await;
    assert!(ok, "{report}");
    for part in Part::ALL {
        assert!(line(&report, part.check_line()).starts_with("PASS"), "{part:?}:\n{report}");
        assert!(tls.handshakes(part) > 0, "{part:?} was reached over TLS");
    }
    assert!(line(&report, "Key Vault").contains("5 secrets read"), "{report}");
    b.assert_clean_logs();
}

#[tokio::test]
async fn a_client_meeting_an_unknown_ca_refuses_it_and_the_check_names_that_part() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, unknown) = (TestCa::new("it-trusted-ca"), TestCa::new("it-unknown-ca"));
    let ca_file = ca.write_pem(dir.path());
    let azurite = Azurite::start().await.expect("Azurite (run `npm ci` first)");
    let (halo, cf, vault) = (FakeHalo::start(HaloConfig::test()), FakeCf::start(CfConfig::test()), vault());
    let mut base = base_env(&halo, &cf, &azurite);
    on_vault(&mut base, &vault);
    for odd in Part::ALL {
        let tls = OverTls::wrap(trusting(base.clone(), &ca_file), &ca, &unknown, Some(odd));
        let (ok, report) = check(&tls.env).await;
        assert!(!ok, "{odd:?}: a red line means a non-zero exit\n{report}");
        let refused = line(&report, odd.check_line());
        assert!(refused.starts_with("FAIL") && refused.contains(odd.refused()), "{odd:?}:\n{report}");
        assert!(refused.contains("certificate"), "{odd:?}: the cause is named\n{report}");
        assert_eq!(tls.handshakes(odd), 0, "{odd:?} never completed a handshake with an unknown CA");
        // Every other part still reaches its upstream. Without Key Vault there are no secrets, so then only Table
        // Storage can be tried.
        let others: Vec<Part> = match odd {
            Part::KeyVault | Part::IdentityEndpoint => vec![Part::TableStorage],
            _ => Part::ALL.into_iter().filter(|p| *p != odd).collect(),
        };
        for part in others {
            assert!(line(&report, part.check_line()).starts_with("PASS"), "{odd:?} refused, {part:?}:\n{report}");
        }
        assert!(!report.contains(CF_SECRET) && !report.contains(HALO_WEBHOOK_SECRET), "no secret printed");
    }
    // Without SSL_CERT_FILE nothing trusts the test CA (secrets from the settings, so each part is tried).
    let plain = base_env(&halo, &cf, &azurite);
    let tls = OverTls::wrap(plain, &ca, &ca, None);
    let (ok, report) = check(&tls.env).await;
    assert!(!ok, "{report}");
    for part in [Part::Halo, Part::ContraForce, Part::TableStorage] {
        let refused = line(&report, part.check_line());
        assert!(refused.starts_with("FAIL") && refused.contains(part.refused()), "{part:?}:\n{report}");
        assert!(refused.contains("certificate"), "{part:?}:\n{report}");
        assert_eq!(tls.handshakes(part), 0, "{part:?}");
    }
}
