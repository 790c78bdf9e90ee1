//! Process-wide settings: the port, logging, time limits and extra certificate authorities.

use super::read::Reader;
use crate::settings as names;

/// Port used when the Functions host did not pass one (standalone, same paths as `func start`).
pub const DEFAULT_PORT: u16 = 7071;
/// The host's variable carrying the port it will call us on.
pub const PORT_VARIABLE: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";

const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

pub(super) fn port(r: &mut Reader<'_>) -> Option<u16> {
    match r.env().get(PORT_VARIABLE) {
        None => Some(DEFAULT_PORT),
        value => r.parse(PORT_VARIABLE, value, |v| {
            v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("`{v}` is not a TCP port"))
        }),
    }
}

/// A level (`info`), optionally with `target=level` directives (`info,cf_halo_bridge=debug`). Anything else is
/// refused: `tracing`'s filter would read a bare word such as `verbose` as a target and silence every other line.
pub(crate) fn log_filter(value: &str) -> Result<String, String> {
    let level = |l: &str| LEVELS.contains(&l.to_ascii_lowercase().as_str());
    let target = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let ok = match item.split_once('=') {
            None => level(item),
            Some((t, l)) => target(t.trim()) && level(l.trim()),
        };
        if !ok {
            return Err(format!("`{item}` is not a log level ({}) or a target=level directive", LEVELS.join(", ")));
        }
    }
    Ok(value.to_ascii_lowercase())
}

/// Extra trusted certificate authorities (PEM), from `SSL_CERT_FILE`: read and checked once.
pub(super) fn extra_ca(r: &mut Reader<'_>) -> Option<Option<Vec<u8>>> {
    let Some(path) = r.optional(names::SSL_CERT_FILE) else { return Some(None) };
    r.parse(names::SSL_CERT_FILE, Some(path), |path| {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => Ok(Some(pem)),
            _ => Err(format!("{path} holds no PEM certificate")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_and_directives_are_accepted_and_bare_words_refused() {
        assert_eq!(log_filter("INFO").unwrap(), "info");
        assert!(log_filter("warn,cf_halo_bridge=debug").is_ok());
        for bad in ["verbose", "info,loud", "x=loud", "=info"] {
            assert!(log_filter(bad).unwrap_err().contains("is not a log level"), "{bad}");
        }
    }
}
