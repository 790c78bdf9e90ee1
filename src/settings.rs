//! The one list of application settings the `handler` binary reads.
//!
//! `config` reads exactly these names, `infra/main.bicep` sets exactly these names (a test compares the two), and
//! `local.settings.json.example` lists them all. Settings the Functions host itself provides or reads
//! (`FUNCTIONS_CUSTOMHANDLER_PORT`, `AzureWebJobsStorage__blobServiceUri`, …) are not in it.

/// Which part of the bridge needs a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// ContraForce → Halo (`/api/cf-webhook`).
    CfWebhook,
    /// Halo → ContraForce (`/api/halo-webhook`).
    HaloWebhook,
    /// The Halo API client, used by both directions.
    HaloApi,
    /// Table Storage state, used by both directions.
    Storage,
    /// Direct Key Vault reads (optional).
    KeyVault,
    /// The operator's status page and run history (`/api/status`, `handler runs`).
    Status,
    /// Process-wide behaviour.
    General,
}

impl Area {
    /// The name `handler --list-settings` gives the area (a direction's area is named after its function).
    pub fn name(self) -> &'static str {
        match self {
            Area::CfWebhook => "cf-webhook",
            Area::HaloWebhook => "halo-webhook",
            Area::HaloApi => "halo-api",
            Area::Storage => "storage",
            Area::KeyVault => "key-vault",
            Area::Status => "status",
            Area::General => "general",
        }
    }
}

/// One application setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub area: Area,
    /// Holds a secret: never logged, set from Key Vault in Azure.
    pub secret: bool,
    /// Default used when the setting is unset or empty.
    pub default: Option<&'static str>,
    /// Must be set for its area to work (an area without its required settings answers 503).
    pub required: bool,
    /// Set by `infra/main.bicep` (false for settings meant for local runs and tests only).
    pub deployed: bool,
    pub description: &'static str,
}

const fn s(
    name: &'static str,
    area: Area,
    required: bool,
    default: Option<&'static str>,
    description: &'static str,
) -> Setting {
    Setting { name, area, secret: false, default, required, deployed: true, description }
}

const fn secret(name: &'static str, area: Area, description: &'static str) -> Setting {
    Setting { name, area, secret: true, default: None, required: true, deployed: true, description }
}

const fn local_only(name: &'static str, area: Area, description: &'static str) -> Setting {
    Setting { name, area, secret: false, default: None, required: false, deployed: false, description }
}

