//! Raw alerts grouped into cases before any role sees them, as a SOAR groups repeats: by
//! default one case per (site, host, rule id, UTC clock hour), the grouping of the AIT-ADS
//! tickets (so grouping the raw alerts of `alerts-dev.csv.gz` gives back
//! `tickets-dev.jsonl.gz`'s cases); the fields and the window are configurable
//! ([`GroupingConfig`]). A case counts its alerts, with its first and last time and its most
//! frequent addresses and ports. Identical records are real repeats and all count: nothing is
//! deduplicated on content.
//!
//! A file is grouped whole, its cases handed on once it has been read to the end (the records
//! of one case need not be contiguous in an export). A stream is grouped as it arrives
//! (`StreamGrouper`): a case at its first alert, its repeats as cumulative updates.
//!
//! In: raw alerts, parsed from the AIT-ADS raw alert CSV or a detector's own records. Out:
//! one ticket-format [`Alert`] per case, its id the grouping key. A restart loses the cases
//! being filled: a file is read again from its start (so they are rebuilt the same, and a case
//! published before is dropped as a duplicate of its id), a followed file from its saved
//! position.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::proto::Alert;

/// The header line of the AIT-ADS raw alert CSV.
pub(crate) const CSV_HEADER: &str = "site,time,name,ip,host,rule_id";

/// Addresses kept per case, most frequent first.
const MAX_IPS: usize = 5;

/// Why a CSV row is not a raw alert.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// Fewer than six fields.
    #[error("the row has fewer than 6 fields")]
    Short,
    /// A record of the source that is no alert (a Suricata flow or DNS event, a record a
    /// mapping's `only` filters out): counted and skipped, not an error of the feed.
    #[error("the record is not an alert")]
    NotAnAlert,
    /// A field's value is refused.
    #[error("{field} {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// One raw alert, from any source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawAlert {
    pub(crate) site: String,
    pub(crate) time_s: i64,
    pub(crate) name: String,
    /// The flow's source (the CSV's `ip`).
    pub(crate) src_ip: Option<IpAddr>,
    /// The flow's destination, when the detector sees a flow.
    pub(crate) dest_ip: Option<IpAddr>,
    /// The destination port.
    pub(crate) dest_port: Option<u16>,
    /// The user the detector names.
    pub(crate) user: Option<String>,
    pub(crate) host: String,
    pub(crate) rule_id: String,
    /// The detector (`wazuh`, `suricata`, ...); `None`: known from the AIT-ADS rule id.
    pub(crate) source: Option<Arc<str>>,
    /// What the vendor says of the rule.
    pub(crate) vendor: Option<crate::proto::VendorMeta>,
}

/// Parses one CSV row (after the header). The name may hold commas: the fields around it are
/// counted from both ends.
pub(crate) fn parse_row(line: &str) -> Result<RawAlert, RowError> {
    let field = |field: &'static str, problem: &'static str| RowError::Field { field, problem };
    let mut head = line.splitn(3, ',');
    let (Some(site), Some(time), Some(rest)) = (head.next(), head.next(), head.next()) else {
        return Err(RowError::Short);
    };
    let mut tail = rest.rsplitn(4, ',');
    let (Some(rule_id), Some(host), Some(ip), Some(name)) =
        (tail.next(), tail.next(), tail.next(), tail.next())
    else {
        return Err(RowError::Short);
    };
    let check = |name: &'static str, value: &str| {
        if value.trim().is_empty() {
            Err(field(name, "is empty"))
        } else if value.chars().count() > 256 || value.chars().any(char::is_control) {
            Err(field(
                name,
                "is longer than 256 characters or holds control characters",
            ))
        } else {
            Ok(value.trim().to_owned())
        }
    };
    let time_s: i64 = time
        .trim()
        .parse()
        .map_err(|_| field("time", "is not unix seconds"))?;
    if DateTime::<Utc>::from_timestamp(time_s, 0).is_none() {
        return Err(field("time", "is out of range"));
    }
    Ok(RawAlert {
        site: check("site", site)?,
        time_s,
        name: check("name", name.trim_matches('"'))?,
        src_ip: ip.trim().parse().ok(),
        dest_ip: None,
        dest_port: None,
        user: None,
        host: check("host", host)?,
        rule_id: check("rule_id", rule_id)?,
        source: None,
        vendor: None,
    })
}

/// The detector of an AIT-ADS rule id (`W-...` Wazuh, `S-...` Suricata, `A-...` AMiner).
fn detector(rule_id: &str) -> &'static str {
    match rule_id.as_bytes().first() {
        Some(b'W') => "wazuh",
        Some(b'S') => "suricata",
        Some(b'A') => "aminer",
        _ => "unknown",
    }
}

