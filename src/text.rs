//! Untrusted text (alert fields are attacker-controlled) made safe for where it is shown: HTML
//! pages ([`esc`], [`encode`]) and Webex markdown ([`md`], which also defangs URLs). A leaf: it
//! imports nothing of the crate.

use std::fmt::Write as _;

/// HTML-escapes text (alert fields are attacker-controlled).
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Longest text of any one field on a card, characters.
const MAX_FIELD: usize = 300;
/// Untrusted text for a card: control and invisible formatting characters (bidi overrides,
/// zero-width) go, markdown is escaped, URLs are defanged (`hxxps[:]//`, `www[.]`: Webex
/// links bare URLs), long text is cut.
pub(crate) fn md(text: &str) -> String {
    let defanged = defang(text);
    let mut out = String::with_capacity(defanged.len().min(MAX_FIELD * 2 + 8));
    for (i, c) in defanged.chars().enumerate() {
        if i == MAX_FIELD {
            out.push('…');
            break;
        }
        match c {
            c if c.is_control() => out.push(' '),
            '\u{00ad}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}' => {}
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '<' | '>' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `https://x` -> `hxxps[:]//x`, `www.` -> `www[.]` (any case): readable, never a link.
fn defang(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    while i < text.len() {
        let rest = &lower[i..];
        if rest.starts_with("://") {
            out.push_str("[:]//");
            i += 3;
        } else if rest.starts_with("www.") {
            out.push_str(&text[i..i + 3]);
            out.push_str("[.]");
            i += 4;
        } else if rest.starts_with("http://") || rest.starts_with("https://") {
            out.push_str(&text[i..i + 1]);
            out.push_str("xx");
            i += 3;
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_text_makes_no_link_and_hides_nothing() {
        assert_eq!(
            md("see https://evil.example/x or WWW.evil.example"),
            r"see hxxps\[:\]//evil.example/x or WWW\[.\]evil.example"
        );
        assert_eq!(md("HTTP flood"), "HTTP flood");
        assert_eq!(md("a\u{202e}b\u{200b}c\nd"), "abc d");
    }

    #[test]
    fn html_text_is_escaped_and_paths_encoded() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(encode("t-1/contain 1"), "t-1%2Fcontain%201");
    }
}
