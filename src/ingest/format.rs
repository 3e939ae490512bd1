//! What an alert feed holds, recognised from its first record or forced by configuration
//! (`--alerts-format`, `[feed] format`), and the decoder of each raw alert format.
//!
//! In: a feed's first non-blank line (to recognise it) and each record after. Out: the feed's
//! [`FeedFormat`], and raw alerts for grouping. Stateless.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::group::{CSV_HEADER, GroupingConfig, RawAlert, RowError, parse_row};
use super::mapping::Mapping;
use super::native::{self, Native};

/// The formats a feed can be in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FeedFormat {
    /// Recognised from the feed's first record.
    #[default]
    Auto,
    /// The ticket format (one case per line, kept as is with its `ticket_id`).
    Tickets,
    /// The AIT-ADS raw alert CSV (`site,time,name,ip,host,rule_id`).
    AitCsv,
    /// Suricata EVE JSON (`event_type: alert` records; other events are skipped).
    Eve,
    /// Wazuh `alerts.json`.
    Wazuh,
    /// Elastic Security alerts and other ECS alert documents.
    Ecs,
    /// OCSF Detection Findings.
    Ocsf,
    /// Any JSON records, read by `[feed.mapping]`.
    Mapped,
}

impl FeedFormat {
    /// What the format is called in messages.
    pub(crate) fn label(self) -> &'static str {
        match self {
            FeedFormat::Auto => "an unrecognised format",
            FeedFormat::Tickets => "the ticket format",
            FeedFormat::AitCsv => "the AIT-ADS raw alert CSV",
            FeedFormat::Eve => "Suricata EVE JSON",
            FeedFormat::Wazuh => "Wazuh alerts.json",
            FeedFormat::Ecs => "an Elastic Security (ECS) document",
            FeedFormat::Ocsf => "an OCSF Detection Finding",
            FeedFormat::Mapped => "records read by [feed.mapping]",
        }
    }

    /// The format a feed whose first record is `first` is read in: this one, or for `auto`
    /// the one recognised (the ticket format when none is).
    pub(crate) fn resolve(self, first: &[u8]) -> FeedFormat {
        match self {
            FeedFormat::Auto => FeedFormat::recognise(first).unwrap_or(FeedFormat::Tickets),
            forced => forced,
        }
    }

    /// The raw alert format `line` is in, when it is one of the known ones: a user pointing
    /// `--alerts` at a SIEM's own output gets it read, or told what they gave.
    pub(crate) fn recognise(line: &[u8]) -> Option<FeedFormat> {
        if line.starts_with(CSV_HEADER.as_bytes()) {
            return Some(FeedFormat::AitCsv);
        }
        let value: serde_json::Value = serde_json::from_slice(line).ok()?;
        let has = |path: &[&str]| {
            path.iter()
                .try_fold(&value, |v, k| v.get(k))
                .is_some_and(|v| !v.is_null())
        };
        if has(&["event_type"]) && (has(&["alert", "signature"]) || has(&["flow_id"])) {
            Some(FeedFormat::Eve)
        } else if has(&["rule", "level"]) && has(&["agent"]) {
            Some(FeedFormat::Wazuh)
        } else if has(&["class_uid"]) && (has(&["finding_info"]) || has(&["finding"])) {
            Some(FeedFormat::Ocsf)
        } else if has(&["@timestamp"])
            && (has(&["kibana.alert.rule.name"])
                || has(&["kibana", "alert"])
                || has(&["event", "kind"])
                || has(&["event.kind"]))
        {
            Some(FeedFormat::Ecs)
        } else {
            None
        }
    }
}

/// `[feed]`: what the alert feed (`alerts`) holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedConfig {
    /// `auto` (recognised from the first record), or one of `tickets`, `ait-csv`, `eve`,
    /// `wazuh`, `ecs`, `ocsf`, `mapped`.
    pub format: FeedFormat,
    /// The site or tenant of alerts whose records name none (a Suricata sensor, a Wazuh
    /// manager of one site).
    pub site: Option<String>,
    /// Where the fields are in the records, for format `mapped`.
    pub mapping: Option<Mapping>,
    /// Follow the feed file as it grows (and across rotations), resuming after a restart
    /// from the position saved in the data directory (`--follow`).
    pub follow: bool,
    /// Hours of feed time a followed or piped feed keeps a case open past its window, so
    /// late repeats still join it (and update it).
    pub keep_open_hours: u32,
    /// How raw alerts fold into cases.
    pub grouping: GroupingConfig,
    /// The host of a Suricata EVE alert: `flow` (the internal end of the flow, else the
    /// sensor) or `sensor` (the sensor's `host` name, else the flow).
    pub eve_host: EveHost,
}

