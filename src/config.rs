//! Configuration: read from the environment once, at startup, and validated here and nowhere else.
//!
//! Rules (issue #3): an empty value means unset; a value still reading `@Microsoft.KeyVault(` is an unresolved Key
//! Vault reference and is reported by name; a direction whose required settings are missing stays off (its route
//! answers 503 naming what is missing) while the other keeps working; a value that is present but invalid stops
//! startup with an error naming the variable.

use crate::settings::{self as names, Area, SETTINGS};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// Port used when the Functions host did not pass one (standalone, same paths as `func start`).
pub const DEFAULT_PORT: u16 = 7071;
/// The host's variable carrying the port it will call us on.
pub const PORT_VARIABLE: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
const KEY_VAULT_REFERENCE_PREFIX: &str = "@Microsoft.KeyVault(";

/// A present value that cannot be used: startup stops with this message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid setting {name}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub reason: String,
}

fn invalid(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { name: name.to_string(), reason: reason.into() }
}

/// Why a part of the bridge is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing(&'static str),
    UnresolvedKeyVaultReference(&'static str),
    /// Any other reason, already worded for an operator (e.g. a secret Key Vault has not answered yet).
    Other(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing(name) => write!(f, "{name} is not set"),
            Problem::UnresolvedKeyVaultReference(name) => write!(
                f,
                "{name} is an unresolved Key Vault reference: check that the app's identity (keyVaultReferenceIdentity) \
                 has the 'Key Vault Secrets User' role on the vault, that the vault allows the app's network, and that \
                 the secret named in the reference exists"
            ),
            Problem::Other(text) => f.write_str(text),
        }
    }
}

/// A part of the configuration that is either usable or off for the listed reasons.
#[derive(Debug, Clone)]
pub enum Availability<T> {
    Ready(T),
    Off(Vec<Problem>),
}

impl<T> Availability<T> {
    pub fn ready(&self) -> Option<&T> {
        match self {
            Availability::Ready(t) => Some(t),
            Availability::Off(_) => None,
        }
    }

    pub fn problems(&self) -> &[Problem] {
        match self {
            Availability::Ready(_) => &[],
            Availability::Off(p) => p,
        }
    }
}

/// The raw environment, with empty values dropped. Tests build one from a map.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Env(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).filter(|(_, v)| !v.trim().is_empty()).collect())
    }

    /// The value, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim())
    }

    fn lookup(&self, name: &'static str) -> Lookup<'_> {
        match self.get(name) {
            None => Lookup::Unset,
            Some(v) if v.starts_with(KEY_VAULT_REFERENCE_PREFIX) => Lookup::Unresolved,
            Some(v) => Lookup::Set(v),
        }
    }
}

enum Lookup<'a> {
    Unset,
    Unresolved,
    Set(&'a str),
}

/// Collects the problems of one part while its settings are read.
struct Reader<'a> {
    env: &'a Env,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn new(env: &'a Env) -> Self {
        Reader { env, problems: Vec::new() }
    }

    /// A setting that must be present for this part to work; its default applies when it has one.
    fn required(&mut self, name: &'static str) -> Option<&'a str> {
        match self.env.lookup(name) {
            Lookup::Set(v) => Some(v),
            Lookup::Unset => match default_of(name) {
                Some(d) => Some(d),
                None => {
                    self.problems.push(Problem::Missing(name));
                    None
                }
            },
            Lookup::Unresolved => {
                self.problems.push(Problem::UnresolvedKeyVaultReference(name));
                None
            }
        }
    }

    /// A setting that may be absent: its default, or None.
    fn optional(&mut self, name: &'static str) -> Option<&'a str> {
        match self.env.lookup(name) {
            Lookup::Set(v) => Some(v),
            Lookup::Unset => default_of(name),
            Lookup::Unresolved => {
                self.problems.push(Problem::UnresolvedKeyVaultReference(name));
                None
            }
        }
    }

    fn finish<T>(self, build: impl FnOnce() -> T) -> Availability<T> {
        if self.problems.is_empty() {
            Availability::Ready(build())
        } else {
            Availability::Off(self.problems)
        }
    }
}

fn default_of(name: &str) -> Option<&'static str> {
    names::setting(name).and_then(|s| s.default)
}

