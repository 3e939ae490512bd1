//! Tool names on the wire. Our tools are named by area (`memory.host_activity`); hosted
//! OpenAI-compatible APIs accept only `^[a-zA-Z0-9_-]{1,64}$`. Each request sends every name in
//! that form and maps the model's calls back, so roles, whitelists and the audit keep the
//! internal names.

use std::collections::HashMap;

use super::Tool;

/// Longest tool name the strict APIs accept.
const MAX_LEN: usize = 64;

/// `name` in the wire alphabet: every other character becomes `_`, cut at 64 characters.
pub(crate) fn wire_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LEN)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// The wire names of one request's tools, both ways. Two names that map to the same wire
/// name get distinct suffixes (`_2`, `_3`, ...), in the order offered.
#[derive(Debug, Default, Clone)]
pub(crate) struct Names {
    to_wire: HashMap<String, String>,
    from_wire: HashMap<String, String>,
}

impl Names {
    /// The names of `tools`.
    pub(crate) fn of(tools: &[Tool]) -> Self {
        let mut names = Self::default();
        for tool in tools {
            let internal = &tool.function.name;
            if names.to_wire.contains_key(internal) {
                continue;
            }
            let base = wire_name(internal);
            let mut wire = base.clone();
            let mut n = 2u32;
            while names.from_wire.contains_key(&wire) {
                let suffix = format!("_{n}");
                let keep = MAX_LEN.saturating_sub(suffix.len()).min(base.len());
                wire = format!("{}{suffix}", &base[..keep]);
                n += 1;
            }
            names.to_wire.insert(internal.clone(), wire.clone());
            names.from_wire.insert(wire, internal.clone());
        }
        names
    }

    /// The wire name of `internal` (of a tool not offered: its wire form).
    pub(crate) fn wire(&self, internal: &str) -> String {
        self.to_wire
            .get(internal)
            .cloned()
            .unwrap_or_else(|| wire_name(internal))
    }

    /// The internal name of a name the model called: an offered tool's wire name maps back;
    /// anything else (the internal name itself, a tool never offered) stays as written.
    pub(crate) fn internal(&self, called: &str) -> String {
        self.from_wire
            .get(called)
            .cloned()
            .unwrap_or_else(|| called.to_owned())
    }

    /// Gives the calls of an answer their internal names back.
    pub(crate) fn restore(&self, calls: &mut [super::ToolCall]) {
        for call in calls {
            call.function.name = self.internal(&call.function.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> Tool {
        Tool::function(name, "", serde_json::json!({"type": "object"}))
    }

    #[test]
    fn names_map_to_the_strict_alphabet_and_back() {
        let tools = [
            tool("memory.host_activity"),
            tool("memory_host_activity"),
            tool("intel.attack/technique"),
            tool(&"x".repeat(80)),
        ];
        let names = Names::of(&tools);
        let strict = |s: &str| {
            (1..=64).contains(&s.len())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        let mut wires = std::collections::HashSet::new();
        for t in &tools {
            let wire = names.wire(&t.function.name);
            assert!(strict(&wire), "{wire}");
            assert!(wires.insert(wire.clone()), "{wire} twice");
            assert_eq!(names.internal(&wire), t.function.name);
        }
        assert_eq!(names.wire("memory.host_activity"), "memory_host_activity");
        assert_eq!(names.wire("memory_host_activity"), "memory_host_activity_2");
        // A model that writes the internal name is understood too.
        assert_eq!(
            names.internal("memory.host_activity"),
            "memory.host_activity"
        );
        assert_eq!(wire_name(""), "_");
    }
}
