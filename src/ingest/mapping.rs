//! A declarative field mapping: any JSON alert source read without code, by naming where each
//! field of a raw alert is in its records. Elastic Security (ECS) and OCSF Detection Finding
//! are read by built-in mappings (`assets/mappings/`), which double as examples of the syntax.
//!
//! A path names a field by its keys joined with dots (`destination.ip`). A dotted key
//! stored flat (`"kibana.alert.rule.name": ...`, as Elasticsearch documents often are) is found
//! by the same path, and arrays met along the way are walked element by element
//! (`kibana.alert.rule.threat.technique.id` collects every technique). A field may name
//! several paths: the first one present wins (lists collect from all).
//!
//! In: one record's bytes and its [`Mapping`]. Out: a raw alert for grouping, or why not.
//! Stateless; every value is untrusted and bounded.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::group::{RawAlert, RowError};
use super::native::{flow_host, text, time_of};
use crate::proto::VendorMeta;

/// Entries kept of a list field.
const MAX_LIST: usize = 16;

/// One or more field paths, tried in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OneOrMany", into = "Vec<String>")]
pub struct Paths(Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Paths {
    fn from(v: OneOrMany) -> Self {
        Paths(match v {
            OneOrMany::One(p) => vec![p],
            OneOrMany::Many(ps) => ps,
        })
    }
}

impl From<Paths> for Vec<String> {
    fn from(p: Paths) -> Self {
        p.0
    }
}

/// Where each field of a raw alert is in a source's JSON records (`[feed.mapping]`).
///
/// `time`, `rule_id` and `rule_name` are required; `host`, when absent from a record, is the
/// internal end of the flow (`src_ip`, `dest_ip`), as for Suricata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The detector family written on the cases (`elastic`, `ocsf`, `edr`, ...).
    pub source: String,
    /// Only records whose field has one of these values are alerts; others are counted and
    /// skipped (`only = { "event.kind" = "signal" }`).
    #[serde(default)]
    pub only: BTreeMap<String, Vec<String>>,
    /// The alert's time: RFC 3339 (or an ISO time with a `+0000` offset), or unix seconds or
    /// milliseconds.
    pub time: Paths,
    /// The rule's id: the key alerts are grouped by (not a per-alert id).
    pub rule_id: Paths,
    /// The rule's title.
    pub rule_name: Paths,
    /// The host the alert is about.
    #[serde(default)]
    pub host: Paths,
    /// The site or tenant.
    #[serde(default)]
    pub site: Paths,
    /// The user involved.
    #[serde(default)]
    pub user: Paths,
    /// The flow's source address.
    #[serde(default)]
    pub src_ip: Paths,
    /// The flow's destination address.
    #[serde(default)]
    pub dest_ip: Paths,
    /// The flow's destination port.
    #[serde(default)]
    pub dest_port: Paths,
    /// A named severity (`low` .. `critical`).
    #[serde(default)]
    pub severity: Paths,
    /// A Wazuh-style level, 0 to 16.
    #[serde(default)]
    pub level: Paths,
    /// A Suricata-style priority, 1 (high) to 4.
    #[serde(default)]
    pub priority: Paths,
    /// The vendor's category or classtype.
    #[serde(default)]
    pub category: Paths,
    /// Rule groups or tags (a list).
    #[serde(default)]
    pub groups: Paths,
    /// ATT&CK technique ids (a list).
    #[serde(default)]
    pub attack: Paths,
}

impl Mapping {
    /// Checks what serde cannot: a named source and non-empty paths for required fields.
    pub fn validate(&self) -> Result<(), String> {
        let source = self.source.trim();
        if source.is_empty() || source.len() > 64 || source.chars().any(char::is_control) {
            return Err("feed.mapping.source: a short name such as \"edr\"".to_owned());
        }
        for (name, paths) in [
            ("time", &self.time),
            ("rule_id", &self.rule_id),
            ("rule_name", &self.rule_name),
        ] {
            if paths.0.iter().all(|p| p.trim().is_empty()) {
                return Err(format!("feed.mapping.{name}: name at least one field path"));
            }
        }
        Ok(())
    }

    /// The built-in mapping of Elastic Security alerts (ECS).
    pub(crate) fn ecs() -> Arc<Mapping> {
        static ECS: OnceLock<Arc<Mapping>> = OnceLock::new();
        ECS.get_or_init(|| builtin(include_str!("../../assets/mappings/ecs.toml")))
            .clone()
    }

    /// The built-in mapping of OCSF Detection Findings.
    pub(crate) fn ocsf() -> Arc<Mapping> {
        static OCSF: OnceLock<Arc<Mapping>> = OnceLock::new();
        OCSF.get_or_init(|| builtin(include_str!("../../assets/mappings/ocsf.toml")))
            .clone()
    }
}

