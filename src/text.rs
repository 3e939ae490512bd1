//! Untrusted text (alert fields are attacker-controlled) made safe for where it is shown: HTML
//! pages ([`esc`], [`encode`]) and Webex markdown ([`md`], which also defangs URLs). A leaf: it
//! imports nothing of the crate.

use std::fmt::Write as _;

/// HTML-escapes text (alert fields are attacker-controlled).
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// `c`, HTML-escaped, onto `out`.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c => out.push(c),
    }
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

/// Untrusted text for an HTML page, shown inert and honest: URLs defanged (`hxxps[:]//`,
/// `www[.]`) so nothing is a link or copied as one; invisible formatting characters (zero
/// width, bidi overrides, soft hyphens) and control characters shown as `[U+200B]`, so no
/// text hides or reorders itself; non-ASCII characters in a word that holds a URL or dotted
/// name shown as `[U+0430]`, so a homoglyph domain does not pass for the real one; then
/// HTML-escaped.
pub(crate) fn show(text: &str) -> String {
    let defanged = defang(text);
    let mut out = String::with_capacity(defanged.len() + 16);
    for word in defanged.split_inclusive(char::is_whitespace) {
        let hostlike = word.contains("[:]//")
            || word.contains("[.]")
            || (word.contains('.') && word.chars().any(|c| c.is_ascii_alphabetic()));
        for c in word.chars() {
            let invisible = matches!(c,
                '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}'
                | '\u{17b5}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}'
                | '\u{ffa0}' | '\u{e0000}'..='\u{e007f}');
            if (c.is_control() && c != '\n' && c != '\t')
                || invisible
                || (hostlike && !c.is_ascii())
            {
                let _ = write!(out, "[U+{:04X}]", u32::from(c));
            } else {
                push_escaped(&mut out, c);
            }
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

    #[test]
    fn page_text_is_inert_and_hides_nothing() {
        assert_eq!(
            show("<script>alert(1)</script> https://evil.example"),
            "&lt;script&gt;alert(1)&lt;/script&gt; hxxps[:]//evil.example"
        );
        // A zero-width space and a right-to-left override are shown, not applied.
        assert_eq!(show("ad\u{200b}min\u{202e}txt"), "ad[U+200B]min[U+202E]txt");
        // A Cyrillic 'а' in a domain is named; in prose it is left alone.
        assert_eq!(
            show("https://p\u{0430}ypal.com/login"),
            "hxxps[:]//p[U+0430]ypal.com/login"
        );
        assert_eq!(show("Привет мир"), "Привет мир");
        assert_eq!(show("a\u{7}b\nc"), "a[U+0007]b\nc");
    }
}