pub const CF_WEBHOOK_SECRET: &str = "CF_WEBHOOK_SECRET";
pub const CF_MAX_SKEW_SECONDS: &str = "CF_MAX_SKEW_SECONDS";
pub const CF_PROCESS_TEST_EVENTS: &str = "CF_PROCESS_TEST_EVENTS";
pub const HALO_AUTH_URL: &str = "HALO_AUTH_URL";
pub const HALO_API_BASE_URL: &str = "HALO_API_BASE_URL";
pub const HALO_CLIENT_ID: &str = "HALO_CLIENT_ID";
pub const HALO_CLIENT_SECRET: &str = "HALO_CLIENT_SECRET";
pub const HALO_TENANT: &str = "HALO_TENANT";
pub(crate) const HALO_SCOPE: &str = "HALO_SCOPE";
pub const HALO_RATE_LIMIT: &str = "HALO_RATE_LIMIT";
pub const HALO_RATE_WINDOW_SECONDS: &str = "HALO_RATE_WINDOW_SECONDS";
pub const HALO_DEFAULT_TICKETTYPE_ID: &str = "HALO_DEFAULT_TICKETTYPE_ID";
pub const HALO_DEFAULT_CLIENT_ID: &str = "HALO_DEFAULT_CLIENT_ID";
pub const HALO_CLIENT_MAP: &str = "HALO_CLIENT_MAP";
pub const HALO_CLIENT_MATCH_BY_NAME: &str = "HALO_CLIENT_MATCH_BY_NAME";
pub const HALO_CLIENT_NAME_CACHE_SECONDS: &str = "HALO_CLIENT_NAME_CACHE_SECONDS";
pub const CF_WORKSPACE_MAP: &str = "CF_WORKSPACE_MAP";
pub const HALO_PRIORITY_MAP: &str = "HALO_PRIORITY_MAP";
pub const HALO_EXTERNAL_REF_FIELD_ID: &str = "HALO_EXTERNAL_REF_FIELD_ID";
pub const HALO_EXTERNAL_REF_FIELD: &str = "HALO_EXTERNAL_REF_FIELD";
pub const HALO_PRIVATE_NOTE_OUTCOME: &str = "HALO_PRIVATE_NOTE_OUTCOME";
pub const HALO_WEBHOOK_SECRET: &str = "HALO_WEBHOOK_SECRET";
pub const HALO_CLOSED_STATUS_ID: &str = "HALO_CLOSED_STATUS_ID";
pub const HALO_INTEGRATION_AGENT_ID: &str = "HALO_INTEGRATION_AGENT_ID";
pub const HALO_INTEGRATION_APPLICATION: &str = "HALO_INTEGRATION_APPLICATION";
pub const CF_API_BASE_URL: &str = "CF_API_BASE_URL";
pub const CF_SERVICE_ACCOUNT_CLIENT_ID: &str = "CF_SERVICE_ACCOUNT_CLIENT_ID";
pub const CF_SERVICE_ACCOUNT_CLIENT_SECRET: &str = "CF_SERVICE_ACCOUNT_CLIENT_SECRET";
pub const CF_WORKSPACE_ID: &str = "CF_WORKSPACE_ID";
pub(crate) const CF_CLOSE_CLASSIFICATION: &str = "CF_CLOSE_CLASSIFICATION";
pub(crate) const CF_CLOSE_CLASSIFICATION_REASON: &str = "CF_CLOSE_CLASSIFICATION_REASON";
pub(crate) const STATE_STORAGE: &str = "StateStorage";
pub(crate) const STATE_STORAGE_TABLE_URI: &str = "StateStorage__tableServiceUri";
pub(crate) const STATE_STORAGE_CREDENTIAL: &str = "StateStorage__credential";
pub(crate) const STATE_STORAGE_CLIENT_ID: &str = "StateStorage__clientId";
pub(crate) const WEBJOBS_STORAGE: &str = "AzureWebJobsStorage";
pub(crate) const WEBJOBS_STORAGE_TABLE_URI: &str = "AzureWebJobsStorage__tableServiceUri";
pub(crate) const WEBJOBS_STORAGE_QUEUE_URI: &str = "AzureWebJobsStorage__queueServiceUri";
pub(crate) const WEBJOBS_STORAGE_CREDENTIAL: &str = "AzureWebJobsStorage__credential";
pub(crate) const WEBJOBS_STORAGE_CLIENT_ID: &str = "AzureWebJobsStorage__clientId";
pub const HALO_CLOSE_DECISION_MAP: &str = "HALO_CLOSE_DECISION_MAP";
pub const HALO_CLASSIFICATION_FIELD_ID: &str = "HALO_CLASSIFICATION_FIELD_ID";
pub const RECONCILE_SCHEDULE: &str = "RECONCILE_SCHEDULE";
pub const RECONCILE_HALO_CALLS: &str = "RECONCILE_HALO_CALLS";
pub const RECONCILE_REQUEUE_AFTER_SECONDS: &str = "RECONCILE_REQUEUE_AFTER_SECONDS";
pub const STATE_TABLE_NAME: &str = "STATE_TABLE_NAME";
pub const KEY_VAULT_URI: &str = "KEY_VAULT_URI";
pub const KEY_VAULT_REFRESH_SECONDS: &str = "KEY_VAULT_REFRESH_SECONDS";
pub const SECRET_ROTATION_GRACE_SECONDS: &str = "SECRET_ROTATION_GRACE_SECONDS";
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub(crate) const CF_WEBHOOK_SECRET_NAME: &str = "CF_WEBHOOK_SECRET_NAME";
pub(crate) const HALO_CLIENT_SECRET_NAME: &str = "HALO_CLIENT_SECRET_NAME";
pub(crate) const HALO_WEBHOOK_SECRET_NAME: &str = "HALO_WEBHOOK_SECRET_NAME";
pub(crate) const CF_SERVICE_ACCOUNT_CLIENT_SECRET_NAME: &str = "CF_SERVICE_ACCOUNT_CLIENT_SECRET_NAME";
pub const STATUS_PAGE_KEY: &str = "STATUS_PAGE_KEY";
pub(crate) const STATUS_PAGE_KEY_NAME: &str = "STATUS_PAGE_KEY_NAME";
pub const HALO_WEB_URL: &str = "HALO_WEB_URL";
pub const RUN_RETENTION_DAYS: &str = "RUN_RETENTION_DAYS";
pub const LOG_LEVEL: &str = "LOG_LEVEL";
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
pub const UPSTREAM_TIMEOUT_SECONDS: &str = "UPSTREAM_TIMEOUT_SECONDS";
pub const CLAIM_TTL_SECONDS: &str = "CLAIM_TTL_SECONDS";
pub const INLINE_BUDGET_SECONDS: &str = "INLINE_BUDGET_SECONDS";

