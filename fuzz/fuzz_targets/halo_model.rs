//! Halo API answers: a ticket, an action, a list answer (`{"record_count":N,"actions":[...]}` or a bare array) and a
//! one-item POST answer, parsed the way the client parses them (a model straight from the bytes; a list answer item
//! by item).
#![no_main]

use cf_halo_bridge::domain::RefLocation;
use cf_halo_bridge::domain::ExternalRef;
use cf_halo_bridge::halo::model::{list_items, single_item, Action, Ticket};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Ticket>(data);
    let _ = serde_json::from_slice::<Action>(data);
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    if let Ok(ticket) = serde_json::from_value::<Ticket>(value.clone()) {
        for location in [RefLocation::CustomField(42), RefLocation::SupplierReference] {
            for candidate in ticket.candidate_references(location) {
                let _ = ExternalRef::parse(candidate);
            }
        }
    }
    let _ = serde_json::from_value::<Action>(value.clone());
    let (actions, _) = list_items::<Action>(data, "actions").expect("valid JSON is a list answer, perhaps empty");
    let (tickets, _) = list_items::<Ticket>(data, "tickets").expect("valid JSON is a list answer, perhaps empty");
    let bound = match &value {
        Value::Array(items) => items.len(),
        Value::Object(map) => map.values().filter_map(Value::as_array).map(Vec::len).max().unwrap_or(0),
        _ => 0,
    };
    assert!(actions.len() <= bound && tickets.len() <= bound);
    let _ = single_item(value);
});
