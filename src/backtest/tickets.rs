//! Labelled tickets: read, selected for a replay, written as the feed (without their label),
//! and the history a replay may know.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::Path;

use crate::knowledge::{Disposition, DispositionFacts};

/// One labelled ticket.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// Ticket id.
    pub id: String,
    /// Site (scenario).
    pub site: String,
    /// First alert, ms since the epoch: replay order.
    pub first_ms: i64,
    /// Last alert, ms since the epoch: when the ticket could be closed.
    pub last_ms: i64,
    /// Rule code.
    pub rule: String,
    /// Host.
    pub host: String,
    /// Detector family.
    pub detector: String,
    /// The rule's title.
    pub title: String,
    /// Raw alerts grouped in the ticket.
    pub alert_count: u32,
    /// The vendor's fields the ticket carries.
    pub vendor: Option<crate::proto::VendorMeta>,
    /// The analysts' answer: read by the scorer only.
    pub ground_truth: Disposition,
    /// The ticket as the feed carries it, without its label.
    feed_line: String,
    /// Deciding at the first alert: the whole case, as the update a stream publishes at its
    /// last alert.
    update_line: Option<String>,
}

impl Ticket {
    /// The ticket as a feed carries it: without its label.
    pub fn feed_line(&self) -> &str {
        &self.feed_line
    }

    /// The ticket's disposition as prior knowledge, known from `known_ms`.
    pub fn disposition(&self, known_ms: i64) -> DispositionFacts {
        DispositionFacts {
            ticket: self.id.clone(),
            disposition: self.ground_truth,
            site: self.site.clone(),
            rule: self.rule.clone(),
            host: self.host.clone(),
            detector: self.detector.clone(),
            known_ms,
            title: self.title.clone(),
            first_ms: Some(self.first_ms),
            last_ms: Some(self.last_ms),
            alert_count: self.alert_count,
            vendor: self.vendor.clone(),
        }
    }
}

impl Ticket {
    /// The ticket as a streaming source first shows it, at its first alert: one alert, last
    /// seen its first, only its first-listed addresses and port. Its label, its real last
    /// alert (when analysts could close it) and what history knows of it are kept. With
    /// `updated`, the whole case follows as an update at its last alert, as a stream
    /// publishes it (Sentinel re-assesses it).
    pub fn at_first_alert(mut self, updated: bool) -> Ticket {
        if let Ok(serde_json::Value::Object(mut o)) =
            serde_json::from_str::<serde_json::Value>(&self.feed_line)
        {
            if updated && self.alert_count > 1 {
                let mut whole = o.clone();
                whole.insert("update".to_owned(), true.into());
                self.update_line = Some(serde_json::Value::Object(whole).to_string());
            }
            o.insert("alert_count".to_owned(), 1.into());
            if let Some(first) = o.get("first_seen").cloned() {
                o.insert("last_seen".to_owned(), first);
            }
            for list in ["src_ips", "dest_ips", "dest_ports"] {
                if let Some(serde_json::Value::Array(items)) = o.get_mut(list) {
                    items.truncate(1);
                }
            }
            self.feed_line = serde_json::Value::Object(o).to_string();
        }
        self
    }
}

/// Which tickets to replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these sites (all when empty).
    pub sites: Vec<String>,
    /// At most this many tickets.
    pub sample: Option<usize>,
    /// Draw escalate and close tickets 50/50 (needs `sample`).
    pub stratify: bool,
    /// Seed of the draw.
    pub seed: u64,
}

