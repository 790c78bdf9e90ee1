//! `handler --check`: validates the configuration and reaches each configured dependency once — Key Vault, Table
//! Storage, the Halo token and API, the ContraForce credentials — printing one pass/fail line for each. It changes
//! nothing: only reads. What an operator runs after deploying or rotating a secret.

use crate::app::App;
use crate::config::{Config, ConfigErrors};
use crate::directions;
use crate::keyvault::KeyVaultSecrets;
use crate::secrets::SecretId;
use crate::store::Key;
use crate::upstream::{Deadline, REQUEST_BUDGET};
use std::fmt::Write;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub ok: bool,
    pub what: String,
    pub detail: String,
}

impl Line {
    fn pass(what: impl Into<String>, detail: impl Into<String>) -> Line {
        Line { ok: true, what: what.into(), detail: detail.into() }
    }

    fn fail(what: impl Into<String>, detail: impl Into<String>) -> Line {
        Line { ok: false, what: what.into(), detail: detail.into() }
    }
}

/// The report of a configuration that stops the start: one line per invalid setting.
pub(crate) fn invalid_configuration(errors: &ConfigErrors) -> Vec<Line> {
    errors.0.iter().map(|e| Line::fail("configuration", e.to_string())).collect()
}

/// Runs every check that applies to this configuration.
pub async fn run(config: Config) -> Vec<Line> {
    let mut lines = Vec::new();
    let key_vault = config.key_vault.clone();
    let app = match App::new(config) {
        Ok(app) => app,
        Err(e) => return vec![Line::fail("configuration", e)],
    };
    if let Some(kv) = key_vault {
        match KeyVaultSecrets::new(&kv, &app.config, app.secrets.clone(), app.http.clone()) {
            Ok(reader) => {
                let read = reader.refresh_once().await;
                let expected = app.config.secrets.len();
                let line = if read == expected {
                    Line::pass("Key Vault", format!("{read} secrets read from {}", kv.vault_uri))
                } else {
                    let missing: Vec<String> = SecretId::ALL
                        .iter()
                        .filter_map(|id| app.secrets.current(*id).err().map(|p| p.to_string()))
                        .collect();
                    Line::fail("Key Vault", missing.join("; "))
                };
                lines.push(line);
            }
            Err(e) => lines.push(Line::fail("Key Vault", e)),
        }
    }
    for direction in directions::ALL {
        let what = format!("{} settings", direction.name());
        lines.push(match app.off(direction) {
            None => Line::pass(what, "complete"),
            Some(off) => Line::fail(what, off.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
        });
    }
    lines.push(check_storage(&app).await);
    lines.push(check_queue(&app).await);
    if let Some(halo) = &app.halo {
        let deadline = Deadline::after(REQUEST_BUDGET);
        match halo.tokens().token(deadline).await {
            Ok(_) => {
                lines.push(Line::pass("Halo token", "client credentials accepted"));
                lines.push(match halo.ticket(i64::from(i32::MAX), deadline).await {
                    Ok(_) => Line::pass("Halo API", "tickets can be read"),
                    Err(e) => Line::fail("Halo API", e.to_string()),
                });
            }
            Err(e) => lines.push(Line::fail("Halo token", e.to_string())),
        }
    }
    if let Some(cf) = &app.cf {
        lines.push(match cf.check_credentials(Deadline::after(REQUEST_BUDGET)).await {
            Ok(()) => Line::pass("ContraForce API", "service account accepted"),
            Err(e) => Line::fail("ContraForce API", e.to_string()),
        });
    }
    lines
}

async fn check_storage(app: &App) -> Line {
    let Some(store) = &app.store else {
        return Line::fail("Table Storage", "not configured");
    };
    let source = app.config.storage.ready().map(|s| s.source).unwrap_or_default();
    let probe = Key { partition: "check".into(), row: "check".into() };
    match store.table().get(&probe).await {
        Ok(_) => Line::pass("Table Storage", format!("state table reachable ({source})")),
        Err(e) => Line::fail("Table Storage", format!("{e} ({source})")),
    }
}

async fn check_queue(app: &App) -> Line {
    let Some(ledger) = &app.ledger else {
        return Line::fail("Work queue", "not configured");
    };
    let queue = crate::config::WORK_QUEUE;
    match ledger.probe_queue().await {
        Ok(Some(waiting)) => Line::pass("Work queue", format!("`{queue}` reachable, about {waiting} messages waiting")),
        Ok(None) => Line::pass(
            "Work queue",
            format!("`{queue}` reachable; it does not exist yet (the first queued item creates it)"),
        ),
        Err(e) => Line::fail("Work queue", format!("`{queue}`: {e}")),
    }
}

/// The report as a person reads it.
pub(crate) fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    for line in lines {
        let _ = writeln!(out, "{}  {}: {}", if line.ok { "PASS" } else { "FAIL" }, line.what, line.detail);
    }
    let failed = lines.iter().filter(|l| !l.ok).count();
    let _ = writeln!(out, "{} passed, {} failed", lines.len() - failed, failed);
    out
}