/// A case being filled.
#[derive(Debug)]
struct OpenCase {
    site: String,
    host: String,
    rule_id: String,
    name: String,
    source: Option<Arc<str>>,
    vendor: Option<crate::proto::VendorMeta>,
    user: Option<String>,
    raw: String,
    first_s: i64,
    last_s: i64,
    count: u32,
    /// The count last handed on (streaming).
    published: u32,
    first_line: u64,
    src_ips: Tally<IpAddr>,
    dest_ips: Tally<IpAddr>,
    dest_ports: Tally<u16>,
}

impl OpenCase {
    /// Counts one more alert of the case.
    fn add(&mut self, raw: &RawAlert, pos: u64) {
        self.count = self.count.saturating_add(1);
        self.first_s = self.first_s.min(raw.time_s);
        self.last_s = self.last_s.max(raw.time_s);
        if self.user.is_none() {
            self.user.clone_from(&raw.user);
        }
        count(&mut self.src_ips, raw.src_ip, pos);
        count(&mut self.dest_ips, raw.dest_ip, pos);
        count(&mut self.dest_ports, raw.dest_port, pos);
    }
}

/// Values counted, each with the feed line it first appeared on.
type Tally<T> = HashMap<T, (u32, u64)>;

fn count<T: Hash + Eq>(tally: &mut Tally<T>, value: Option<T>, line: u64) {
    if let Some(value) = value {
        tally.entry(value).or_insert((0, line)).0 += 1;
    }
}

/// The most frequent values first (ties: first seen first), at most [`MAX_IPS`].
fn most_frequent<T: Copy>(tally: &Tally<T>) -> Vec<T> {
    let mut values: Vec<_> = tally.iter().collect();
    values.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    values.into_iter().take(MAX_IPS).map(|(v, _)| *v).collect()
}

/// A raw record as kept for the audit: cut at [`Alert::MAX_RAW`] bytes (on a character
/// boundary) with a marker saying how much was cut.
fn kept_raw(record: &[u8]) -> String {
    let text = String::from_utf8_lossy(record);
    if text.len() <= Alert::MAX_RAW {
        return text.into_owned();
    }
    let mut end = Alert::MAX_RAW;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...[{} more bytes cut]", &text[..end], text.len() - end)
}

/// A field alerts of one case share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKey {
    /// The site or tenant.
    Site,
    /// The host.
    Host,
    /// The rule.
    RuleId,
    /// The flow's source address.
    SrcIp,
    /// The flow's destination address.
    DestIp,
    /// The user.
    User,
}

/// How raw alerts fold into cases (`[feed.grouping]`, `[ingest.sources.<name>.grouping]`):
/// alerts that share the `by` fields and fall in the same clock window of `window_minutes`
/// (UTC, counted from the epoch) are one case. The default, site, host and rule id by the UTC
/// clock hour, is the grouping of the AIT-ADS tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupingConfig {
    /// The fields alerts of one case share.
    pub by: Vec<GroupKey>,
    /// The window, minutes (60: the clock hour).
    pub window_minutes: u32,
}

impl Default for GroupingConfig {
    fn default() -> Self {
        Self {
            by: vec![GroupKey::Site, GroupKey::Host, GroupKey::RuleId],
            window_minutes: 60,
        }
    }
}

impl GroupingConfig {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), String> {
        if self.by.is_empty() {
            return Err(
                "grouping.by: name at least one field (site, host, rule_id, src_ip, \
                        dest_ip, user)"
                    .to_owned(),
            );
        }
        if self
            .by
            .iter()
            .enumerate()
            .any(|(i, k)| self.by[..i].contains(k))
        {
            return Err("grouping.by names a field twice".to_owned());
        }
        if !(1..=10_080).contains(&self.window_minutes) {
            return Err("grouping.window_minutes: 1 to 10080 (a week)".to_owned());
        }
        Ok(())
    }

    fn window_s(&self) -> i64 {
        i64::from(self.window_minutes.max(1)) * 60
    }
}

/// A case's grouping key: the `by` fields' values, in order, and the window (its start, unix
/// seconds divided by the window).
type Key = (Vec<String>, i64);

/// Raw alerts folded into cases by their [`GroupingConfig`].
#[derive(Debug, Default)]
pub(crate) struct Grouper {
    open: HashMap<Key, OpenCase>,
    grouping: GroupingConfig,
}

impl Grouper {
    /// A grouper by `grouping`.
    pub(crate) fn new(grouping: GroupingConfig) -> Self {
        Self {
            open: HashMap::new(),
            grouping,
        }
    }