/// Why a line is not a labelled ticket.
#[derive(Debug, thiserror::Error)]
pub enum BadTicket {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    NotObject(#[source] serde_json::Error),
    /// No label.
    #[error("no ground_truth: a backtest needs labelled tickets")]
    NoLabel,
    /// A label that is not a disposition.
    #[error("ground_truth must be \"escalate\" or \"close\"")]
    BadLabel,
    /// The rest is not an alert.
    #[error(transparent)]
    Alert(#[from] crate::ingest::jsonl::LineError),
}

/// Errors reading labelled tickets.
#[derive(Debug, thiserror::Error)]
pub enum TicketsError {
    /// The tickets file cannot be read.
    #[error("cannot read tickets file {0}: {1}")]
    Read(String, #[source] std::io::Error),
    /// A line is not a labelled ticket.
    #[error("{file} line {line}: {reason}")]
    Ticket {
        /// File.
        file: String,
        /// Line number.
        line: u64,
        /// What is wrong.
        reason: BadTicket,
    },
}

/// Reads a labelled tickets file (JSONL, plain or gzip), a line at a time on this thread,
/// stopping at the first bad line: a whole file's tickets are the replay's to hold, but not its
/// lines. Read whole and parsed on several threads, as a sample is ([`load_selected`]; a
/// sample as large as the file too), the 9,869 dev tickets' dry run peaked higher (101 MB in
/// one run of six, over its 100 MB budget).
pub fn load_tickets(path: &Path) -> Result<Vec<Ticket>, TicketsError> {
    let file_name = path.display().to_string();
    let read_err = |e| TicketsError::Read(file_name.clone(), e);
    let reader = crate::ingest::open_text(path).map_err(read_err)?;
    let mut tickets = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(read_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |reason: BadTicket| TicketsError::Ticket {
            file: file_name.clone(),
            line: i as u64 + 1,
            reason,
        };
        tickets.push(ticket_of(&line).map_err(at)?);
    }
    Ok(tickets)
}

/// The non-blank lines of a text file (plain or gzip), with their 0-based line index.
fn read_lines(path: &Path, file_name: &str) -> Result<Vec<(usize, String)>, TicketsError> {
    let read_err = |e| TicketsError::Read(file_name.to_owned(), e);
    let reader = crate::ingest::open_text(path).map_err(read_err)?;
    let mut lines = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(read_err)?;
        if !line.trim().is_empty() {
            lines.push((i, line));
        }
    }
    Ok(lines)
}

/// `f` of each item, in order, computed on up to 8 threads (one per core): each line of a
/// tickets file parses on its own, and parsing them (about 12 % of a 2,000-ticket dry run's
/// instructions) ran on one core while the other only made the scratch store. Scoped threads,
/// not rayon's pool: this is the one call site.
fn map_in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    map_on(cores.min(8), items, f)
}

/// [`map_in_parallel`] on `threads` threads (this one included); fewer than 256 items stay on
/// this thread.
fn map_on<T: Sync, R: Send>(threads: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if threads < 2 || items.len() < 256 {
        return items.iter().map(f).collect();
    }
    let f = &f;
    let mut chunks = items.chunks(items.len().div_ceil(threads));
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let rest: Vec<_> = chunks
            .map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = Vec::with_capacity(items.len());
        out.extend(first.iter().map(f));
        for handle in rest {
            // A panic in `f` is this thread's panic, as it would be without the threads.
            out.extend(
                handle
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            );
        }
        out
    })
}

pub(super) fn ticket_of(line: &str) -> Result<Ticket, BadTicket> {
    /// The label, read apart from the alert (which ignores it).
    #[derive(serde::Deserialize)]
    struct Label {
        #[serde(default)]
        ground_truth: Option<serde_json::Value>,
    }
    /// A feed line that updates a case published before.
    #[derive(serde::Serialize)]
    struct Update<'a> {
        #[serde(flatten)]
        alert: &'a crate::proto::Alert,
        update: bool,
    }
    if !line.trim_start().starts_with('{') {
        // Not an object: say what the JSON parser says of it.
        let e = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line)
            .err()
            .unwrap_or_else(|| serde::de::Error::custom("not a JSON object"));
        return Err(BadTicket::NotObject(e));
    }
    let label: Label = serde_json::from_str(line).map_err(BadTicket::NotObject)?;
    let ground_truth = disposition_of(label.ground_truth)?;
    // The alert's fields ignore the label; the feed carries the alert as parsed (its own
    // serialization, which the feed reads back as the same alert), not the labelled line.
    let (alert, update) = crate::ingest::jsonl::parse_ticket(line.as_bytes())?;
    let mut feed_line = if update {
        serde_json::to_string(&Update {
            alert: &alert,
            update,
        })
    } else {
        serde_json::to_string(&alert)
    }
    .map_err(|e| BadTicket::Alert(e.into()))?;
    // A replay holds every ticket's line, so not in the serializer's doubling buffer: up to
    // half of each was unused (the lines' buffers were 10 MB of a 9,869-ticket dry run's
    // 53 MB heap).
    feed_line.shrink_to_fit();
    // parse_line checked both times and wrote them back in RFC 3339.
    let time = |value: &str| {
        chrono::DateTime::parse_from_rfc3339(value).map_or(0, |t| t.timestamp_millis())
    };
    Ok(Ticket {
        first_ms: time(&alert.first_seen),
        last_ms: time(&alert.last_seen),
        id: alert.ticket_id,
        site: alert.site.unwrap_or_default(),
        rule: alert.rule_id,
        host: alert.host,
        detector: alert.source,
        title: alert.rule_name,
        alert_count: alert.alert_count,
        vendor: alert.vendor,
        ground_truth,
        feed_line,
        update_line: None,
    })
}