fn parse_int(name: &str, value: &str) -> Result<i64, ConfigError> {
    value.parse::<i64>().map_err(|_| invalid(name, format!("`{value}` is not an integer")))
}

fn parse_positive(name: &str, value: &str) -> Result<i64, ConfigError> {
    match parse_int(name, value)? {
        n if n > 0 => Ok(n),
        n => Err(invalid(name, format!("{n} must be a positive id"))),
    }
}

fn parse_seconds(name: &str, value: &str) -> Result<Duration, ConfigError> {
    value
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| invalid(name, format!("`{value}` is not a whole number of seconds")))
}

fn positive_seconds(env: &Env, name: &'static str, default: &str) -> Result<Duration, ConfigError> {
    let value = parse_seconds(name, env.get(name).unwrap_or(default))?;
    if value.is_zero() {
        return Err(invalid(name, "must be at least 1"));
    }
    Ok(value)
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(invalid(name, format!("`{value}` is not true or false"))),
    }
}

/// An http(s) base URL without its trailing slashes.
fn parse_base_url(name: &str, value: &str) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(value).map_err(|e| invalid(name, format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(name, "must be an http or https URL"));
    }
    if url.query().is_some() {
        return Err(invalid(name, "must not carry a query string"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// Parses `key=value,key=value` pairs (whitespace around items ignored).
fn parse_pairs<'v>(name: &str, value: &'v str) -> Result<Vec<(&'v str, &'v str)>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok((k.trim(), v.trim())),
            _ => Err(invalid(name, format!("`{item}` is not of the form key=value"))),
        })
        .collect()
}

/// Which ticket field carries `cf|source|incidentId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketRefField {
    /// A documented Halo field with a search filter (`search_supplier_reference`).
    SupplierReference,
    /// What Logic App 01 and the samples write; not a documented Halo field (halo-api.md §2).
    ThirdPartyNumber,
}

impl TicketRefField {
    pub fn field_name(self) -> &'static str {
        match self {
            TicketRefField::SupplierReference => "supplier_reference",
            TicketRefField::ThirdPartyNumber => "thirdpartynumber",
        }
    }
}

/// Where the reference is written on new tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefLocation {
    CustomField(i64),
    Field(TicketRefField),
}

/// The Halo API client's settings (both directions use it). The client secret lives in `secrets`.
#[derive(Debug, Clone)]
pub struct HaloApiConfig {
    pub auth_url: String,
    pub api_base_url: String,
    pub client_id: String,
    pub tenant: Option<String>,
    pub scope: String,
    pub reference: RefLocation,
}

/// Halo priority ids by lower-cased CF severity; unknown severities take `fallback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityMap {
    by_severity: BTreeMap<String, i64>,
    fallback: i64,
}

impl PriorityMap {
    pub fn parse(name: &str, value: &str) -> Result<Self, ConfigError> {
        let mut by_severity = BTreeMap::new();
        for (severity, id) in parse_pairs(name, value)? {
            by_severity.insert(severity.to_lowercase(), parse_positive(name, id)?);
        }
        let fallback = by_severity
            .get("low")
            .copied()
            .ok_or_else(|| invalid(name, "must map Low (it is also used for unknown severities)"))?;
        Ok(PriorityMap { by_severity, fallback })
    }

    /// The priority for a severity, case-insensitively; unknown or missing severities get Low's priority.
    pub fn priority(&self, severity: Option<&str>) -> i64 {
        severity.and_then(|s| self.by_severity.get(&s.trim().to_lowercase())).copied().unwrap_or(self.fallback)
    }
}

/// The outcome of the private note: a name or, when numeric, an outcome id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteOutcome {
    Name(String),
    Id(i64),
}

/// ContraForce → Halo settings (no secrets).
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    pub max_skew: Duration,
    pub process_test_events: bool,
    pub ticket_type_id: i64,
    pub default_client_id: i64,
    /// Halo client id by lower-cased CF account id.
    pub client_map: HashMap<String, i64>,
    pub priorities: PriorityMap,
    pub note_outcome: NoteOutcome,
}

