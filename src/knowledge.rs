//! What the rules reasoner knows beyond the alert in front of it.
//!
//! - **Priors**: the analysts' recorded dispositions (escalated or closed), counted per rule,
//!   per host and per detector. Each disposition carries the time from which it is known
//!   (`known_ms`), and every count is taken *as of* the time of the case being decided, so a
//!   case never learns from a disposition that was not yet known at its time, whatever order
//!   the cases are decided in. Imported history is known from the start; a backtest's
//!   `--feedback-delay` makes a replayed ticket's disposition known that long after it ended.
//! - **Activity**: the cases triaged in the last [`ACTIVITY_WINDOW_MS`] per (site, host), with
//!   each one's own score, so an attack that sets off many detectors on one host in a short
//!   time is seen as one burst. Only cases that came before the one being decided (by time,
//!   then ticket id) count, so the answer does not depend on how far other work has got.
//!
//! The priors are loaded from the store's `dispositions` table when the runtime starts; the
//! activity is rebuilt from the store's case memory. Both live in the runtime's context, so a
//! role actor's restart loses nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

/// How long a triaged case counts as recent activity on its host.
pub const ACTIVITY_WINDOW_MS: i64 = 3_600_000;

/// What the analysts decided for a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Handed to incident response.
    Escalate,
    /// Closed as benign or uninteresting.
    Close,
}

impl Disposition {
    /// The stored label.
    pub fn label(self) -> &'static str {
        match self {
            Disposition::Escalate => "escalate",
            Disposition::Close => "close",
        }
    }

    /// Parses a stored label.
    pub fn parse(label: &str) -> Option<Self> {
        match label {
            "escalate" => Some(Disposition::Escalate),
            "close" => Some(Disposition::Close),
            _ => None,
        }
    }
}

/// One analyst disposition with the facts of its ticket that priors are kept by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispositionFacts {
    /// Ticket id.
    pub ticket: String,
    /// What the analysts decided.
    pub disposition: Disposition,
    /// Site or tenant.
    pub site: String,
    /// Rule code.
    pub rule: String,
    /// Host.
    pub host: String,
    /// Detector family.
    pub detector: String,
    /// From when it is known, ms since the epoch (`i64::MIN`: always).
    pub known_ms: i64,
}

/// Escalated and closed counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Dispositions that escalated.
    pub escalated: u64,
    /// Dispositions that closed.
    pub closed: u64,
}

impl Counts {
    /// All dispositions counted.
    pub fn total(&self) -> u64 {
        self.escalated + self.closed
    }
}

/// The dispositions of one key, as sorted `known_ms` lists, so a count as of any time is two
/// binary searches.
#[derive(Debug, Default)]
struct Tally {
    escalated: Vec<i64>,
    closed: Vec<i64>,
}

impl Tally {
    fn add(&mut self, disposition: Disposition, known_ms: i64) {
        let list = match disposition {
            Disposition::Escalate => &mut self.escalated,
            Disposition::Close => &mut self.closed,
        };
        // Mostly appends: history first, feedback in time order.
        let at = list.partition_point(|&k| k <= known_ms);
        list.insert(at, known_ms);
    }

    fn as_of(&self, at_ms: i64) -> Counts {
        Counts {
            escalated: self.escalated.partition_point(|&k| k <= at_ms) as u64,
            closed: self.closed.partition_point(|&k| k <= at_ms) as u64,
        }
    }
}

#[derive(Debug, Default)]
struct Priors {
    all: Tally,
    rule: HashMap<String, Tally>,
    host: HashMap<String, Tally>,
    detector: HashMap<String, Tally>,
    /// Tickets recorded, so a disposition given twice counts once.
    tickets: HashMap<String, Disposition>,
}

/// The priors of one case, as of its time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CasePriors {
    /// All dispositions.
    pub all: Counts,
    /// Of the case's rule.
    pub rule: Counts,
    /// Of the case's host.
    pub host: Counts,
    /// Of the case's detector.
    pub detector: Counts,
}

/// A recent case on a host.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    /// Ticket id.
    pub ticket: String,
    /// When it opened, ms since the epoch.
    pub first_ms: i64,
    /// Its rule code.
    pub rule: String,
    /// The score triage gave it on its own (without activity).
    pub score: f64,
}

#[derive(Debug, Default)]
struct Activity {
    hosts: HashMap<(String, String), VecDeque<Recent>>,
    newest_ms: i64,
    recorded: u64,
}

/// Priors and activity, shared by the roles of one runtime.
#[derive(Debug, Default)]
pub struct Knowledge {
    priors: RwLock<Priors>,
    activity: Mutex<Activity>,
}

