//! `sandbox demo-routing` (`scripts/demo-routing`): one incident of each sandbox customer reaches the bridge, and
//! each lands on its own Halo client (by the map, by its name, or on the triage client); then an analyst closes the
//! mapped customer's ticket as a false positive, and the close reaches that customer's own ContraForce workspace as
//! `FalsePositive`. Says what the bridge did and checks it against what the sandbox Halo and ContraForce hold.

use serde_json::Value;

use sandbox::customers::{self, Customer, Route, TRIAGE_CLIENT_ID, TRIAGE_CLIENT_NAME};
use sandbox::halo::FALSE_POSITIVE_STATUS_ID;

use super::{
    default_bridge_url, default_cf_url, default_halo_url, failed, get_json, halo_note, send_incident, text, trim_url,
    Args, CmdResult, Failure,
};

const USAGE: &str = "usage: sandbox demo-routing [options]      (scripts/demo-routing)

Sends a new incident of each sandbox customer to the bridge, signed as ContraForce signs it:
  Northwind Traders  HALO_CLIENT_MAP names its account: its Halo client and site
  FABRIKAM  inc      not in the map: the one Halo client named \"Fabrikam Inc\" (case and spacing aside)
  Contoso            no Halo client has exactly its name: the triage client (HALO_DEFAULT_CLIENT_ID)
