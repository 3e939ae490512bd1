//! `alerts.search`: the raw alerts a SIEM search would show, by host, IP, rule and time.
//!
//! The index is loaded once from a CSV file (`site,time,name,ip,host,rule_id`, time in Unix
//! seconds; plain or gzip), the format of the AIT-ADS raw alerts. Strings are interned and rows
//! sorted by time, with a posting list per host, IP and rule, so a search reads only the rows
//! of its most selective filter. A search never returns an alert after the time it is capped
//! at: the ticket's last alert.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use serde_json::{Value, json};

use super::LoadError;

/// Most rows one search returns.
pub(crate) const MAX_ROWS: usize = 50;

#[derive(Debug, Default)]
struct Strings {
    values: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl Strings {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.values.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn text(&self, id: u32) -> &str {
        self.values.get(id as usize).map_or("", |s| s)
    }
}

#[derive(Debug, Clone, Copy)]
struct Row {
    time: i64,
    site: u32,
    name: u32,
    ip: u32,
    host: u32,
    rule: u32,
}

/// The raw alerts, indexed.
#[derive(Debug, Default)]
pub(crate) struct AlertIndex {
    strings: Strings,
    rows: Vec<Row>,
    by_host: HashMap<u32, Vec<u32>>,
    by_ip: HashMap<u32, Vec<u32>>,
    by_rule: HashMap<u32, Vec<u32>>,
}

/// One search.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    /// Site (tenant) to search; every site when `None`.
    pub site: Option<String>,
    /// Host name.
    pub host: Option<String>,
    /// IP address.
    pub ip: Option<String>,
    /// Rule code.
    pub rule_id: Option<String>,
    /// From this time, Unix seconds, inclusive.
    pub since: i64,
    /// Up to this time, Unix seconds, inclusive.
    pub until: i64,
    /// Most rows returned (newest first), at most `MAX_ROWS`.
    pub limit: usize,
}

impl AlertIndex {
    /// Loads the alerts CSV at `path` (with its header line; plain or gzip).
    pub(crate) fn load(path: &Path) -> Result<Self, LoadError> {
        let file = path.display().to_string();
        let reader =
            crate::ingest::open_text(path).map_err(|e| LoadError::Read(file.clone(), e))?;
        Self::read(reader, &file)
    }

