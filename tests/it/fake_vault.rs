//! A fake Key Vault (`GET /secrets/{name}?api-version=...`) and App Service managed-identity endpoint on loopback.
//! The identity endpoint checks `X-IDENTITY-HEADER` and the user-assigned `client_id`; the vault checks the token.

use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use warp::http::StatusCode;
use warp::Filter;

pub const IDENTITY_HEADER: &str = "it-identity-header";
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const TOKEN: &str = "it-vault-token";
/// The data-plane API version the bridge sends (docs/azure-sdk.md, *Key Vault*).
const API_VERSION: &str = "2025-07-01";

#[derive(Default)]
struct State {
    secrets: HashMap<String, String>,
    down: bool,
    secret_reads: usize,
    token_requests: Vec<HashMap<String, String>>,
}

#[derive(Clone)]
pub struct FakeVault {
    state: Arc<Mutex<State>>,
    pub url: String,
    _server: Arc<sandbox::server::ServerHandle>,
}

impl FakeVault {
    pub fn start(secrets: &[(&str, &str)]) -> FakeVault {
        let state = Arc::new(Mutex::new(State {
            secrets: secrets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..State::default()
        }));
        let msi_state = state.clone();
        let msi = warp::path!("msi" / "token")
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::optional::<String>("x-identity-header"))
            .map(move |query: HashMap<String, String>, header: Option<String>| {
                msi_state.lock().unwrap().token_requests.push(query.clone());
                let ok = header.as_deref() == Some(IDENTITY_HEADER)
                    && query.get("client_id").map(String::as_str) == Some(CLIENT_ID);
                if !ok {
                    return warp::reply::with_status(
                        warp::reply::json(&json!({"error": "unknown identity"})),
                        StatusCode::BAD_REQUEST,
                    );
                }
                let expires = cf_halo_bridge::domain::unix_now() + 3600;
                let resource = query.get("resource").cloned().unwrap_or_default();
                // Storage gets a JWT (Azurite's `--oauth basic` checks its claims, not its signature).
                let token = if resource.contains("storage.azure.com") { storage_jwt(expires) } else { TOKEN.to_string() };
                let body = json!({"access_token": token, "expires_on": expires.to_string(), "token_type": "Bearer", "resource": resource});
                warp::reply::with_status(warp::reply::json(&body), StatusCode::OK)
            });
        let vault_state = state.clone();
        let secret = warp::path!("secrets" / String)
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::optional::<String>("authorization"))
            .map(move |name: String, query: HashMap<String, String>, auth: Option<String>| {
                let mut s = vault_state.lock().unwrap();
                s.secret_reads += 1;
                if query.get("api-version").map(String::as_str) != Some(API_VERSION) {
                    return warp::reply::with_status(warp::reply::json(&json!({"error": {"code": "BadParameter"}})), StatusCode::BAD_REQUEST);
                }
                if s.down {
                    return warp::reply::with_status(warp::reply::json(&json!({"error": {"code": "ServiceUnavailable"}})), StatusCode::SERVICE_UNAVAILABLE);
                }
                if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
                    return warp::reply::with_status(warp::reply::json(&json!({"error": {"code": "Unauthorized"}})), StatusCode::UNAUTHORIZED);
                }
                match s.secrets.get(&name) {
                    Some(value) => warp::reply::with_status(
                        warp::reply::json(&json!({"value": value, "id": format!("https://kv/secrets/{name}/v1"), "attributes": {"enabled": true, "created": 1776870000, "updated": 1776870000, "recoveryLevel": "Recoverable+Purgeable"}})),
                        StatusCode::OK,
                    ),
                    None => warp::reply::with_status(warp::reply::json(&json!({"error": {"code": "SecretNotFound"}})), StatusCode::NOT_FOUND),
                }
            });
        let server = sandbox::server::spawn(msi.or(secret), None, "fake-vault").unwrap();
        FakeVault { url: server.url(), state, _server: Arc::new(server) }
    }

    pub fn set(&self, name: &str, value: &str) {
        self.state.lock().unwrap().secrets.insert(name.into(), value.into());
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn secret_reads(&self) -> usize {
        self.state.lock().unwrap().secret_reads
    }

    /// The query strings the identity endpoint received.
    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().token_requests.clone()
    }

    /// The settings that make the bridge read its secrets from this vault with a user-assigned identity.
    pub fn settings(&self, refresh_secs: u64, grace_secs: u64) -> Vec<(String, String)> {
        [
            ("KEY_VAULT_URI", self.url.clone()),
            ("KEY_VAULT_REFRESH_SECONDS", refresh_secs.to_string()),
            ("SECRET_ROTATION_GRACE_SECONDS", grace_secs.to_string()),
            ("AZURE_CLIENT_ID", CLIENT_ID.to_string()),
            ("IDENTITY_ENDPOINT", format!("{}/msi/token", self.url)),
            ("IDENTITY_HEADER", IDENTITY_HEADER.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A JWT for `https://storage.azure.com` (Azurite's `--oauth basic` checks aud, iss, nbf and exp, not the signature).
fn storage_jwt(expires: i64) -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = cf_halo_bridge::domain::unix_now();
    let header = b64(json!({"alg": "RS256", "typ": "JWT"}));
    let claims = b64(json!({
        "aud": "https://storage.azure.com",
        "iss": "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/",
        "nbf": now - 60, "iat": now - 60, "exp": expires,
        "oid": "00000000-0000-0000-0000-000000000001", "tid": "ab1f708d-50f6-404c-a006-d71b2ac7a606"
    }));
    format!("{header}.{claims}.c2lnbmF0dXJl")
}