then closes Northwind's ticket with status 20 \"Resolved - False Positive\" and a closing note, and
shows the close reaching Northwind's own workspace as FalsePositive / IncorrectAlertLogic.
Needs scripts/run-local with the sandbox (it gives the bridge the routing settings).

  --bridge-url URL     the bridge (default $BRIDGE_URL, else http://127.0.0.1:$BRIDGE_PORT, port 7071)
  --halo-url URL       the sandbox Halo (default $SANDBOX_HALO_URL, else port $SANDBOX_HALO_PORT, 7081)
  --cf-url URL         the sandbox ContraForce (default $SANDBOX_CF_URL, else port $SANDBOX_CF_PORT, 7082)

Exits 0 when every incident landed where expected and the close arrived as FalsePositive, 1 otherwise.";

/// The analyst's closing note in the demo.
const CLOSING_NOTE: &str = "Checked with Northwind: the sign-ins came from their new VPN exit. False positive.";

struct Options {
    bridge_url: String,
    halo_url: String,
    cf_url: String,
}

fn parse(mut args: Args) -> Result<Options, Failure> {
    args.usage(USAGE);
    let mut o = Options { bridge_url: default_bridge_url(), halo_url: default_halo_url(), cf_url: default_cf_url() };
    while let Some(name) = args.next_option()? {
        match name.as_str() {
            "--bridge-url" => o.bridge_url = args.value(&name)?,
            "--halo-url" => o.halo_url = args.value(&name)?,
            "--cf-url" => o.cf_url = args.value(&name)?,
            other => return Err(args.unknown(other)),
        }
    }
    o.bridge_url = trim_url(&o.bridge_url);
    o.halo_url = trim_url(&o.halo_url);
    o.cf_url = trim_url(&o.cf_url);
    Ok(o)
}

/// A Halo client as the sandbox's admin endpoint lists it.
struct Client {
    id: i64,
    name: String,
    sites: Vec<(i64, String)>,
}

fn clients(list: &Value) -> Vec<Client> {
    let list = list.as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|c| Client {
            id: c.get("id").and_then(Value::as_i64).unwrap_or_default(),
            name: text(c.get("name")),
            sites: c
                .get("sites")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .map(|s| (s.get("id").and_then(Value::as_i64).unwrap_or_default(), text(s.get("name"))))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// Where a customer's incidents should land, and why.
#[derive(Debug, PartialEq)]
struct Landing {
    client_id: i64,
    client_name: String,
    site_id: Option<i64>,
    /// Why, in words.
    why: &'static str,
}

fn expected(customer: &Customer, clients: &[Client]) -> Result<Landing, String> {
    let by_name = |name: &str| clients.iter().find(|c| c.name == name);
    match customer.route {
        Route::Default => Ok(Landing {
            client_id: TRIAGE_CLIENT_ID,
            client_name: TRIAGE_CLIENT_NAME.to_string(),
            site_id: None,
            why: "no Halo client has exactly its name, so the default (triage) client",
        }),
        Route::Map | Route::Name => {
            let name = customer.halo_client.unwrap_or_default();
            let client = by_name(name).ok_or_else(|| format!("the sandbox Halo has no client {name:?}"))?;
            let site = customer.halo_site.and_then(|s| client.sites.iter().find(|(_, n)| n == s).map(|(id, _)| *id));
            let why = if customer.route == Route::Map {
                "HALO_CLIENT_MAP names its account"
            } else {
                "not in the map; one Halo client has its name (case and spacing aside)"
            };
            Ok(Landing { client_id: client.id, client_name: client.name.clone(), site_id: site, why })
        }
    }
}

pub async fn run(args: Args) -> CmdResult {
    let o = parse(args)?;
    let http = super::http();
    let list = get_json(&http, &format!("{}/_sandbox/clients", o.halo_url)).await.map_err(|why| {
        failed(format!(
            "Cannot read the sandbox Halo at {}: {why}.\nIs scripts/run-local running with the sandbox (no real Halo \
             configured)?",
            o.halo_url
        ))
    })?;
    let clients = clients(&list);
    let urls = |with_cf: bool| {
        let mut v = vec!["--bridge-url".to_string(), o.bridge_url.clone(), "--halo-url".into(), o.halo_url.clone()];
        if with_cf {
            v.extend(["--cf-url".to_string(), o.cf_url.clone()]);
        }
        v
    };

    let mut wrong = Vec::new();
    let mut northwind = None;
    for customer in customers::ALL {
        let Landing { client_id, client_name, site_id, why } = expected(&customer, &clients).map_err(failed)?;
        say!("== {} (ContraForce account {})", customer.account_name, customer.account_id);
        let mut args = vec![
            "--new-incident".to_string(),
            "--account-id".into(),
            customer.account_id.into(),
            "--account-name".into(),
            customer.account_name.into(),
        ];
        args.extend(urls(false));
        let sent = send_incident::send(Args::new(args), false).await?;
        let ticket = sent.ticket.as_ref();
        let got = (
            ticket.and_then(|t| t.get("client_id")).and_then(Value::as_i64),
            ticket.and_then(|t| t.get("site_id")).and_then(Value::as_i64),
        );
        let site = site_id.map(|s| format!(", site {s}")).unwrap_or_default();
        if sent.status == "created" && got == (Some(client_id), site_id) {
            say!("  ✓ landed on Halo client {client_id} {client_name:?}{site}: {why}");
        } else {
            say!(
                "  ✗ expected Halo client {client_id} {client_name:?}{site} ({why}); the bridge answered {}",
                sent.status
            );
            wrong.push(customer.account_name);
        }
        if customer.route == Route::Map {
            let id = ticket.and_then(|t| t.get("id")).and_then(Value::as_i64);
            northwind = id.map(|id| (id, sent.incident_id.clone()));
        }
        say!();
    }

    let Some((ticket, incident)) = northwind else {
        return Err(failed("The mapped customer's incident made no ticket, so there is nothing to close."));
    };
    say!("== The analyst closes Northwind's ticket #{ticket} as a false positive");
    let mut args = vec![
        "--ticket".to_string(),
        ticket.to_string(),
        "--status".into(),
        FALSE_POSITIVE_STATUS_ID.to_string(),
        "--text".into(),
        CLOSING_NOTE.into(),
    ];
    args.extend(urls(true));
    halo_note::run(Args::new(args)).await?;

    let incidents = get_json(&http, &format!("{}/_sandbox/incidents", o.cf_url))
        .await
        .map_err(|why| failed(format!("Cannot read the sandbox ContraForce at {}: {why}", o.cf_url)))?;
    let close =
        incidents.get(&incident).and_then(|i| i.get("status_changes")).and_then(Value::as_array).and_then(|c| c.last());
    let workspace = customers::NORTHWIND.workspace_id.unwrap_or_default();
    say!();
    match close {
        Some(c)
            if c.get("classification").and_then(Value::as_str) == Some("FalsePositive")
                && c.get("workspace_id").and_then(Value::as_str) == Some(workspace) =>
        {
            say!(
                "  ✓ the incident closed as FalsePositive / {} in Northwind's workspace {workspace}",
                text(c.get("classificationReason"))
            );
        }
        _ => {
            say!("  ✗ the incident did not close as FalsePositive in Northwind's workspace {workspace}");
            wrong.push("the close");
        }
    }
    if wrong.is_empty() {
        say!();
        say!("Every customer's incident landed on its own client, and the analyst's decision reached ContraForce.");
        Ok(())
    } else {
        Err(failed(format!("Not as expected: {}.", wrong.join(", "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_route_expects_its_client() {
        let list = json!([
            {"id": 1, "name": "Default Triage", "sites": [{"id": 1, "name": "Main"}]},
            {"id": 2, "name": "Northwind Traders", "sites": [{"id": 2, "name": "Northwind HQ"}]},
            {"id": 3, "name": "Fabrikam Inc", "sites": []},
            {"id": 4, "name": "Contoso Holdings", "sites": []},
        ]);
        let clients = clients(&list);
        let at = |c: &Customer| expected(c, &clients).map(|l| (l.client_id, l.client_name, l.site_id)).unwrap();
        assert_eq!(at(&customers::NORTHWIND), (2, "Northwind Traders".into(), Some(2)));
        assert_eq!(at(&customers::FABRIKAM), (3, "Fabrikam Inc".into(), None));
        assert_eq!(at(&customers::CONTOSO), (1, "Default Triage".into(), None));
        assert!(expected(&customers::FABRIKAM, &clients[..1]).is_err());
    }
}
