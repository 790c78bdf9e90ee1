//! Inputs shared by both benches: a typical ~2 KB ContraForce event, a typical Halo note, Halo action lists, and
//! the full configuration the bridge runs with. Each bench uses a different subset.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The CF webhook secret every bench configuration uses.
pub const CF_SECRET: &str = "bench-cf-webhook-secret-5d1e";
/// The Halo webhook secret every bench configuration uses.
pub const HALO_WEBHOOK_SECRET: &str = "bench-halo-webhook-secret-a7c0";
pub const TICKET_TYPE: i64 = 29;
pub const DEFAULT_CLIENT: i64 = 1;
/// A realistic client map: a few customers on their own Halo clients.
pub const CLIENT_MAP: &str = "0b6f1c8e-3c1e-4a4e-9f4e-0d1a2b3c4d5e=12,7d1c4a55-2b0e-4a6b-8f8e-1e2f3a4b5c6d=13,\
                              acc-fabrikam=14,acc-northwind=15";

/// Cargo's target directory (wherever `CARGO_TARGET_DIR` put it): two levels above the handler binary cargo built.
#[allow(dead_code)] // not every bench uses it
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_handler"))
        .ancestors()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README's sample incident (tests/fixtures/incident.json), read once.
pub fn fixture() -> Value {
    static FIXTURE: OnceLock<Value> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let path = repo_root().join("tests/fixtures/incident.json");
            let text = std::fs::read_to_string(path).expect("tests/fixtures/incident.json");
            serde_json::from_str(&text).expect("fixture JSON")
        })
        .clone()
}

/// A typical incident.created.v1 event of about 2 KB: the fixture with a multi-line description, four alerts, six
/// entities and two products (what a Sentinel/Defender incident usually carries).
/// A later event of the incident in `body`: the same content with an envelope `timestamp` of its own (a new
/// ContraForce event; the same signed time and body under another event id would be a replay, a duplicate).
pub fn later_event(body: &[u8], n: usize) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(body).expect("an event body");
    event["timestamp"] = json!(format!("2026-04-22T16:00:00.{n:09}Z"));
    serde_json::to_vec(&event).unwrap()
}

pub fn typical_event(incident_id: &str, number: i64) -> Value {
    let mut body = fixture();
    let data = &mut body["data"];
    data["incidentId"] = json!(incident_id);
    data["incidentNumber"] = json!(number);
    data["title"] = json!("Impossible travel activity involving one user & multiple sign-in locations");
    data["description"] = json!(
        "Sign-ins for alex@example.com from two countries within 20 minutes.\n\
         The second sign-in used a new device and an anonymising VPN <provider>.\n\
         Conditional access did not block the session; MFA was satisfied by a push approval."
    );
    data["alertProductNames"] = json!(["Microsoft Sentinel", "Microsoft Defender for Cloud Apps"]);
    data["alerts"] = json!([
        {"title": "Impossible travel activity", "severity": "High", "productName": "Microsoft Defender for Cloud Apps", "vendorName": "Microsoft"},
        {"title": "Sign-in from an anonymous IP address", "severity": "Medium", "productName": "Microsoft Entra ID Protection", "vendorName": "Microsoft"},
        {"title": "Unfamiliar sign-in properties", "severity": "Medium", "productName": "Microsoft Entra ID Protection", "vendorName": "Microsoft"},
        {"title": "Mass download by a single user", "severity": "Low", "productName": "Microsoft Defender for Cloud Apps", "vendorName": "Microsoft"}
    ]);
    data["entities"] = json!([
        {"type": "User", "displayName": "alex@example.com"},
        {"type": "IP", "displayName": "203.0.113.42"},
        {"type": "IP", "displayName": "198.51.100.7"},
        {"type": "Host", "displayName": "LAPTOP-ALEX-01"},
        {"type": "CloudApplication", "displayName": "Office 365"},
        {"type": "MailBox", "displayName": "alex@example.com"},
        {"type": "Process", "displayName": "powershell.exe -NoProfile -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoA"},
        {"type": "Url", "displayName": "https://login.example-phish.net/oauth2/authorize?client_id=0000"}
    ]);
    body
}

/// A portal test delivery (`"isTest": true`).
pub fn test_event() -> Value {
    let mut body = typical_event("portal-test-incident", 1);
    body["isTest"] = json!(true);
    body
}

/// A typical agent note in Halo: a greeting, two paragraphs with inline markup, a list, a link, entities.
pub fn typical_note_html(n: usize) -> String {
    format!(
        "<p>Hi team,</p><p>Update #{n}: we reset the password for <b>alex@example.com</b> and revoked all \
         sessions &amp; refresh tokens. The sign-in from <i>203.0.113.42</i> matches a known VPN exit node.</p>\
         <ul><li>MFA method re-registered</li><li>Device LAPTOP-ALEX-01 isolated</li><li>Mailbox rules checked: \
         none forwarding</li></ul><p>Details: <a href=\"https://portal.example.com/incidents/1234\">incident \
         page</a>. Next check in 2&nbsp;hours.</p><p>Regards,<br>Sam &lt;SOC&gt;</p>"
    )
}

