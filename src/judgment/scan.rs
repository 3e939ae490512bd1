//! Tolerant scanners of the vendors' rule formats: Wazuh's rule XML (its own parser is
//! lenient, rule files hold regexes with bare `<`, so elements are found by scanning) and
//! Suricata's rule options. A leaf: text in, text out.

pub(super) fn split_groups(names: &str) -> Vec<String> {
    names
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// `name="value"` inside an opening tag.
pub(super) fn attribute(tag: &str, name: &str) -> Option<String> {
    let pattern = format!("{name}=\"");
    let mut from = 0;
    while let Some(pos) = tag[from..].find(&pattern) {
        let at = from + pos;
        // A whole attribute name, not the end of a longer one.
        if at == 0 || tag[..at].ends_with(char::is_whitespace) {
            let value = &tag[at + pattern.len()..];
            return value.find('"').map(|end| value[..end].to_owned());
        }
        from = at + pattern.len();
    }
    None
}

/// The text of the first `<name>...</name>` (attributes allowed on the opening tag).
pub(super) fn element(body: &str, name: &str) -> Option<String> {
    element_all(body, name).into_iter().next()
}

pub(super) fn element_all(body: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = body[from..].find(&open) {
        let at = from + pos;
        let after = &body[at + open.len()..];
        // `<group` must not match `<groups`.
        if !after.starts_with('>') && !after.starts_with(char::is_whitespace) {
            from = at + open.len();
            continue;
        }
        let Some(gt) = after.find('>') else { break };
        let content = &after[gt + 1..];
        let Some(end) = content.find(&close) else {
            break;
        };
        out.push(unescape(content[..end].trim()));
        from = at + open.len() + gt + 1 + end + close.len();
    }
    out
}

pub(super) fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `key:value;` of a Suricata rule's options.
pub(super) fn option(rule: &str, key: &str) -> Option<String> {
    let pattern = format!("{key}:");
    let mut from = 0;
    while let Some(pos) = rule[from..].find(&pattern) {
        let at = from + pos;
        let before = rule[..at].trim_end();
        if before.ends_with(';') || before.ends_with('(') {
            let value = &rule[at + pattern.len()..];
            let value = value.trim_start();
            if let Some(quoted) = value.strip_prefix('"') {
                // A quoted value may hold `;`; it ends at the next unescaped quote.
                let mut end = 0;
                let bytes = quoted.as_bytes();
                while end < bytes.len()
                    && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\'))
                {
                    end += 1;
                }
                return Some(format!("\"{}\"", &quoted[..end.min(quoted.len())]));
            }
            let end = value.find(';').unwrap_or(value.len());
            return Some(value[..end].trim().to_owned());
        }
        from = at + pattern.len();
    }
    None
}
