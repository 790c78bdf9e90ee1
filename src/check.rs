//! `handler --check`: validates the configuration and reaches each configured dependency once — Key Vault, Table
//! Storage, the Halo token and API, the ContraForce credentials — printing one pass/fail line for each. It changes
//! nothing: only reads. What an operator runs after deploying or rotating a secret.

use crate::app::App;
use crate::config::{Config, ConfigErrors};
use crate::directions;
use crate::domain::RefLocation;
use crate::halo::client::{HaloClient, Listing};
use crate::keyvault::KeyVaultSecrets;
use crate::secrets::SecretId;
use crate::settings as names;
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
                // The status page's key is optional: without it the page is off (its own line below).
                let missing: Vec<String> = SecretId::ALL
                    .iter()
                    .filter(|id| **id != SecretId::StatusPage)
                    .filter_map(|id| app.secrets.current(*id).err().map(|p| p.to_string()))
                    .collect();
                let line = if missing.is_empty() {
                    Line::pass("Key Vault", format!("{read} secrets read from {}", kv.vault_uri))
                } else {
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
    lines.push(match app.secrets.current(SecretId::StatusPage) {
        Ok(_) => Line::pass("Status page", "on: GET /api/status with STATUS_PAGE_KEY"),
        Err(why) => Line::pass("Status page", format!("off (optional): {why}")),
    });
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
                for (kind, wanted) in configured_ids(&app.config) {
                    lines.push(check_ids(halo, kind, &wanted, deadline).await);
                }
            }
            Err(e) => lines.push(Line::fail("Halo token", e.to_string())),
        }
    }
    if let Some(cf) = &app.cf {
        lines.push(match cf.check_credentials(None, Deadline::after(REQUEST_BUDGET)).await {
            Ok(()) => Line::pass("ContraForce API", "service account accepted"),
            Err(e) => Line::fail("ContraForce API", e.to_string()),
        });
        let mapped = app.config.cf_webhook.ready().map(|c| c.workspace_map.clone()).unwrap_or_default();
        if !mapped.is_empty() {
            let mut bad = Vec::new();
            let mut mapped: Vec<_> = mapped.into_iter().collect();
            mapped.sort();
            for (account, workspace) in &mapped {
                if let Err(e) = cf.check_credentials(Some(workspace), Deadline::after(REQUEST_BUDGET)).await {
                    bad.push(format!("{}={account}={workspace}: {e}", names::CF_WORKSPACE_MAP));
                }
            }
            lines.push(match bad.is_empty() {
                true => Line::pass("ContraForce workspaces", format!("{} mapped workspaces answer", mapped.len())),
                false => Line::fail("ContraForce workspaces", bad.join("; ")),
            });
        }
    }
    lines
}

/// One configured id: the setting it comes from, how it is shown, the id, and for a site its client.
struct Wanted {
    setting: &'static str,
    shown: String,
    id: i64,
    client: Option<i64>,
}

/// The Halo ids the configuration names, by kind (kinds with none are left out: no call for them).
fn configured_ids(config: &Config) -> Vec<(Listing, Vec<Wanted>)> {
    let want = |setting, shown: String, id, client| Wanted { setting, shown, id, client };
    let (mut clients, mut sites, mut statuses, mut types, mut fields) = (vec![], vec![], vec![], vec![], vec![]);
    if let Some(c) = config.cf_webhook.ready() {
        clients.push(want(names::HALO_DEFAULT_CLIENT_ID, c.default_client_id.to_string(), c.default_client_id, None));
        types.push(want(names::HALO_DEFAULT_TICKETTYPE_ID, c.ticket_type_id.to_string(), c.ticket_type_id, None));
        let mut mapped: Vec<_> = c.client_map.iter().collect();
        mapped.sort_by(|a, b| a.0.cmp(b.0));
        for (account, target) in mapped {
            let shown = format!("{account}={}", target.client_id);
            clients.push(want(names::HALO_CLIENT_MAP, shown, target.client_id, None));
            if let Some(site) = target.site_id {
                let shown = format!("{account}={}/{site}", target.client_id);
                sites.push(want(names::HALO_CLIENT_MAP, shown, site, Some(target.client_id)));
            }
        }
    }
    if let Some(h) = config.halo_webhook.ready() {
        for id in &h.closed_status_ids {
            statuses.push(want(names::HALO_CLOSED_STATUS_ID, id.to_string(), *id, None));
        }
        let mut decided: Vec<_> = h.decisions.keys().copied().collect();
        decided.sort_unstable();
        for id in decided {
            statuses.push(want(names::HALO_CLOSE_DECISION_MAP, format!("{id}=…"), id, None));
        }
        if let Some(id) = h.classification_field_id {
            fields.push(want(names::HALO_CLASSIFICATION_FIELD_ID, id.to_string(), id, None));
        }
    }
    if let Some(RefLocation::CustomField(id)) = config.halo.ready().map(|h| h.reference) {
        fields.push(want(names::HALO_EXTERNAL_REF_FIELD_ID, id.to_string(), id, None));
    }
    [
        (Listing::Clients, clients),
        (Listing::Sites, sites),
        (Listing::Statuses, statuses),
        (Listing::TicketTypes, types),
        (Listing::CustomFields, fields),
    ]
    .into_iter()
    .filter(|(_, wanted)| !wanted.is_empty())
    .collect()
}

/// One call lists every row of the kind; each configured id must be among them (a site, under its client).
async fn check_ids(halo: &HaloClient, kind: Listing, wanted: &[Wanted], deadline: Deadline) -> Line {
    let (what, noun) = match kind {
        Listing::Clients => ("Halo clients", "client"),
        Listing::Sites => ("Halo sites", "site of that client"),
        Listing::Statuses => ("Halo statuses", "status"),
        Listing::TicketTypes => ("Halo ticket types", "ticket type"),
        Listing::CustomFields => ("Halo custom fields", "custom field"),
    };
    let rows = match halo.listed(kind, deadline).await {
        Ok(rows) => rows,
        Err(e) => return Line::fail(what, e.to_string()),
    };
    let exists = |w: &Wanted| rows.iter().any(|r| r.id == w.id && (w.client.is_none() || r.client_id == w.client));
    let missing: Vec<String> =
        wanted.iter().filter(|w| !exists(w)).map(|w| format!("{}={}: no such {noun}", w.setting, w.shown)).collect();
    match missing.is_empty() {
        true => Line::pass(what, format!("{} configured ids exist", wanted.len())),
        false => Line::fail(what, missing.join("; ")),
    }
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
