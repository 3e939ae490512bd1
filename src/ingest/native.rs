//! The detectors' own alert records, one JSON object per line, as raw alerts for grouping:
//! Suricata EVE JSON (`event_type: alert`) and Wazuh `alerts.json`. Only the fields a case needs
//! are read; every value is untrusted and bounded like the rest of an alert.
//!
//! In: one record's bytes. Out: a [`RawAlert`], or why not ([`RowError`]). Stateless.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime};
use serde_json::Value;

use super::group::{RawAlert, RowError};
use crate::indicators::is_internal;
use crate::proto::VendorMeta;

/// The alert formats read natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Native {
    /// Suricata EVE JSON, the host the internal end of the flow.
    Eve,
    /// Suricata EVE JSON, the host the sensor.
    EveSensor,
    /// Wazuh `alerts.json`.
    Wazuh,
}

/// The longest text kept of a field.
const MAX_TEXT: usize = 256;

/// A JSON string or number as bounded text without control characters.
pub(crate) fn text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && !s.chars().any(char::is_control)).then(|| s.chars().take(MAX_TEXT).collect())
}

/// The earliest alert time accepted: 2000-01-01T00:00:00Z, before any of the SIEMs whose
/// formats are read here existed (a `1900` or `1970` time is a parser's default, not an event).
pub(crate) const EARLIEST_ALERT_S: i64 = 946_684_800;
/// How far past the local clock an alert time may be: a day (a sensor's clock skew, a time
/// zone written wrong), never a year `9999` that would sort ahead of every real alert.
pub(crate) const MOST_AHEAD_S: i64 = 86_400;
/// Why an alert time is refused, as a field problem.
pub(crate) const OUT_OF_RANGE: &str =
    "is outside the accepted range (2000-01-01 to a day past this host's clock)";

/// Whether an alert time (Unix seconds) is plausible: replays of old data stay valid, times
/// from parsers' defaults or the far future do not.
pub(crate) fn plausible_time(secs: i64) -> bool {
    let now = chrono::Utc::now().timestamp();
    (EARLIEST_ALERT_S..=now.saturating_add(MOST_AHEAD_S)).contains(&secs)
}

/// A vendor timestamp: RFC 3339, or the `+0000` offsets Suricata and Wazuh write, or (old EVE)
/// no offset at all, read as UTC. Unix seconds.
pub(crate) fn vendor_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|t| t.timestamp())
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc().timestamp())
        })
}

/// A JSON time: a vendor timestamp string, or unix seconds or milliseconds (a number past
/// 10^11, which as seconds would be after the year 5000). Unix seconds.
pub(crate) fn time_of(v: &Value) -> Option<i64> {
    let secs = match v {
        Value::String(s) => vendor_time(s.trim())?,
        Value::Number(n) => {
            let n = n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?;
            if n.abs() >= 100_000_000_000 {
                n / 1000
            } else {
                n
            }
        }
        _ => return None,
    };
    chrono::DateTime::from_timestamp(secs, 0).map(|_| secs)
}

/// The host of a flow: its internal end (the destination first), else the destination.
pub(crate) fn flow_host(src: Option<IpAddr>, dest: Option<IpAddr>) -> Option<String> {
    dest.filter(is_internal)
        .or(src.filter(is_internal))
        .or(dest)
        .map(|ip| ip.to_string())
}

