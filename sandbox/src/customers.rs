//! The sandbox's customers: one ContraForce tenant serving several customers, each with its own Halo client and
//! ContraForce workspace, as a managed security provider runs them. `sandbox serve` creates them in the fakes and
//! gives the bridge the routing settings below; `sandbox demo-routing` sends an incident of each.

use crate::halo::{FALSE_POSITIVE_STATUS_ID, TRUE_POSITIVE_STATUS_ID};

/// How the bridge is expected to choose a customer's Halo client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `HALO_CLIENT_MAP` names the account (with a site).
    Map,
    /// `HALO_CLIENT_MATCH_BY_NAME`: the account's name is exactly one Halo client's name (case and spacing aside).
    Name,
    /// Neither: `HALO_DEFAULT_CLIENT_ID`, the triage client.
    Default,
}

/// One customer of the provider.
#[derive(Clone, Copy, Debug)]
pub struct Customer {
    /// The ContraForce `accountId`.
    pub account_id: &'static str,
    /// The `accountName` as ContraForce sends it.
    pub account_name: &'static str,
    /// The customer's Halo client name (`None`: Halo has no client for it).
    pub halo_client: Option<&'static str>,
    /// The customer's Halo site, when the map names one.
    pub halo_site: Option<&'static str>,
    /// The customer's ContraForce workspace (`None`: the default workspace).
    pub workspace_id: Option<&'static str>,
    /// How its incidents are routed.
    pub route: Route,
}

/// The Halo client every unrouted incident lands on (the fake's first client).
pub const TRIAGE_CLIENT_ID: i64 = 1;
/// Its name in the fake.
pub const TRIAGE_CLIENT_NAME: &str = "Default Triage";

/// Mapped by `HALO_CLIENT_MAP` to its client and site.
pub const NORTHWIND: Customer = Customer {
    account_id: "5a1d0c2b-7e3f-4a9b-8c6d-1e2f3a4b5c6d",
    account_name: "Northwind Traders",
    halo_client: Some("Northwind Traders"),
    halo_site: Some("Northwind HQ"),
    workspace_id: Some("9b8a7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"),
    route: Route::Map,
};

/// Not in the map: found by its name (ContraForce spells it differently from Halo, in case and spacing only).
pub const FABRIKAM: Customer = Customer {
    account_id: "6b2e1d3c-8f4a-4b0c-9d7e-2f3a4b5c6d7e",
    account_name: "FABRIKAM  inc",
    halo_client: Some("Fabrikam Inc"),
    halo_site: None,
    workspace_id: Some("2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"),
    route: Route::Name,
};

/// The README's sample incident's account: no client is called "Contoso" ("Contoso Holdings" only contains it),
/// so its incidents go to the triage client.
pub const CONTOSO: Customer = Customer {
    account_id: "0b6f1c8e-3c1e-4a4e-9f4e-0d1a2b3c4d5e",
    account_name: "Contoso",
    halo_client: Some("Contoso Holdings"),
    halo_site: None,
    workspace_id: None,
    route: Route::Default,
};

/// Every sandbox customer, in the order the routing demo sends them.
pub const ALL: [Customer; 3] = [NORTHWIND, FABRIKAM, CONTOSO];

/// The analyst's decisions the sandbox's closing statuses stand for (`HALO_CLOSE_DECISION_MAP`).
pub const DECISIONS: [(i64, &str); 2] = [
    (FALSE_POSITIVE_STATUS_ID, "FalsePositive/IncorrectAlertLogic"),
    (TRUE_POSITIVE_STATUS_ID, "TruePositive/SuspiciousActivity"),
];

/// The Halo ids `sandbox serve` gave the customers' clients and sites.
#[derive(Clone, Debug, Default)]
pub struct Seeded {
    /// (account id, client id, site id) per customer with a Halo client.
    pub clients: Vec<(&'static str, i64, Option<i64>)>,
}

impl Seeded {
    /// The client (and site) a customer's Halo client has.
    pub fn client_of(&self, customer: &Customer) -> Option<(i64, Option<i64>)> {
        self.clients.iter().find(|(a, _, _)| *a == customer.account_id).map(|(_, c, s)| (*c, *s))
    }
}

/// Creates the customers' clients and sites in the fake Halo (in `ALL`'s order, so their ids are fixed).
pub fn seed(halo: &crate::halo::FakeHalo) -> Seeded {
    let mut seeded = Seeded::default();
    for customer in ALL {
        let Some(name) = customer.halo_client else { continue };
        let client = halo.add_client(name);
        let site = customer.halo_site.map(|site| halo.add_site(client, site));
        seeded.clients.push((customer.account_id, client, site));
    }
    seeded
}

/// The routing settings for the bridge: `HALO_CLIENT_MAP`, `HALO_CLIENT_MATCH_BY_NAME`, `CF_WORKSPACE_MAP` and
/// `HALO_CLOSE_DECISION_MAP`.
pub fn settings(seeded: &Seeded) -> Vec<(&'static str, String)> {
    let client_map: Vec<String> = ALL
        .iter()
        .filter(|c| c.route == Route::Map)
        .filter_map(|c| {
            let (client, site) = seeded.client_of(c)?;
            Some(match site {
                Some(site) => format!("{}={client}/{site}", c.account_id),
                None => format!("{}={client}", c.account_id),
            })
        })
        .collect();
    let workspace_map: Vec<String> =
        ALL.iter().filter_map(|c| Some(format!("{}={}", c.account_id, c.workspace_id?))).collect();
    let decisions: Vec<String> = DECISIONS.iter().map(|(status, decision)| format!("{status}={decision}")).collect();
    vec![
        ("HALO_CLIENT_MAP", client_map.join(",")),
        ("HALO_CLIENT_MATCH_BY_NAME", "true".into()),
        ("CF_WORKSPACE_MAP", workspace_map.join(",")),
        ("HALO_CLOSE_DECISION_MAP", decisions.join(",")),
    ]
}

/// The other workspaces the fake ContraForce must know.
pub fn workspaces() -> Vec<String> {
    ALL.iter().filter_map(|c| c.workspace_id.map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_map_only_the_mapped_customer_and_every_customers_workspace() {
        let seeded = Seeded {
            clients: vec![
                (NORTHWIND.account_id, 2, Some(2)),
                (FABRIKAM.account_id, 3, None),
                (CONTOSO.account_id, 4, None),
            ],
        };
        let settings: std::collections::BTreeMap<_, _> = settings(&seeded).into_iter().collect();
        assert_eq!(settings["HALO_CLIENT_MAP"], format!("{}=2/2", NORTHWIND.account_id));
        assert_eq!(
            settings["CF_WORKSPACE_MAP"],
            format!(
                "{}={},{}={}",
                NORTHWIND.account_id,
                NORTHWIND.workspace_id.unwrap(),
                FABRIKAM.account_id,
                FABRIKAM.workspace_id.unwrap()
            )
        );
        assert_eq!(
            settings["HALO_CLOSE_DECISION_MAP"],
            "20=FalsePositive/IncorrectAlertLogic,21=TruePositive/SuspiciousActivity"
        );
    }
}