/// Every setting the binary reads, in the order the README's configuration table lists them.
pub const SETTINGS: &[Setting] = &[
    secret(
        CF_WEBHOOK_SECRET,
        Area::CfWebhook,
        "Signing secret of the ContraForce webhook (Settings → Developers → Webhooks).",
    ),
    s(
        CF_MAX_SKEW_SECONDS,
        Area::CfWebhook,
        false,
        Some("300"),
        "Largest accepted distance between X-CF-Timestamp and now, in seconds.",
    ),
    s(
        CF_PROCESS_TEST_EVENTS,
        Area::CfWebhook,
        false,
        Some("false"),
        "`true` processes portal test deliveries like real events.",
    ),
    s(
        HALO_DEFAULT_TICKETTYPE_ID,
        Area::CfWebhook,
        true,
        None,
        "Halo ticket type id for new tickets (GET /api/TicketType).",
    ),
    s(
        HALO_DEFAULT_CLIENT_ID,
        Area::CfWebhook,
        true,
        None,
        "Halo client id for incidents whose CF account is not in HALO_CLIENT_MAP.",
    ),
    s(
        HALO_CLIENT_MAP,
        Area::CfWebhook,
        false,
        None,
        "`<CF accountId>=<Halo client id>[/<site id>],…`: each customer's incidents on its own Halo client (and site).",
    ),
    s(
        HALO_CLIENT_MATCH_BY_NAME,
        Area::CfWebhook,
        false,
        Some("false"),
        "An account HALO_CLIENT_MAP does not name goes to the Halo client of exactly its name (case and spacing ignored); none or two such clients: the default client.",
    ),
    s(
        HALO_CLIENT_NAME_CACHE_SECONDS,
        Area::CfWebhook,
        false,
        Some("86400"),
        "How long a client name match is kept in Table Storage before Halo is asked again (one lookup per customer per period).",
    ),
    s(
        CF_WORKSPACE_MAP,
        Area::CfWebhook,
        false,
        None,
        "`<CF accountId>=<ContraForce workspace id>,…`: comments and the close of that account's incidents go to its workspace (others: CF_WORKSPACE_ID).",
    ),
    s(
        HALO_PRIORITY_MAP,
        Area::CfWebhook,
        false,
        Some("High=1,Medium=2,Low=3,Informational=3"),
        "CF severity → Halo priority_id; unknown severities get the Low value.",
    ),
    s(
        HALO_PRIVATE_NOTE_OUTCOME,
        Area::CfWebhook,
        false,
        Some("Private Note"),
        "Outcome of the private note added for a later event; a number is an outcome_id.",
    ),
    s(
        HALO_EXTERNAL_REF_FIELD_ID,
        Area::HaloApi,
        false,
        None,
        "Custom field id that carries `cf|source|incidentId`; when set it replaces HALO_EXTERNAL_REF_FIELD.",
    ),
    s(
        HALO_EXTERNAL_REF_FIELD,
        Area::HaloApi,
        false,
        Some("supplier_reference"),
        "Ticket field that carries the reference: `supplier_reference` (`thirdpartynumber` is refused: read, never written).",
    ),
    s(HALO_AUTH_URL, Area::HaloApi, true, None, "Halo authorisation server, e.g. https://yourname.halopsa.com/auth."),
    s(HALO_API_BASE_URL, Area::HaloApi, true, None, "Halo resource server, e.g. https://yourname.halopsa.com/api."),
    s(
        HALO_CLIENT_ID,
        Area::HaloApi,
        true,
        None,
        "Client id of the Halo API application (Client ID and Secret (Services)).",
    ),
    secret(HALO_CLIENT_SECRET, Area::HaloApi, "Client secret of the Halo API application."),
    s(HALO_TENANT, Area::HaloApi, false, None, "Halo tenant name (hosted Halo); sent with the token request."),
    s(HALO_SCOPE, Area::HaloApi, false, Some("all"), "OAuth scope of the Halo token."),
    s(
        HALO_RATE_LIMIT,
        Area::HaloApi,
        false,
        Some("200"),
        "The most Halo API calls the bridge starts in any HALO_RATE_WINDOW_SECONDS, per instance (1-10000; hosted \
         Halo allows about 300 per 5 minutes, shared with your other tools); calls beyond it wait or are queued.",
    ),
    s(
        HALO_RATE_WINDOW_SECONDS,
        Area::HaloApi,
        false,
        Some("300"),
        "The rolling window of HALO_RATE_LIMIT, in seconds (1-3600).",
    ),
    secret(
        HALO_WEBHOOK_SECRET,
        Area::HaloWebhook,
        "Secret Halo sends in X-Halo-Secret (or as the Basic auth password).",
    ),
    s(
        HALO_CLOSED_STATUS_ID,
        Area::HaloWebhook,
        false,
        Some("9"),
        "Halo status id(s) that mean closed, comma-separated; `hasbeenclosed` also counts.",
    ),
    s(
        HALO_INTEGRATION_AGENT_ID,
        Area::HaloWebhook,
        false,
        None,
        "Agent id the Halo API application logs in as: its actions are not echoed back.",
    ),
    s(
        HALO_INTEGRATION_APPLICATION,
        Area::HaloWebhook,
        false,
        None,
        "Name of the Halo API application (actionby_application_id): its actions are not echoed back.",
    ),
    s(
        CF_API_BASE_URL,
        Area::HaloWebhook,
        true,
        None,
        "ContraForce API, e.g. https://prod.platform.contraforce.com/api/v2.",
    ),
    s(CF_SERVICE_ACCOUNT_CLIENT_ID, Area::HaloWebhook, true, None, "Client id of the ContraForce service account."),
    secret(CF_SERVICE_ACCOUNT_CLIENT_SECRET, Area::HaloWebhook, "Client secret of the ContraForce service account."),
    s(CF_WORKSPACE_ID, Area::HaloWebhook, true, None, "ContraForce workspace id."),
    s(
        CF_CLOSE_CLASSIFICATION,
        Area::HaloWebhook,
        false,
        Some("Undetermined"),
        "Classification sent when a Halo close closes the CF incident.",
    ),
    s(
        CF_CLOSE_CLASSIFICATION_REASON,
        Area::HaloWebhook,
        false,
        Some("InaccurateData"),
        "Classification reason sent with the close.",
    ),
    s(
        HALO_CLOSE_DECISION_MAP,
        Area::HaloWebhook,
        false,
        None,
        "`<Halo status id>=<Classification>[/<Reason>],…`: the analyst's decision a closing status stands for (BenignPositive, FalsePositive, TruePositive, Undetermined; reasons SuspiciousActivity, SuspiciousButExpected, IncorrectAlertLogic, InaccurateData); other statuses: CF_CLOSE_CLASSIFICATION.",
    ),
    s(
        HALO_CLASSIFICATION_FIELD_ID,
        Area::HaloWebhook,
        false,
        None,
        "Id of a Halo ticket custom field holding `<Classification>[/<Reason>]`: when set on a closed ticket, it wins over the status.",
    ),
    s(
        RECONCILE_SCHEDULE,
        // Read by the host (reconcile/function.json), which needs it whatever directions are deployed.
        Area::General,
        false,
        Some("0 */5 * * * *"),
        "When the reconcile timer runs (NCRONTAB, six fields, UTC): it catches the Halo webhooks that never arrived.",
    ),
    s(
        RECONCILE_HALO_CALLS,
        Area::HaloWebhook,
        false,
        Some("30"),
        "The most Halo API calls one reconcile run makes (1-300; hosted Halo allows about 300 per 5 minutes).",
    ),
    s(
        RECONCILE_REQUEUE_AFTER_SECONDS,
        Area::HaloWebhook,
        false,
        Some("3600"),
        "Work recorded as queued but untouched this long (its queue message lost) is queued again by the reconcile.",
    ),
    s(
        STATE_STORAGE,
        Area::Storage,
        false,
        None,
        "Connection string of the state storage (falls back to AzureWebJobsStorage).",
    ),
    s(STATE_STORAGE_TABLE_URI, Area::Storage, false, None, "Identity-based state storage: the table service URI."),
    s(STATE_STORAGE_CREDENTIAL, Area::Storage, false, None, "Identity-based state storage: `managedidentity`."),
    s(
        STATE_STORAGE_CLIENT_ID,
        Area::Storage,
        false,
        None,
        "Identity-based state storage: client id of a user-assigned identity.",
    ),
    s(
        WEBJOBS_STORAGE,
        Area::Storage,
        false,
        None,
        "The Functions host storage; used for state when StateStorage is not set.",
    ),
    s(
        WEBJOBS_STORAGE_TABLE_URI,
        Area::Storage,
        false,
        None,
        "Identity-based host storage: the table service URI (state fallback).",
    ),
    s(
        WEBJOBS_STORAGE_QUEUE_URI,
        Area::Storage,
        false,
        None,
        "Identity-based host storage: the queue service URI (the durable-work queue).",
    ),
    s(WEBJOBS_STORAGE_CREDENTIAL, Area::Storage, false, None, "Identity-based host storage: `managedidentity`."),
    s(
        WEBJOBS_STORAGE_CLIENT_ID,
        Area::Storage,
        false,
        None,
        "Identity-based host storage: client id of a user-assigned identity.",
    ),
    s(
        STATE_TABLE_NAME,
        Area::Storage,
        false,
        Some("bridgestate"),
        "Table that holds the bridge's state (created if missing).",
    ),
    s(
        KEY_VAULT_URI,
        Area::KeyVault,
        false,
        None,
        "When set, secrets are read directly from this vault and refreshed in the background.",
    ),
    s(KEY_VAULT_REFRESH_SECONDS, Area::KeyVault, false, Some("300"), "How often secrets are re-read from Key Vault."),
    s(
        SECRET_ROTATION_GRACE_SECONDS,
        Area::KeyVault,
        false,
        Some("86400"),
        "How long a rotated webhook secret's previous value stays accepted.",
    ),
    s(
        AZURE_CLIENT_ID,
        Area::KeyVault,
        false,
        None,
        "Client id of the user-assigned managed identity used for Key Vault (and storage).",
    ),
    s(
        CF_WEBHOOK_SECRET_NAME,
        Area::KeyVault,
        false,
        Some("cf-webhook-secret"),
        "Key Vault secret name of CF_WEBHOOK_SECRET.",
    ),
    s(
        HALO_CLIENT_SECRET_NAME,
        Area::KeyVault,
        false,
        Some("halo-client-secret"),
        "Key Vault secret name of HALO_CLIENT_SECRET.",
    ),
    s(
        HALO_WEBHOOK_SECRET_NAME,
        Area::KeyVault,
        false,
        Some("halo-webhook-secret"),
        "Key Vault secret name of HALO_WEBHOOK_SECRET.",
    ),
    s(
        CF_SERVICE_ACCOUNT_CLIENT_SECRET_NAME,
        Area::KeyVault,
        false,
        Some("cf-service-account-client-secret"),
        "Key Vault secret name of CF_SERVICE_ACCOUNT_CLIENT_SECRET.",
    ),
    s(
        STATUS_PAGE_KEY_NAME,
        Area::KeyVault,
        false,
        Some("status-page-key"),
        "Key Vault secret name of STATUS_PAGE_KEY.",
    ),
    local_only(
        SSL_CERT_FILE,
        Area::General,
        "PEM file of extra certificate authorities to trust (TLS inspection proxies, test CAs); not set in Azure.",
    ),
    secret(
        STATUS_PAGE_KEY,
        Area::Status,
        "The status page's own key (GET /api/status): a login form takes it and sets a session cookie; scripts send it in X-Status-Key.",
    ),
    s(
        HALO_WEB_URL,
        Area::Status,
        false,
        None,
        "Halo's web address (e.g. https://yourname.halopsa.com): the status page links each ticket to it.",
    ),
    s(
        RUN_RETENTION_DAYS,
        Area::Status,
        false,
        Some("30"),
        "How long each delivery's run record is kept, in days (1-365); the housekeeping timer deletes older ones.",
    ),
    s(
        LOG_LEVEL,
        Area::General,
        false,
        Some("info"),
        "Log level: error, warn, info, debug, trace or off, optionally with target=level directives.",
    ),
    s(
        UPSTREAM_TIMEOUT_SECONDS,
        Area::General,
        false,
        Some("10"),
        "Timeout of one Halo or ContraForce call, in seconds.",
    ),
    s(
        INLINE_BUDGET_SECONDS,
        Area::General,
        false,
        Some("5"),
        "How long a webhook is processed before its work is queued instead and answered `queued`, in seconds.",
    ),
    s(
        CLAIM_TTL_SECONDS,
        Area::General,
        false,
        Some("60"),
        "After this many seconds, work claimed by a delivery that never finished (a crash) is taken over.",
    ),
];

/// Looks a setting up by name.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The list as JSON, for tools that check the deployment against it (`handler --list-settings`).
pub(crate) fn to_json() -> String {
    let items: Vec<serde_json::Value> = SETTINGS
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "area": s.area.name(),
                "secret": s.secret,
                "required": s.required,
                "deployed": s.deployed,
                "default": s.default,
                "description": s.description,
            })
        })
        .collect();
    serde_json::to_string_pretty(&items).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn secrets_have_no_default() {
        for s in SETTINGS.iter().filter(|s| s.secret) {
            assert!(s.default.is_none(), "{}", s.name);
        }
    }
}