impl OutboundConfig {
    pub fn client_for(&self, account_id: Option<&str>) -> i64 {
        account_id
            .and_then(|a| self.client_map.get(&a.trim().to_lowercase()))
            .copied()
            .unwrap_or(self.default_client_id)
    }
}

/// Halo → ContraForce settings (no secrets).
#[derive(Debug, Clone)]
pub struct InboundConfig {
    pub closed_status_ids: Vec<i64>,
    pub integration_agent_id: Option<i64>,
    pub integration_application: Option<String>,
    pub cf_api_base_url: String,
    pub cf_client_id: String,
    pub cf_workspace_id: String,
    pub close_classification: String,
    pub close_classification_reason: String,
}

/// How to reach Table Storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConnection {
    /// `UseDevelopmentStorage=true`: Azurite on 127.0.0.1:10002.
    Emulator,
    /// A connection string with an account key or SAS (kept whole; parsed by `store`).
    ConnectionString(String),
    /// `<name>__tableServiceUri` with a managed identity (user-assigned when `client_id` is set).
    ManagedIdentity { table_service_uri: String, client_id: Option<String> },
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub connection: StorageConnection,
    /// Which setting the connection came from, for messages.
    pub source: &'static str,
    pub table_name: String,
}

/// Direct Key Vault reads.
#[derive(Debug, Clone)]
pub struct KeyVaultConfig {
    pub vault_uri: String,
    pub refresh: Duration,
    pub client_id: Option<String>,
}

/// The four secrets the bridge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretId {
    CfWebhook,
    HaloClient,
    HaloWebhook,
    CfServiceAccount,
}

impl SecretId {
    pub const ALL: [SecretId; 4] =
        [SecretId::CfWebhook, SecretId::HaloClient, SecretId::HaloWebhook, SecretId::CfServiceAccount];

    /// The app setting that carries the value (or the Key Vault reference).
    pub fn setting(self) -> &'static str {
        match self {
            SecretId::CfWebhook => names::CF_WEBHOOK_SECRET,
            SecretId::HaloClient => names::HALO_CLIENT_SECRET,
            SecretId::HaloWebhook => names::HALO_WEBHOOK_SECRET,
            SecretId::CfServiceAccount => names::CF_SERVICE_ACCOUNT_CLIENT_SECRET,
        }
    }

    /// The setting that names the secret in Key Vault (direct reads).
    pub fn name_setting(self) -> &'static str {
        match self {
            SecretId::CfWebhook => names::CF_WEBHOOK_SECRET_NAME,
            SecretId::HaloClient => names::HALO_CLIENT_SECRET_NAME,
            SecretId::HaloWebhook => names::HALO_WEBHOOK_SECRET_NAME,
            SecretId::CfServiceAccount => names::CF_SERVICE_ACCOUNT_CLIENT_SECRET_NAME,
        }
    }
}

/// Where each secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// The app setting's value (possibly resolved by the platform from a Key Vault reference).
    Setting(Result<String, Problem>),
    /// Read directly from Key Vault under this name.
    KeyVault(String),
}

/// The whole validated configuration.
#[derive(Clone)]
pub struct Config {
    pub port: u16,
    pub log_filter: String,
    pub storage: Availability<StorageConfig>,
    pub halo: Availability<HaloApiConfig>,
    pub outbound: Availability<OutboundConfig>,
    pub inbound: Availability<InboundConfig>,
    pub key_vault: Option<KeyVaultConfig>,
    pub rotation_grace: Duration,
    pub upstream_timeout: Duration,
    pub claim_ttl: Duration,
    /// Extra trusted certificate authorities (PEM), from `SSL_CERT_FILE`.
    pub extra_ca_pem: Option<Vec<u8>>,
    pub secrets: BTreeMap<SecretId, SecretSource>,
}