/// The `GET /Actions` answer for a ticket with `n` actions, as Halo sends it (with `includehtmlnote=true`): the
/// bridge's own creation action first, then human notes (every tenth one private).
pub fn actions_answer(n: usize) -> Value {
    let mut actions = vec![json!({
        "id": 1, "ticket_id": 1001, "outcome": "New Ticket", "note": "", "note_html": "",
        "hiddenfromuser": false, "who": "ContraForce Integration", "who_agentid": 38,
        "actionby_application_id": "ContraForce Bridge", "datetime": "2026-04-22T15:00:00Z"
    })];
    for i in 1..n {
        let html = typical_note_html(i);
        actions.push(json!({
            "id": i + 1, "ticket_id": 1001, "outcome": "Note", "note": "(plain text of the note)", "note_html": html,
            "hiddenfromuser": i % 10 == 0, "who": "Sam Agent", "who_agentid": 2,
            "datetime": "2026-04-22T15:05:00Z"
        }));
    }
    json!({"record_count": n, "actions": actions})
}

/// Every setting a fully configured bridge gets, given where Halo, ContraForce and Table Storage are.
pub struct Endpoints {
    pub halo_auth_url: String,
    pub halo_api_url: String,
    pub halo_client_id: String,
    pub halo_client_secret: String,
    pub halo_app_name: String,
    pub halo_agent_id: i64,
    pub cf_base_url: String,
    pub cf_client_id: String,
    pub cf_client_secret: String,
    pub cf_workspace_id: String,
    pub storage: String,
}

impl Endpoints {
    /// Placeholder endpoints (for in-process benches, where nothing is called).
    pub fn offline() -> Endpoints {
        Endpoints {
            halo_auth_url: "http://127.0.0.1:9/auth".into(),
            halo_api_url: "http://127.0.0.1:9/api".into(),
            halo_client_id: "halo-client".into(),
            halo_client_secret: "halo-secret".into(),
            halo_app_name: "ContraForce Bridge".into(),
            halo_agent_id: 38,
            cf_base_url: "http://127.0.0.1:9/api/v2".into(),
            cf_client_id: "cf-client".into(),
            cf_client_secret: "cf-secret".into(),
            cf_workspace_id: "3f2b8c1e-5d4a-4e6b-9c7d-0a1b2c3d4e5f".into(),
            storage: "UseDevelopmentStorage=true".into(),
        }
    }

    /// The endpoints of the loopback fakes, with `storage` as the connection string.
    pub fn of_fakes(halo: &sandbox::halo::FakeHalo, cf: &sandbox::cf::FakeCf, storage: String) -> Endpoints {
        let (h, c) = (halo.config(), cf.config());
        Endpoints {
            halo_auth_url: halo.auth_url(),
            halo_api_url: halo.api_url(),
            halo_client_id: h.client_id.clone(),
            halo_client_secret: h.client_secret.clone(),
            halo_app_name: h.app_name.clone(),
            halo_agent_id: h.agent_id,
            cf_base_url: cf.base_url(),
            cf_client_id: c.client_id.clone(),
            cf_client_secret: c.client_secret.clone(),
            cf_workspace_id: c.workspace_id.clone(),
            storage,
        }
    }

    /// The full configuration: both directions on, maps set, info logging.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("CF_WEBHOOK_SECRET", CF_SECRET.to_string()),
            ("CF_MAX_SKEW_SECONDS", "300".into()),
            ("HALO_AUTH_URL", self.halo_auth_url.clone()),
            ("HALO_API_BASE_URL", self.halo_api_url.clone()),
            ("HALO_CLIENT_ID", self.halo_client_id.clone()),
            ("HALO_CLIENT_SECRET", self.halo_client_secret.clone()),
            ("HALO_DEFAULT_TICKETTYPE_ID", TICKET_TYPE.to_string()),
            ("HALO_DEFAULT_CLIENT_ID", DEFAULT_CLIENT.to_string()),
            ("HALO_CLIENT_MAP", CLIENT_MAP.into()),
            ("HALO_PRIORITY_MAP", "High=1,Medium=2,Low=3,Informational=4".into()),
            ("HALO_PRIVATE_NOTE_OUTCOME", "Private Note".into()),
            ("HALO_INTEGRATION_APPLICATION", self.halo_app_name.clone()),
            ("HALO_INTEGRATION_AGENT_ID", self.halo_agent_id.to_string()),
            ("HALO_WEBHOOK_SECRET", HALO_WEBHOOK_SECRET.into()),
            ("HALO_CLOSED_STATUS_ID", "9".into()),
            ("CF_API_BASE_URL", self.cf_base_url.clone()),
            ("CF_SERVICE_ACCOUNT_CLIENT_ID", self.cf_client_id.clone()),
            ("CF_SERVICE_ACCOUNT_CLIENT_SECRET", self.cf_client_secret.clone()),
            ("CF_WORKSPACE_ID", self.cf_workspace_id.clone()),
            ("AzureWebJobsStorage", self.storage.clone()),
            ("STATE_TABLE_NAME", "bridgestate".into()),
            ("UPSTREAM_TIMEOUT_SECONDS", "10".into()),
            ("LOG_LEVEL", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
