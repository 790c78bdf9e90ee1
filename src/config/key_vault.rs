//! Where each secret comes from: its app setting (resolved by the platform from a Key Vault reference), or, with
//! `KEY_VAULT_URI`, direct reads from the vault refreshed in the background.

use super::read::{base_url, default_of, lookup, positive_seconds, Lookup, Reader};
use crate::availability::Problem;
use crate::secrets::{SecretId, SecretSource};
use crate::settings as names;
use std::collections::BTreeMap;
use std::time::Duration;

/// Direct Key Vault reads.
#[derive(Debug, Clone)]
pub struct KeyVaultConfig {
    pub vault_uri: String,
    pub refresh: Duration,
    pub client_id: Option<String>,
}

pub(super) fn read(r: &mut Reader<'_>) -> Option<KeyVaultConfig> {
    r.optional(names::KEY_VAULT_URI)?;
    let vault_uri = r.optional_as(names::KEY_VAULT_URI, base_url);
    let refresh = r.optional_as(names::KEY_VAULT_REFRESH_SECONDS, positive_seconds);
    Some(KeyVaultConfig {
        vault_uri: vault_uri?,
        refresh: refresh?,
        client_id: r.optional(names::AZURE_CLIENT_ID).map(str::to_string),
    })
}

pub(super) fn sources(r: &Reader<'_>, from_key_vault: bool) -> BTreeMap<SecretId, SecretSource> {
    let env = r.env();
    let source = |id: SecretId| {
        if from_key_vault {
            let name = env.get(id.name_setting()).or(default_of(id.name_setting())).unwrap_or_default();
            return SecretSource::KeyVault(name.to_string());
        }
        let name = id.setting();
        SecretSource::Setting(match lookup(env, name) {
            Lookup::Set(v) => Ok(v.to_string()),
            Lookup::Unset => Err(Problem::Missing(name)),
            Lookup::Unresolved => Err(Problem::UnresolvedKeyVaultReference(name)),
        })
    };
    SecretId::ALL.iter().map(|&id| (id, source(id))).collect()
}
