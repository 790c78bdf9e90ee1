//! The `incident.created.v1` body, parsed leniently where ContraForce's samples were wrongly strict
//! (docs/contraforce-contract.md): `accountId` need not be a GUID; `description` and `owner` may be null; `alerts`, `entities` and
//! `alertProductNames` may be absent. Only `data` and its `incidentId`, `source`, `incidentNumber` and `title` are
//! required; each error names the field.

use crate::domain::{ExternalRef, RefPart};
use serde_json::{Map, Value};

/// The schema this bridge handles.
pub(crate) const INCIDENT_CREATED: &str = "incident.created.v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("body must be a JSON object")]
    NotAnObject,
    #[error("missing or invalid field `{0}`")]
    Field(&'static str),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub display_name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alert {
    pub title: Option<String>,
    pub severity: Option<String>,
    pub product_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entity {
    pub kind: Option<String>,
    pub display_name: Option<String>,
}

/// The incident carried by an `incident.created.v1` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// `cf|source|incidentId`, built once here: the incident's identity everywhere else.
    pub reference: ExternalRef,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub incident_number: i64,
    pub title: String,
    pub description: Option<String>,
    pub severity: Option<String>,
    pub source_display_name: Option<String>,
    pub owner: Option<Owner>,
    pub created_at: Option<String>,
    pub alert_product_names: Vec<String>,
    pub alerts: Vec<Alert>,
    pub entities: Vec<Entity>,
}

/// A parsed delivery body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Option<String>,
    pub is_test: bool,
    pub incident: Incident,
}

/// A delivery body parsed once: the test flag is read from it before the body is validated (a test delivery is
/// answered without processing), and the envelope after.
pub struct Body {
    json: Result<Value, EventError>,
}

impl Body {
    pub fn read(body: &[u8]) -> Body {
        Body { json: serde_json::from_slice(body).map_err(|e| EventError::InvalidJson(e.to_string())) }
    }

    /// `isTest: true` at the top level of any JSON body (false for a body that is not JSON).
    pub fn is_test(&self) -> bool {
        self.json.as_ref().ok().and_then(|v| v.get("isTest")).and_then(Value::as_bool).unwrap_or(false)
    }

    /// The validated envelope; each error names the field.
    pub fn envelope(&self) -> Result<Envelope, EventError> {
        envelope(self.json.as_ref().map_err(Clone::clone)?)
    }
}

/// Only the test flag (see `Body::is_test`).
pub fn is_test_body(body: &[u8]) -> bool {
    Body::read(body).is_test()
}

/// A string field: absent, null and non-strings count as absent; surrounding whitespace is kept out.
fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn required_text(map: &Map<String, Value>, key: &str, field: &'static str) -> Result<String, EventError> {
    text(map, key).ok_or(EventError::Field(field))
}

/// A number, or a string of digits (some senders quote numbers).
fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn objects<'a>(map: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Map<String, Value>> {
    map.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object)
}

pub fn parse(body: &[u8]) -> Result<Envelope, EventError> {
    Body::read(body).envelope()
}

