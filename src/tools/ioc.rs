//! `ioc.lookup`: the site's own indicator lists (blocklists, known scanners, partner ranges).
//!
//! Each list is a text file named in config; its name is the file's stem. One indicator per
//! line, optionally followed by a comma and a label; `#` starts a comment:
//!
//! ```text
//! # known scanners
//! 203.0.113.0/24, external scanner range
//! evil.example, phishing kit
//! 44d88612fea8a8f36de82e1278abb02f
//! ```
//!
//! An IP matches an address or a CIDR range on a list; a domain matches itself and its parent
//! domains (`a.evil.example` is on a list holding `evil.example`); anything else (hashes, URLs,
//! names) matches exactly, ignoring case.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::IpAddr;

use serde_json::{Value, json};

use super::LoadError;

/// One hit: the list and the entry's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The list's name.
    pub list: String,
    /// The entry that matched, as written.
    pub entry: String,
    /// Its label (may be empty).
    pub label: String,
}

#[derive(Debug, Clone)]
struct Entry {
    list: usize,
    entry: String,
    label: String,
}

/// The indicator lists, indexed.
#[derive(Debug, Default)]
pub struct IocLists {
    names: Vec<String>,
    exact: HashMap<String, Vec<Entry>>,
    networks: Vec<(IpAddr, u8, Entry)>,
}

impl IocLists {
    /// Loads the lists at `paths`.
    pub fn load(paths: &[std::path::PathBuf]) -> Result<Self, LoadError> {
        let mut lists = IocLists::default();
        for path in paths {
            let file = path.display().to_string();
            let reader =
                crate::ingest::open_text(path).map_err(|e| LoadError::Read(file.clone(), e))?;
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map_or_else(|| file.clone(), |s| s.trim_end_matches(".txt").to_owned());
            lists.add(&name, reader, &file)?;
        }
        Ok(lists)
    }

    fn add(&mut self, name: &str, reader: impl BufRead, file: &str) -> Result<(), LoadError> {
        let list = self.names.len();
        self.names.push(name.to_owned());
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| LoadError::Read(file.to_owned(), e))?;
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (value, label) = line.split_once(',').unwrap_or((line, ""));
            let value = value.trim();
            let entry = Entry {
                list,
                entry: value.to_owned(),
                label: label.trim().to_owned(),
            };
            if let Some((addr, bits)) = value.split_once('/') {
                let bad = |reason: String| LoadError::Line {
                    file: file.to_owned(),
                    line: i + 1,
                    reason,
                };
                let addr: IpAddr = addr
                    .parse()
                    .map_err(|e| bad(format!("{value:?} is not a CIDR range: {e}")))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let bits: u8 =
                    bits.parse().ok().filter(|b| *b <= max).ok_or_else(|| {
                        bad(format!("{value:?}: prefix length must be 0 to {max}"))
                    })?;
                self.networks.push((addr, bits, entry));
            } else {
                self.exact.entry(normalize(value)).or_default().push(entry);
            }
        }
        Ok(())
    }

    /// The lists loaded.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Every list entry `value` matches.
    pub fn lookup(&self, value: &str) -> Vec<Hit> {
        let key = normalize(value);
        let mut found: Vec<&Entry> = Vec::new();
        if let Ok(addr) = key.parse::<IpAddr>() {
            found.extend(self.exact.get(&addr.to_string()).into_iter().flatten());
            found.extend(
                self.networks
                    .iter()
                    .filter(|(net, bits, _)| contains(*net, *bits, addr))
                    .map(|(_, _, e)| e),
            );
        } else {
            let host = url_host(&key).unwrap_or(&key);
            found.extend(self.exact.get(&key).into_iter().flatten());
            // The domain and each parent of it.
            let mut domain = host;
            loop {
                if domain != key {
                    found.extend(self.exact.get(domain).into_iter().flatten());
                }
                match domain.split_once('.') {
                    Some((_, parent)) if parent.contains('.') => domain = parent,
                    _ => break,
                }
            }
        }
        found
            .into_iter()
            .map(|e| Hit {
                list: self.names[e.list].clone(),
                entry: e.entry.clone(),
                label: e.label.clone(),
            })
            .collect()
    }

    /// What the tool answers for `value`.
    pub(crate) fn lookup_json(&self, value: &str) -> Value {
        let hits = self.lookup(value);
        json!({
            "value": value,
            "on_lists": hits.iter().map(|h| json!({"list": h.list, "entry": h.entry, "label": h.label}))
                .collect::<Vec<_>>(),
            "lists_checked": self.names,
        })
    }
}

fn normalize(value: &str) -> String {
    let v = value.trim().trim_end_matches('.').to_lowercase();
    match v.parse::<IpAddr>() {
        Ok(addr) => addr.to_string(),
        Err(_) => v,
    }
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit('@').next()?;
    Some(host.split(':').next().unwrap_or(host))
}

fn contains(net: IpAddr, bits: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            (u32::from(n) & mask) == (u32::from(a) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            (u128::from(n) & mask) == (u128::from(a) & mask)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists() -> IocLists {
        let mut lists = IocLists::default();
        let text = "# scanners\n203.0.113.0/24, scanner range\n198.51.100.7\n\
                    evil.example, phishing kit\n44D88612FEA8A8F36DE82E1278ABB02F # eicar\n\
                    2001:db8::/32\n0.0.0.0/0, everything\n";
        lists.add("blocklist", text.as_bytes(), "b.txt").unwrap();
        lists
    }

    #[test]
    fn ips_match_addresses_and_ranges_domains_match_parents() {
        let lists = lists();
        let labels =
            |v: &str| -> Vec<String> { lists.lookup(v).into_iter().map(|h| h.entry).collect() };
        assert_eq!(labels("203.0.113.99"), ["203.0.113.0/24", "0.0.0.0/0"]);
        assert_eq!(labels("198.51.100.7"), ["198.51.100.7", "0.0.0.0/0"]);
        assert_eq!(labels("2001:db8::1"), ["2001:db8::/32"]);
        assert_eq!(labels("a.b.Evil.Example."), ["evil.example"]);
        assert_eq!(
            labels("https://x.evil.example:8443/login"),
            ["evil.example"]
        );
        assert!(labels("notevil.example").is_empty());
        assert_eq!(
            labels("44d88612fea8a8f36de82e1278abb02f"),
            ["44D88612FEA8A8F36DE82E1278ABB02F"]
        );
        assert_eq!(lists.lookup("evil.example")[0].label, "phishing kit");
    }

    #[test]
    fn bad_ranges_are_named_with_their_line() {
        let mut lists = IocLists::default();
        let e = lists
            .add("x", "10.0.0.0/8\n10.0.0.0/40\n".as_bytes(), "x.txt")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.txt:2: \"10.0.0.0/40\": prefix length must be 0 to 32"
        );
    }
}
