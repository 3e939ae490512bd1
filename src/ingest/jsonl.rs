//! JSONL ticket feeds (plain or gzip), one alert per line, in the format of the AIT-ADS backtest
//! tickets: `ticket_id`, `site`, `source`, `rule_id`, `rule_name`, `host`, `src_ips`,
//! `first_seen`, `last_seen`, `alert_count`, and optionally `user`. Other fields (such as
//! `ground_truth`) are ignored: a feed never tells the SOC the answer.
//!
//! Lines are read with a length cap, so one enormous line cannot exhaust memory; each line is
//! validated and normalized (timestamps to RFC 3339 UTC) or rejected with a reason.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use super::format::{Decoder, FeedConfig, FeedFormat};
use super::group::{CSV_HEADER, Grouped, Grouper, StreamGrouper};
use crate::proto::Alert;

/// Longest accepted line, bytes.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;
/// Longest accepted text field, characters.
const MAX_TEXT: usize = 4096;
/// Longest accepted identifier (ticket id, host, rule id, source), characters.
const MAX_ID: usize = 256;
/// Most source IPs kept per alert.
const MAX_IPS: usize = 32;
/// Longest raw record accepted: the kept record and its cut marker.
const MAX_RAW: usize = Alert::MAX_RAW + 64;

/// A bundled demo feed (synthetic alerts written for this project), used when no file is given.
pub(crate) const DEMO_FEED: &str = include_str!("../../assets/demo-alerts.jsonl");

#[derive(Deserialize)]
struct TicketLine {
    ticket_id: String,
    #[serde(default)]
    site: Option<String>,
    source: String,
    rule_id: String,
    rule_name: String,
    host: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    src_ips: Vec<String>,
    first_seen: String,
    last_seen: String,
    alert_count: u32,
    #[serde(default)]
    dest_ips: Vec<String>,
    #[serde(default)]
    dest_ports: Vec<u16>,
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    vendor: Option<crate::proto::VendorMeta>,
    /// An update of the case published before under this `ticket_id` (cumulative counts).
    #[serde(default)]
    update: bool,
}

/// Why a feed line is not an alert (the dead-letter reason and the malformed-line example).
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or not the fields of a ticket.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field's value is refused.
    #[error("{field} {problem}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The fields disagree with each other.
    #[error("{0}")]
    Inconsistent(&'static str),
    /// A raw alert record is refused (or is no alert).
    #[error(transparent)]
    Row(super::group::RowError),
    /// The line is past the length bound (its start is dropped unread).
    #[error("line is longer than {0} bytes")]
    TooLong(usize),
}

impl LineError {
    /// Whether the line is a record of the source that is no alert (skipped, not malformed).
    pub(crate) fn is_not_an_alert(&self) -> bool {
        matches!(self, LineError::Row(super::group::RowError::NotAnAlert))
    }

    /// The kind of refusal, without the line's values: what rejected lines are counted by.
    pub(crate) fn reason(&self) -> String {
        use super::group::RowError;
        match self {
            LineError::Json(_) => "not JSON, or not the fields of a ticket".to_owned(),
            LineError::Field { field, .. } => {
                let field = field.split('[').next().unwrap_or(field);
                format!("{field} refused")
            }
            LineError::Inconsistent(why) => (*why).to_owned(),
            LineError::Row(RowError::Short) => "row has fewer than 6 fields".to_owned(),
            LineError::Row(RowError::NotAnAlert) => "not an alert".to_owned(),
            LineError::Row(RowError::Field { field, problem }) => format!("{field} {problem}"),
            LineError::TooLong(_) => "line too long".to_owned(),
        }
    }
}