/// One record of `format` as a raw alert.
pub(crate) fn parse(format: Native, line: &[u8]) -> Result<RawAlert, RowError> {
    let field = |field: &'static str, problem: &'static str| RowError::Field { field, problem };
    let v: Value = serde_json::from_slice(line).map_err(|_| field("record", "is not JSON"))?;
    let time_s = time_of(&v["timestamp"]).ok_or(field("timestamp", "is missing or not a time"))?;
    if !plausible_time(time_s) {
        return Err(field("timestamp", OUT_OF_RANGE));
    }
    match format {
        Native::Eve | Native::EveSensor => {
            if v["event_type"].as_str() != Some("alert") {
                return Err(RowError::NotAnAlert);
            }
            let alert = &v["alert"];
            let ip = |k: &str| v[k].as_str().and_then(|s| s.parse::<IpAddr>().ok());
            let (src, dest) = (ip("src_ip"), ip("dest_ip"));
            // The host is the internal end of the flow, else the sensor, else the destination.
            let internal = dest
                .filter(is_internal)
                .or(src.filter(is_internal))
                .map(|ip| ip.to_string());
            let sensor = text(&v["host"]);
            let host = if format == Native::EveSensor {
                sensor.or(internal)
            } else {
                internal.or(sensor)
            }
            .or_else(|| dest.map(|ip| ip.to_string()))
            .ok_or(field("host", "neither an address nor a sensor name"))?;
            let sid =
                text(&alert["signature_id"]).ok_or(field("alert.signature_id", "is missing"))?;
            Ok(RawAlert {
                site: String::new(),
                time_s,
                name: text(&alert["signature"]).ok_or(field("alert.signature", "is missing"))?,
                src_ip: src,
                dest_ip: dest,
                dest_port: v["dest_port"].as_u64().and_then(|p| u16::try_from(p).ok()),
                user: None,
                host,
                rule_id: sid.clone(),
                source: Some(Arc::from("suricata")),
                vendor: Some(VendorMeta {
                    rule: Some(sid),
                    priority: alert["severity"]
                        .as_u64()
                        .and_then(|p| u8::try_from(p).ok()),
                    category: text(&alert["category"]),
                    ..VendorMeta::default()
                }),
            })
        }
        Native::Wazuh => {
            let rule = &v["rule"];
            let id = text(&rule["id"]).ok_or(field("rule.id", "is missing"))?;
            let ip = |k: &str| v["data"][k].as_str().and_then(|s| s.trim().parse().ok());
            let list = |x: &Value| -> Vec<String> {
                x.as_array()
                    .map(|a| a.iter().filter_map(text).take(16).collect())
                    .unwrap_or_default()
            };
            Ok(RawAlert {
                site: String::new(),
                time_s,
                name: text(&rule["description"]).ok_or(field("rule.description", "is missing"))?,
                src_ip: ip("srcip"),
                dest_ip: ip("dstip"),
                dest_port: v["data"]["dstport"]
                    .as_str()
                    .and_then(|p| p.parse().ok())
                    .or_else(|| {
                        v["data"]["dstport"]
                            .as_u64()
                            .and_then(|p| u16::try_from(p).ok())
                    }),
                user: text(&v["data"]["dstuser"]).or_else(|| text(&v["data"]["srcuser"])),
                host: text(&v["agent"]["name"]).ok_or(field("agent.name", "is missing"))?,
                rule_id: id.clone(),
                source: Some(Arc::from("wazuh")),
                vendor: Some(VendorMeta {
                    rule: Some(id),
                    level: rule["level"].as_u64().and_then(|l| u8::try_from(l).ok()),
                    groups: list(&rule["groups"]),
                    attack: list(&rule["mitre"]["id"]),
                    ..VendorMeta::default()
                }),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vendor records from their documentation (`tests/fixtures/vendors/README.md` credits them).
    const EVE: &str = include_str!("../../tests/fixtures/vendors/suricata-eve-alert.json");
    const WAZUH: &str = include_str!("../../tests/fixtures/vendors/wazuh-alert.json");

    #[test]
    fn eve_and_wazuh_records_become_raw_alerts() {
        let eve = parse(Native::Eve, EVE.trim().as_bytes()).unwrap();
        assert_eq!(eve.host, "192.168.2.7");
        assert_eq!(eve.src_ip, Some("192.168.2.7".parse().unwrap()));
        assert_eq!(eve.dest_ip, Some("203.0.113.50".parse().unwrap()));
        assert_eq!(eve.dest_port, Some(80));
        assert_eq!(
            (eve.rule_id.as_str(), eve.source.as_deref()),
            ("2001999", Some("suricata"))
        );
        assert_eq!(eve.vendor.as_ref().unwrap().priority, Some(1));
        assert_eq!(eve.time_s, 1_259_098_029);
        let w = parse(Native::Wazuh, WAZUH.trim().as_bytes()).unwrap();
        assert_eq!(
            (w.host.as_str(), w.rule_id.as_str()),
            ("ip-10-0-0-10", "5715")
        );
        assert_eq!(w.name, "sshd: authentication success.");
        assert_eq!(w.src_ip, Some("73.189.131.56".parse().unwrap()));
        assert_eq!(w.user.as_deref(), Some("root"));
        let vendor = w.vendor.unwrap();
        assert_eq!(vendor.level, Some(3));
        assert_eq!(vendor.attack, ["T1078", "T1021"]);
        assert_eq!(vendor.groups, ["syslog", "sshd", "authentication_success"]);
        assert_eq!(w.time_s, 1_615_243_153);
        let dns = br#"{"timestamp":"2020-05-11T14:59:24Z","event_type":"dns","src_ip":"10.0.0.1"}"#;
        assert!(matches!(parse(Native::Eve, dns), Err(RowError::NotAnAlert)));
        assert!(parse(Native::Wazuh, b"{}").is_err());
        // Configured to name the sensor: its `host`, when the record has one.
        let sensed = EVE.trim().replacen('{', r#"{"host":"sensor-1","#, 1);
        assert_eq!(
            parse(Native::EveSensor, sensed.as_bytes()).unwrap().host,
            "sensor-1"
        );
        assert_eq!(
            parse(Native::Eve, sensed.as_bytes()).unwrap().host,
            "192.168.2.7"
        );
        assert_eq!(
            parse(Native::EveSensor, EVE.trim().as_bytes())
                .unwrap()
                .host,
            "192.168.2.7"
        );
        assert!(parse(Native::Eve, b"not json").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Records are untrusted: anything parses or is refused, never panics.
        #[test]
        fn any_record_parses_or_is_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(Native::Eve, &bytes);
            let _ = parse(Native::Wazuh, &bytes);
        }
    }
}
