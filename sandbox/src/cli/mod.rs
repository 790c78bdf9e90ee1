//! The subcommands of the `sandbox` binary and what they share: option parsing, the local URLs and
//! secrets (with the defaults `scripts/run-local` uses), and an HTTP client for local endpoints.

/// `println!` that ignores a closed stdout (`sandbox … | head` must not panic on a broken pipe).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod demo_routing;
pub mod halo_note;
pub mod halo_outage;
pub mod host;
pub mod send_incident;
pub mod serve;
pub mod sign;
pub mod table;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The CF webhook secret `scripts/run-local` gives the bridge when none is configured.
pub const DEV_CF_WEBHOOK_SECRET: &str = "local-cf-webhook-secret";
/// The Halo webhook secret `scripts/run-local` gives the bridge when none is configured.
pub const DEV_HALO_WEBHOOK_SECRET: &str = "local-halo-webhook-secret";

/// How a command ends when it does not succeed.
#[derive(Debug)]
pub enum Failure {
    /// `--help`: print the usage on stdout, exit 0.
    Help(&'static str),
    /// A wrong command line: the message, then the usage, on stderr; exit 2.
    Usage(String, &'static str),
    /// The command ran and failed: the message (already in words) on stderr; exit 1.
    Failed(String),
}

pub type CmdResult = Result<(), Failure>;

/// Shorthand for a failure in words.
pub fn failed(message: impl Into<String>) -> Failure {
    Failure::Failed(message.into())
}

/// The command line after the command name: `--name value`, `--name=value` and bare flags.
pub struct Args {
    items: std::vec::IntoIter<String>,
    pending: Option<String>,
    usage: &'static str,
}

impl Args {
    pub fn new(items: Vec<String>) -> Args {
        Args { items: items.into_iter(), pending: None, usage: "" }
    }

    /// Sets the usage text shown with errors and `--help`.
    pub fn usage(&mut self, usage: &'static str) {
        self.usage = usage;
    }

    /// The next option name (`--halo-port=1` yields `--halo-port`, its value comes from [`Args::value`]).
    /// `-h`/`--help` end the command with its usage.
    pub fn next_option(&mut self) -> Result<Option<String>, Failure> {
        if let Some(value) = self.pending.take() {
            return Err(self.error(format!("unexpected value {value:?}")));
        }
        let Some(arg) = self.items.next() else { return Ok(None) };
        if arg == "-h" || arg == "--help" {
            return Err(Failure::Help(self.usage));
        }
        if !arg.starts_with("--") {
            return Err(self.error(format!("unexpected argument {arg:?}")));
        }
        match arg.split_once('=') {
            Some((name, value)) => {
                self.pending = Some(value.to_string());
                Ok(Some(name.to_string()))
            }
            None => Ok(Some(arg)),
        }
    }

    /// The value of the option just read.
    pub fn value(&mut self, name: &str) -> Result<String, Failure> {
        match self.pending.take().or_else(|| self.items.next()) {
            Some(v) => Ok(v),
            None => Err(self.error(format!("{name} needs a value"))),
        }
    }

    /// The value of the option just read, parsed.
    pub fn parsed<T: std::str::FromStr>(&mut self, name: &str) -> Result<T, Failure>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.value(name)?;
        raw.parse::<T>().map_err(|e| self.error(format!("{name} {raw:?}: {e}")))
    }

    /// A wrong command line.
    pub fn error(&self, message: String) -> Failure {
        Failure::Usage(message, self.usage)
    }

    /// An option this command does not know.
    pub fn unknown(&self, name: &str) -> Failure {
        self.error(format!("unknown option {name:?}"))
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn local_url(url_var: &str, port_var: &str, default_port: u16) -> String {
    env_nonempty(url_var).unwrap_or_else(|| {
        let port = env_nonempty(port_var).unwrap_or_else(|| default_port.to_string());
        format!("http://127.0.0.1:{port}")
    })
}

/// The bridge: `$BRIDGE_URL`, else `http://127.0.0.1:$BRIDGE_PORT` (7071).
pub fn default_bridge_url() -> String {
    local_url("BRIDGE_URL", "BRIDGE_PORT", 7071)
}

/// The sandbox Halo: `$SANDBOX_HALO_URL`, else `http://127.0.0.1:$SANDBOX_HALO_PORT` (7081).
pub fn default_halo_url() -> String {
    local_url("SANDBOX_HALO_URL", "SANDBOX_HALO_PORT", 7081)
}

/// The sandbox ContraForce: `$SANDBOX_CF_URL`, else `http://127.0.0.1:$SANDBOX_CF_PORT` (7082).
pub fn default_cf_url() -> String {
    local_url("SANDBOX_CF_URL", "SANDBOX_CF_PORT", 7082)
}

/// A secret from the environment, else the local dev value; the second part says which, in words.
pub fn default_secret(var: &str, dev: &'static str) -> (String, String) {
    match env_nonempty(var) {
        Some(v) if v != dev => (v, format!("${var}")),
        _ => (dev.to_string(), format!("the local dev secret {dev:?}")),
    }
}

/// `url` without a trailing slash.
pub fn trim_url(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// An HTTP client for local endpoints (no proxy; the bridge answers within 27 s).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(40))
        .build()
        .expect("a reqwest client with rustls builds")
}

/// `GET url` as JSON, or why not, in words.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http.get(url).send().await.map_err(|e| describe_send_error(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("it answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("its answer is not JSON: {e}"))
}

/// `POST url` with a JSON body, expecting a 2xx.
pub async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value, String> {
    let response = http.post(url).json(body).send().await.map_err(|e| describe_send_error(&e))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("it answered {status}: {}", String::from_utf8_lossy(&bytes)));
    }
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A request that got no answer, in words.
pub fn describe_send_error(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "nothing is listening there (connection refused)".to_string()
    } else if e.is_timeout() {
        "it did not answer in time".to_string()
    } else {
        e.to_string()
    }
}

