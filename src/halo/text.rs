//! Halo note HTML → readable plain text for a ContraForce comment (html2text, not a regex).

/// Longest comment text we send; longer notes are cut on a character boundary and marked.
pub const MAX_COMMENT_CHARS: usize = 8_000;
const TRUNCATION_MARK: &str = "\n… (truncated; see the Halo ticket)";
/// Wide enough that paragraphs are not re-wrapped: CF renders its own line breaks.
const RENDER_WIDTH: usize = 10_000;

/// Longest note HTML converted: a comment holds at most `MAX_COMMENT_CHARS` anyway, and the renderer's cost grows
/// with its input.
pub(crate) const MAX_HTML_BYTES: usize = 64 * 1024;
/// Deeper nesting than this is not rendered (the renderer's work and output grow with depth × text): the note's
/// text is then taken without its markup.
const MAX_DEPTH: usize = 32;
const VOID_ELEMENTS: [&str; 8] = ["br", "img", "hr", "input", "meta", "link", "col", "wbr"];

/// Converts note HTML to plain text: scripts and styles dropped, entities decoded, lists and paragraphs kept.
/// Work and output are linear in the input: at most `MAX_HTML_BYTES` are read, and deeply nested markup is
/// reduced to its text.
pub fn html_to_text(html: &str) -> String {
    let html = prefix(html, MAX_HTML_BYTES);
    let rendered = if nesting_depth(html) > MAX_DEPTH {
        text_without_markup(html)
    } else {
        html2text::config::plain_no_decorate()
            .link_footnotes(false)
            .no_table_borders()
            .allow_width_overflow()
            .raw_mode(true)
            .string_from_read(html.as_bytes(), RENDER_WIDTH)
            .unwrap_or_else(|_| text_without_markup(html))
    };
    tidy(&rendered)
}

/// The longest prefix of at most `max` bytes that ends on a character boundary.
fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The deepest element nesting, from a linear scan of the tags (an estimate: enough to refuse pathological input).
fn nesting_depth(html: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let close = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..close];
        rest = &rest[close.min(rest.len())..];
        if let Some(name) = tag.strip_prefix('/') {
            if !name.is_empty() {
                depth = depth.saturating_sub(1);
            }
            continue;
        }
        let name: String =
            tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        if name.is_empty() || tag.ends_with('/') || VOID_ELEMENTS.contains(&name.as_str()) {
            continue;
        }
        depth += 1;
        deepest = deepest.max(depth);
    }
    deepest
}

/// The text of markup too deep to render: tags become line breaks, scripts and styles are dropped, entities decoded.
fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes().get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Byte offset of `needle` (ASCII) in `text`, ignoring ASCII case, without copying `text`.
fn find_ignore_case(text: &str, needle: &str) -> Option<usize> {
    text.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn text_without_markup(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        rest = &rest[open..];
        let skip_to = if starts_with_ignore_case(rest, "<script") {
            find_ignore_case(rest, "</script>").map(|i| i + 9)
        } else if starts_with_ignore_case(rest, "<style") {
            find_ignore_case(rest, "</style>").map(|i| i + 8)
        } else {
            rest.find('>').map(|i| i + 1)
        };
        rest = &rest[skip_to.unwrap_or(rest.len())..];
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    text.push_str(rest);
    html_escape::decode_html_entities(&text).into_owned()
}

/// Trims line ends, collapses runs of blank lines to one, and trims the ends.
fn tidy(rendered: &str) -> String {
    let mut out = String::with_capacity(rendered.len());
    let mut blank = 0;
    for line in rendered.lines().map(str::trim_end) {
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

    #[test]
    fn markup_is_matched_ignoring_case_on_bytes_even_next_to_non_ascii_text() {
        assert!(starts_with_ignore_case("<ScRiPt src=x>", "<script"));
        assert!(!starts_with_ignore_case("<bé", "<script"), "no panic on a multi-byte character");
        assert_eq!(find_ignore_case("é</STYLE>", "</style>"), Some(2));
        assert_eq!(find_ignore_case("ééé", "</script>"), None);
        assert_eq!(text_without_markup("<SCRIPT>x()</Script>é<b>é</b>").trim(), "é\né");
    }
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

    #[test]
    fn deep_nesting_is_reduced_to_its_text() {
        let deep =
            format!("{}deep <b>text</b> &amp; more<script>x()</script>{}", "<div>".repeat(100), "</div>".repeat(100));
        assert!(nesting_depth(&deep) >= 100);
        let text = html_to_text(&deep);
        assert!(text.contains("deep") && text.contains("text") && text.contains("& more"), "{text}");
        assert!(!text.contains("x()") && !text.contains('<'), "{text}");
        assert_eq!(nesting_depth("<p>a<br>b<img src=x/></p><p>c</p>"), 1);
    }

    #[test]
    fn long_notes_are_read_only_up_to_the_limit() {
        let long = "é".repeat(MAX_HTML_BYTES);
        let text = html_to_text(&long);
        assert!(text.len() <= MAX_HTML_BYTES + 16, "{}", text.len());
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
