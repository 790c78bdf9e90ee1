//! The five secrets, as the rest of the code sees them: the current value and, during a rotation's grace window,
//! the previous one. Values come from app settings (resolved Key Vault references) or, when `KEY_VAULT_URI` is set,
//! from direct Key Vault reads refreshed in the background (`keyvault`).

use crate::availability::Problem;
use crate::settings as names;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// The five secrets the bridge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretId {
    CfWebhook,
    HaloClient,
    HaloWebhook,
    CfServiceAccount,
    /// The status page's own key.
    StatusPage,
}

impl SecretId {
    pub(crate) const ALL: [SecretId; 5] = [
        SecretId::CfWebhook,
        SecretId::HaloClient,
        SecretId::HaloWebhook,
        SecretId::CfServiceAccount,
        SecretId::StatusPage,
    ];

    /// The app setting that carries the value (or the Key Vault reference).
    pub fn setting(self) -> &'static str {
        match self {
            SecretId::CfWebhook => names::CF_WEBHOOK_SECRET,
            SecretId::HaloClient => names::HALO_CLIENT_SECRET,
            SecretId::HaloWebhook => names::HALO_WEBHOOK_SECRET,
            SecretId::CfServiceAccount => names::CF_SERVICE_ACCOUNT_CLIENT_SECRET,
            SecretId::StatusPage => names::STATUS_PAGE_KEY,
        }
    }

    /// The setting that names the secret in Key Vault (direct reads).
    pub(crate) fn name_setting(self) -> &'static str {
        match self {
            SecretId::CfWebhook => names::CF_WEBHOOK_SECRET_NAME,
            SecretId::HaloClient => names::HALO_CLIENT_SECRET_NAME,
            SecretId::HaloWebhook => names::HALO_WEBHOOK_SECRET_NAME,
            SecretId::CfServiceAccount => names::CF_SERVICE_ACCOUNT_CLIENT_SECRET_NAME,
            SecretId::StatusPage => names::STATUS_PAGE_KEY_NAME,
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

/// A secret value. Its Debug and Display never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Arc<str>);

impl SecretValue {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        SecretValue(value.into())
    }

    /// The value, for the one place that needs it (a MAC key, a form field, a comparison).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Which value of a secret matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    Current,
    /// The value before the last rotation, accepted until its grace window ends.
    Previous,
}

#[derive(Debug)]
struct Slot {
    current: Result<SecretValue, Problem>,
    previous: Option<(SecretValue, Instant)>,
}

/// What a fresh read changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Unchanged,
    /// The first value known.
    First,
    /// A new value replaced a known one (the old one is now `Previous`).
    Rotated,
}

/// Shared, cheaply cloned view of the secrets.
#[derive(Clone, Debug)]
pub struct Secrets {
    slots: Arc<RwLock<BTreeMap<SecretId, Slot>>>,
    grace: Duration,
}

impl Secrets {
    pub fn new(sources: &BTreeMap<SecretId, SecretSource>, grace: Duration) -> Self {
        let slots = sources
            .iter()
            .map(|(&id, source)| {
                let current = match source {
                    SecretSource::Setting(value) => value.clone().map(SecretValue::new),
                    SecretSource::KeyVault(name) => Err(Problem::Other(format!(
                        "{} has not been read from Key Vault (secret `{name}`) yet",
                        id.setting()
                    ))),
                };
                (id, Slot { current, previous: None })
            })
            .collect();
        Secrets { slots: Arc::new(RwLock::new(slots)), grace }
    }

    /// The current value, or why there is none.
    pub fn current(&self, id: SecretId) -> Result<SecretValue, Problem> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        match slots.get(&id) {
            Some(slot) => slot.current.clone(),
            None => Err(Problem::Missing(id.setting())),
        }
    }

    /// The values a webhook may be authenticated with: the current one, then the previous one inside its grace window.
    pub fn accepted(&self, id: SecretId) -> Vec<(SecretValue, Generation)> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = slots.get(&id) else { return Vec::new() };
        let mut values = Vec::with_capacity(2);
        if let Ok(v) = &slot.current {
            values.push((v.clone(), Generation::Current));
        }
        if let Some((v, until)) = &slot.previous {
            if Instant::now() < *until {
                values.push((v.clone(), Generation::Previous));
            }
        }
        values
    }

    /// Stores a freshly read value. A changed value starts a rotation: the old one stays accepted for the grace time.
    pub fn update(&self, id: SecretId, value: SecretValue) -> Update {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(id).or_insert(Slot { current: Err(Problem::Missing(id.setting())), previous: None });
        match &slot.current {
            Ok(old) if *old == value => Update::Unchanged,
            Ok(old) => {
                slot.previous = Some((old.clone(), Instant::now() + self.grace));
                slot.current = Ok(value);
                Update::Rotated
            }
            Err(_) => {
                slot.current = Ok(value);
                Update::First
            }
        }
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Records why a secret could not be read, keeping a known value (the last good one wins).
    pub(crate) fn report_failure(&self, id: SecretId, problem: Problem) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(&id) {
            if slot.current.is_err() {
                slot.current = Err(problem);
            }
        }
    }
}

/// Compares two secrets in constant time (for equal lengths; the length itself is not secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(grace: Duration) -> Secrets {
        let mut sources = BTreeMap::new();
        sources.insert(SecretId::CfWebhook, SecretSource::Setting(Ok("s3cr3t-first".into())));
        sources.insert(SecretId::HaloWebhook, SecretSource::Setting(Err(Problem::Missing("HALO_WEBHOOK_SECRET"))));
        sources.insert(SecretId::HaloClient, SecretSource::KeyVault("halo-client-secret".into()));
        Secrets::new(&sources, grace)
    }

    #[test]
    fn rotation_keeps_the_previous_value_for_the_grace_time() {
        let s = secrets(Duration::from_secs(60));
        assert_eq!(s.update(SecretId::CfWebhook, SecretValue::new("s3cr3t-first")), Update::Unchanged);
        assert_eq!(s.update(SecretId::CfWebhook, SecretValue::new("two")), Update::Rotated);
        assert_eq!(s.update(SecretId::HaloWebhook, SecretValue::new("w")), Update::First);
        let accepted: Vec<_> =
            s.accepted(SecretId::CfWebhook).into_iter().map(|(v, g)| (v.expose().to_string(), g)).collect();
        assert_eq!(accepted, vec![("two".into(), Generation::Current), ("s3cr3t-first".into(), Generation::Previous)]);
        let s = secrets(Duration::ZERO);
        s.update(SecretId::CfWebhook, SecretValue::new("two"));
        assert_eq!(s.accepted(SecretId::CfWebhook).len(), 1, "no grace: the old value is gone at once");
    }

    #[test]
    fn problems_are_reported_and_a_known_value_survives_failures() {
        let s = secrets(Duration::from_secs(1));
        assert_eq!(s.current(SecretId::HaloWebhook), Err(Problem::Missing("HALO_WEBHOOK_SECRET")));
        assert!(s
            .current(SecretId::HaloClient)
            .unwrap_err()
            .to_string()
            .contains("HALO_CLIENT_SECRET has not been read from Key Vault"));
        s.report_failure(SecretId::CfWebhook, Problem::Other("vault down".into()));
        assert_eq!(s.current(SecretId::CfWebhook).unwrap().expose(), "s3cr3t-first");
        assert!(s.accepted(SecretId::HaloWebhook).is_empty());
    }

    #[test]
    fn values_never_show_in_debug() {
        let s = secrets(Duration::from_secs(1));
        assert!(!format!("{s:?}").contains("s3cr3t"));
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab")
        );
    }
}