impl fmt::Debug for Config {
    // Secret values never reach a log line, even through Debug.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("storage", &self.storage.ready().map(|s| (s.source, &s.table_name)))
            .field("halo", &self.halo.ready().map(|h| &h.api_base_url))
            .field("outbound", &self.outbound.problems())
            .field("inbound", &self.inbound.problems())
            .field("key_vault", &self.key_vault.as_ref().map(|k| &k.vault_uri))
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let port = match env.get(PORT_VARIABLE) {
            None => DEFAULT_PORT,
            Some(v) => v
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid(PORT_VARIABLE, format!("`{v}` is not a TCP port")))?,
        };
        let key_vault = key_vault(env)?;
        let secrets = SecretId::ALL.iter().map(|&id| (id, secret_source(env, id, key_vault.is_some()))).collect();
        Ok(Config {
            port,
            log_filter: env.get(names::LOG_LEVEL).unwrap_or("info").to_string(),
            storage: storage(env)?,
            halo: halo_api(env)?,
            outbound: outbound(env)?,
            inbound: inbound(env)?,
            key_vault,
            rotation_grace: parse_seconds(
                names::SECRET_ROTATION_GRACE_SECONDS,
                env.get(names::SECRET_ROTATION_GRACE_SECONDS)
                    .or(default_of(names::SECRET_ROTATION_GRACE_SECONDS))
                    .unwrap_or("86400"),
            )?,
            upstream_timeout: positive_seconds(env, names::UPSTREAM_TIMEOUT_SECONDS, "10")?,
            claim_ttl: positive_seconds(env, names::CLAIM_TTL_SECONDS, "60")?,
            extra_ca_pem: extra_ca(env)?,
            secrets,
        })
    }

    /// Every problem that keeps a direction off, its own and those of the parts it uses (secrets excluded: their
    /// availability can change at run time and is checked by `secrets`).
    pub fn problems_of(&self, area: Area) -> Vec<Problem> {
        let own = match area {
            Area::Outbound => self.outbound.problems(),
            Area::Inbound => self.inbound.problems(),
            _ => &[],
        };
        own.iter().chain(self.halo.problems()).chain(self.storage.problems()).cloned().collect()
    }
}

fn extra_ca(env: &Env) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = env.get(names::SSL_CERT_FILE) else { return Ok(None) };
    let pem = std::fs::read(path).map_err(|e| invalid(names::SSL_CERT_FILE, format!("cannot read {path}: {e}")))?;
    reqwest::Certificate::from_pem_bundle(&pem)
        .ok()
        .filter(|certs| !certs.is_empty())
        .ok_or_else(|| invalid(names::SSL_CERT_FILE, format!("{path} holds no PEM certificate")))?;
    Ok(Some(pem))
}

fn secret_source(env: &Env, id: SecretId, from_key_vault: bool) -> SecretSource {
    if from_key_vault {
        let name = env.get(id.name_setting()).or(default_of(id.name_setting())).unwrap_or_default();
        return SecretSource::KeyVault(name.to_string());
    }
    let name = id.setting();
    SecretSource::Setting(match env.lookup(name) {
        Lookup::Set(v) => Ok(v.to_string()),
        Lookup::Unset => Err(Problem::Missing(name)),
        Lookup::Unresolved => Err(Problem::UnresolvedKeyVaultReference(name)),
    })
}

fn key_vault(env: &Env) -> Result<Option<KeyVaultConfig>, ConfigError> {
    let Some(uri) = env.get(names::KEY_VAULT_URI) else { return Ok(None) };
    let refresh = positive_seconds(env, names::KEY_VAULT_REFRESH_SECONDS, "300")?;
    Ok(Some(KeyVaultConfig {
        vault_uri: parse_base_url(names::KEY_VAULT_URI, uri)?,
        refresh,
        client_id: env.get(names::AZURE_CLIENT_ID).map(str::to_string),
    }))
}

fn halo_api(env: &Env) -> Result<Availability<HaloApiConfig>, ConfigError> {
    let mut r = Reader::new(env);
    let auth_url = r.required(names::HALO_AUTH_URL).map(|v| parse_base_url(names::HALO_AUTH_URL, v)).transpose()?;
    let api_base_url =
        r.required(names::HALO_API_BASE_URL).map(|v| parse_base_url(names::HALO_API_BASE_URL, v)).transpose()?;
    let client_id = r.required(names::HALO_CLIENT_ID);
    let tenant = r.optional(names::HALO_TENANT).map(str::to_string);
    let scope = r.optional(names::HALO_SCOPE).unwrap_or("all").to_string();
    let reference = ref_location(&mut r)?;
    Ok(r.finish(|| HaloApiConfig {
        auth_url: auth_url.unwrap_or_default(),
        api_base_url: api_base_url.unwrap_or_default(),
        client_id: client_id.unwrap_or_default().to_string(),
        tenant,
        scope,
        reference,
    }))
}

