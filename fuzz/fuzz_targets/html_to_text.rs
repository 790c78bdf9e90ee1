//! Halo note HTML → comment text: no panic, output linear in the input (at most 8 bytes per input byte: a struck-
//! through character is 3 bytes), and the comment cap holds.
//! Inputs are limited to 64 KiB (`-max_len`) so that each run stays fast; the deep and wide cases beyond that are
//! in tests/parsers.rs.
#![no_main]

use cf_halo_bridge::halo::text::{cap, html_to_text, MAX_COMMENT_CHARS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let html = String::from_utf8_lossy(data);
    let text = html_to_text(&html);
    assert!(text.len() <= 8 * html.len() + 64, "{} bytes of HTML became {} bytes of text", html.len(), text.len());
    let capped = cap(&text, MAX_COMMENT_CHARS);
    assert!(capped.chars().count() <= MAX_COMMENT_CHARS + 64);
});