fn field(field: &str, problem: impl Into<String>) -> LineError {
    LineError::Field {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// Parses and validates one line.
pub fn parse_line(line: &[u8]) -> Result<Alert, LineError> {
    parse_ticket(line).map(|(alert, _)| alert)
}

/// A ticket-format line as a feed line: its case, of `site` when it names none, and whether it
/// updates a case published before (`"update": true`).
pub(crate) fn ticket_line(line_no: u64, line: &[u8], site: Option<&String>) -> FeedLine {
    let parsed = parse_ticket(line);
    let update = parsed.as_ref().is_ok_and(|(_, update)| *update);
    FeedLine {
        line_no,
        alert: parsed.map(|(mut alert, _)| {
            if alert.site.is_none() {
                alert.site = site.cloned();
            }
            alert
        }),
        looks_like: None,
        update,
    }
}

/// Parses and validates one line, and says whether it is an update.
pub(crate) fn parse_ticket(line: &[u8]) -> Result<(Alert, bool), LineError> {
    let t: TicketLine = serde_json::from_slice(line)?;
    check_id("ticket_id", &t.ticket_id)?;
    check_id("source", &t.source)?;
    check_id("rule_id", &t.rule_id)?;
    check_id("host", &t.host)?;
    check_text("rule_name", &t.rule_name)?;
    if let Some(site) = &t.site {
        check_id("site", site)?;
    }
    if let Some(user) = &t.user {
        check_id("user", user)?;
    }
    let src_ips = addresses("src_ips", &t.src_ips)?;
    let dest_ips = addresses("dest_ips", &t.dest_ips)?;
    if t.dest_ports.len() > MAX_IPS {
        return Err(field(
            "dest_ports",
            format!("has {} entries (at most {MAX_IPS})", t.dest_ports.len()),
        ));
    }
    if t.raw.as_ref().is_some_and(|r| r.len() > MAX_RAW) {
        return Err(field("raw", format!("is longer than {MAX_RAW} bytes")));
    }
    let first = parse_time("first_seen", &t.first_seen)?;
    let last = parse_time("last_seen", &t.last_seen)?;
    if last < first {
        return Err(LineError::Inconsistent("last_seen is before first_seen"));
    }
    if t.alert_count == 0 {
        return Err(field("alert_count", "must be at least 1"));
    }
    Ok((
        Alert {
            ticket_id: t.ticket_id,
            site: t.site,
            source: t.source,
            rule_id: t.rule_id,
            rule_name: t.rule_name,
            host: t.host,
            user: t.user,
            src_ips,
            first_seen: first.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            last_seen: last.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            alert_count: t.alert_count,
            dest_ips,
            dest_ports: t.dest_ports,
            raw: t.raw,
            vendor: t.vendor.map(checked_vendor).transpose()?,
        },
        t.update,
    ))
}

/// A list of addresses, checked and written canonically.
fn addresses(name: &str, ips: &[String]) -> Result<Vec<String>, LineError> {
    if ips.len() > MAX_IPS {
        return Err(field(
            name,
            format!("has {} entries (at most {MAX_IPS})", ips.len()),
        ));
    }
    ips.iter()
        .enumerate()
        .map(|(i, ip)| {
            ip.trim()
                .parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| field(&format!("{name}[{i}]"), "is not an IP address"))
        })
        .collect()
}

/// The vendor fields, bounded like the rest of the alert.
fn checked_vendor(mut v: crate::proto::VendorMeta) -> Result<crate::proto::VendorMeta, LineError> {
    for (name, value) in [
        ("vendor.rule", &v.rule),
        ("vendor.severity", &v.severity),
        ("vendor.category", &v.category),
    ] {
        if let Some(value) = value {
            check_id(name, value)?;
        }
    }
    if v.groups.len() > MAX_IPS || v.attack.len() > MAX_IPS {
        return Err(field(
            "vendor.groups and vendor.attack",
            format!("hold at most {MAX_IPS} entries each"),
        ));
    }
    for g in v.groups.iter().chain(&v.attack) {
        check_id("vendor.groups/attack entry", g)?;
    }
    v.groups.dedup();
    Ok(v)
}

fn check_id(name: &str, value: &str) -> Result<(), LineError> {
    if value.trim().is_empty() {
        return Err(field(name, "is empty"));
    }
    if value.chars().count() > MAX_ID {
        return Err(field(name, format!("is longer than {MAX_ID} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(field(name, "contains control characters"));
    }
    Ok(())
}

fn check_text(name: &str, value: &str) -> Result<(), LineError> {
    if value.trim().is_empty() {
        return Err(field(name, "is empty"));
    }
    if value.chars().count() > MAX_TEXT {
        return Err(field(name, format!("is longer than {MAX_TEXT} characters")));
    }
    Ok(())
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, LineError> {
    let time = DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| field(name, format!("is not an RFC 3339 time: {e}")))?;
    if !super::native::plausible_time(time.timestamp()) {
        return Err(field(name, super::native::OUT_OF_RANGE));
    }
    Ok(time)
}

/// One non-blank line of a feed, parsed.
#[derive(Debug)]
pub struct FeedLine {
    /// 1-based line number.
    pub line_no: u64,
    /// The alert, or why the line was rejected.
    pub alert: Result<Alert, LineError>,
    /// What the line looks like when it is not an alert of this format (a format read by
    /// other tools), for the message of a feed none of whose lines could be used.
    pub looks_like: Option<&'static str>,
    /// The alert is an update of a case handed on before (a streaming source's repeats).
    pub update: bool,
}

impl FeedLine {
    fn refused(line_no: u64, error: LineError) -> Self {
        FeedLine {
            line_no,
            alert: Err(error),
            looks_like: None,
            update: false,
        }
    }
}

/// Reads a feed line by line: ticket-format JSON lines, or (from a file) raw alerts in one of
/// the formats of [`FeedFormat`], grouped into cases first ([`super::group`]).
pub(crate) struct FeedReader {
    reader: Box<dyn BufRead + Send>,
    line_no: u64,
    buf: Vec<u8>,
    streaming: bool,
    /// What the feed holds, as configured.
    config: FeedConfig,
    /// What the feed turned out to be, at its first non-blank line.
    mode: Mode,
    /// Lines ready to hand on (a streaming grouper's cases and updates).
    pending: VecDeque<FeedLine>,
}

/// How a feed's lines are read.
enum Mode {
    /// Not known yet.
    Start,
    /// One ticket-format alert per line.
    Tickets,
    /// Raw alerts (CSV rows, or a detector's own JSON records) folded into cases, published
    /// at the end of the file.
    Grouping(Grouper, Decoder),
    /// Raw alerts on a stream (a pipe, a FIFO): each case handed on at its first alert, its
    /// repeats as updates.
    Streaming(StreamGrouper, Decoder, Instant),
    /// The grouped cases, being handed out.
    Cases(std::vec::IntoIter<(u64, Alert)>),
}

impl FeedReader {
    /// Opens a feed file; gzip is detected by its magic bytes, not the file name.
    ///
    /// Anything but a regular file (a FIFO, a pipe, a terminal) is read as a stream: see
    /// [`FeedReader::is_streaming`].
    pub(crate) fn open(path: &Path, config: &FeedConfig) -> io::Result<Self> {
        Self::open_stoppable(path, config, None)
    }

    /// [`FeedReader::open`]; a stream (pipe, FIFO) given `stop` is read through
    /// [`super::pipe::StoppableRead`], so a stop reads no further than the line under way.
    pub(crate) fn open_stoppable(
        path: &Path,
        config: &FeedConfig,
        stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ) -> io::Result<Self> {
        let file = File::open(path)?;
        let streaming = !file.metadata()?.is_file();
        let mut file: Box<dyn BufRead + Send> = match stop {
            Some(stop) if streaming => super::pipe::stoppable(file, stop),
            _ => Box::new(BufReader::new(file)),
        };
        let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(file)))
        } else {
            file
        };
        Ok(Self {
            streaming,
            config: config.clone(),
            ..Self::new(reader)
        })
    }

    /// Whether the feed is a stream whose next line may take any time to arrive (so lines
    /// should be passed on as they come, not held for a batch).
    pub(crate) fn is_streaming(&self) -> bool {
        self.streaming
    }

    /// Lines read so far (blank ones included).
    pub(crate) fn lines_read(&self) -> u64 {
        self.line_no
    }

    /// A feed over a stream (a pipe): raw alerts grouped as they arrive.
    pub(crate) fn stream(reader: Box<dyn BufRead + Send>) -> Self {
        Self {
            streaming: true,
            ..Self::new(reader)
        }
    }

    /// The bundled demo feed.
    pub(crate) fn demo() -> Self {
        Self::new(Box::new(io::Cursor::new(DEMO_FEED.as_bytes())))
    }

    /// A feed over any reader.
    pub(crate) fn new(reader: Box<dyn BufRead + Send>) -> Self {
        Self {
            reader,
            line_no: 0,
            buf: Vec::new(),
            streaming: false,
            config: FeedConfig::default(),
            mode: Mode::Start,
            pending: VecDeque::new(),
        }
    }
}

impl Iterator for FeedReader {
    type Item = io::Result<FeedLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(Ok(line));
            }
            if let Mode::Cases(cases) = &mut self.mode {
                return cases
                    .next()
                    .map(|(line_no, alert)| Ok(grouped_line(line_no, Grouped::Opened(alert))));
            }
            let too_long = match read_line_bounded(&mut self.reader, &mut self.buf, MAX_LINE_BYTES)
            {
                Ok(None) => match std::mem::replace(&mut self.mode, Mode::Tickets) {
                    Mode::Grouping(grouper, _) => {
                        self.mode = Mode::Cases(grouper.finish().into_iter());
                        continue;
                    }
                    Mode::Streaming(mut grouper, ..) => {
                        let line_no = self.line_no;
                        self.pending.extend(
                            grouper
                                .updates()
                                .into_iter()
                                .map(|g| grouped_line(line_no, g)),
                        );
                        continue;
                    }
                    _ => return None,
                },
                Ok(Some(too_long)) => too_long,
                Err(e) => return Some(Err(e)),
            };
            self.line_no += 1;
            if too_long {
                let error = LineError::TooLong(MAX_LINE_BYTES);
                return Some(Ok(FeedLine::refused(self.line_no, error)));
            }
            let line = self.buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            if matches!(self.mode, Mode::Start) {
                let format = self.config.format.resolve(line);
                // A file of raw alerts is grouped whole (a case's alerts need not be
                // contiguous); a stream's cases are handed on as they open, then updated.
                let keep_s = i64::from(self.config.keep_open_hours) * 3600;
                let grouping = self.config.grouping.clone();
                self.mode =
                    match Decoder::of(format, self.config.mapping.as_ref(), self.config.eve_host) {
                        Some(decoder) if self.streaming => Mode::Streaming(
                            StreamGrouper::new(grouping, keep_s),
                            decoder,
                            Instant::now(),
                        ),
                        Some(decoder) => Mode::Grouping(Grouper::new(grouping), decoder),
                        None => Mode::Tickets,
                    };
                // The CSV's header is no alert; a JSON record's first line is one.
                if matches!(
                    self.mode,
                    Mode::Grouping(_, Decoder::Csv) | Mode::Streaming(_, Decoder::Csv, _)
                ) && line.starts_with(CSV_HEADER.as_bytes())
                {
                    continue;
                }
            }
            let site = self.config.site.as_ref();
            match &mut self.mode {
                Mode::Grouping(grouper, decoder) => match decoder.parse_in(line, site) {
                    Ok(raw) => {
                        grouper.push(raw, self.line_no, line);
                        continue;
                    }
                    Err(e) => return Some(Ok(FeedLine::refused(self.line_no, LineError::Row(e)))),
                },
                Mode::Streaming(grouper, decoder, last_updates) => {
                    match decoder.parse_in(line, site) {
                        Ok(raw) => {
                            let line_no = self.line_no;
                            if let Some(g) = grouper.push(raw, line_no, line) {
                                self.pending.push_back(grouped_line(line_no, g));
                            }
                            if last_updates.elapsed() >= UPDATE_EVERY {
                                *last_updates = Instant::now();
                                self.pending.extend(
                                    grouper
                                        .updates()
                                        .into_iter()
                                        .map(|g| grouped_line(line_no, g)),
                                );
                            }
                        }
                        Err(e) => {
                            self.pending
                                .push_back(FeedLine::refused(self.line_no, LineError::Row(e)));
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let mut ticket = ticket_line(self.line_no, line, site);
            if ticket.alert.is_err() {
                ticket.looks_like = FeedFormat::recognise(line).map(FeedFormat::label);
            }
            return Some(Ok(ticket));
        }
    }
}

/// How often a stream's open cases are updated (at a line's arrival).
pub(crate) const UPDATE_EVERY: Duration = Duration::from_secs(1);

/// A grouper's case as a feed line, checked like a ticket line (its id joins fields of any
/// length).
pub(crate) fn grouped_line(line_no: u64, grouped: Grouped) -> FeedLine {
    let (alert, update) = match grouped {
        Grouped::Opened(alert) => (alert, false),
        Grouped::Updated(alert) => (alert, true),
    };
    let alert = serde_json::to_vec(&alert)
        .map_err(LineError::Json)
        .and_then(|bytes| parse_line(&bytes));
    FeedLine {
        line_no,
        alert,
        looks_like: None,
        update,
    }
}

/// Reads one line (without its newline) into `buf`, keeping at most `max` bytes.
/// Returns `None` at end of input, otherwise whether the line was longer than `max`.
fn read_line_bounded(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let mut read_any = false;
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(read_any.then_some(too_long));
        }
        read_any = true;
        let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            too_long = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        if done {
            return Ok(Some(too_long));
        }
    }
}