/// What the bridge answered.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub retry_after: Option<String>,
    pub body: Value,
    pub raw: String,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Answer {
        let status = response.status();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let raw = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Answer { status, retry_after, body, raw }
    }

    /// The `error` field, or the raw body.
    pub fn error_text(&self) -> String {
        match self.body.get("error").and_then(Value::as_str) {
            Some(e) => e.to_string(),
            None if self.raw.trim().is_empty() => "(empty body)".to_string(),
            None => self.raw.trim().to_string(),
        }
    }

    /// The bridge's answer to a non-2xx, in words, for the errors both routes share.
    pub fn explain_common(&self, route: &str) -> String {
        let status = self.status.as_u16();
        match status {
            503 => {
                let problems: Vec<String> = self
                    .body
                    .get("problems")
                    .and_then(Value::as_array)
                    .map(|list| list.iter().map(|p| p.as_str().map(str::to_string).unwrap_or(p.to_string())).collect())
                    .unwrap_or_default();
                if problems.is_empty() {
                    let after = self.retry_after.as_deref().map(|s| format!(", retry after {s} s")).unwrap_or_default();
                    format!(
                        "The bridge could not finish it now (503{after}): {}.\nA real sender retries; nothing was \
                         lost or doubled. Run the command again to retry.",
                        self.error_text()
                    )
                } else {
                    let list: String = problems.iter().map(|p| format!("\n  - {p}")).collect();
                    format!(
                        "The bridge's {route} direction is not configured (503: {}):{list}\nFix these settings and \
                         restart scripts/run-local (`handler --check` lists what is missing).",
                        self.error_text()
                    )
                }
            }
            404 | 405 => format!(
                "The bridge has no POST /api/{route} here ({status} {}): is the URL the bridge's base URL?",
                self.error_text()
            ),
            _ => format!("The bridge answered {}: {}", self.status, self.error_text()),
        }
    }
}

pub use sandbox::util::uuid_v4;

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// A JSON value as display text (strings without quotes, null as "-").
pub fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Every line of `text` after the first indented by `indent` spaces (for multi-line values).
pub fn indent_rest(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.trim_end().lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(&format!("\n{pad}"))
}

/// The `cf|source|incidentId` reference a sandbox ticket carries, and the field it is in.
pub fn ticket_reference(ticket: &Value) -> Option<(String, String)> {
    for field in ["supplier_reference", "thirdpartynumber"] {
        if let Some(r) = ticket.get(field).and_then(Value::as_str).filter(|r| r.starts_with("cf|")) {
            return Some((r.to_string(), field.to_string()));
        }
    }
    ticket.get("customfields").and_then(Value::as_array).and_then(|fields| {
        fields.iter().find_map(|f| {
            let value = f.get("value").and_then(Value::as_str).filter(|r| r.starts_with("cf|"))?;
            Some((value.to_string(), format!("custom field {}", text(f.get("id")))))
        })
    })
}

/// The incident id in a `cf|source|incidentId` reference.
pub fn incident_of(reference: &str) -> Option<&str> {
    let mut parts = reference.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("cf"), Some(_), Some(id)) if !id.is_empty() => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(list: &[&str]) -> Args {
        Args::new(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn options_take_values_separately_or_after_an_equals_sign() {
        let mut a = args(&["--bridge-url", "http://x", "--event-id=e1", "--no-close"]);
        assert_eq!(a.next_option().unwrap().as_deref(), Some("--bridge-url"));
        assert_eq!(a.value("--bridge-url").unwrap(), "http://x");
        assert_eq!(a.next_option().unwrap().as_deref(), Some("--event-id"));
        assert_eq!(a.value("--event-id").unwrap(), "e1");
        assert_eq!(a.next_option().unwrap().as_deref(), Some("--no-close"));
        assert!(a.next_option().unwrap().is_none());
    }

    #[test]
    fn a_missing_value_or_a_stray_argument_is_a_usage_error() {
        let mut a = args(&["--secret"]);
        a.next_option().unwrap();
        assert!(matches!(a.value("--secret"), Err(Failure::Usage(..))));
        assert!(matches!(args(&["stray"]).next_option(), Err(Failure::Usage(..))));
        let mut flag_with_value = args(&["--no-close=yes"]);
        flag_with_value.next_option().unwrap();
        assert!(matches!(flag_with_value.next_option(), Err(Failure::Usage(..))));
        assert!(matches!(args(&["--help"]).next_option(), Err(Failure::Help(_))));
    }

    #[test]
    fn references_are_found_in_any_field_and_split_at_the_first_two_bars() {
        let t = json!({"supplier_reference": "cf|sentinel|a|b"});
        assert_eq!(ticket_reference(&t), Some(("cf|sentinel|a|b".into(), "supplier_reference".into())));
        assert_eq!(incident_of("cf|sentinel|a|b"), Some("a|b"));
        let t = json!({"supplier_reference": "other", "customfields": [{"id": 7, "value": "cf|s|i"}]});
        assert_eq!(ticket_reference(&t), Some(("cf|s|i".into(), "custom field 7".into())));
        assert_eq!(ticket_reference(&json!({"thirdpartynumber": "x"})), None);
        assert_eq!(incident_of("cf|s|"), None);
    }
}
