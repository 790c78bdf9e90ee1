//! The Halo webhook payload: only the ticket id is taken from it; everything else is fetched from the API.

use crate::domain::TicketId;
use crate::wire::lenient_i64;
use serde_json::Value;

/// The ticket id, first found of: `object_id` (real Halo payloads; docs/halo-api.md, Webhooks), `ticket.id`, `ticket_id`, and a
/// numeric top-level `id` (the samples' shape; in real payloads `id` is a delivery GUID and is skipped as such).
pub fn ticket_id(payload: &Value) -> Option<TicketId> {
    [
        payload.get("object_id"),
        payload.get("ticket").and_then(|t| t.get("id")),
        payload.get("ticket_id"),
        payload.get("id"),
    ]
    .into_iter()
    .flatten()
    .find_map(lenient_i64)
    .filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn real_payloads_use_object_id_not_the_delivery_guid() {
        let real = json!({"id": "6f1c2d9e-0000-4000-8000-000000000000", "object_id": 1042, "event": "ticket status changed",
                          "ticket": {"id": 1042, "status_id": 9}});
        assert_eq!(ticket_id(&real), Some(1042));
        assert_eq!(ticket_id(&json!({"id": "6f1c2d9e-guid", "ticket": {"id": "77"}})), Some(77));
        assert_eq!(ticket_id(&json!({"ticket_id": "12", "id": 99})), Some(12));
        assert_eq!(ticket_id(&json!({"id": 99})), Some(99));
    }

    #[test]
    fn no_usable_id_is_none() {
        for p in [
            json!({}),
            json!({"id": "guid-like"}),
            json!({"object_id": null}),
            json!({"ticket_id": 0}),
            json!([1]),
            json!("x"),
        ] {
            assert_eq!(ticket_id(&p), None, "{p}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(raw in "\\PC{0,120}") {
            if let Ok(v) = serde_json::from_str::<Value>(&raw) {
                let _ = ticket_id(&v);
            }
        }
    }
}