fn builtin(text: &str) -> Arc<Mapping> {
    #[allow(
        clippy::expect_used,
        reason = "a built-in mapping is compiled in and tested; it cannot fail at run time"
    )]
    Arc::new(toml::from_str(text).expect("built-in mappings parse (tested)"))
}

/// Every value at `path` in `v`, arrays walked, dotted keys found flat or nested.
fn resolve<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|item| resolve(item, path, out)),
        Value::Null => {}
        _ if path.is_empty() => out.push(v),
        Value::Object(map) => {
            // Longest key first: `a.b.c` is tried as `a.b.c`, then `a.b` / `c`, then `a` / `b.c`.
            let mut end = path.len();
            loop {
                if let Some(child) = map.get(&path[..end]) {
                    resolve(child, path.get(end + 1..).unwrap_or(""), out);
                }
                match path[..end].rfind('.') {
                    Some(dot) => end = dot,
                    None => break,
                }
            }
        }
        _ => {}
    }
}

fn values<'a>(v: &'a Value, paths: &Paths) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for path in &paths.0 {
        resolve(v, path, &mut out);
    }
    out
}

/// The first value of the first path present.
fn first<'a>(v: &'a Value, paths: &Paths) -> Option<&'a Value> {
    paths.0.iter().find_map(|path| {
        let mut out = Vec::new();
        resolve(v, path, &mut out);
        out.into_iter().next()
    })
}

fn first_text(v: &Value, paths: &Paths) -> Option<String> {
    first(v, paths).and_then(text)
}

fn number<T: TryFrom<u64>>(v: &Value, paths: &Paths) -> Option<T> {
    let n = first(v, paths)?;
    n.as_u64()
        .or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))
        .and_then(|n| T::try_from(n).ok())
}

fn address(v: &Value, paths: &Paths) -> Option<IpAddr> {
    first(v, paths)?.as_str()?.trim().parse().ok()
}

