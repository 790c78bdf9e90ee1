//! `sandbox drop-table`: deletes a table in the local Azurite (the well-known development account), so the
//! bridge's sandbox state starts as empty as the sandbox Halo and ContraForce do. `scripts/run-local` runs it.

use sandbox::azurite::{shared_key_lite, x_ms_date, ACCOUNT_NAME};

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

pub async fn run(args: Args) -> CmdResult {
    let o = parse(args)?;
    // Path-style emulator URL: the account is the first path segment, and the canonicalized resource is
    // "/" + account + the URL path.
    let path = format!("/{ACCOUNT_NAME}/Tables('{}')", o.table);
    let url = format!("http://127.0.0.1:{}{path}", o.port);
    let date = x_ms_date(unix_now());
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
    fn x_ms_dates_are_rfc_1123() {
        assert_eq!(x_ms_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(x_ms_date(1776870000), "Wed, 22 Apr 2026 15:00:00 GMT");
        assert_eq!(x_ms_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn table_names_are_checked() {
        let args = |list: &[&str]| Args::new(list.iter().map(|s| s.to_string()).collect());
        assert!(parse(args(&["--table", "sandboxstate", "--port", "10010"])).is_ok());
        assert!(matches!(parse(args(&["--table", "no-dashes"])), Err(Failure::Usage(..))));
        assert!(matches!(parse(args(&["--port", "1"])), Err(Failure::Usage(..))));
    }
}
