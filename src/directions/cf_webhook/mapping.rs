//! CF incident → Halo ticket (docs/contraforce-contract.md, docs/halo-api.md), every interpolated string HTML-escaped.

use crate::cf::event::Incident;
use crate::config::{CfWebhookConfig, ClientTarget, NoteOutcome};
use crate::domain::{EventId, RefLocation, TicketId, SUPPLIER_REFERENCE};
use serde_json::{json, Map, Value};
use std::fmt::Write;

/// Halo's summary limit, in characters.
pub const MAX_SUMMARY_CHARS: usize = 200;

fn esc(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_quoted_attribute(text)
}

/// `[CF #{number}] {title}`, cut to 200 characters on a character boundary. The summary is a plain-text field in
/// Halo, so it is not HTML-escaped (escaping would show `&lt;` to the agent); control characters are dropped.
pub fn summary(number: i64, title: &str) -> String {
    format!("[CF #{number}] {title}").chars().filter(|c| !c.is_control()).take(MAX_SUMMARY_CHARS).collect()
}

/// The ticket body: incident id and number, severity, source, created, owner, description, alerts and entities.
pub fn details_html(incident: &Incident) -> String {
    let mut html = String::with_capacity(512);
    let _ = write!(
        html,
        "<p><strong>ContraForce incident</strong> {} (#{})</p><ul>",
        esc(incident.reference.incident_id()),
        incident.incident_number
    );
    let mut item = |label: &str, value: &str| {
        let _ = write!(html, "<li><strong>{label}:</strong> {}</li>", esc(value));
    };
    if let Some(account) = &incident.account_name {
        item("Account", account);
    }
    item("Severity", incident.severity.as_deref().unwrap_or("Unknown"));
    item("Source", incident.source_display_name.as_deref().unwrap_or(incident.reference.source()));
    if let Some(created) = &incident.created_at {
        item("Created", created);
    }
    if let Some(owner) = &incident.owner {
        let name = owner.display_name.as_deref().unwrap_or("");
        let owner_text = match &owner.email {
            Some(email) if name.is_empty() => email.clone(),
            Some(email) => format!("{name} <{email}>"),
            None => name.to_string(),
        };
        if !owner_text.is_empty() {
            item("Owner", &owner_text);
        }
    }
    if !incident.alert_product_names.is_empty() {
        item("Products", &incident.alert_product_names.join(", "));
    }
    html.push_str("</ul>");
    if let Some(description) = &incident.description {
        let paragraphs: Vec<String> = description.lines().map(|l| esc(l).into_owned()).collect();
        let _ = write!(html, "<p>{}</p>", paragraphs.join("<br>"));
    }
    if !incident.alerts.is_empty() {
        html.push_str("<p><strong>Alerts</strong></p><ul>");
        for alert in &incident.alerts {
            let _ = write!(
                html,
                "<li>[{}] {} ({})</li>",
                esc(alert.severity.as_deref().unwrap_or("?")),
                esc(alert.title.as_deref().unwrap_or("")),
                esc(alert.product_name.as_deref().unwrap_or(""))
            );
        }
        html.push_str("</ul>");
    }
    if !incident.entities.is_empty() {
        html.push_str("<p><strong>Entities</strong></p><ul>");
        for entity in &incident.entities {
            let _ = write!(
                html,
                "<li>{}: {}</li>",
                esc(entity.kind.as_deref().unwrap_or("?")),
                esc(entity.display_name.as_deref().unwrap_or(""))
            );
        }
        html.push_str("</ul>");
    }
    html
}

/// The body item of `POST /Tickets` for a new incident.
pub fn new_ticket(incident: &Incident, cfg: &CfWebhookConfig, location: RefLocation, client: ClientTarget) -> Value {
    let reference = &incident.reference;
    let mut ticket = Map::new();
    ticket.insert("summary".into(), summary(incident.incident_number, &incident.title).into());
    ticket.insert("details_html".into(), details_html(incident).into());
    ticket.insert("client_id".into(), client.client_id.into());
    if let Some(site_id) = client.site_id {
        ticket.insert("site_id".into(), site_id.into());
    }
    ticket.insert("tickettype_id".into(), cfg.ticket_type_id.into());
    ticket.insert("priority_id".into(), cfg.priorities.priority(incident.severity.as_deref()).into());
    match location {
        RefLocation::CustomField(id) => {
            ticket.insert("customfields".into(), json!([{ "id": id, "value": reference.to_string() }]));
        }
        RefLocation::SupplierReference => {
            ticket.insert(SUPPLIER_REFERENCE.into(), reference.to_string().into());
        }
    }
    Value::Object(ticket)
}

/// The body item of `POST /Actions`: a private note recording a later event of an incident that has its ticket.
pub(crate) fn event_note(ticket_id: TicketId, event_id: &EventId, outcome: &NoteOutcome) -> Value {
    let mut note = json!({
        "ticket_id": ticket_id,
        "note_html": format!("<p>{} <code>{}</code>: a later event for this incident.</p>",
            "ContraForce event", esc(event_id.as_str())),
        "hiddenfromuser": true,
        "sendemail": false,
    });
    match outcome {
        NoteOutcome::Name(name) => note["outcome"] = name.clone().into(),
        NoteOutcome::Id(id) => note["outcome_id"] = (*id).into(),
    }
    note
}