/// One record as a raw alert, by `mapping`.
pub(crate) fn parse(mapping: &Mapping, record: &[u8]) -> Result<RawAlert, RowError> {
    let field = |field: &'static str, problem: &'static str| RowError::Field { field, problem };
    let v: Value = serde_json::from_slice(record).map_err(|_| field("record", "is not JSON"))?;
    for (path, wanted) in &mapping.only {
        let mut found = Vec::new();
        resolve(&v, path, &mut found);
        if !found
            .iter()
            .filter_map(|f| text(f))
            .any(|t| wanted.contains(&t))
        {
            return Err(RowError::NotAnAlert);
        }
    }
    let time_s = first(&v, &mapping.time)
        .and_then(time_of)
        .ok_or(field("time", "is missing or not a time"))?;
    if !super::native::plausible_time(time_s) {
        return Err(field("time", super::native::OUT_OF_RANGE));
    }
    let (src_ip, dest_ip) = (address(&v, &mapping.src_ip), address(&v, &mapping.dest_ip));
    let host = first_text(&v, &mapping.host)
        .or_else(|| flow_host(src_ip, dest_ip))
        .ok_or(field("host", "is missing and no flow address names one"))?;
    let list = |paths: &Paths| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in values(&v, paths).into_iter().filter_map(text) {
            if !out.contains(&t) && out.len() < MAX_LIST {
                out.push(t);
            }
        }
        out
    };
    let vendor = VendorMeta {
        rule: None,
        level: number(&v, &mapping.level),
        priority: number(&v, &mapping.priority),
        severity: first_text(&v, &mapping.severity).map(|s| s.to_ascii_lowercase()),
        category: first_text(&v, &mapping.category),
        groups: list(&mapping.groups),
        attack: list(&mapping.attack),
    };
    let rule_id = first_text(&v, &mapping.rule_id).ok_or(field("rule_id", "is missing"))?;
    Ok(RawAlert {
        site: first_text(&v, &mapping.site).unwrap_or_default(),
        time_s,
        name: first_text(&v, &mapping.rule_name).ok_or(field("rule_name", "is missing"))?,
        src_ip,
        dest_ip,
        dest_port: number(&v, &mapping.dest_port),
        user: first_text(&v, &mapping.user),
        host,
        source: Some(Arc::from(mapping.source.trim())),
        vendor: Some(VendorMeta {
            rule: Some(rule_id.clone()),
            ..vendor
        }),
        rule_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(toml: &str) -> Mapping {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn paths_find_nested_flat_and_array_fields() {
        let v: Value = serde_json::from_str(
            r#"{"a":{"b":{"c":1}},"x.y":{"z":2},"t":[{"id":"T1"},{"id":"T2","sub":[{"id":"T2.001"}]}]}"#,
        )
        .unwrap();
        let all = |p: &str| {
            let mut out = Vec::new();
            resolve(&v, p, &mut out);
            out.into_iter().cloned().collect::<Vec<_>>()
        };
        assert_eq!(all("a.b.c"), [serde_json::json!(1)]);
        assert_eq!(all("x.y.z"), [serde_json::json!(2)]);
        assert_eq!(
            all("t.id"),
            [serde_json::json!("T1"), serde_json::json!("T2")]
        );
        assert_eq!(all("t.sub.id"), [serde_json::json!("T2.001")]);
        assert!(all("a.b.d").is_empty());
    }

    #[test]
    fn a_mapped_record_becomes_a_raw_alert() {
        let m = mapping(
            r#"
            source = "edr"
            only = { "kind" = ["detection"] }
            time = ["detected_at", "ts"]
            rule_id = "rule.id"
            rule_name = "rule.title"
            src_ip = "net.src"
            dest_ip = "net.dst"
            dest_port = "net.dport"
            severity = "sev"
            attack = ["mitre.technique", "mitre.sub"]
            "#,
        );
        m.validate().unwrap();
        let raw = parse(
            &m,
            br#"{"kind":"detection","ts":1700000000000,"rule":{"id":"R7","title":"Beacon"},
                "net":{"src":"10.1.2.3","dst":"198.51.100.9","dport":"443"},"sev":"High",
                "mitre":[{"technique":"T1071"},{"technique":"T1071","sub":"T1071.001"}]}"#,
        )
        .unwrap();
        assert_eq!(raw.time_s, 1_700_000_000);
        // No host field: the internal end of the flow.
        assert_eq!(raw.host, "10.1.2.3");
        assert_eq!(raw.dest_port, Some(443));
        assert_eq!(raw.source.as_deref(), Some("edr"));
        let vendor = raw.vendor.unwrap();
        assert_eq!(vendor.severity.as_deref(), Some("high"));
        assert_eq!(vendor.attack, ["T1071", "T1071.001"]);
        assert!(matches!(
            parse(&m, br#"{"kind":"heartbeat"}"#),
            Err(RowError::NotAnAlert)
        ));
        let e = parse(
            &m,
            br#"{"kind":"detection","ts":"yesterday","rule":{"id":"R7","title":"x"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "time is missing or not a time");
    }

    /// Vendor records from their documentation and test suites (`tests/fixtures/vendors/README.md`).
    const ECS: &str = include_str!("../../tests/fixtures/vendors/ecs-alert.json");
    const OCSF: &str = include_str!("../../tests/fixtures/vendors/ocsf-detection-finding.json");

    #[test]
    fn elastic_and_ocsf_records_become_raw_alerts() {
        let e = parse(&Mapping::ecs(), ECS.trim().as_bytes()).unwrap();
        assert_eq!(e.host, "siem-linux-release-sec-bis");
        assert_eq!(e.user.as_deref(), Some("admin"));
        assert_eq!(
            e.name,
            "Malicious Behavior Prevention Alert: Empire Stager Execution"
        );
        assert_eq!(e.source.as_deref(), Some("elastic"));
        // When the process ran (kibana.alert.original_time), not when the alert was written.
        assert_eq!(e.time_s, 1_717_941_127);
        let vendor = e.vendor.unwrap();
        assert_eq!(vendor.severity.as_deref(), Some("high"));
        assert_eq!(
            vendor.attack,
            ["T1059", "T1132", "T1059.004", "T1059.006", "T1132.001"]
        );
        assert_eq!(vendor.category.as_deref(), Some("malware"));

        let o = parse(&Mapping::ocsf(), OCSF.trim().as_bytes()).unwrap();
        assert_eq!(o.rule_id, "2027863");
        assert_eq!(o.name, "ET INFO Observed DNS Query to .biz TLD");
        assert_eq!(o.src_ip, Some("192.168.1.104".parse().unwrap()));
        assert_eq!(o.dest_ip, Some("192.168.1.1".parse().unwrap()));
        assert_eq!(o.dest_port, Some(53));
        // No device named: the internal end of the flow (both are: the destination).
        assert_eq!(o.host, "192.168.1.1");
        assert_eq!(o.time_s, 1_258_535_650);
        let vendor = o.vendor.unwrap();
        assert_eq!(vendor.severity.as_deref(), Some("medium"));
        assert_eq!(vendor.category.as_deref(), Some("Potentially Bad Traffic"));
    }

    #[test]
    fn builtin_mappings_parse_and_validate() {
        Mapping::ecs().validate().unwrap();
        Mapping::ocsf().validate().unwrap();
        let bad = mapping(
            r#"source = " "
            time = "t"
            rule_id = "r"
            rule_name = "n""#,
        );
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<Mapping>("source = \"x\"\ntime = \"t\"").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Records are untrusted: anything parses or is refused, never panics.
        #[test]
        fn any_record_parses_or_is_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&Mapping::ecs(), &bytes);
            let _ = parse(&Mapping::ocsf(), &bytes);
        }
    }
}