fn ref_location(r: &mut Reader<'_>) -> Result<RefLocation, ConfigError> {
    if let Some(id) = r.optional(names::HALO_EXTERNAL_REF_FIELD_ID) {
        return Ok(RefLocation::CustomField(parse_positive(names::HALO_EXTERNAL_REF_FIELD_ID, id)?));
    }
    let field = r.optional(names::HALO_EXTERNAL_REF_FIELD).unwrap_or("supplier_reference");
    match field.to_ascii_lowercase().as_str() {
        "supplier_reference" => Ok(RefLocation::Field(TicketRefField::SupplierReference)),
        "thirdpartynumber" => Ok(RefLocation::Field(TicketRefField::ThirdPartyNumber)),
        other => Err(invalid(
            names::HALO_EXTERNAL_REF_FIELD,
            format!("`{other}` is not one of supplier_reference, thirdpartynumber"),
        )),
    }
}

fn outbound(env: &Env) -> Result<Availability<OutboundConfig>, ConfigError> {
    let mut r = Reader::new(env);
    let max_skew = parse_seconds(names::CF_MAX_SKEW_SECONDS, r.optional(names::CF_MAX_SKEW_SECONDS).unwrap_or("300"))?;
    let process_test_events =
        parse_bool(names::CF_PROCESS_TEST_EVENTS, r.optional(names::CF_PROCESS_TEST_EVENTS).unwrap_or("false"))?;
    let ticket_type_id = r
        .required(names::HALO_DEFAULT_TICKETTYPE_ID)
        .map(|v| parse_positive(names::HALO_DEFAULT_TICKETTYPE_ID, v))
        .transpose()?;
    let default_client_id = r
        .required(names::HALO_DEFAULT_CLIENT_ID)
        .map(|v| parse_positive(names::HALO_DEFAULT_CLIENT_ID, v))
        .transpose()?;
    let mut client_map = HashMap::new();
    if let Some(v) = r.optional(names::HALO_CLIENT_MAP) {
        for (account, client) in parse_pairs(names::HALO_CLIENT_MAP, v)? {
            client_map.insert(account.to_lowercase(), parse_positive(names::HALO_CLIENT_MAP, client)?);
        }
    }
    let priorities = PriorityMap::parse(
        names::HALO_PRIORITY_MAP,
        r.optional(names::HALO_PRIORITY_MAP).unwrap_or("High=1,Medium=2,Low=3,Informational=3"),
    )?;
    let outcome = r.optional(names::HALO_PRIVATE_NOTE_OUTCOME).unwrap_or("Private Note");
    let note_outcome = match outcome.parse::<i64>() {
        Ok(id) if id > 0 => NoteOutcome::Id(id),
        Ok(_) => return Err(invalid(names::HALO_PRIVATE_NOTE_OUTCOME, "an outcome id must be positive")),
        Err(_) => NoteOutcome::Name(outcome.to_string()),
    };
    Ok(r.finish(|| OutboundConfig {
        max_skew,
        process_test_events,
        ticket_type_id: ticket_type_id.unwrap_or_default(),
        default_client_id: default_client_id.unwrap_or_default(),
        client_map,
        priorities,
        note_outcome,
    }))
}

