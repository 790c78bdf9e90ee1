//! Values parsed once at the edge, so the rest of the code never re-validates them.

use std::fmt;

/// Longest accepted `X-CF-Event-Id`.
pub const MAX_EVENT_ID_LEN: usize = 200;

/// The `X-CF-Event-Id` of a delivery: deterministic per event, the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId(String);

impl EventId {
    pub fn parse(raw: &str) -> Option<EventId> {
        let trimmed = raw.trim();
        (!trimmed.is_empty() && trimmed.len() <= MAX_EVENT_ID_LEN && !trimmed.chars().any(char::is_control))
            .then(|| EventId(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `cf|{source}|{incidentId}`: the link between a ContraForce incident and its Halo ticket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalRef {
    source: String,
    incident_id: String,
}

/// Which part of a reference cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefPart {
    Source,
    IncidentId,
}

impl ExternalRef {
    /// Builds a reference; `source` must not contain `|` (the incident id may: the split limit is 3).
    /// Neither part may be empty, `.` or `..`: a URL path cannot carry those as a segment (ContraForce's incident URL
    /// would silently become another one).
    pub fn new(source: &str, incident_id: &str) -> Result<ExternalRef, RefPart> {
        let usable = |part: &str| !part.is_empty() && part != "." && part != "..";
        if !usable(source) || source.contains('|') {
            return Err(RefPart::Source);
        }
        if !usable(incident_id) {
            return Err(RefPart::IncidentId);
        }
        Ok(ExternalRef { source: source.to_string(), incident_id: incident_id.to_string() })
    }

    /// Parses `cf|source|id` with a split limit of 3, the `cf` prefix exact, both parts non-empty.
    pub fn parse(raw: &str) -> Option<ExternalRef> {
        let mut parts = raw.trim().splitn(3, '|');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("cf"), Some(source), Some(id)) => ExternalRef::new(source, id).ok(),
            _ => None,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn incident_id(&self) -> &str {
        &self.incident_id
    }
}

impl fmt::Display for ExternalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cf|{}|{}", self.source, self.incident_id)
    }
}

/// Stored and sent as its text, `cf|source|id`; a stored text that does not parse is an unreadable record.
impl serde::Serialize for ExternalRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ExternalRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ExternalRef::parse(&text).ok_or_else(|| serde::de::Error::custom("not a cf|source|id reference"))
    }
}

/// Where on a Halo ticket the bridge writes `cf|source|incidentId` (and looks for it first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefLocation {
    /// `supplier_reference`: a field of Halo's ticket schema, with a search filter (docs/halo-api.md, Tickets).
    SupplierReference,
    /// A ticket custom field, by id (readable, not searchable).
    CustomField(i64),
}

/// The ticket field `RefLocation::SupplierReference` names.
pub const SUPPLIER_REFERENCE: &str = "supplier_reference";

/// Where Logic App 01 wrote the reference. Not a field of Halo's ticket schema (Halo drops it on write:
/// docs/halo-api.md, Tickets), so the bridge reads it from legacy tickets and never writes it.
pub const LEGACY_REFERENCE: &str = "thirdpartynumber";

/// A Halo ticket id.
pub type TicketId = i64;

/// An incident as ContraForce addresses it: its reference, in its own workspace (`None`: `CF_WORKSPACE_ID`).
#[derive(Debug, Clone, Copy)]
pub struct IncidentAt<'a> {
    pub reference: &'a ExternalRef,
    pub workspace: Option<&'a str>,
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// Now, in Unix milliseconds (the run history's times).
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reference_round_trips_and_keeps_pipes_in_the_incident_id() {
        let r = ExternalRef::parse("cf|sentinel|abc|def").unwrap();
        assert_eq!(r.source(), "sentinel");
        assert_eq!(r.incident_id(), "abc|def");
        assert_eq!(r.to_string(), "cf|sentinel|abc|def");
    }

    #[test]
    fn malformed_references_are_rejected() {
        for raw in [
            "",
            "cf",
            "cf|",
            "cf|sentinel",
            "cf||id",
            "cf|sentinel|",
            "CF|sentinel|id",
            "xx|sentinel|id",
            "sentinel|id",
        ] {
            assert!(ExternalRef::parse(raw).is_none(), "{raw}");
        }
        assert_eq!(ExternalRef::new("a|b", "id"), Err(RefPart::Source));
        assert_eq!(ExternalRef::new("s", ".."), Err(RefPart::IncidentId));
        for dots in ["cf|s|.", "cf|s|..", "cf|..|id"] {
            assert!(ExternalRef::parse(dots).is_none(), "{dots}: no URL can carry a dot segment");
        }
    }

    #[test]
    fn event_ids_are_trimmed_and_bounded() {
        assert_eq!(EventId::parse("  e-1 ").unwrap().as_str(), "e-1");
        assert!(EventId::parse("").is_none());
        assert!(EventId::parse("   ").is_none());
        assert!(EventId::parse(&"x".repeat(MAX_EVENT_ID_LEN + 1)).is_none());
        assert!(EventId::parse("a\u{0}b").is_none());
    }

    #[test]
    fn references_are_stored_as_their_text() {
        let r = ExternalRef::new("sentinel", "a|b").unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), serde_json::json!("cf|sentinel|a|b"));
        assert_eq!(serde_json::from_value::<ExternalRef>(serde_json::json!("cf|sentinel|a|b")).unwrap(), r);
        assert!(serde_json::from_value::<ExternalRef>(serde_json::json!("sentinel|a")).is_err());
    }

    proptest! {
        #[test]
        fn any_reference_we_build_parses_back(source in "[a-z]{1,12}", id in "[A-Za-z0-9|:_-]{1,40}") {
            let r = ExternalRef::new(&source, &id).unwrap();
            prop_assert_eq!(ExternalRef::parse(&r.to_string()), Some(r));
        }

        #[test]
        fn parsing_never_panics(raw in "\\PC{0,80}") {
            let _ = ExternalRef::parse(&raw);
        }
    }
}
