//! The Halo webhook body: JSON of any shape, from which only a positive ticket id may come out.
#![no_main]

use cf_halo_bridge::halo::webhook::ticket_id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Some(id) = ticket_id(&payload) {
            assert!(id > 0);
        }
    }
});
