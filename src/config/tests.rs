use super::*;
use crate::domain::RefLocation;

fn full() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CF_WEBHOOK_SECRET", "s"),
        ("HALO_AUTH_URL", "https://x.halopsa.com/auth/"),
        ("HALO_API_BASE_URL", "https://x.halopsa.com/api"),
        ("HALO_CLIENT_ID", "id"),
        ("HALO_CLIENT_SECRET", "secret"),
        ("HALO_DEFAULT_TICKETTYPE_ID", "29"),
        ("HALO_DEFAULT_CLIENT_ID", "1"),
        ("HALO_WEBHOOK_SECRET", "w"),
        ("CF_API_BASE_URL", "https://prod.platform.contraforce.com/api/v2"),
        ("CF_SERVICE_ACCOUNT_CLIENT_ID", "c"),
        ("CF_SERVICE_ACCOUNT_CLIENT_SECRET", "cs"),
        ("CF_WORKSPACE_ID", "ws"),
        ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
    ]
}

fn with(changes: &[(&'static str, &'static str)]) -> Result<Config, ConfigErrors> {
    let mut pairs = full();
    for (k, v) in changes {
        pairs.retain(|(name, _)| name != k);
        pairs.push((k, v));
    }
    Config::from_env(&Env::from_pairs(pairs))
}

#[test]
fn full_configuration_enables_both_directions_with_defaults() {
    let c = with(&[]).unwrap();
    assert_eq!(c.port, DEFAULT_PORT);
    let halo = c.halo.ready().unwrap();
    assert_eq!(halo.auth_url, "https://x.halopsa.com/auth", "trailing slash trimmed");
    assert_eq!(halo.scope, "all");
    assert_eq!(halo.reference, RefLocation::SupplierReference);
    let out = c.cf_webhook.ready().unwrap();
    assert_eq!(out.max_skew, Duration::from_secs(300));
    assert_eq!(out.note_outcome, NoteOutcome::Name("Private Note".into()));
    assert_eq!(out.priorities.priority(Some("HIGH")), 1);
    assert_eq!(out.priorities.priority(Some("medium")), 2);
    assert_eq!(out.priorities.priority(Some("Informational")), 3);
    assert_eq!(out.priorities.priority(None), 3);
    let inb = c.halo_webhook.ready().unwrap();
    assert_eq!(inb.closed_status_ids, vec![9]);
    assert_eq!(inb.close_classification, "Undetermined");
    assert_eq!(c.storage.ready().unwrap().connection, StorageConnection::Emulator);
}

#[test]
fn empty_optional_values_mean_unset() {
    let c =
        with(&[("HALO_EXTERNAL_REF_FIELD_ID", ""), ("HALO_INTEGRATION_AGENT_ID", "  "), ("HALO_TENANT", "")]).unwrap();
    assert_eq!(c.halo.ready().unwrap().reference, RefLocation::SupplierReference);
    assert_eq!(c.halo.ready().unwrap().tenant, None);
    assert_eq!(c.halo_webhook.ready().unwrap().integration_agent_id, None);
}

#[test]
fn missing_settings_turn_only_their_direction_off() {
    let c = with(&[("HALO_DEFAULT_TICKETTYPE_ID", "")]).unwrap();
    assert_eq!(c.problems_of(Area::CfWebhook), vec![Problem::Missing("HALO_DEFAULT_TICKETTYPE_ID")]);
    assert!(c.problems_of(Area::HaloWebhook).is_empty());
    let c = with(&[("CF_WORKSPACE_ID", "")]).unwrap();
    assert!(c.problems_of(Area::CfWebhook).is_empty());
    assert_eq!(c.problems_of(Area::HaloWebhook), vec![Problem::Missing("CF_WORKSPACE_ID")]);
}

#[test]
fn unresolved_key_vault_references_are_named() {
    let c = with(&[("CF_WEBHOOK_SECRET", "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/cf/)")])
        .unwrap();
    match &c.secrets[&SecretId::CfWebhook] {
        SecretSource::Setting(Err(p)) => {
            assert_eq!(p, &Problem::UnresolvedKeyVaultReference("CF_WEBHOOK_SECRET"));
            assert!(p.to_string().contains("CF_WEBHOOK_SECRET is an unresolved Key Vault reference"));
        }
        other => panic!("{other:?}"),
    }
    let c = with(&[("CF_API_BASE_URL", "@Microsoft.KeyVault(VaultName=kv;SecretName=x)")]).unwrap();
    assert_eq!(c.problems_of(Area::HaloWebhook), vec![Problem::UnresolvedKeyVaultReference("CF_API_BASE_URL")]);
}