    /// Adds the raw alert at feed position `pos`, parsed from `record`; returns its case's key
    /// when this alert opened it. A repeat (the common case) costs one lookup and no copy of
    /// its key.
    pub(crate) fn push(&mut self, mut raw: RawAlert, pos: u64, record: &[u8]) -> Option<Key> {
        let ip = |ip: Option<IpAddr>| ip.map(|ip| ip.to_string()).unwrap_or_default();
        let fields = self
            .grouping
            .by
            .iter()
            .map(|k| match k {
                GroupKey::Site => std::mem::take(&mut raw.site),
                GroupKey::Host => std::mem::take(&mut raw.host),
                GroupKey::RuleId => std::mem::take(&mut raw.rule_id),
                GroupKey::SrcIp => ip(raw.src_ip),
                GroupKey::DestIp => ip(raw.dest_ip),
                GroupKey::User => raw.user.clone().unwrap_or_default(),
            })
            .collect();
        let key: Key = (fields, raw.time_s.div_euclid(self.grouping.window_s()));
        if let Some(case) = self.open.get_mut(&key) {
            case.add(&raw, pos);
            return None;
        }
        // A field the key took is the key's value.
        let by = &self.grouping.by;
        let field = |k: GroupKey, own: &mut String| match by.iter().position(|b| *b == k) {
            Some(i) => key.0[i].clone(),
            None => std::mem::take(own),
        };
        let mut case = OpenCase {
            site: field(GroupKey::Site, &mut raw.site),
            host: field(GroupKey::Host, &mut raw.host),
            rule_id: field(GroupKey::RuleId, &mut raw.rule_id),
            name: std::mem::take(&mut raw.name),
            source: raw.source.take(),
            vendor: raw.vendor.take(),
            user: None,
            raw: kept_raw(record),
            first_s: raw.time_s,
            last_s: raw.time_s,
            count: 0,
            published: 0,
            first_line: pos,
            src_ips: Tally::new(),
            dest_ips: Tally::new(),
            dest_ports: Tally::new(),
        };
        case.add(&raw, pos);
        self.open.insert(key.clone(), case);
        Some(key)
    }

    /// Cases open now.
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    /// Every case, as alerts in time order (by first alert), each with the feed position of
    /// its first alert.
    pub(crate) fn finish(self) -> Vec<(u64, Alert)> {
        let mut cases: Vec<_> = self.open.into_iter().collect();
        cases.sort_by(|a, b| (a.1.first_s, &a.0).cmp(&(b.1.first_s, &b.0)));
        let grouping = self.grouping;
        cases
            .into_iter()
            .map(|(key, case)| (case.first_line, case_alert(&grouping, &key, &case)))
            .collect()
    }
}

/// A case as an alert: its id the grouping key (its non-empty fields and its window's start,
/// `site:host:rule:20220115T00` by default).
fn case_alert(grouping: &GroupingConfig, key: &Key, case: &OpenCase) -> Alert {
    let (fields, window) = key;
    let (site, host, rule_id) = (&case.site, &case.host, &case.rule_id);
    let time = |s: i64| {
        DateTime::<Utc>::from_timestamp(s, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    };
    let ips = |t: &Tally<IpAddr>| {
        most_frequent(t)
            .into_iter()
            .map(|ip| ip.to_string())
            .collect()
    };
    let start =
        DateTime::<Utc>::from_timestamp(window * grouping.window_s(), 0).unwrap_or_default();
    let stamp = if grouping.window_minutes.is_multiple_of(60) {
        start.format("%Y%m%dT%H")
    } else {
        start.format("%Y%m%dT%H%M")
    };
    let mut ticket_id = String::new();
    for field in fields.iter().filter(|f| !f.is_empty()) {
        ticket_id.push_str(field);
        ticket_id.push(':');
    }
    let _ = write!(ticket_id, "{stamp}");
    Alert {
        ticket_id,
        source: case
            .source
            .as_deref()
            .unwrap_or_else(|| detector(rule_id))
            .to_owned(),
        site: (!site.is_empty()).then(|| site.clone()),
        rule_name: case.name.clone(),
        host: host.clone(),
        rule_id: rule_id.clone(),
        user: case.user.clone(),
        src_ips: ips(&case.src_ips),
        dest_ips: ips(&case.dest_ips),
        dest_ports: most_frequent(&case.dest_ports),
        raw: Some(case.raw.clone()),
        first_seen: time(case.first_s),
        last_seen: time(case.last_s),
        alert_count: case.count,
        vendor: case.vendor.clone(),
    }
}

/// What a streaming grouper hands on, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Grouped {
    /// A new case, at its first alert: published at once, so triage need not wait for its
    /// window to close.
    Opened(Alert),
    /// More alerts joined a case published before: the case as it is now.
    Updated(Alert),
}