/// Reads a whole feed from any reader into memory-bounded lines (tests and tools).
pub fn read_all(reader: impl Read + Send + 'static) -> Vec<io::Result<FeedLine>> {
    FeedReader::new(Box::new(BufReader::new(reader))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_formats_other_tools_write_are_recognised() {
        for (file, format) in [
            ("suricata-eve-alert.json", FeedFormat::Eve),
            ("wazuh-alert.json", FeedFormat::Wazuh),
            ("ecs-alert.json", FeedFormat::Ecs),
            ("ocsf-detection-finding.json", FeedFormat::Ocsf),
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/vendors")
                .join(file);
            let record = std::fs::read(&path).unwrap();
            assert_eq!(
                FeedFormat::recognise(record.trim_ascii()),
                Some(format),
                "{file}"
            );
        }
        assert_eq!(FeedFormat::recognise(GOOD.as_bytes()), None);
    }

    #[test]
    fn a_stream_of_raw_alerts_opens_cases_at_once_and_updates_them_at_its_end() {
        let csv = "site,time,name,ip,host,rule_id\nfox,1642212000,scan,10.0.0.9,web,S-Scan\n\
                   fox,1642212100,scan,10.0.0.9,web,S-Scan\nfox,1642212100,scan,10.0.0.9,db,S-Scan\n";
        let mut reader = FeedReader::new(Box::new(io::Cursor::new(csv.as_bytes().to_vec())));
        reader.streaming = true;
        let got: Vec<(bool, String, u32)> = reader
            .map(|l| {
                let l = l.unwrap();
                let a = l.alert.unwrap();
                (l.update, a.host, a.alert_count)
            })
            .collect();
        assert_eq!(
            got,
            [
                (false, "web".to_owned(), 1),
                (false, "db".to_owned(), 1),
                (true, "web".to_owned(), 2)
            ]
        );
    }

    const GOOD: &str = r#"{"ticket_id":"fox-00001","site":"fox","source":"suricata","rule_id":"S-Dns-Qry3","rule_name":"Suricata: Alert - ET INFO Observed DNS Query to .biz TLD","host":"mail","src_ips":["192.168.1.5"],"first_seen":"2022-01-15T00:00:01+01:00","last_seen":"2022-01-15T00:09:13Z","alert_count":9,"ground_truth":"escalate"}"#;

    #[test]
    fn good_lines_parse_and_times_are_normalized_to_utc() {
        let alert = parse_line(GOOD.as_bytes()).unwrap();
        assert_eq!(alert.ticket_id, "fox-00001");
        assert_eq!(alert.first_seen, "2022-01-14T23:00:01Z");
        assert_eq!(alert.src_ips, ["192.168.1.5"]);
        assert_eq!(alert.user, None);
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let cases = [
            ("not json", "invalid JSON"),
            (r#"{"ticket_id":""}"#, "invalid JSON"),
            (&GOOD.replace("\"fox-00001\"", "\"\""), "ticket_id is empty"),
            (&GOOD.replace("192.168.1.5", "999.1.1.1"), "src_ips[0]"),
            (
                &GOOD.replace("2022-01-15T00:09:13Z", "yesterday"),
                "last_seen",
            ),
            (
                &GOOD.replace("\"alert_count\":9", "\"alert_count\":0"),
                "alert_count",
            ),
            (
                &GOOD.replace("\"alert_count\":9", "\"alert_count\":-1"),
                "invalid JSON",
            ),
            (
                &GOOD.replace("\"host\":\"mail\"", "\"host\":\"a\\u0000b\""),
                "control",
            ),
        ];
        for (line, expected) in cases {
            let err = parse_line(line.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn the_reader_numbers_lines_skips_blanks_and_caps_long_lines() {
        let huge = "x".repeat(MAX_LINE_BYTES + 10);
        let text = format!("{GOOD}\n\n{huge}\n{{broken\n{GOOD}");
        let lines: Vec<FeedLine> = read_all(io::Cursor::new(text.into_bytes()))
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let summary: Vec<(u64, bool)> =
            lines.iter().map(|l| (l.line_no, l.alert.is_ok())).collect();
        assert_eq!(summary, [(1, true), (3, false), (4, false), (5, true)]);
        assert!(
            lines[1]
                .alert
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("longer than")
        );
    }

    #[test]
    fn the_demo_feed_is_valid() {
        let lines: Vec<FeedLine> = FeedReader::demo().map(Result::unwrap).collect();
        assert!(lines.len() >= 10);
        for line in lines {
            assert!(
                line.alert.is_ok(),
                "demo line {}: {:?}",
                line.line_no,
                line.alert
            );
        }
    }

    /// The real raw alerts of the five dev sites, grouped by the reader, are the dev tickets: the same
    /// cases with the same alert counts and times.
    #[test]
    fn the_dev_raw_alerts_group_into_the_dev_tickets() {
        use std::collections::HashMap;
        let shared = std::env::var("SOC_SHARED_DIR").unwrap_or_else(|_| "../shared".into());
        let dir = std::path::Path::new(&shared).join("datasets/ait-ads");
        let reader =
            FeedReader::open(&dir.join("alerts-dev.csv.gz"), &FeedConfig::default()).unwrap();
        let key = |a: &Alert| {
            let hour = chrono::DateTime::parse_from_rfc3339(&a.first_seen)
                .unwrap()
                .timestamp()
                / 3600;
            (
                a.site.clone().unwrap_or_default(),
                a.host.clone(),
                a.rule_id.clone(),
                hour,
            )
        };
        let mut grouped = HashMap::new();
        for line in reader {
            let alert = line.unwrap().alert.unwrap();
            grouped.insert(key(&alert), alert);
        }
        let tickets = std::io::BufRead::lines(
            crate::ingest::open_text(&dir.join("tickets-dev.jsonl.gz")).unwrap(),
        );
        let mut n = 0;
        for line in tickets {
            let ticket = parse_line(line.unwrap().as_bytes()).unwrap();
            let case = grouped
                .get(&key(&ticket))
                .unwrap_or_else(|| panic!("{}", ticket.ticket_id));
            assert_eq!(
                (
                    case.alert_count,
                    &case.first_seen,
                    &case.last_seen,
                    &case.rule_name,
                    &case.source
                ),
                (
                    ticket.alert_count,
                    &ticket.first_seen,
                    &ticket.last_seen,
                    &ticket.rule_name,
                    &ticket.source
                ),
                "{}",
                ticket.ticket_id
            );
            n += 1;
        }
        assert_eq!((n, grouped.len()), (9_869, 9_869));
    }
}