fn envelope(value: &Value) -> Result<Envelope, EventError> {
    let root = value.as_object().ok_or(EventError::NotAnObject)?;
    let data = root.get("data").and_then(Value::as_object).ok_or(EventError::Field("data"))?;
    let incident_id = required_text(data, "incidentId", "data.incidentId")?;
    let source = required_text(data, "source", "data.source")?;
    let reference = ExternalRef::new(&source, &incident_id).map_err(|part| match part {
        RefPart::Source => EventError::Field("data.source"),
        RefPart::IncidentId => EventError::Field("data.incidentId"),
    })?;
    let incident = Incident {
        reference,
        account_id: text(data, "accountId"),
        account_name: text(data, "accountName"),
        incident_number: integer(data.get("incidentNumber")).ok_or(EventError::Field("data.incidentNumber"))?,
        title: required_text(data, "title", "data.title")?,
        description: text(data, "description"),
        severity: text(data, "severity"),
        source_display_name: text(data, "sourceDisplayName"),
        owner: data
            .get("owner")
            .and_then(Value::as_object)
            .map(|o| Owner { display_name: text(o, "displayName"), email: text(o, "email") }),
        created_at: text(data, "createdAt"),
        alert_product_names: data
            .get("alertProductNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        alerts: objects(data, "alerts")
            .map(|a| Alert {
                title: text(a, "title"),
                severity: text(a, "severity"),
                product_name: text(a, "productName"),
            })
            .collect(),
        entities: objects(data, "entities")
            .map(|e| Entity { kind: text(e, "type"), display_name: text(e, "displayName") })
            .collect(),
    };
    Ok(Envelope {
        kind: text(root, "type"),
        is_test: root.get("isTest").and_then(Value::as_bool).unwrap_or(false),
        incident,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The README's sample incident.
    pub(crate) const SAMPLE: &str = r#"{
      "type": "incident.created.v1", "timestamp": "2026-04-22T15:00:00Z", "isTest": false, "occurredAt": "2026-04-22T14:55:00Z",
      "data": {
        "accountId": "…", "accountName": "Contoso", "incidentId": "sentinel-incident-id-or-guid", "incidentNumber": 1234,
        "title": "Impossible travel", "description": null, "severity": "High", "source": "sentinel",
        "sourceDisplayName": "Microsoft Sentinel", "owner": null, "createdAt": "2026-04-22T14:55:00Z"
      }
    }"#;

    #[test]
    fn lenient_where_the_samples_were_strict() {
        let e = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(e.kind.as_deref(), Some(INCIDENT_CREATED));
        assert!(!e.is_test);
        let i = e.incident;
        assert_eq!(i.account_id.as_deref(), Some("…"));
        assert_eq!(i.incident_number, 1234);
        assert_eq!(i.description, None);
        assert_eq!(i.owner, None);
        assert!(i.alerts.is_empty() && i.entities.is_empty() && i.alert_product_names.is_empty());
    }

    #[test]
    fn quoted_incident_numbers_and_nested_lists_parse() {
        let body = r#"{"data":{"incidentId":"i","source":"defenderxdr","incidentNumber":"77","title":"t",
            "owner":{"displayName":"Alex","email":null},
            "alerts":[{"title":"a","severity":"Low","productName":"MDE","vendorName":"Microsoft"},"junk"],
            "entities":[{"type":"IP","displayName":"203.0.113.42"}]}}"#;
        let i = parse(body.as_bytes()).unwrap().incident;
        assert_eq!(i.incident_number, 77);
        assert_eq!(i.owner, Some(Owner { display_name: Some("Alex".into()), email: None }));
        assert_eq!(i.alerts.len(), 1);
        assert_eq!(i.entities[0].display_name.as_deref(), Some("203.0.113.42"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("not json", None),
            ("[]", None),
            (r#"{"type":"x"}"#, Some("data")),
            (r#"{"data":null}"#, Some("data")),
            (r#"{"data":{"source":"s","incidentNumber":1,"title":"t"}}"#, Some("data.incidentId")),
            (r#"{"data":{"incidentId":"i","incidentNumber":1,"title":"t"}}"#, Some("data.source")),
            (r#"{"data":{"incidentId":"i","source":"s","title":"t"}}"#, Some("data.incidentNumber")),
            (
                r#"{"data":{"incidentId":"i","source":"s","incidentNumber":"x","title":"t"}}"#,
                Some("data.incidentNumber"),
            ),
            (r#"{"data":{"incidentId":"i","source":"s","incidentNumber":1}}"#, Some("data.title")),
            (r#"{"data":{"incidentId":"i","source":"s","incidentNumber":1,"title":"  "}}"#, Some("data.title")),
            (r#"{"data":{"incidentId":"i","source":"a|b","incidentNumber":1,"title":"t"}}"#, Some("data.source")),
            (r#"{"data":{"incidentId":"..","source":"s","incidentNumber":1,"title":"t"}}"#, Some("data.incidentId")),
        ];
        for (body, field) in cases {
            let err = parse(body.as_bytes()).unwrap_err();
            match field {
                Some(f) => assert_eq!(err, EventError::Field(f), "{body}"),
                None => assert!(matches!(err, EventError::InvalidJson(_) | EventError::NotAnObject), "{body}"),
            }
        }
    }

    #[test]
    fn the_test_flag_is_read_from_any_json() {
        assert!(is_test_body(br#"{"type":"incident.created.v1","isTest":true}"#));
        assert!(!is_test_body(br#"{"isTest":"true"}"#));
        assert!(!is_test_body(b"garbage"));
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body);
        }

        #[test]
        fn arbitrary_json_never_panics(title in any::<String>(), number in any::<i64>(), desc in proptest::option::of(any::<String>())) {
            let body = serde_json::json!({"data":{"incidentId":"i","source":"s","incidentNumber":number,"title":title,"description":desc}});
            let _ = parse(body.to_string().as_bytes());
        }
    }
}
