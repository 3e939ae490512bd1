//! `soc-runtime backtest`: replays recorded tickets through the real role actors and scores
//! "escalated to the IR Lead" against what human analysts decided.
//!
//! The harness reads the tickets file twice over, in two roles that never meet:
//! - the **feed**: each selected ticket, with `ground_truth` removed, written in time order to
//!   a scratch file that a real [`crate::app::runtime::Runtime`] reads (in-memory bus, HTTP off, a scratch data
//!   directory: nothing leaves the process, nothing persists);
//! - the **scorer**: the labels, kept here, compared with the cases the run escalated, as its
//!   own store (the projection of its `soc.audit`, complete once the runtime has drained)
//!   records them.
//!
//! So no role can read the answer: it is not in the bytes they are given. Sampling may look at
//! labels (`--stratify` draws escalate and close tickets 50/50, as the seed harness does); it
//! decides which tickets are replayed, never what a role sees of them.

pub(crate) mod replay;
pub(crate) mod report;
pub(crate) mod score;
pub(crate) mod tickets;

pub use crate::knowledge::Disposition;
pub use replay::{BacktestError, Scratch, Setup, leave_one_site_out, run, run_in};
pub use report::{report_html, site_chart_svg};
pub use score::*;
pub use tickets::{
    BadTicket, Join, Selection, Ticket, TicketsError, history_for, load_grouped, load_selected,
    load_tickets, select,
};

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::tickets::ticket_of;
    use super::*;
    use crate::store::DecisionRow;

    fn ticket(id: &str, site: &str, truth: Disposition) -> Ticket {
        let line = format!(
            r#"{{"ticket_id":"{id}","site":"{site}","source":"wazuh","rule_id":"R","rule_name":"r","host":"h","src_ips":[],"first_seen":"2022-01-15T00:00:0{}Z","last_seen":"2022-01-15T00:00:09Z","alert_count":1,"ground_truth":"{}"}}"#,
            id.len() % 10,
            if truth == Disposition::Escalate {
                "escalate"
            } else {
                "close"
            }
        );
        ticket_of(&line).unwrap()
    }

    #[test]
    fn the_feed_line_carries_no_label() {
        let t = ticket("fox-1", "fox", Disposition::Escalate);
        assert!(!t.feed_line().contains("ground_truth"));
        assert!(!t.feed_line().contains("escalate"));
        assert_eq!(t.ground_truth, Disposition::Escalate);
        let err = ticket_of(r#"{"ticket_id":"x"}"#).unwrap_err().to_string();
        assert!(err.contains("ground_truth"), "{err}");
        let err = ticket_of(r#"{"ticket_id":"x","ground_truth":"maybe"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("escalate"), "{err}");
    }

    #[test]
    fn scores_count_escalations_per_ticket_and_site() {
        let tickets = vec![
            ticket("a-1", "a", Disposition::Escalate),
            ticket("a-2", "a", Disposition::Close),
            ticket("b-1", "b", Disposition::Escalate),
            ticket("b-2", "b", Disposition::Close),
        ];
        // b-2 is a false positive, b-1 is missed; an unknown ticket is ignored.
        let escalated: HashSet<String> = ["a-1", "b-2", "zz-9"].map(String::from).into();
        let decision = |role: &str, wall_time_ms: f64| DecisionRow {
            ticket: "a-1".into(),
            role: role.into(),
            kind: "AlertTriaged".into(),
            reasoner: "rules".into(),
            wall_time_ms,
            tool_calls_made: 2,
            tokens_in: 10,
            tokens_out: 5,
            p_escalate: None,
        };
        let decisions = [
            decision("sentinel", 1.0),
            decision("sentinel", 3.0),
            decision("tier2", 2.0),
        ];
        let (all, sites, roles) = score(&tickets, &escalated, &decisions);
        assert_eq!(roles["sentinel"].engaged, 2);
        assert_eq!(roles["sentinel"].tool_calls, 4);
        assert_eq!(roles["sentinel"].wall_ms_p95, 3.0);
        assert_eq!(roles["tier2"].reasoners["rules"], 1);
        assert_eq!(
            all,
            Confusion {
                tp: 1,
                fp: 1,
                fn_: 1,
                tn: 1
            }
        );
        assert_eq!(all.precision(), 0.5);
        assert_eq!(all.recall(), 0.5);
        assert_eq!(
            sites["a"].confusion,
            Confusion {
                tp: 1,
                fp: 0,
                fn_: 0,
                tn: 1
            }
        );
        assert_eq!(sites["b"].f1, 0.0);
        assert_eq!(Confusion::default().f1(), 0.0);
    }

    #[test]
    fn stratified_samples_are_balanced_seeded_and_in_time_order() {
        let mut tickets = Vec::new();
        for i in 0..100 {
            let truth = if i % 10 == 0 {
                Disposition::Escalate
            } else {
                Disposition::Close
            };
            tickets.push(ticket(&format!("s-{i:03}"), "s", truth));
        }
        let selection = Selection {
            sample: Some(12),
            stratify: true,
            seed: 7,
            ..Selection::default()
        };
        let a = select(tickets.clone(), &selection);
        let b = select(tickets.clone(), &selection);
        assert_eq!(a.len(), 12);
        let esc = a
            .iter()
            .filter(|t| t.ground_truth == Disposition::Escalate)
            .count();
        assert_eq!(esc, 6);
        let ids = |v: &[Ticket]| v.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b), "same seed, same sample");
        assert!(
            a.windows(2)
                .all(|w| (w[0].first_ms, &w[0].id) <= (w[1].first_ms, &w[1].id))
        );
        let other = select(
            tickets,
            &Selection {
                seed: 8,
                ..selection
            },
        );
        assert_ne!(ids(&a), ids(&other));
    }

    #[test]
    fn the_gate_names_what_fell() {
        let base = Summary {
            tickets: 1,
            confusion: Confusion::default(),
            precision: 0.5,
            recall: 0.8,
            f1: 0.6,
            per_site: BTreeMap::new(),
            roles: BTreeMap::new(),
            elapsed_s: 0.0,
            selection: SelectionSummary {
                file: String::new(),
                sites: Vec::new(),
                sample: None,
                stratify: false,
                seed: 0,
                leave_one_site_out: false,
                at_first_alert: false,
                updates: false,
            },
            priors: PriorsSummary::default(),
            malformed: 0,
            calibration: Default::default(),
            cold_start: Vec::new(),
            decisions: Vec::new(),
        };
        let worse = Summary {
            recall: 0.7,
            f1: 0.58,
            ..base.clone()
        };
        let fell = regressions(&worse, &base, 0.05);
        assert_eq!(fell.len(), 1);
        assert!(fell[0].starts_with("recall"), "{fell:?}");
        assert!(regressions(&base, &base, 0.0).is_empty());
    }
}