    fn read(reader: impl BufRead, file: &str) -> Result<Self, LoadError> {
        let mut index = AlertIndex::default();
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| LoadError::Read(file.to_owned(), e))?;
            let bad = |reason: String| LoadError::Line {
                file: file.to_owned(),
                line: i + 1,
                reason,
            };
            if line.trim().is_empty() || (i == 0 && line.starts_with("site,")) {
                continue;
            }
            // The name may hold commas: the first two fields and the last three are fixed.
            let mut head = line.splitn(3, ',');
            let (Some(site), Some(time), Some(rest)) = (head.next(), head.next(), head.next())
            else {
                return Err(bad("expected site,time,name,ip,host,rule_id".into()));
            };
            let mut tail = rest.rsplitn(4, ',');
            let (Some(rule), Some(host), Some(ip), Some(name)) =
                (tail.next(), tail.next(), tail.next(), tail.next())
            else {
                return Err(bad("expected site,time,name,ip,host,rule_id".into()));
            };
            let time: i64 = time
                .trim()
                .parse()
                .map_err(|e| bad(format!("time {time:?} is not Unix seconds: {e}")))?;
            let row = Row {
                time,
                site: index.strings.intern(site.trim()),
                name: index.strings.intern(name.trim()),
                ip: index.strings.intern(ip.trim()),
                host: index.strings.intern(&host.trim().to_lowercase()),
                rule: index.strings.intern(rule.trim()),
            };
            index.rows.push(row);
        }
        index.rows.sort_by_key(|r| r.time);
        for (i, row) in index.rows.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            index.by_host.entry(row.host).or_default().push(i);
            index.by_ip.entry(row.ip).or_default().push(i);
            index.by_rule.entry(row.rule).or_default().push(i);
        }
        Ok(index)
    }

    /// Alerts indexed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Runs `query`: how many alerts match, how many per rule, and the newest `limit` rows.
    pub(crate) fn search(&self, query: &Query) -> Value {
        let wanted = |field: &Option<String>, lower: bool| {
            field.as_deref().map(|v| {
                let v = v.trim();
                if lower {
                    self.strings.get(&v.to_lowercase())
                } else {
                    self.strings.get(v)
                }
            })
        };
        let site = wanted(&query.site, false);
        let host = wanted(&query.host, true);
        let ip = wanted(&query.ip, false);
        let rule = wanted(&query.rule_id, false);
        // A value never seen matches nothing.
        let unknown = [site, host, ip, rule]
            .iter()
            .any(|w| matches!(w, Some(None)));
        let lists = [
            host.flatten().and_then(|h| self.by_host.get(&h)),
            ip.flatten().and_then(|v| self.by_ip.get(&v)),
            rule.flatten().and_then(|r| self.by_rule.get(&r)),
        ];
        let shortest = lists.into_iter().flatten().min_by_key(|l| l.len());
        let in_time = |row: &Row| row.time >= query.since && row.time <= query.until;
        let matches = |row: &Row| {
            in_time(row)
                && site.flatten().is_none_or(|s| row.site == s)
                && host.flatten().is_none_or(|h| row.host == h)
                && ip.flatten().is_none_or(|v| row.ip == v)
                && rule.flatten().is_none_or(|r| row.rule == r)
        };
        let mut total = 0u64;
        let mut per_rule: HashMap<u32, u64> = HashMap::new();
        let mut newest: Vec<Row> = Vec::new();
        let limit = query.limit.clamp(1, MAX_ROWS);
        let mut visit = |row: &Row| {
            if matches(row) {
                total += 1;
                *per_rule.entry(row.rule).or_default() += 1;
                if newest.len() < limit {
                    newest.push(*row);
                }
            }
        };
        if !unknown {
            // Rows are visited newest first, so the first `limit` matches are the newest.
            match shortest {
                Some(list) => {
                    let end = list.partition_point(|&i| self.rows[i as usize].time <= query.until);
                    for &i in list[..end].iter().rev() {
                        visit(&self.rows[i as usize]);
                    }
                }
                None => {
                    let end = self.rows.partition_point(|r| r.time <= query.until);
                    let start = self.rows.partition_point(|r| r.time < query.since);
                    for row in self.rows[start..end.max(start)].iter().rev() {
                        visit(row);
                    }
                }
            }
        }
        let mut rules: Vec<(u32, u64)> = per_rule.into_iter().collect();
        rules.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let s = |id| self.strings.text(id);
        json!({
            "matched": total,
            "by_rule": rules.iter().take(10).map(|(r, n)| json!({"rule_id": s(*r), "alerts": n}))
                .collect::<Vec<_>>(),
            "newest": newest.iter().map(|r| json!({
                "time": chrono::DateTime::from_timestamp(r.time, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                "site": s(r.site), "host": s(r.host), "ip": s(r.ip),
                "rule_id": s(r.rule), "name": s(r.name),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "site,time,name,ip,host,rule_id\n\
        fox,100,Wazuh: ClamAV database update,10.0.0.1,mail,W-Sys-Cav\n\
        fox,200,Suricata: ET SCAN, odd name,10.0.0.9,Mail,S-Scan\n\
        fox,300,Suricata: ET SCAN, odd name,10.0.0.9,mail,S-Scan\n\
        shaw,250,Suricata: ET SCAN, odd name,10.0.0.9,mail,S-Scan\n";

    fn index() -> AlertIndex {
        AlertIndex::read(CSV.as_bytes(), "test.csv").unwrap()
    }

    fn query(site: &str, host: Option<&str>, until: i64) -> Query {
        Query {
            site: Some(site.into()),
            host: host.map(Into::into),
            since: 0,
            until,
            limit: 10,
            ..Query::default()
        }
    }

    #[test]
    fn searches_never_return_alerts_after_the_cap_and_stay_in_their_site() {
        let index = index();
        assert_eq!(index.len(), 4);
        let found = index.search(&query("fox", Some("MAIL"), 250));
        assert_eq!(found["matched"], 2);
        assert_eq!(found["newest"][0]["time"], "1970-01-01T00:03:20Z");
        assert_eq!(found["newest"][0]["name"], "Suricata: ET SCAN, odd name");
        assert_eq!(found["by_rule"].as_array().unwrap().len(), 2);
        let all = index.search(&query("fox", Some("mail"), 300));
        assert_eq!(all["matched"], 3);
        assert_eq!(all["by_rule"][0], json!({"rule_id": "S-Scan", "alerts": 2}));
        assert_eq!(index.search(&query("fox", None, 99))["matched"], 0);
        let by_ip = Query {
            ip: Some("10.0.0.9".into()),
            site: None,
            until: 1000,
            limit: 1,
            ..Query::default()
        };
        let found = index.search(&by_ip);
        assert_eq!(found["matched"], 3);
        assert_eq!(found["newest"].as_array().unwrap().len(), 1);
        assert_eq!(found["newest"][0]["site"], "fox");
    }

    #[test]
    fn unknown_values_match_nothing_and_bad_lines_are_named() {
        let index = index();
        assert_eq!(
            index.search(&query("fox", Some("nowhere"), 1000))["matched"],
            0
        );
        let e = AlertIndex::read("site,time\nfox,soon,a,b,c,d\n".as_bytes(), "x.csv").unwrap_err();
        assert!(e.to_string().starts_with("x.csv:2: time \"soon\""), "{e}");
    }
}