fn inbound(env: &Env) -> Result<Availability<InboundConfig>, ConfigError> {
    let mut r = Reader::new(env);
    let closed = r.optional(names::HALO_CLOSED_STATUS_ID).unwrap_or("9");
    let closed_status_ids = closed
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_positive(names::HALO_CLOSED_STATUS_ID, s))
        .collect::<Result<Vec<_>, _>>()?;
    let integration_agent_id = r
        .optional(names::HALO_INTEGRATION_AGENT_ID)
        .map(|v| parse_positive(names::HALO_INTEGRATION_AGENT_ID, v))
        .transpose()?;
    let integration_application = r.optional(names::HALO_INTEGRATION_APPLICATION).map(str::to_string);
    let cf_api_base_url =
        r.required(names::CF_API_BASE_URL).map(|v| parse_base_url(names::CF_API_BASE_URL, v)).transpose()?;
    let cf_client_id = r.required(names::CF_SERVICE_ACCOUNT_CLIENT_ID).map(str::to_string);
    let cf_workspace_id = r.required(names::CF_WORKSPACE_ID).map(str::to_string);
    let close_classification = r.optional(names::CF_CLOSE_CLASSIFICATION).unwrap_or("Undetermined").to_string();
    let close_classification_reason =
        r.optional(names::CF_CLOSE_CLASSIFICATION_REASON).unwrap_or("InaccurateData").to_string();
    Ok(r.finish(|| InboundConfig {
        closed_status_ids,
        integration_agent_id,
        integration_application,
        cf_api_base_url: cf_api_base_url.unwrap_or_default(),
        cf_client_id: cf_client_id.unwrap_or_default(),
        cf_workspace_id: cf_workspace_id.unwrap_or_default(),
        close_classification,
        close_classification_reason,
    }))
}

/// One Functions-style connection: `<name>` as a connection string, else the `<name>__*` identity settings.
fn connection(
    env: &Env,
    string: &'static str,
    uri: &'static str,
    credential: &'static str,
    client_id: &'static str,
) -> Result<Option<StorageConnection>, Problem> {
    match env.lookup(string) {
        Lookup::Unresolved => return Err(Problem::UnresolvedKeyVaultReference(string)),
        Lookup::Set(v) if v.replace(' ', "").eq_ignore_ascii_case("UseDevelopmentStorage=true") => {
            return Ok(Some(StorageConnection::Emulator))
        }
        Lookup::Set(v) => return Ok(Some(StorageConnection::ConnectionString(v.to_string()))),
        Lookup::Unset => {}
    }
    let Some(table_service_uri) = env.get(uri) else { return Ok(None) };
    match env.get(credential) {
        None => {}
        Some(c) if c.eq_ignore_ascii_case("managedidentity") => {}
        Some(other) => {
            return Err(Problem::Other(format!("{credential} is `{other}`; only `managedidentity` is supported")))
        }
    }
    Ok(Some(StorageConnection::ManagedIdentity {
        table_service_uri: table_service_uri.trim_end_matches('/').to_string(),
        client_id: env.get(client_id).map(str::to_string),
    }))
}

fn storage(env: &Env) -> Result<Availability<StorageConfig>, ConfigError> {
    let table_name = env.get(names::STATE_TABLE_NAME).unwrap_or("bridgestate").to_string();
    if !(3..=63).contains(&table_name.len())
        || !table_name.chars().all(|c| c.is_ascii_alphanumeric())
        || !table_name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return Err(invalid(
            names::STATE_TABLE_NAME,
            "a table name is 3–63 letters and digits, starting with a letter",
        ));
    }
    let candidates = [
        (
            names::STATE_STORAGE,
            names::STATE_STORAGE_TABLE_URI,
            names::STATE_STORAGE_CREDENTIAL,
            names::STATE_STORAGE_CLIENT_ID,
        ),
        (
            names::WEBJOBS_STORAGE,
            names::WEBJOBS_STORAGE_TABLE_URI,
            names::WEBJOBS_STORAGE_CREDENTIAL,
            names::WEBJOBS_STORAGE_CLIENT_ID,
        ),
    ];
    for (string, uri, credential, client_id) in candidates {
        match connection(env, string, uri, credential, client_id) {
            Ok(None) => continue,
            Ok(Some(connection)) => {
                if let StorageConnection::ManagedIdentity { table_service_uri, .. } = &connection {
                    parse_base_url(uri, table_service_uri)?;
                }
                if let StorageConnection::ConnectionString(cs) = &connection {
                    crate::store::validate_connection_string(cs).map_err(|reason| invalid(string, reason))?;
                }
                return Ok(Availability::Ready(StorageConfig { connection, source: string, table_name }));
            }
            Err(problem @ Problem::Other(_)) => return Err(invalid(credential, problem.to_string())),
            Err(problem) => return Ok(Availability::Off(vec![problem])),
        }
    }
    Ok(Availability::Off(vec![Problem::Other(format!(
        "no state storage: set {} (or {}), or {} with {}=managedidentity",
        names::STATE_STORAGE,
        names::WEBJOBS_STORAGE,
        names::STATE_STORAGE_TABLE_URI,
        names::STATE_STORAGE_CREDENTIAL
    ))]))
}