/// Raw alerts arriving as a stream (a followed file, a pipe), grouped by the same keys as
/// [`Grouper`]: each case is handed on at its first alert, and its repeats as cumulative
/// updates when [`StreamGrouper::updates`] is called. A case is forgotten once the feed's
/// clock (its latest alert time) is `keep_s` past the case's hour; an alert for it after that
/// opens it again under the same id, which the bus drops as a duplicate of the published case
/// and the source counts as late.
#[derive(Debug)]
pub(crate) struct StreamGrouper {
    cases: Grouper,
    watermark_s: i64,
    keep_s: i64,
}

impl StreamGrouper {
    /// A grouper by `grouping` keeping cases open `keep_s` seconds of feed time past their
    /// window.
    pub(crate) fn new(grouping: GroupingConfig, keep_s: i64) -> Self {
        Self {
            cases: Grouper::new(grouping),
            watermark_s: i64::MIN,
            keep_s,
        }
    }

    /// Adds one raw alert; a new case is handed on at once.
    pub(crate) fn push(&mut self, raw: RawAlert, pos: u64, record: &[u8]) -> Option<Grouped> {
        self.watermark_s = self.watermark_s.max(raw.time_s);
        let key = self.cases.push(raw, pos, record)?;
        let case = self.cases.open.get_mut(&key)?;
        case.published = case.count;
        Some(Grouped::Opened(case_alert(
            &self.cases.grouping,
            &key,
            case,
        )))
    }

    /// The cases that gained alerts since they were last handed on, then forgets the cases
    /// the feed's clock has left `keep_s` behind.
    pub(crate) fn updates(&mut self) -> Vec<Grouped> {
        let mut out = Vec::new();
        let grouping = &self.cases.grouping;
        for (key, case) in &mut self.cases.open {
            if case.count > case.published {
                case.published = case.count;
                out.push(Grouped::Updated(case_alert(grouping, key, case)));
            }
        }
        let (watermark, keep) = (self.watermark_s, self.keep_s);
        let window_s = grouping.window_s();
        self.cases.open.retain(|key, _| {
            (key.1 + 1).saturating_mul(window_s).saturating_add(keep) >= watermark
        });
        out
    }

    /// The feed position of the first alert of the oldest open case: re-reading from there
    /// after a restart rebuilds every open case.
    pub(crate) fn resume_pos(&self) -> Option<u64> {
        self.cases.open.values().map(|c| c.first_line).min()
    }

    /// Cases open now.
    pub(crate) fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether a case gained alerts since it was last handed on.
    pub(crate) fn has_updates(&self) -> bool {
        self.cases.open.values().any(|c| c.count > c.published)
    }

