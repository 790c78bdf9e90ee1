//! Reading settings: an empty value means unset; `@Microsoft.KeyVault(` means an unresolved Key Vault reference;
//! a missing required setting turns its area off (a `Problem`); a present but invalid value is a `ConfigError`.
//! Every error is collected, so one start reports all of them.

use super::{ConfigError, Env};
use crate::availability::{Availability, Problem};
use crate::settings;
use std::time::Duration;

const KEY_VAULT_REFERENCE_PREFIX: &str = "@Microsoft.KeyVault(";

pub(crate) enum Lookup<'a> {
    Unset,
    Unresolved,
    Set(&'a str),
}

pub(crate) fn lookup<'a>(env: &'a Env, name: &str) -> Lookup<'a> {
    match env.get(name) {
        None => Lookup::Unset,
        Some(v) if v.starts_with(KEY_VAULT_REFERENCE_PREFIX) => Lookup::Unresolved,
        Some(v) => Lookup::Set(v),
    }
}

/// The documented default of a setting (the one list in `settings`).
pub(crate) fn default_of(name: &str) -> Option<&'static str> {
    settings::setting(name).and_then(|s| s.default)
}

/// Reads one area's settings, collecting what turns the area off and what is invalid.
pub(crate) struct Reader<'a> {
    env: &'a Env,
    problems: Vec<Problem>,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(env: &'a Env, errors: &'a mut Vec<ConfigError>) -> Self {
        Reader { env, problems: Vec::new(), errors }
    }

    pub(crate) fn env(&self) -> &'a Env {
        self.env
    }

    /// A setting that must be present for this area to work; its default applies when it has one.
    pub(crate) fn required(&mut self, name: &'static str) -> Option<&'a str> {
        match lookup(self.env, name) {
            Lookup::Set(v) => Some(v),
            Lookup::Unset => {
                let default = default_of(name);
                if default.is_none() {
                    self.problems.push(Problem::Missing(name));
                }
                default
            }
            Lookup::Unresolved => {
                self.problems.push(Problem::UnresolvedKeyVaultReference(name));
                None
            }
        }
    }

    /// A setting that may be absent: its value, else its default, else None.
    pub(crate) fn optional(&mut self, name: &'static str) -> Option<&'a str> {
        match lookup(self.env, name) {
            Lookup::Set(v) => Some(v),
            Lookup::Unset => default_of(name),
            Lookup::Unresolved => {
                self.problems.push(Problem::UnresolvedKeyVaultReference(name));
                None
            }
        }
    }

    /// Records why a present value is invalid.
    pub(crate) fn invalid(&mut self, name: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError { name: name.to_string(), reason: reason.into() });
    }

    /// The parsed value, or None after recording why it is invalid.
    pub(crate) fn parse<T>(
        &mut self,
        name: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(value?) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.invalid(name, reason);
                None
            }
        }
    }

    /// An optional setting, parsed.
    pub(crate) fn optional_as<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.optional(name);
        self.parse(name, value, parse)
    }

    /// A required setting, parsed.
    pub(crate) fn required_as<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.required(name);
        self.parse(name, value, parse)
    }

    /// Ready when nothing is missing; `build` runs only then (an invalid value stops the start anyway).
    pub(crate) fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Availability<T> {
        if !self.problems.is_empty() {
            return Availability::Off(self.problems);
        }
        match build() {
            Some(t) => Availability::Ready(t),
            // Only reached with an invalid value recorded: the start stops with it.
            None => Availability::Off(vec![Problem::Other("invalid settings".into())]),
        }
    }
}

pub(crate) fn integer(value: &str) -> Result<i64, String> {
    value.parse::<i64>().map_err(|_| format!("`{value}` is not an integer"))
}

/// An integer within `range`.
pub(crate) fn integer_in(range: std::ops::RangeInclusive<i64>) -> impl Fn(&str) -> Result<i64, String> {
    move |value| match integer(value)? {
        n if range.contains(&n) => Ok(n),
        _ => Err(format!("must be between {} and {}", range.start(), range.end())),
    }
}

pub(crate) fn positive_id(value: &str) -> Result<i64, String> {
    match integer(value)? {
        n if n > 0 => Ok(n),
        n => Err(format!("{n} must be a positive id")),
    }
}

pub(crate) fn seconds(value: &str) -> Result<Duration, String> {
    value.parse::<u64>().map(Duration::from_secs).map_err(|_| format!("`{value}` is not a whole number of seconds"))
}

pub(crate) fn positive_seconds(value: &str) -> Result<Duration, String> {
    match seconds(value)? {
        d if d.is_zero() => Err("must be at least 1".into()),
        d => Ok(d),
    }
}

pub(crate) fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("`{value}` is not true or false")),
    }
}

/// An http(s) base URL without its trailing slashes.
pub(crate) fn base_url(value: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http or https URL".into());
    }
    if url.query().is_some() {
        return Err("must not carry a query string".into());
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// `key=value,key=value` pairs (whitespace around items ignored), each value parsed.
pub(crate) fn pairs<T>(value: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<(String, T)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                parse(v.trim()).map(|v| (k.trim().to_string(), v)).map_err(|reason| format!("`{item}`: {reason}"))
            }
            _ => Err(format!("`{item}` is not of the form key=value")),
        })
        .collect()
}

/// A comma-separated list, each item parsed.
pub(crate) fn list<T>(value: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse).collect()
}
