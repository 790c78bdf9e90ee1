//! Small helpers shared by the fakes and the host (no extra dependencies).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;

/// A random version-4 UUID in the usual lower-case 8-4-4-4-12 form.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A random opaque token of `n` bytes, hex encoded.
pub(crate) fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Formats seconds since the Unix epoch (UTC) as RFC 3339 with milliseconds.
pub(crate) fn rfc3339(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses a query string into pairs (form decoding: `+` is a space).
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Query parameters keyed by lower-case name (ASP.NET binds query names case-insensitively);
/// the first value of a repeated name wins.
pub(crate) fn query_map(query: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (k, v) in query_pairs(query) {
        map.entry(k.to_ascii_lowercase()).or_insert(v);
    }
    map
}

/// `true` for the spellings ASP.NET accepts as a true boolean.
pub(crate) fn truthy(value: Option<&String>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Very small HTML to plain text conversion: block tags become newlines, other tags vanish,
/// the common entities are decoded.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        match rest[start..].find('>') {
            Some(end) => {
                let tag = rest[start + 1..start + end]
                    .trim_start_matches('/')
                    .split(|c: char| c.is_whitespace() || c == '/')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if matches!(tag.as_str(), "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "pre")
                    && !out.ends_with('\n')
                    && !out.is_empty()
                {
                    out.push('\n');
                }
                rest = &rest[start + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&");
    decoded.trim().to_string()
}

/// Escapes text for use inside HTML.
pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A time as the host writes queue metadata times (`DateTimeOffset`): `2019-10-16T17:58:31+00:00`.
pub(crate) fn iso_offset(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default();
    let (date, time) = date_time(secs);
    format!("{date}T{time}+00:00")
}

/// The current time as the host writes `sys.UtcNow`: `2019-10-09T17:58:32.2205399Z` (seven fractional digits).
pub(crate) fn utc_now_ticks() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let (date, time) = date_time(d.as_secs() as i64);
    format!("{date}T{time}.{:07}Z", d.subsec_nanos() / 100)
}

fn date_time(secs: i64) -> (String, String) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    (format!("{y:04}-{m:02}-{d:02}"), format!("{:02}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_795_434_645, 123), "2026-11-23T11:50:45.123Z");
    }

    #[test]
    fn formats_host_metadata_times() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_571_248_711);
        assert_eq!(iso_offset(t), "2019-10-16T17:58:31+00:00");
        let now = utc_now_ticks();
        assert_eq!(now.len(), "2019-10-09T17:58:32.2205399Z".len(), "{now}");
        assert!(now.ends_with('Z'));
    }

    #[test]
    fn uuid_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn strips_html() {
        assert_eq!(html_to_text("<p>Hello <b>world</b></p><p>a &amp; b &lt;c&gt;</p>"), "Hello world\na & b <c>");
        assert_eq!(html_to_text("plain"), "plain");
    }

    #[test]
    fn query_names_are_case_insensitive() {
        let q = query_map("Ticket_ID=5&ticket_id=6&includeHtmlNote=True&x=a+b%7Cc");
        assert_eq!(q["ticket_id"], "5");
        assert!(truthy(q.get("includehtmlnote")));
        assert_eq!(q["x"], "a b|c");
    }
}