    /// Moves every open case's first position to `pos` (its first alerts are in a file
    /// rotated away: re-reading starts at the new file's `pos`).
    pub(crate) fn rebase(&mut self, pos: u64) {
        for case in self.cases.open.values_mut() {
            case.first_line = pos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_bad_ones_say_why() {
        let r =
            parse_row("fox,1642213952,Wazuh: ClamAV database update,172.17.131.81,mail,W-Sys-Cav")
                .unwrap();
        assert_eq!(
            (
                r.site.as_str(),
                r.time_s,
                r.host.as_str(),
                r.rule_id.as_str()
            ),
            ("fox", 1_642_213_952, "mail", "W-Sys-Cav")
        );
        // A comma inside the name stays in the name.
        let r = parse_row("fox,1,Suricata: a, b,10.0.0.1,h,S-X").unwrap();
        assert_eq!(r.name, "Suricata: a, b");
        for (row, says) in [
            ("fox,abc,n,1.2.3.4,h,W-X", "time"),
            ("fox,1,n,1.2.3.4,,W-X", "host"),
            ("fox,1,n", "fewer than 6"),
            (",1,n,1.2.3.4,h,W-X", "site"),
        ] {
            let e = parse_row(row).unwrap_err().to_string();
            assert!(e.contains(says), "{row}: {e}");
        }
    }

    #[test]
    fn repeats_in_one_hour_are_one_case_and_the_next_hour_is_another() {
        let mut g = Grouper::default();
        for (i, row) in [
            "fox,7205,scan,10.0.0.9,web,S-Scan",
            "fox,7200,scan,10.0.0.9,web,S-Scan",
            "fox,7200,scan,10.0.0.9,web,S-Scan",
            "fox,7300,scan,10.0.0.7,web,S-Scan",
            "fox,10800,scan,10.0.0.9,web,S-Scan",
            "fox,7300,other,10.0.0.9,web,W-Other",
        ]
        .iter()
        .enumerate()
        {
            g.push(parse_row(row).unwrap(), i as u64 + 2, row.as_bytes());
        }
        assert_eq!(g.len(), 3);
        let cases = g.finish();
        let first = &cases[0].1;
        assert_eq!(first.alert_count, 4);
        assert_eq!(
            (first.first_seen.as_str(), first.last_seen.as_str()),
            ("1970-01-01T02:00:00Z", "1970-01-01T02:01:40Z")
        );
        assert_eq!(first.src_ips, ["10.0.0.9", "10.0.0.7"]);
        assert_eq!(first.source, "suricata");
        // The first record (in feed order) is kept for the audit.
        assert_eq!(
            first.raw.as_deref(),
            Some("fox,7205,scan,10.0.0.9,web,S-Scan")
        );
        assert_eq!(
            kept_raw(&[b'x'; Alert::MAX_RAW + 5]).len(),
            Alert::MAX_RAW + 21
        );
        assert_eq!(cases[0].0, 2);
        assert_eq!(cases[2].1.alert_count, 1);
    }

    #[test]
    fn cases_group_by_the_configured_fields_and_window() {
        // One case per host and quarter hour, whatever the rule.
        let grouping = GroupingConfig {
            by: vec![GroupKey::Host],
            window_minutes: 15,
        };
        grouping.validate().unwrap();
        let mut g = Grouper::new(grouping);
        for (i, row) in [
            "fox,7200,scan,10.0.0.9,web,S-Scan",
            "fox,7300,login,10.0.0.9,web,W-Login",
            "fox,8100,scan,10.0.0.9,web,S-Scan",
            "fox,7300,scan,10.0.0.9,db,S-Scan",
        ]
        .iter()
        .enumerate()
        {
            g.push(parse_row(row).unwrap(), i as u64, row.as_bytes());
        }
        let cases = g.finish();
        let ids: Vec<(&str, u32)> = cases
            .iter()
            .map(|(_, a)| (a.ticket_id.as_str(), a.alert_count))
            .collect();
        assert_eq!(
            ids,
            [
                ("web:19700101T0200", 2),
                ("db:19700101T0200", 1),
                ("web:19700101T0215", 1)
            ]
        );
        // The case keeps its first alert's rule and site.
        assert_eq!(cases[0].1.rule_id, "S-Scan");
        assert_eq!(cases[0].1.site.as_deref(), Some("fox"));
        for bad in [
            GroupingConfig {
                by: vec![],
                window_minutes: 60,
            },
            GroupingConfig {
                by: vec![GroupKey::Host, GroupKey::Host],
                window_minutes: 60,
            },
            GroupingConfig {
                by: vec![GroupKey::Host],
                window_minutes: 0,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_stream_updates_its_cases_and_forgets_those_the_feed_clock_left_behind() {
        let mut g = StreamGrouper::new(GroupingConfig::default(), 3600);
        let row = |t: i64| parse_row(&format!("fox,{t},scan,10.0.0.9,web,S-Scan")).unwrap();
        assert!(matches!(g.push(row(0), 1, b"r"), Some(Grouped::Opened(_))));
        assert!(g.push(row(10), 2, b"r").is_none());
        assert!(g.has_updates());
        assert_eq!(g.resume_pos(), Some(1));
        // Two hours on: the first hour's case is past its hour and `keep`; its last update is
        // handed on, then it is forgotten.
        assert!(matches!(
            g.push(row(7201), 3, b"r"),
            Some(Grouped::Opened(_))
        ));
        let updates = g.updates();
        assert!(
            matches!(&updates[..], [Grouped::Updated(a)] if a.alert_count == 2),
            "{updates:?}"
        );
        assert!(!g.has_updates());
        assert_eq!((g.len(), g.resume_pos()), (1, Some(3)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Rows are untrusted bytes: any row parses or is refused, never panics, and a parsed
        /// one groups into a case a ticket line could carry.
        #[test]
        fn any_row_parses_or_is_refused(row in "[a-z0-9,:. \\-\"\\x00-\\x1f\\u{202e}]{0,80}") {
            if let Ok(raw) = parse_row(&row) {
                let mut g = Grouper::default();
                g.push(raw, 2, row.as_bytes());
                let cases = g.finish();
                proptest::prop_assert_eq!(cases.len(), 1);
                proptest::prop_assert_eq!(cases[0].1.alert_count, 1);
            }
        }
    }
}