#[test]
fn invalid_values_stop_startup_naming_the_variable() {
    for (name, value) in [
        ("HALO_DEFAULT_CLIENT_ID", "abc"),
        ("HALO_DEFAULT_TICKETTYPE_ID", "-4"),
        ("CF_MAX_SKEW_SECONDS", "five"),
        ("HALO_EXTERNAL_REF_FIELD_ID", "x1"),
        ("HALO_EXTERNAL_REF_FIELD", "summary"),
        ("HALO_AUTH_URL", "not a url"),
        ("HALO_API_BASE_URL", "ftp://x/api"),
        ("HALO_PRIORITY_MAP", "High=1,Medium"),
        ("HALO_PRIORITY_MAP", "High=1"),
        ("HALO_CLIENT_MAP", "acc=notanumber"),
        ("HALO_CLOSED_STATUS_ID", "9,closed"),
        ("CF_PROCESS_TEST_EVENTS", "maybe"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "70000"),
        ("STATE_TABLE_NAME", "bad-name"),
        ("AzureWebJobsStorage", "AccountName=x;Bogus=1"),
        ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
        ("SSL_CERT_FILE", "Cargo.toml"),
        ("LOG_LEVEL", "verbose"),
        ("KEY_VAULT_URI", "not a url"),
        ("UPSTREAM_TIMEOUT_SECONDS", "0"),
        ("RECONCILE_HALO_CALLS", "301"),
        ("RECONCILE_HALO_CALLS", "0"),
        ("HALO_RATE_LIMIT", "0"),
        ("HALO_RATE_LIMIT", "10001"),
        ("HALO_RATE_WINDOW_SECONDS", "0"),
        ("HALO_RATE_WINDOW_SECONDS", "soon"),
        ("HALO_CLIENT_MATCH_BY_NAME", "sometimes"),
        ("HALO_CLIENT_NAME_CACHE_SECONDS", "0"),
    ] {
        let err = with(&[(name, value)]).unwrap_err();
        assert_eq!(err.names(), vec![name], "{value}");
        assert!(err.to_string().contains(&format!("invalid setting {name}")));
    }
}

#[test]
fn maps_and_lists_parse() {
    let c = with(&[
        ("HALO_CLIENT_MAP", " 0A1B=12 , acme=13/4"),
        ("CF_WORKSPACE_MAP", "acme=ws-acme"),
        ("HALO_PRIORITY_MAP", "high=4,Low=2"),
        ("HALO_CLOSED_STATUS_ID", "9, 17"),
        ("HALO_PRIVATE_NOTE_OUTCOME", "7"),
        ("HALO_EXTERNAL_REF_FIELD_ID", "42"),
    ])
    .unwrap();
    let out = c.cf_webhook.ready().unwrap();
    let target = |client_id, site_id| Some(ClientTarget { client_id, site_id });
    assert_eq!(out.mapped_client(Some("0a1b")), target(12, None));
    assert_eq!(out.mapped_client(Some(" ACME ")), target(13, Some(4)), "a site after the client, case-insensitive");
    assert_eq!(out.mapped_client(Some("other")), None);
    assert_eq!(out.mapped_client(None), None);
    assert_eq!(out.mapped_workspace(Some("Acme")), Some("ws-acme"));
    assert_eq!(out.mapped_workspace(Some("0a1b")), None, "unmapped: CF_WORKSPACE_ID");
    assert!(!out.match_client_by_name, "name matching is opt-in");
    assert_eq!(out.priorities.priority(Some("High")), 4);
    assert_eq!(out.priorities.priority(Some("Medium")), 2);
    assert_eq!(out.note_outcome, NoteOutcome::Id(7));
    assert_eq!(c.halo_webhook.ready().unwrap().closed_status_ids, vec![9, 17]);
    assert_eq!(c.halo.ready().unwrap().reference, RefLocation::CustomField(42));
}