/// Which host a Suricata EVE alert is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EveHost {
    /// The internal end of the flow, else the sensor, else the destination.
    #[default]
    Flow,
    /// The sensor that saw it (EVE's `host`), else as `flow`.
    Sensor,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            format: FeedFormat::Auto,
            site: None,
            mapping: None,
            follow: false,
            keep_open_hours: 24,
            grouping: GroupingConfig::default(),
            eve_host: EveHost::Flow,
        }
    }
}

impl FeedConfig {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(site) = &self.site
            && (site.trim().is_empty() || site.len() > 64 || site.chars().any(char::is_control))
        {
            return Err(format!("feed.site {site:?}: a short name such as \"hq\""));
        }
        self.grouping.validate()?;
        match (&self.format, &self.mapping) {
            (FeedFormat::Mapped, None) => Err(
                "feed.format = \"mapped\" needs a [feed.mapping] table naming where time, \
                 rule_id and rule_name are (see the README's \"Bring your alerts\")"
                    .to_owned(),
            ),
            (_, Some(mapping)) => mapping.validate(),
            _ => Ok(()),
        }
    }
}

/// How one raw alert record is read.
#[derive(Debug, Clone)]
pub(crate) enum Decoder {
    /// A row of the AIT-ADS raw alert CSV.
    Csv,
    /// A detector's own JSON record.
    Native(Native),
    /// JSON by a field mapping.
    Mapped(Arc<Mapping>),
}

impl Decoder {
    /// The decoder of a raw alert format; `None` for the ticket format (and `auto`).
    pub(crate) fn of(
        format: FeedFormat,
        mapping: Option<&Mapping>,
        eve_host: EveHost,
    ) -> Option<Decoder> {
        Some(match format {
            FeedFormat::Auto | FeedFormat::Tickets => return None,
            FeedFormat::AitCsv => Decoder::Csv,
            FeedFormat::Eve if eve_host == EveHost::Sensor => Decoder::Native(Native::EveSensor),
            FeedFormat::Eve => Decoder::Native(Native::Eve),
            FeedFormat::Wazuh => Decoder::Native(Native::Wazuh),
            FeedFormat::Ecs => Decoder::Mapped(Mapping::ecs()),
            FeedFormat::Ocsf => Decoder::Mapped(Mapping::ocsf()),
            FeedFormat::Mapped => Decoder::Mapped(Arc::new(mapping?.clone())),
        })
    }

    /// One record as a raw alert, of `site` when the record names none.
    pub(crate) fn parse_in(
        &self,
        record: &[u8],
        site: Option<&String>,
    ) -> Result<RawAlert, RowError> {
        let mut raw = self.parse(record)?;
        if raw.site.is_empty()
            && let Some(site) = site
        {
            raw.site.clone_from(site);
        }
        Ok(raw)
    }

    /// One record as a raw alert.
    pub(crate) fn parse(&self, record: &[u8]) -> Result<RawAlert, RowError> {
        match self {
            Decoder::Csv => std::str::from_utf8(record)
                .map_err(|_| RowError::Field {
                    field: "row",
                    problem: "is not UTF-8",
                })
                .and_then(parse_row),
            Decoder::Native(format) => native::parse(*format, record),
            Decoder::Mapped(mapping) => super::mapping::parse(mapping, record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_from_a_first_record() {
        let eve = br#"{"timestamp":"2020-05-11T14:59:24.123456+0000","flow_id":1,"event_type":"alert","alert":{"signature":"x"}}"#;
        assert_eq!(FeedFormat::recognise(eve), Some(FeedFormat::Eve));
        let wazuh = br#"{"timestamp":"2020-05-11T14:59:24.123+0000","rule":{"level":5,"id":"1"},"agent":{"name":"a"}}"#;
        assert_eq!(FeedFormat::recognise(wazuh), Some(FeedFormat::Wazuh));
        assert_eq!(
            FeedFormat::recognise(b"site,time,name,ip,host,rule_id"),
            Some(FeedFormat::AitCsv)
        );
        assert_eq!(
            FeedFormat::recognise(br#"{"class_uid":2004,"finding_info":{"title":"x"}}"#),
            Some(FeedFormat::Ocsf)
        );
        assert_eq!(
            FeedFormat::recognise(
                br#"{"@timestamp":"2024-01-01T00:00:00Z","kibana.alert.rule.name":"x"}"#
            ),
            Some(FeedFormat::Ecs)
        );
        assert_eq!(FeedFormat::recognise(br#"{"ticket_id":"t"}"#), None);
        assert_eq!(FeedFormat::recognise(b"{broken"), None);
    }

    #[test]
    fn the_feed_section_says_what_is_missing() {
        let mapped = FeedConfig {
            format: FeedFormat::Mapped,
            ..FeedConfig::default()
        };
        assert!(mapped.validate().unwrap_err().contains("[feed.mapping]"));
        let bad_site = FeedConfig {
            site: Some(" ".into()),
            ..FeedConfig::default()
        };
        assert!(bad_site.validate().is_err());
        assert!(FeedConfig::default().validate().is_ok());
    }
}