/// A ticket line's label: its `ground_truth` value, `escalate` or `close`.
fn disposition_of(ground_truth: Option<serde_json::Value>) -> Result<Disposition, BadTicket> {
    serde_json::from_value(ground_truth.ok_or(BadTicket::NoLabel)?).map_err(|_| BadTicket::BadLabel)
}

/// How raw alerts' cases met their labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Join {
    /// Cases the runtime grouped the raw alerts into.
    pub cases: u64,
    /// Of them, cases a label was found for (the ones replayed).
    pub labelled: u64,
    /// Labels no case matched.
    pub labels_unmatched: u64,
    /// Labels sharing a grouping key with another (the first one counts).
    pub labels_ambiguous: u64,
    /// Raw alert lines refused.
    pub rejected_lines: u64,
}

/// Raw alerts (any format `--alerts` reads) grouped into cases by the runtime's own grouping,
/// each labelled by the ticket of `labels` with the same grouping key (site, host, rule id and
/// the UTC hour of its first alert): so a backtest scores the cases the runtime would make.
pub fn load_grouped(alerts: &Path, labels: &Path) -> Result<(Vec<Ticket>, Join), TicketsError> {
    let labelled = load_tickets(labels)?;
    let mut join = Join::default();
    let key = |site: &str, host: &str, rule: &str, first_ms: i64| {
        (
            site.to_owned(),
            host.to_owned(),
            rule.to_owned(),
            first_ms.div_euclid(3_600_000),
        )
    };
    let mut by_key = std::collections::HashMap::new();
    for t in labelled {
        if by_key
            .insert(key(&t.site, &t.host, &t.rule, t.first_ms), t.ground_truth)
            .is_some()
        {
            join.labels_ambiguous += 1;
        }
    }
    let file_name = alerts.display().to_string();
    let read_err = |e| TicketsError::Read(file_name.clone(), e);
    let reader = crate::ingest::jsonl::FeedReader::open(
        alerts,
        &crate::ingest::format::FeedConfig::default(),
    )
    .map_err(read_err)?;
    let mut tickets = Vec::new();
    for line in reader {
        let line = line.map_err(read_err)?;
        let Ok(alert) = line.alert else {
            join.rejected_lines += 1;
            continue;
        };
        join.cases += 1;
        let first_ms = chrono::DateTime::parse_from_rfc3339(&alert.first_seen)
            .map_or(0, |t| t.timestamp_millis());
        let site = alert.site.clone().unwrap_or_default();
        let Some(label) = by_key.remove(&key(&site, &alert.host, &alert.rule_id, first_ms)) else {
            continue;
        };
        let mut object = match serde_json::to_value(&alert) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => continue,
        };
        object.insert(
            "ground_truth".to_owned(),
            serde_json::to_value(label).unwrap_or_default(),
        );
        let at = |reason: BadTicket| TicketsError::Ticket {
            file: file_name.clone(),
            line: line.line_no,
            reason,
        };
        tickets.push(ticket_of(&serde_json::Value::Object(object).to_string()).map_err(at)?);
        join.labelled += 1;
    }
    join.labels_unmatched = by_key.len() as u64;
    Ok((tickets, join))
}

/// The tickets to replay, in replay (time) order.
pub fn select(tickets: Vec<Ticket>, selection: &Selection) -> Vec<Ticket> {
    let mut pool = pick(
        tickets,
        selection,
        |t| &t.site,
        |t| t.ground_truth == Disposition::Escalate,
    );
    pool.sort_by(|a, b| (a.first_ms, &a.id).cmp(&(b.first_ms, &b.id)));
    // Held for the whole replay: not at the capacity the load grew to.
    pool.shrink_to_fit();
    pool
}