#[test]
fn storage_follows_the_functions_connection_convention() {
    let c = with(&[
        ("StateStorage__tableServiceUri", "https://acct.table.core.windows.net/"),
        ("StateStorage__credential", "managedidentity"),
        ("StateStorage__clientId", "1111"),
    ])
    .unwrap();
    let s = c.storage.ready().unwrap();
    assert_eq!(s.source, "StateStorage");
    assert_eq!(
        s.connection,
        StorageConnection::ManagedIdentity {
            service_uri: "https://acct.table.core.windows.net".into(),
            client_id: Some("1111".into())
        }
    );
    let c = with(&[("AzureWebJobsStorage", "")]).unwrap();
    assert!(c.problems_of(Area::CfWebhook)[0].to_string().contains("no state storage"));
    assert!(c.problems_of(Area::HaloWebhook)[0].to_string().contains("no state storage"));
    let err = with(&[
        ("StateStorage__tableServiceUri", "https://a.table.core.windows.net"),
        ("StateStorage__credential", "secret"),
    ])
    .unwrap_err();
    assert_eq!(err.names(), vec!["StateStorage__credential"]);
}

#[test]
fn debug_output_holds_no_secret() {
    let c = with(&[("HALO_CLIENT_SECRET", "very-secret-value")]).unwrap();
    assert!(!format!("{c:?}").contains("very-secret-value"));
}

#[test]
fn every_invalid_setting_is_reported_at_once() {
    let err = with(&[("LOG_LEVEL", "verbose"), ("HALO_DEFAULT_CLIENT_ID", "abc"), ("CF_MAX_SKEW_SECONDS", "five")])
        .unwrap_err();
    let mut names = err.names();
    names.sort_unstable();
    assert_eq!(names, vec!["CF_MAX_SKEW_SECONDS", "HALO_DEFAULT_CLIENT_ID", "LOG_LEVEL"]);
    let text = err.to_string();
    for name in names {
        assert!(text.contains(&format!("invalid setting {name}")), "{text}");
    }
}

#[test]
fn thirdpartynumber_is_refused_as_the_reference_field_saying_why_and_what_instead() {
    for value in ["thirdpartynumber", "ThirdPartyNumber"] {
        let err = with(&[("HALO_EXTERNAL_REF_FIELD", value)]).unwrap_err();
        assert_eq!(err.names(), vec!["HALO_EXTERNAL_REF_FIELD"]);
        let text = err.to_string();
        for says in
            ["not a field of Halo's ticket schema", "supplier_reference", "HALO_EXTERNAL_REF_FIELD_ID", "still read"]
        {
            assert!(text.contains(says), "{says}: {text}");
        }
    }
    let c = with(&[("HALO_EXTERNAL_REF_FIELD", "Supplier_Reference")]).unwrap();
    assert_eq!(c.halo.ready().unwrap().reference, RefLocation::SupplierReference);
}

#[test]
fn a_bad_map_entry_stops_the_start_naming_the_setting_and_the_entry() {
    for (name, value, entry) in [
        ("HALO_CLIENT_MAP", "acme=12,contoso=12/x", "`contoso=12/x`"),
        ("HALO_CLIENT_MAP", "acme=12/", "`acme=12/`"),
        ("HALO_CLIENT_MAP", "acme=12,ACME=13", "`ACME` is mapped twice"),
        ("HALO_CLOSE_DECISION_MAP", "21=FalsePositive/Wrong", "`Wrong` is not one of"),
        ("HALO_CLOSE_DECISION_MAP", "21=Benign", "`Benign` is not one of"),
        ("HALO_CLOSE_DECISION_MAP", "x=Undetermined", "`x`"),
        ("CF_WORKSPACE_MAP", "acme=ws-1,contoso", "`contoso`"),
    ] {
        let err = with(&[(name, value)]).unwrap_err();
        assert_eq!(err.names(), vec![name], "{value}");
        let text = err.to_string();
        assert!(text.contains(name) && text.contains(entry), "{text}");
    }
}

#[test]
fn decisions_parse_as_contraforce_spells_them() {
    let c = with(&[("HALO_CLOSE_DECISION_MAP", "21=falsepositive/incorrectalertlogic, 22=Undetermined")]).unwrap();
    let d = &c.halo_webhook.ready().unwrap().decisions;
    assert_eq!(d[&21], Decision { classification: "FalsePositive".into(), reason: Some("IncorrectAlertLogic".into()) });
    assert_eq!(d[&22], Decision { classification: "Undetermined".into(), reason: None });
}