/// Every setting of one area, for documentation and checks.
pub fn settings_of(area: Area) -> impl Iterator<Item = &'static crate::settings::Setting> {
    SETTINGS.iter().filter(move |s| s.area == area)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CF_WEBHOOK_SECRET", "s"),
            ("HALO_AUTH_URL", "https://x.halopsa.com/auth/"),
            ("HALO_API_BASE_URL", "https://x.halopsa.com/api"),
            ("HALO_CLIENT_ID", "id"),
            ("HALO_CLIENT_SECRET", "secret"),
            ("HALO_DEFAULT_TICKETTYPE_ID", "29"),
            ("HALO_DEFAULT_CLIENT_ID", "1"),
            ("HALO_WEBHOOK_SECRET", "w"),
            ("CF_API_BASE_URL", "https://prod.platform.contraforce.com/api/v2"),
            ("CF_SERVICE_ACCOUNT_CLIENT_ID", "c"),
            ("CF_SERVICE_ACCOUNT_CLIENT_SECRET", "cs"),
            ("CF_WORKSPACE_ID", "ws"),
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
        ]
    }

    fn with(changes: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut pairs = full();
        for (k, v) in changes {
            pairs.retain(|(name, _)| name != k);
            pairs.push((k, v));
        }
        Config::from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn full_configuration_enables_both_directions_with_defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        let halo = c.halo.ready().unwrap();
        assert_eq!(halo.auth_url, "https://x.halopsa.com/auth", "trailing slash trimmed");
        assert_eq!(halo.scope, "all");
        assert_eq!(halo.reference, RefLocation::Field(TicketRefField::SupplierReference));
        let out = c.outbound.ready().unwrap();
        assert_eq!(out.max_skew, Duration::from_secs(300));
        assert_eq!(out.note_outcome, NoteOutcome::Name("Private Note".into()));
        assert_eq!(out.priorities.priority(Some("HIGH")), 1);
        assert_eq!(out.priorities.priority(Some("medium")), 2);
        assert_eq!(out.priorities.priority(Some("Informational")), 3);
        assert_eq!(out.priorities.priority(None), 3);
        let inb = c.inbound.ready().unwrap();
        assert_eq!(inb.closed_status_ids, vec![9]);
        assert_eq!(inb.close_classification, "Undetermined");
        assert_eq!(c.storage.ready().unwrap().connection, StorageConnection::Emulator);
    }

    #[test]
    fn empty_optional_values_mean_unset() {
        let c = with(&[("HALO_EXTERNAL_REF_FIELD_ID", ""), ("HALO_INTEGRATION_AGENT_ID", "  "), ("HALO_TENANT", "")])
            .unwrap();
        assert_eq!(c.halo.ready().unwrap().reference, RefLocation::Field(TicketRefField::SupplierReference));
        assert_eq!(c.halo.ready().unwrap().tenant, None);
        assert_eq!(c.inbound.ready().unwrap().integration_agent_id, None);
    }

    #[test]
    fn missing_settings_turn_only_their_direction_off() {
        let c = with(&[("HALO_DEFAULT_TICKETTYPE_ID", "")]).unwrap();
        assert_eq!(c.problems_of(Area::Outbound), vec![Problem::Missing("HALO_DEFAULT_TICKETTYPE_ID")]);
        assert!(c.problems_of(Area::Inbound).is_empty());
        let c = with(&[("CF_WORKSPACE_ID", "")]).unwrap();
        assert!(c.problems_of(Area::Outbound).is_empty());
        assert_eq!(c.problems_of(Area::Inbound), vec![Problem::Missing("CF_WORKSPACE_ID")]);
    }

    #[test]
    fn unresolved_key_vault_references_are_named() {
        let c = with(&[("CF_WEBHOOK_SECRET", "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/cf/)")])
            .unwrap();
        match &c.secrets[&SecretId::CfWebhook] {
            SecretSource::Setting(Err(p)) => {
                assert_eq!(p, &Problem::UnresolvedKeyVaultReference("CF_WEBHOOK_SECRET"));
                assert!(p.to_string().contains("CF_WEBHOOK_SECRET is an unresolved Key Vault reference"));
            }
            other => panic!("{other:?}"),
        }
        let c = with(&[("CF_API_BASE_URL", "@Microsoft.KeyVault(VaultName=kv;SecretName=x)")]).unwrap();
        assert_eq!(c.problems_of(Area::Inbound), vec![Problem::UnresolvedKeyVaultReference("CF_API_BASE_URL")]);
    }

    #[test]
    fn invalid_values_stop_startup_naming_the_variable() {
        for (name, value) in [
            ("HALO_DEFAULT_CLIENT_ID", "abc"),
            ("HALO_DEFAULT_TICKETTYPE_ID", "-4"),
            ("CF_MAX_SKEW_SECONDS", "five"),
            ("HALO_EXTERNAL_REF_FIELD_ID", "x1"),
            ("HALO_EXTERNAL_REF_FIELD", "summary"),
            ("HALO_AUTH_URL", "not a url"),
            ("HALO_API_BASE_URL", "ftp://x/api"),
            ("HALO_PRIORITY_MAP", "High=1,Medium"),
            ("HALO_PRIORITY_MAP", "High=1"),
            ("HALO_CLIENT_MAP", "acc=notanumber"),
            ("HALO_CLOSED_STATUS_ID", "9,closed"),
            ("CF_PROCESS_TEST_EVENTS", "maybe"),
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "70000"),
            ("STATE_TABLE_NAME", "bad-name"),
            ("AzureWebJobsStorage", "AccountName=x;Bogus=1"),
            ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
            ("SSL_CERT_FILE", "Cargo.toml"),
        ] {
            let err = with(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{value}");
            assert!(err.to_string().contains(name));
        }
    }

    #[test]
    fn maps_and_lists_parse() {
        let c = with(&[
            ("HALO_CLIENT_MAP", " 0A1B=12 , acme=13"),
            ("HALO_PRIORITY_MAP", "high=4,Low=2"),
            ("HALO_CLOSED_STATUS_ID", "9, 17"),
            ("HALO_PRIVATE_NOTE_OUTCOME", "7"),
            ("HALO_EXTERNAL_REF_FIELD_ID", "42"),
        ])
        .unwrap();
        let out = c.outbound.ready().unwrap();
        assert_eq!(out.client_for(Some("0a1b")), 12);
        assert_eq!(out.client_for(Some("ACME")), 13);
        assert_eq!(out.client_for(Some("other")), 1);
        assert_eq!(out.client_for(None), 1);
        assert_eq!(out.priorities.priority(Some("High")), 4);
        assert_eq!(out.priorities.priority(Some("Medium")), 2);
        assert_eq!(out.note_outcome, NoteOutcome::Id(7));
        assert_eq!(c.inbound.ready().unwrap().closed_status_ids, vec![9, 17]);
        assert_eq!(c.halo.ready().unwrap().reference, RefLocation::CustomField(42));
    }

    #[test]
    fn storage_follows_the_functions_connection_convention() {
        let c = with(&[
            ("StateStorage__tableServiceUri", "https://acct.table.core.windows.net/"),
            ("StateStorage__credential", "managedidentity"),
            ("StateStorage__clientId", "1111"),
        ])
        .unwrap();
        let s = c.storage.ready().unwrap();
        assert_eq!(s.source, "StateStorage");
        assert_eq!(
            s.connection,
            StorageConnection::ManagedIdentity {
                table_service_uri: "https://acct.table.core.windows.net".into(),
                client_id: Some("1111".into())
            }
        );
        let c = with(&[("AzureWebJobsStorage", "")]).unwrap();
        assert!(c.problems_of(Area::Outbound)[0].to_string().contains("no state storage"));
        assert!(c.problems_of(Area::Inbound)[0].to_string().contains("no state storage"));
        let err = with(&[
            ("StateStorage__tableServiceUri", "https://a.table.core.windows.net"),
            ("StateStorage__credential", "secret"),
        ])
        .unwrap_err();
        assert_eq!(err.name, "StateStorage__credential");
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let c = with(&[("HALO_CLIENT_SECRET", "very-secret-value")]).unwrap();
        assert!(!format!("{c:?}").contains("very-secret-value"));
    }
}
