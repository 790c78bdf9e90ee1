//! `sandbox drop-table`: deletes a table in the local Azurite (the well-known development account), so the
//! bridge's sandbox state starts as empty as the sandbox Halo and ContraForce do. `scripts/run-local` runs it.

use base64::Engine;
use hmac::{Hmac, Mac};
use sandbox::azurite::{ACCOUNT_KEY, ACCOUNT_NAME};
use sha2::Sha256;

use super::{describe_send_error, failed, unix_now, Args, CmdResult, Failure};

const USAGE: &str = "usage: sandbox drop-table --table NAME [--port PORT]

Deletes the table NAME from the Azurite table service on 127.0.0.1:PORT (default 10002), signed
with the well-known development account key. A table that does not exist is fine.";

struct Options {
    table: String,
    port: u16,
}

fn parse(mut args: Args) -> Result<Options, Failure> {
    args.usage(USAGE);
    let mut table = None;
    let mut port = 10002;
    while let Some(name) = args.next_option()? {
        match name.as_str() {
            "--table" => table = Some(args.value(&name)?),
            "--port" => port = args.parsed(&name)?,
            other => return Err(args.unknown(other)),
        }
    }
    let table = table.ok_or_else(|| args.error("--table is required".into()))?;
    if !(3..=63).contains(&table.len()) || !table.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(args.error(format!("{table:?} is not a table name (3-63 letters and digits)")));
    }
    Ok(Options { table, port })
}

/// An RFC 1123 date (`Sun, 23 Nov 2025 12:00:00 GMT`) for `x-ms-date`.
fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `SharedKeyLite` for the Table service: HMAC-SHA256(key, date + "\n" + canonicalized resource).
fn shared_key_lite(date: &str, canonical_resource: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD.decode(ACCOUNT_KEY).expect("the dev key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts keys of any length");
    mac.update(format!("{date}\n{canonical_resource}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("SharedKeyLite {ACCOUNT_NAME}:{signature}")
}

pub async fn run(args: Args) -> CmdResult {
    let o = parse(args)?;
    // Path-style emulator URL: the account is the first path segment, and the canonicalized resource is
    // "/" + account + the URL path.
    let path = format!("/{ACCOUNT_NAME}/Tables('{}')", o.table);
    let url = format!("http://127.0.0.1:{}{path}", o.port);
    let date = http_date(unix_now());
    let response = super::http()
        .delete(&url)
        .header("x-ms-date", &date)
        .header("x-ms-version", "2019-02-02")
        .header("accept", "application/json;odata=nometadata")
        .header("dataserviceversion", "3.0;NetFx")
        .header("maxdataserviceversion", "3.0;NetFx")
        .header("authorization", shared_key_lite(&date, &format!("/{ACCOUNT_NAME}{path}")))
        .send()
        .await
        .map_err(|e| failed(format!("Cannot reach Azurite on 127.0.0.1:{}: {}", o.port, describe_send_error(&e))))?;
    let status = response.status();
    match status.as_u16() {
        200..=299 => say!("table {} deleted", o.table),
        404 => say!("table {} did not exist", o.table),
        _ => {
            let body = response.text().await.unwrap_or_default();
            return Err(failed(format!("Azurite did not delete table {} ({status}): {}", o.table, body.trim())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_rfc_1123() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1776870000), "Wed, 22 Apr 2026 15:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn table_names_are_checked() {
        let args = |list: &[&str]| Args::new(list.iter().map(|s| s.to_string()).collect());
        assert!(parse(args(&["--table", "sandboxstate", "--port", "10010"])).is_ok());
        assert!(matches!(parse(args(&["--table", "no-dashes"])), Err(Failure::Usage(..))));
        assert!(matches!(parse(args(&["--port", "1"])), Err(Failure::Usage(..))));
    }
}