/// The labelled tickets of `path` that `selection` picks, in replay (time) order: what
/// [`select`] makes of [`load_tickets`], the same sample for the same seed. Of a sample only
/// the picked lines are read whole: every line's site and label are read (and a malformed
/// line or label still fails the load), then only the picked lines' alerts are parsed, which
/// were most of a small sample's start-up (10 of 9,869 tickets: 84 % of its instructions).
pub fn load_selected(path: &Path, selection: &Selection) -> Result<Vec<Ticket>, TicketsError> {
    /// What a selection reads of a line.
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(default, borrow)]
        site: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        ground_truth: Option<serde_json::Value>,
    }
    if selection.sample.is_none() {
        return Ok(select(load_tickets(path)?, selection));
    }
    let file_name = path.display().to_string();
    let at = |line: usize, reason: BadTicket| TicketsError::Ticket {
        file: file_name.clone(),
        line: line as u64 + 1,
        reason,
    };
    let lines = read_lines(path, &file_name)?;
    // Each line's site and label, or why the line is not a labelled ticket.
    let keys = map_in_parallel(&lines, |(_, line)| -> Result<(String, bool), BadTicket> {
        // A line that is not an object with a site and a label: the whole parse says why, as
        // `load_tickets` would.
        let key: Key = match serde_json::from_str(line) {
            Ok(key) if line.trim_start().starts_with('{') => key,
            Ok(_) => {
                let e = serde::de::Error::custom("not a JSON object");
                return Err(ticket_of(line).err().unwrap_or(BadTicket::NotObject(e)));
            }
            Err(e) => return Err(ticket_of(line).err().unwrap_or(BadTicket::NotObject(e))),
        };
        let label = disposition_of(key.ground_truth)?;
        let site = key.site.map(|s| s.into_owned()).unwrap_or_default();
        Ok((site, label == Disposition::Escalate))
    });
    // (line index, line, site, escalate)
    let mut keyed: Vec<(usize, String, String, bool)> = Vec::with_capacity(lines.len());
    for ((i, line), key) in lines.into_iter().zip(keys) {
        let (site, escalate) = key.map_err(|reason| at(i, reason))?;
        keyed.push((i, line, site, escalate));
    }
    let picked = pick(keyed, selection, |l| &l.2, |l| l.3);
    // The picks come in draw order: of several bad ones, the first in the file is named.
    let mut tickets = Vec::with_capacity(picked.len());
    let mut first_bad: Option<(usize, BadTicket)> = None;
    for parsed in map_in_parallel(&picked, |(i, line, ..)| {
        ticket_of(line).map_err(|reason| (*i, reason))
    }) {
        match parsed {
            Ok(ticket) => tickets.push(ticket),
            Err((i, reason)) if first_bad.as_ref().is_none_or(|(first, _)| i < *first) => {
                first_bad = Some((i, reason));
            }
            Err(_) => {}
        }
    }
    if let Some((i, reason)) = first_bad {
        return Err(at(i, reason));
    }
    tickets.sort_by(|a, b| (a.first_ms, &a.id).cmp(&(b.first_ms, &b.id)));
    Ok(tickets)
}

/// The items `selection` picks, by their site and label, in no set order.
fn pick<T>(
    items: Vec<T>,
    selection: &Selection,
    site: impl Fn(&T) -> &str,
    escalate: impl Fn(&T) -> bool,
) -> Vec<T> {
    let mut pool: Vec<T> = items
        .into_iter()
        .filter(|t| selection.sites.is_empty() || selection.sites.iter().any(|s| s == site(t)))
        .collect();
    if let Some(n) = selection.sample {
        let mut rng = fastrand::Rng::with_seed(selection.seed);
        if selection.stratify {
            let (mut esc, mut close): (Vec<_>, Vec<_>) = pool.into_iter().partition(&escalate);
            rng.shuffle(&mut esc);
            rng.shuffle(&mut close);
            let half = n / 2;
            let take_esc = half.min(esc.len());
            let take_close = (n - take_esc).min(close.len());
            esc.truncate(take_esc);
            close.truncate(take_close);
            pool = esc;
            pool.extend(close);
        } else {
            rng.shuffle(&mut pool);
            pool.truncate(n);
        }
    }
    pool
}