impl Knowledge {
    /// Records dispositions (a ticket already recorded keeps its first disposition).
    pub fn add_dispositions<'a>(&self, facts: impl IntoIterator<Item = &'a DispositionFacts>) {
        let mut guard = self.priors.write().unwrap_or_else(|e| e.into_inner());
        let p = &mut *guard;
        for f in facts {
            if p.tickets.contains_key(&f.ticket) {
                continue;
            }
            p.tickets.insert(f.ticket.clone(), f.disposition);
            p.all.add(f.disposition, f.known_ms);
            for (map, key) in [
                (&mut p.rule, &f.rule),
                (&mut p.host, &f.host),
                (&mut p.detector, &f.detector),
            ] {
                if !key.is_empty() {
                    map.entry(key.clone())
                        .or_default()
                        .add(f.disposition, f.known_ms);
                }
            }
        }
    }

    /// Dispositions recorded.
    pub fn dispositions(&self) -> usize {
        self.priors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .tickets
            .len()
    }

    /// The priors of a case with this rule, host and detector, counting only dispositions
    /// known at `at_ms`.
    pub fn priors(&self, rule: &str, host: &str, detector: &str, at_ms: i64) -> CasePriors {
        let p = self.priors.read().unwrap_or_else(|e| e.into_inner());
        let of = |map: &HashMap<String, Tally>, key: &str| {
            map.get(key).map(|t| t.as_of(at_ms)).unwrap_or_default()
        };
        CasePriors {
            all: p.all.as_of(at_ms),
            rule: of(&p.rule, rule),
            host: of(&p.host, host),
            detector: of(&p.detector, detector),
        }
    }

    /// Records a triaged case as activity on its host (a ticket recorded again replaces
    /// itself, so a redelivered alert counts once).
    pub fn record(&self, site: &str, host: &str, recent: Recent) {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.newest_ms = a.newest_ms.max(recent.first_ms);
        let horizon = a.newest_ms.saturating_sub(ACTIVITY_WINDOW_MS);
        let list = a
            .hosts
            .entry((site.to_owned(), host.to_owned()))
            .or_default();
        list.retain(|r| r.ticket != recent.ticket && r.first_ms >= horizon);
        list.push_back(recent);
        a.recorded += 1;
        // Now and then, forget hosts that have gone quiet.
        if a.recorded.is_multiple_of(4096) {
            a.hosts.retain(|_, list| {
                list.retain(|r| r.first_ms >= horizon);
                !list.is_empty()
            });
        }
    }

    /// When the latest recorded case on `(site, host)` opened.
    pub fn latest_ms(&self, site: &str, host: &str) -> Option<i64> {
        let a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.hosts
            .get(&(site.to_owned(), host.to_owned()))
            .and_then(|list| list.iter().map(|r| r.first_ms).max())
    }

    /// The cases on `(site, host)` within the activity window before a case opened at
    /// `at_ms` (earlier by time, then by ticket id; the case itself excluded), oldest first.
    pub fn recent(&self, site: &str, host: &str, at_ms: i64, ticket: &str) -> Vec<Recent> {
        let a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = a.hosts.get(&(site.to_owned(), host.to_owned())) else {
            return Vec::new();
        };
        let from = at_ms.saturating_sub(ACTIVITY_WINDOW_MS);
        let mut out: Vec<Recent> = list
            .iter()
            .filter(|r| r.first_ms >= from && (r.first_ms, r.ticket.as_str()) < (at_ms, ticket))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.first_ms, &a.ticket).cmp(&(b.first_ms, &b.ticket)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(ticket: &str, d: Disposition, rule: &str, known_ms: i64) -> DispositionFacts {
        DispositionFacts {
            ticket: ticket.into(),
            disposition: d,
            site: "s".into(),
            rule: rule.into(),
            host: "h".into(),
            detector: "wazuh".into(),
            known_ms,
        }
    }

    #[test]
    fn priors_count_only_what_was_known_at_the_time() {
        let k = Knowledge::default();
        k.add_dispositions(&[
            facts("a", Disposition::Escalate, "R1", i64::MIN),
            facts("b", Disposition::Close, "R1", 100),
            facts("c", Disposition::Escalate, "R1", 50),
            facts("d", Disposition::Close, "R2", 10),
        ]);
        assert_eq!(
            k.priors("R1", "h", "wazuh", 0).rule,
            Counts {
                escalated: 1,
                closed: 0
            }
        );
        assert_eq!(
            k.priors("R1", "h", "wazuh", 50).rule,
            Counts {
                escalated: 2,
                closed: 0
            }
        );
        let later = k.priors("R1", "h", "wazuh", 100);
        assert_eq!(
            later.rule,
            Counts {
                escalated: 2,
                closed: 1
            }
        );
        assert_eq!(later.all.total(), 4);
        assert_eq!(later.host.total(), 4);
        assert_eq!(k.priors("R3", "x", "y", 100).rule, Counts::default());
        // A ticket given twice counts once.
        k.add_dispositions(&[facts("a", Disposition::Close, "R1", 0)]);
        assert_eq!(k.dispositions(), 4);
    }

    #[test]
    fn activity_is_per_host_windowed_and_only_what_came_before() {
        let k = Knowledge::default();
        let rec = |t: &str, ms: i64| Recent {
            ticket: t.into(),
            first_ms: ms,
            rule: "R".into(),
            score: 1.0,
        };
        k.record("s", "h", rec("t1", 0));
        k.record("s", "h", rec("t2", 1000));
        k.record("s", "other", rec("t3", 1000));
        k.record("s", "h", rec("t4", 2000));
        k.record("s", "h", rec("t2", 1000)); // redelivered: still one
        let ids = |v: Vec<Recent>| v.into_iter().map(|r| r.ticket).collect::<Vec<_>>();
        assert_eq!(ids(k.recent("s", "h", 1000, "t2")), ["t1"]);
        assert_eq!(ids(k.recent("s", "h", 2000, "t4")), ["t1", "t2"]);
        assert_eq!(
            ids(k.recent("s", "h", ACTIVITY_WINDOW_MS + 1000, "t9")),
            ["t2", "t4"]
        );
        assert!(k.recent("other-site", "h", 2000, "t9").is_empty());
    }
}
