//! What we read from Halo's API, parsed leniently: Halo sends ids as numbers or strings, and `null` for flags.

use crate::domain::RefLocation;
use crate::wire::lenient_i64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;

fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(lenient_i64))
}

fn req_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    opt_i64(d)?.ok_or_else(|| serde::de::Error::custom("expected an integer id"))
}

fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => b,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1"),
        _ => false,
    })
}

fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn list<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    // Items that do not parse are dropped rather than failing the whole response.
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Array(items)) => items.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect(),
        _ => Vec::new(),
    })
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CustomField {
    #[serde(default, deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    #[serde(default)]
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Ticket {
    #[serde(deserialize_with = "req_i64")]
    pub id: i64,
    #[serde(default, deserialize_with = "opt_i64")]
    pub status_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_string")]
    pub status_name: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub hasbeenclosed: bool,
    #[serde(default, deserialize_with = "opt_string")]
    pub supplier_reference: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub thirdpartynumber: Option<String>,
    #[serde(default, deserialize_with = "list")]
    pub customfields: Vec<CustomField>,
    /// When the ticket's newest action was logged (`Faults.lastactiondate`): unchanged since the bridge last read
    /// every action, there is nothing new to read (docs/halo-api.md, "Tickets").
    #[serde(default, deserialize_with = "opt_string")]
    pub lastactiondate: Option<String>,
}

impl Ticket {
    pub(crate) fn custom_field(&self, id: i64) -> Option<&str> {
        self.customfields.iter().find(|f| f.id == Some(id)).and_then(|f| f.value.as_ref()).and_then(Value::as_str)
    }

    /// The reference where the bridge writes it.
    pub(crate) fn reference_at(&self, location: RefLocation) -> Option<&str> {
        match location {
            RefLocation::CustomField(id) => self.custom_field(id),
            RefLocation::SupplierReference => self.supplier_reference.as_deref(),
        }
    }

    /// The reference wherever a bridge or a Logic App may have written it: the configured place first, then
    /// `supplier_reference`, then `thirdpartynumber` (read only: tickets from Logic App 01 carry it there).
    pub fn candidate_references(&self, location: RefLocation) -> impl Iterator<Item = &str> {
        [self.reference_at(location), self.supplier_reference.as_deref(), self.thirdpartynumber.as_deref()]
            .into_iter()
            .flatten()
    }
}

/// One row of a configuration list (`GET /Client`, `/Site`, `/Status`, `/TicketType`, `/FieldInfo`): its id, and
/// the client a site belongs to (Halo may send it as a decimal: parsed leniently).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Listed {
    #[serde(deserialize_with = "req_i64")]
    pub id: i64,
    #[serde(default, deserialize_with = "opt_i64")]
    pub client_id: Option<i64>,
}

/// A customer (`GET /Client`: `{ "record_count": N, "clients": [ {id, name, inactive} ] }`, docs/halo-api.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Client {
    #[serde(deserialize_with = "req_i64")]
    pub id: i64,
    #[serde(default, deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub inactive: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Action {
    #[serde(deserialize_with = "req_i64")]
    pub id: i64,
    #[serde(default, deserialize_with = "opt_string")]
    pub outcome: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub note: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub note_html: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub hiddenfromuser: bool,
    #[serde(default, deserialize_with = "opt_string")]
    pub who: Option<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    pub who_agentid: Option<i64>,
    #[serde(default, deserialize_with = "opt_string")]
    pub actionby_application_id: Option<String>,
}

/// A list answer, `{"record_count": N, "<key>": [...]}` or a bare array, read straight from its bytes: each item
/// is parsed on its own into `T`, so the many fields Halo sends that we do not read are skipped rather than built
/// into JSON values (the halo-webhook's largest cost on a long ticket, docs/benchmarks.md). An item that does not
/// parse is dropped rather than failing the whole answer; a body that is not JSON is an error.
pub fn list_items<T: DeserializeOwned>(body: &[u8], key: &str) -> Result<(Vec<T>, Option<i64>), serde_json::Error> {
    let (items, count): (Vec<&RawValue>, Option<i64>) = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => (serde_json::from_slice(body)?, None),
        Some(b'{') => {
            let map: HashMap<String, &RawValue> = serde_json::from_slice(body)?;
            let count = map.get("record_count").and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
            let items = map.get(key).and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or_default();
            (items, count.as_ref().and_then(lenient_i64))
        }
        None => (Vec::new(), None),
        Some(_) => {
            // Validated as JSON (`IgnoredAny` would not check the UTF-8 of strings).
            serde_json::from_slice::<Value>(body)?;
            (Vec::new(), None)
        }
    };
    Ok((items.into_iter().filter_map(|raw| serde_json::from_str(raw.get()).ok()).collect(), count))
}

/// A one-item POST answer: a single object, or an array holding it.
pub fn single_item(body: Value) -> Option<Value> {
    match body {
        Value::Array(items) => items.into_iter().next(),
        v @ Value::Object(_) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tickets_parse_leniently() {
        let t: Ticket = serde_json::from_value(json!({
            "id": "1001", "status_id": 9, "status_name": "Closed", "hasbeenclosed": null,
            "customfields": [{"id": 42, "value": "cf|sentinel|x"}, "junk", {"id": "7", "value": 3}],
            "thirdpartynumber": "cf|s|old"
        }))
        .unwrap();
        assert_eq!(t.id, 1001);
        assert!(!t.hasbeenclosed);
        assert_eq!(t.reference_at(RefLocation::CustomField(42)), Some("cf|sentinel|x"));
        assert_eq!(t.reference_at(RefLocation::CustomField(7)), None, "non-string values are not references");
        let found: Vec<_> = t.candidate_references(RefLocation::SupplierReference).collect();
        assert_eq!(found, vec!["cf|s|old"]);
    }

    #[test]
    fn actions_parse_with_null_flags_and_string_ids() {
        let a: Action =
            serde_json::from_value(json!({"id": "5", "hiddenfromuser": null, "who_agentid": "12", "note": 3})).unwrap();
        assert_eq!((a.id, a.hiddenfromuser, a.who_agentid, a.note.as_deref()), (5, false, Some(12), Some("3")));
        assert!(serde_json::from_value::<Action>(json!({"note": "no id"})).is_err());
    }

    #[test]
    fn list_and_single_shapes() {
        let list = |body: &str| list_items::<Action>(body.as_bytes(), "actions");
        let (items, count) = list(r#"{"record_count": 3, "actions": [{"id": 1}, {"bad": 1}, {"id": 2}]}"#).unwrap();
        assert_eq!((items.iter().map(|a| a.id).collect::<Vec<_>>(), count), (vec![1, 2], Some(3)));
        let (items, count) = list(r#" [{"id": 1}]"#).unwrap();
        assert_eq!((items.len(), count), (1, None));
        assert_eq!(list(r#"{"record_count": "2", "actions": "none"}"#).unwrap().1, Some(2));
        assert_eq!(list("null").unwrap().0.len(), 0);
        assert_eq!(list("").unwrap().0.len(), 0);
        assert!(list("{not json").is_err() && list("nul").is_err());
        assert_eq!(single_item(json!([{"id": 1}])), Some(json!({"id": 1})));
        assert_eq!(single_item(json!({"id": 1})), Some(json!({"id": 1})));
        assert_eq!(single_item(json!("x")), None);
    }
}