/// The history a replay of `tickets` may know: never a replayed ticket, and of a replayed
/// site only what ended before the replay of that site starts (anything later is knowledge
/// from the future). Returns it and how many tickets were left out for overlapping.
pub fn history_for(tickets: &[Ticket], history: &[Ticket]) -> (Vec<DispositionFacts>, u64) {
    let replayed: HashSet<&str> = tickets.iter().map(|t| t.id.as_str()).collect();
    let mut starts: BTreeMap<&str, i64> = BTreeMap::new();
    for t in tickets {
        let start = starts.entry(t.site.as_str()).or_insert(t.first_ms);
        *start = (*start).min(t.first_ms);
    }
    let mut dropped = 0;
    let kept = history
        .iter()
        .filter(|t| !replayed.contains(t.id.as_str()))
        .filter(|t| match starts.get(t.site.as_str()) {
            Some(&start) if t.last_ms >= start => {
                dropped += 1;
                false
            }
            _ => true,
        })
        .map(|t| t.disposition(i64::MIN))
        .collect();
    (kept, dropped)
}

/// Writes the replay's feed: each ticket's line without its label.
pub(crate) fn write_feed(path: &Path, tickets: &[Ticket]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    // Updates (deciding at the first alert) go in at their case's last alert, in time order.
    let mut updates: Vec<(i64, &str)> = tickets
        .iter()
        .filter_map(|t| t.update_line.as_deref().map(|line| (t.last_ms, line)))
        .collect();
    updates.sort_by_key(|(ms, _)| *ms);
    let mut updates = updates.into_iter().peekable();
    for t in tickets {
        while let Some((_, line)) = updates.next_if(|(ms, _)| *ms < t.first_ms) {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.write_all(t.feed_line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    for (_, line) in updates {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::jsonl::parse_line;

    #[test]
    fn a_parallel_map_keeps_the_items_order_and_a_panic_is_the_callers() {
        let items: Vec<usize> = (0..1001).collect();
        for threads in [1, 2, 3, 8] {
            let on = std::sync::Mutex::new(std::collections::HashSet::new());
            let doubled = map_on(threads, &items, |i| {
                on.lock().unwrap().insert(std::thread::current().id());
                i * 2
            });
            assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
            assert_eq!(on.into_inner().unwrap().len(), threads, "{threads} threads");
        }
        let few: Vec<usize> = (0..255).collect();
        let on = std::sync::Mutex::new(std::collections::HashSet::new());
        let _ = map_on(8, &few, |_| {
            on.lock().unwrap().insert(std::thread::current().id())
        });
        assert_eq!(
            on.into_inner().unwrap().len(),
            1,
            "255 items stay on one thread"
        );
        let panicked = std::panic::catch_unwind(|| {
            map_on(3, &items, |i| assert!(*i != 900, "item 900"));
        });
        let message = panicked.unwrap_err();
        // The panic of the thread that met item 900, re-raised here with its own payload.
        assert_eq!(message.downcast_ref::<&str>(), Some(&"item 900"));
    }

    #[test]
    fn a_sample_read_lazily_is_the_sample_of_the_whole_file() {
        let line = |i: usize| {
            format!(
                r#"{{"ticket_id":"t{i}","site":"{}","source":"wazuh","rule_id":"R","rule_name":"r","host":"h","first_seen":"2022-01-15T00:{:02}:00Z","last_seen":"2022-01-15T00:59:00Z","alert_count":1,"ground_truth":"{}"}}"#,
                ["fox", "harrison", "russellmitchell"][i % 3],
                59 - i % 60,
                if i.is_multiple_of(7) {
                    "escalate"
                } else {
                    "close"
                }
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tickets.jsonl");
        // Enough lines to be parsed on several threads (on a machine with several cores).
        let text: String = (0..1000).map(|i| line(i) + "\n").collect();
        std::fs::write(&path, &text).unwrap();
        let ids = |v: &[Ticket]| v.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        let whole = load_tickets(&path).unwrap();
        for selection in [
            Selection::default(),
            Selection {
                sample: Some(25),
                seed: 3,
                ..Selection::default()
            },
            Selection {
                sample: Some(20),
                stratify: true,
                seed: 4,
                ..Selection::default()
            },
            Selection {
                sample: Some(600),
                seed: 6,
                ..Selection::default()
            },
            Selection {
                sites: vec!["harrison".into()],
                sample: Some(10),
                stratify: true,
                seed: 5,
            },
        ] {
            let lazy = load_selected(&path, &selection).unwrap();
            assert_eq!(ids(&lazy), ids(&select(whole.clone(), &selection)));
            assert_eq!(
                lazy.iter().map(Ticket::feed_line).collect::<Vec<_>>(),
                select(whole.clone(), &selection)
                    .iter()
                    .map(Ticket::feed_line)
                    .collect::<Vec<_>>()
            );
        }
        // A bad label fails the load even where the sample would not pick its line; of two
        // bad lines, the first in the file is the one named, whichever thread read it (the
        // labels), and whatever the draw's order (the picked tickets' alerts).
        let with_bad_lines = |bad: &[(usize, &str)]| -> String {
            (0..1000)
                .map(|i| match bad.iter().find(|(at, _)| *at == i) {
                    Some((_, line)) => (*line).to_owned(),
                    None => line(i),
                } + "\n")
                .collect()
        };
        let sample = Selection {
            sample: Some(1),
            ..Selection::default()
        };
        let bad_label = |i: usize| line(i).replace("\"close\"", "\"maybe\"");
        for (bad, named) in [
            (vec![(150, bad_label(150))], "line 151"),
            (vec![(850, bad_label(850))], "line 851"),
            (
                vec![(300, bad_label(300)), (850, bad_label(850))],
                "line 301",
            ),
        ] {
            let bad: Vec<(usize, &str)> = bad.iter().map(|(i, l)| (*i, l.as_str())).collect();
            std::fs::write(&path, with_bad_lines(&bad)).unwrap();
            for err in [
                load_selected(&path, &sample).unwrap_err().to_string(),
                load_tickets(&path).unwrap_err().to_string(),
            ] {
                assert!(
                    err.contains(&format!("{named}:")) && err.contains("ground_truth"),
                    "{err}"
                );
            }
        }
        let bad_time = |i: usize| line(i).replace("2022-01-15T00:59:00Z", "yesterday");
        let (at_300, at_850) = (bad_time(300), bad_time(850));
        std::fs::write(&path, with_bad_lines(&[(300, &at_300), (850, &at_850)])).unwrap();
        for seed in 0..8 {
            let all = Selection {
                sample: Some(1000),
                seed,
                ..Selection::default()
            };
            let err = load_selected(&path, &all).unwrap_err().to_string();
            assert!(err.contains("line 301:"), "{err}");
        }
        std::fs::write(&path, with_bad_lines(&[(850, "[1, 2]")])).unwrap();
        let err = load_selected(&path, &sample).unwrap_err().to_string();
        assert!(err.contains("line 851") && err.contains("JSON"), "{err}");
        let site_a_number = line(850).replace(r#""site":"#, r#""site":5,"was":"#);
        std::fs::write(&path, with_bad_lines(&[(850, &site_a_number)])).unwrap();
        let err = load_selected(&path, &sample).unwrap_err().to_string();
        assert!(
            err.contains("line 851") && err.contains("invalid type"),
            "{err}"
        );
    }

    #[test]
    fn a_ticket_at_its_first_alert_shows_one_alert_and_keeps_its_label() {
        let line = r#"{"ticket_id":"t1","site":"fox","source":"suricata","rule_id":"r","rule_name":"n","host":"h","src_ips":["10.0.0.1","10.0.0.2"],"first_seen":"2022-01-15T00:00:01Z","last_seen":"2022-01-15T00:09:13Z","alert_count":9,"ground_truth":"escalate"}"#;
        let t = ticket_of(line).unwrap().at_first_alert(true);
        let alert = parse_line(t.feed_line().as_bytes()).unwrap();
        assert_eq!(alert.alert_count, 1);
        assert_eq!(alert.last_seen, alert.first_seen);
        assert_eq!(alert.src_ips, ["10.0.0.1"]);
        // What the analysts saw, and when they could close it, stay as they were.
        assert_eq!((t.alert_count, t.ground_truth), (9, Disposition::Escalate));
        assert_eq!(t.last_ms - t.first_ms, 552_000);
        // The whole case follows as an update, written after the cases that open before its
        // last alert.
        let whole = t.update_line.as_deref().unwrap();
        assert!(whole.contains(r#""update":true"#) && whole.contains(r#""alert_count":9"#));
        let later = ticket_of(&line.replace("t1", "t2").replace("00:00:01", "00:05:00")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.jsonl");
        write_feed(&path, &[t, later]).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        let order: Vec<(&str, bool)> = written
            .lines()
            .map(|l| {
                (
                    if l.contains("\"t1\"") { "t1" } else { "t2" },
                    l.contains("update"),
                )
            })
            .collect();
        assert_eq!(order, [("t1", false), ("t2", false), ("t1", true)]);
    }
}
