//! Whether a part of the bridge can work, and why not: the vocabulary shared by configuration, secrets and the
//! directions' readiness (a direction that is off answers 503 naming each problem).

use std::fmt;

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