/// Whether an action's note is the one `event_note` wrote for this event.
pub(crate) fn is_event_note(note_html: Option<&str>, note: Option<&str>, event_id: &EventId) -> bool {
    let escaped = esc(event_id.as_str());
    let html_hit = note_html.is_some_and(|h| h.contains(&format!("<code>{escaped}</code>")));
    let text_hit = note.is_some_and(|t| t.contains(&format!("ContraForce event {}:", event_id.as_str())));
    html_hit || text_hit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::event::{Alert, Entity, Owner};
    use crate::config::{Config, Env};
    use crate::domain::ExternalRef;

    fn cfg() -> CfWebhookConfig {
        let env = Env::from_pairs([
            ("HALO_DEFAULT_TICKETTYPE_ID", "29"),
            ("HALO_DEFAULT_CLIENT_ID", "1"),
            ("HALO_CLIENT_MAP", "acc-2=2"),
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
        ]);
        Config::from_env(&env).unwrap().cf_webhook.ready().unwrap().clone()
    }

    fn incident() -> Incident {
        Incident {
            account_id: Some("ACC-2".into()),
            account_name: Some("Contoso & Sons".into()),
            reference: ExternalRef::new("sentinel", "inc-<1>").unwrap(),
            incident_number: 1234,
            title: "Impossible travel".into(),
            description: Some("Alex <script>alert('x')</script> & \"co\"\nsecond line".into()),
            severity: Some("medium".into()),
            source_display_name: Some("Microsoft Sentinel".into()),
            owner: Some(Owner { display_name: Some("Alex".into()), email: Some("alex@example.com".into()) }),
            created_at: Some("2026-04-22T14:55:00Z".into()),
            alert_product_names: vec![],
            alerts: vec![Alert {
                title: Some("<b>bad</b>".into()),
                severity: Some("High".into()),
                product_name: Some("MDE".into()),
            }],
            entities: vec![Entity { kind: Some("IP".into()), display_name: Some("203.0.113.42".into()) }],
        }
    }

    #[test]
    fn details_escape_every_string() {
        let html = details_html(&incident());
        assert!(html.contains("inc-&lt;1&gt; (#1234)"));
        assert!(
            html.contains("Alex &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;co&quot;<br>second line"),
            "{html}"
        );
        assert!(html.contains("Contoso &amp; Sons"));
        assert!(html.contains("Alex &lt;alex@example.com&gt;"));
        assert!(html.contains("<li>[High] &lt;b&gt;bad&lt;/b&gt; (MDE)</li>"));
        assert!(html.contains("<li>IP: 203.0.113.42</li>"));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn summary_is_cut_to_200_characters_on_a_boundary() {
        let long = "x".repeat(300);
        let s = summary(7, &long);
        assert_eq!(s.chars().count(), 200);
        assert!(s.starts_with("[CF #7] xxx"));
        let multibyte = "é🔥".repeat(150);
        let s = summary(1234, &multibyte);
        assert_eq!(s.chars().count(), 200);
        assert!(s.is_char_boundary(s.len()));
        assert_eq!(summary(1, "a\u{7}b\nc"), "[CF #1] abc");
    }

    #[test]
    fn ticket_uses_the_maps_and_the_reference_location() {
        let client = ClientTarget { client_id: 2, site_id: None };
        let t = new_ticket(&incident(), &cfg(), RefLocation::SupplierReference, client);
        assert_eq!(t["client_id"], 2);
        assert!(t.get("site_id").is_none(), "no site unless mapped");
        assert_eq!(t["tickettype_id"], 29);
        assert_eq!(t["priority_id"], 2, "priority is an integer");
        assert_eq!(t["supplier_reference"], "cf|sentinel|inc-<1>");
        assert!(t.get("customfields").is_none());
        let t =
            new_ticket(&incident(), &cfg(), RefLocation::CustomField(42), ClientTarget { site_id: Some(5), ..client });
        assert_eq!(t["site_id"], 5);
        assert_eq!(t["customfields"], json!([{"id": 42, "value": "cf|sentinel|inc-<1>"}]));
        assert!(t.get("supplier_reference").is_none() && t.get("thirdpartynumber").is_none());
    }

    #[test]
    fn the_event_note_is_private_escaped_and_findable() {
        let eid = EventId::parse("evt-<7>&").unwrap();
        let note = event_note(5, &eid, &NoteOutcome::Name("Private Note".into()));
        assert_eq!(note["hiddenfromuser"], true);
        assert_eq!(note["outcome"], "Private Note");
        assert_eq!(note["ticket_id"], 5);
        let html = note["note_html"].as_str().unwrap();
        assert!(html.contains("<code>evt-&lt;7&gt;&amp;</code>"));
        assert!(is_event_note(Some(html), None, &eid));
        assert!(!is_event_note(Some(html), None, &EventId::parse("evt-8").unwrap()));
        assert!(is_event_note(None, Some("ContraForce event evt-<7>&: a later event"), &eid));
        let note = event_note(5, &eid, &NoteOutcome::Id(7));
        assert_eq!(note["outcome_id"], 7);
        assert!(note.get("outcome").is_none());
    }
}
