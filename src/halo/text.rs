//! Halo note HTML → readable plain text for a ContraForce comment (html2text, not a regex).

/// Longest comment text we send; longer notes are cut on a character boundary and marked.
pub const MAX_COMMENT_CHARS: usize = 8_000;
const TRUNCATION_MARK: &str = "\n… (truncated; see the Halo ticket)";
/// Wide enough that paragraphs are not re-wrapped: CF renders its own line breaks.
const RENDER_WIDTH: usize = 10_000;

/// Converts note HTML to plain text: scripts and styles dropped, entities decoded, lists and paragraphs kept.
pub fn html_to_text(html: &str) -> String {
    let rendered = html2text::config::plain_no_decorate()
        .link_footnotes(false)
        .no_table_borders()
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), RENDER_WIDTH)
        .unwrap_or_else(|_| html.to_string());
    let lines: Vec<&str> = rendered.lines().map(str::trim_end).collect();
    // Collapse runs of blank lines to one, and trim the ends.
    let mut out = String::with_capacity(rendered.len());
    let mut blank = 0;
    for line in lines {
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

/// Caps text at `max` characters (never splitting a character), marking the cut.
pub fn cap(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}{TRUNCATION_MARK}", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scripts_and_styles_are_dropped_and_entities_decoded() {
        let t = html_to_text(
            "<style>p{color:red}</style><p>Fish &amp; chips &lt;3 &quot;ok&quot;</p><script>alert(1)</script>",
        );
        assert_eq!(t, "Fish & chips <3 \"ok\"");
    }

    #[test]
    fn paragraphs_and_lists_stay_readable() {
        let t =
            html_to_text("<p>First para.</p><p>Second <b>bold</b><br>line two</p><ul><li>one</li><li>two</li></ul>");
        assert!(t.starts_with("First para.\n\nSecond bold\nline two"), "{t}");
        assert!(t.contains("* one\n* two"), "{t}");
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(html_to_text("just text"), "just text");
        assert_eq!(html_to_text("   "), "");
    }

    #[test]
    fn cap_cuts_on_character_boundaries() {
        assert_eq!(cap("héllo", 10), "héllo");
        let capped = cap("ééééé", 2);
        assert!(capped.starts_with("éé\n…"));
    }

    proptest! {
        #[test]
        fn arbitrary_html_never_panics(raw in "\\PC{0,300}") {
            let _ = html_to_text(&raw);
        }

        #[test]
        fn nested_markup_never_panics(depth in 0usize..200) {
            let html = format!("{}x{}", "<div><ul><li>".repeat(depth), "</li></ul></div>".repeat(depth));
            let _ = html_to_text(&html);
        }
    }
}
