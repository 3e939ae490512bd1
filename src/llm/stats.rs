//! The gateway's accounting: tokens, latency and time to first token per role and per
//! endpoint, and the counters a SOC watches (failovers, flips back, overloads, timeouts).
//!
//! Held in an `Arc` the supervisor creates, so the figures outlive gateway restarts and the
//! run summary can read them without messaging the actor.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

use super::breaker::Circuit;
use super::{AttemptErrorKind, LlmConfig, Usage};
use crate::secret::redact_url;

/// Gateway-wide counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls received.
    pub submitted: AtomicU64,
    /// Calls answered.
    pub completed: AtomicU64,
    /// Calls refused at once because the queue was full.
    pub overloads: AtomicU64,
    /// Calls whose deadline passed (queued or in flight).
    pub deadline_exceeded: AtomicU64,
    /// Legs that timed out.
    pub timeouts: AtomicU64,
    /// Legs retried on the next endpoint after a failure.
    pub failovers: AtomicU64,
    /// Circuits opened.
    pub circuit_opened: AtomicU64,
    /// Circuits closed again by the health probe (traffic flips back).
    pub flips_back: AtomicU64,
    /// Calls dropped because their caller had gone (never sent, or cut off in flight).
    pub cancelled: AtomicU64,
    /// Calls an endpoint rejected (4xx: not retried).
    pub rejected: AtomicU64,
    /// Calls no endpoint could answer.
    pub unavailable: AtomicU64,
    /// Gateway restarts.
    pub restarts: AtomicU64,
    /// Model slot leases (Redis bus) found lapsed while their call ran.
    pub lease_lost: AtomicU64,
    /// Redis errors taking, renewing or releasing model slot leases.
    pub lease_errors: AtomicU64,
}

/// Everything the gateway accounts.
#[derive(Debug)]
pub struct GatewayStats {
    /// Counters.
    pub counters: Counters,
    queue_depth: AtomicU64,
    queue_peak: AtomicU64,
    queue_capacity: AtomicU64,
    accounts: Mutex<Accounts>,
    /// Since when every endpoint's circuit has been open (`None`: one is closed).
    all_open_since: Mutex<Option<std::time::Instant>>,
    /// Model slot leases granted (Redis bus): count, their own cost and the waits.
    leases: Mutex<Option<LeaseTimes>>,
    /// `[llm] degrade_after_ms`.
    degrade_after: Duration,
}

#[derive(Debug, Default)]
struct Accounts {
    roles: BTreeMap<String, Account>,
    endpoints: Vec<EndpointAccount>,
}

#[derive(Debug)]
struct EndpointAccount {
    name: String,
    url: String,
    max_in_flight: usize,
    in_flight: usize,
    circuit: Circuit,
    failures: BTreeMap<String, u64>,
    account: Account,
}

/// Requests, tokens and latencies of one role or endpoint.
#[derive(Debug)]
struct Account {
    answered: u64,
    failed: u64,
    tokens_in: u64,
    tokens_out: u64,
    tokens_cached: u64,
    tokens_reasoning: u64,
    reasoned: u64,
    valid: u64,
    invalid: u64,
    degraded: u64,
    latency_us: Histogram<u64>,
    ttft_us: Histogram<u64>,
}

impl Default for Account {
    fn default() -> Self {
        #[allow(
            clippy::expect_used,
            reason = "constant bounds, valid for hdrhistogram"
        )]
        let histogram = || {
            // 1 µs .. 1 h at 2 significant digits: a few KiB each.
            Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
        };
        Self {
            answered: 0,
            failed: 0,
            tokens_in: 0,
            tokens_out: 0,
            tokens_cached: 0,
            tokens_reasoning: 0,
            reasoned: 0,
            valid: 0,
            invalid: 0,
            degraded: 0,
            latency_us: histogram(),
            ttft_us: histogram(),
        }
    }
}

impl Account {
    fn answered(&mut self, usage: Usage, reasoned: bool, latency: Duration, ttft: Duration) {
        self.answered += 1;
        self.tokens_in = self.tokens_in.saturating_add(usage.prompt_tokens);
        self.tokens_out = self.tokens_out.saturating_add(usage.completion_tokens);
        self.tokens_cached = self.tokens_cached.saturating_add(usage.cached_tokens);
        self.tokens_reasoning = self.tokens_reasoning.saturating_add(usage.reasoning_tokens);
        self.reasoned += u64::from(reasoned);
        self.latency_us.saturating_record(micros(latency));
        self.ttft_us.saturating_record(micros(ttft));
    }

    fn snapshot(&self) -> AccountSnapshot {
        AccountSnapshot {
            answered: self.answered,
            failed: self.failed,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            tokens_cached: self.tokens_cached,
            tokens_reasoning: self.tokens_reasoning,
            reasoned: self.reasoned,
            valid: self.valid,
            invalid: self.invalid,
            degraded: self.degraded,
            latency_ms: Percentiles::of(&self.latency_us),
            ttft_ms: Percentiles::of(&self.ttft_us),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// What the run summary and `Observe` show.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GatewaySnapshot {
    /// Requests waiting now.
    pub queued: u64,
    /// Most requests ever waiting at once.
    pub queue_peak: u64,
    /// Queue capacity.
    pub queue_capacity: u64,
    /// Model slot leases, when the gateway takes them (Redis bus).
    pub lease: Option<LeaseSnapshot>,
    /// Seconds every endpoint has been unavailable, when past `[llm] degrade_after_ms`:
    /// roles are deciding by rules (degraded). `None` in normal operation.
    pub degraded_for_s: Option<u64>,
    /// Counters.
    pub counters: BTreeMap<&'static str, u64>,
    /// Per endpoint, in failover order.
    pub endpoints: Vec<EndpointSnapshot>,
    /// Per role.
    pub roles: BTreeMap<String, AccountSnapshot>,
}

/// One endpoint.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndpointSnapshot {
    /// Name.
    pub name: String,
    /// URL (without credentials).
    pub url: String,
    /// Circuit state.
    pub circuit: Circuit,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Limit.
    pub max_in_flight: usize,
    /// Failed legs by kind.
    pub failures: BTreeMap<String, u64>,
    /// Answers and their cost.
    #[serde(flatten)]
    pub account: AccountSnapshot,
}

/// Answers and their cost.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccountSnapshot {
    /// Answers.
    pub answered: u64,
    /// Failures (for a role: calls that got an error; for an endpoint: failed legs).
    pub failed: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Generated tokens.
    pub tokens_out: u64,
    /// Prompt tokens the server served from its prefix cache (where it says).
    pub tokens_cached: u64,
    /// Generated tokens spent reasoning (where the server counts them).
    pub tokens_reasoning: u64,
    /// Answers that carried reasoning (a field or a think block), kept out of parsing.
    pub reasoned: u64,
    /// Final answers (after any repair) that validated against the role's schema and checks.
    pub valid: u64,
    /// Final answers that did not validate (the case went to `needs_human_review`).
    pub invalid: u64,
    /// For a role: decisions the rules made because the model was unavailable.
    pub degraded: u64,
    /// Latency: for a role, from the call to its answer; for an endpoint, the answering leg.
    pub latency_ms: Percentiles,
    /// Time to first token of the answering leg.
    pub ttft_ms: Percentiles,
}

/// Percentiles of a histogram, ms.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th.
    pub p95: f64,
    /// 99th.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug)]
struct LeaseTimes {
    granted: u64,
    overhead_us: Histogram<u64>,
    waited_us: Histogram<u64>,
}

/// Model slot leases (Redis bus only).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeaseSnapshot {
    /// Leases granted.
    pub granted: u64,
    /// What a lease adds to a call when nobody waits: the grant's script call plus the
    /// release, ms.
    pub overhead_ms: Percentiles,
    /// From the first attempt to the grant (waiting for a slot held elsewhere included), ms.
    pub waited_ms: Percentiles,
}

/// What one answer cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answered {
    /// Tokens.
    pub usage: Usage,
    /// Whether it carried reasoning.
    pub reasoned: bool,
    /// The caller's whole wait.
    pub latency: Duration,
    /// The answering leg.
    pub leg: Duration,
    /// Time to first token of the answering leg.
    pub ttft: Duration,
}

impl GatewayStats {
    /// Stats for the gateway `config` describes.
    pub fn new(config: &LlmConfig) -> Self {
        let accounts = Accounts {
            roles: BTreeMap::new(),
            endpoints: config
                .endpoints
                .iter()
                .map(|e| EndpointAccount {
                    name: e.name.clone(),
                    url: redact_url(&e.url),
                    max_in_flight: e.max_in_flight,
                    in_flight: 0,
                    circuit: Circuit::Closed,
                    failures: BTreeMap::new(),
                    account: Account::default(),
                })
                .collect(),
        };
        Self {
            counters: Counters::default(),
            queue_depth: AtomicU64::new(0),
            queue_peak: AtomicU64::new(0),
            queue_capacity: AtomicU64::new(config.queue_capacity as u64),
            accounts: Mutex::new(accounts),
            all_open_since: Mutex::new(None),
            leases: Mutex::new(None),
            degrade_after: Duration::from_millis(config.degrade_after_ms),
        }
    }

    /// How long every endpoint's circuit has been open, once that is past
    /// `[llm] degrade_after_ms`: the model is down, not busy, and roles decide by rules until
    /// an endpoint recovers.
    pub fn unavailable_for(&self) -> Option<Duration> {
        let since = (*self.all_open_since.lock())?;
        let down = since.elapsed();
        (down >= self.degrade_after).then_some(down)
    }

    /// Whether roles are deciding by rules now (see [`GatewayStats::unavailable_for`]).
    pub fn is_degraded(&self) -> bool {
        self.unavailable_for().is_some()
    }

    /// A lease granted after `waited`, whose grant and release took `overhead`.
    pub(crate) fn lease(&self, overhead: Duration, waited: Duration) {
        let mut leases = self.leases.lock();
        let times = leases.get_or_insert_with(|| {
            let Account {
                latency_us,
                ttft_us,
                ..
            } = Account::default();
            LeaseTimes {
                granted: 0,
                overhead_us: latency_us,
                waited_us: ttft_us,
            }
        });
        times.granted += 1;
        times.overhead_us.saturating_record(micros(overhead));
        times.waited_us.saturating_record(micros(waited));
    }

    /// A final answer of `role` from `endpoint` validated (`ok`) or not.
    pub fn validated(&self, role: &str, endpoint: &str, ok: bool) {
        let mut a = self.accounts.lock();
        let bump = |acc: &mut Account| {
            if ok {
                acc.valid += 1;
            } else {
                acc.invalid += 1;
            }
        };
        bump(a.role(role));
        if let Some(e) = a.endpoints.iter_mut().find(|e| e.name == endpoint) {
            bump(&mut e.account);
        }
    }

    /// A decision of `role` the rules made because the model was unavailable.
    pub fn degraded_decision(&self, role: &str) {
        self.accounts.lock().role(role).degraded += 1;
    }

    /// Counts one.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the queue depth.
    pub(crate) fn set_queue_depth(&self, depth: usize) {
        let depth = depth as u64;
        self.queue_depth.store(depth, Ordering::Relaxed);
        self.queue_peak.fetch_max(depth, Ordering::Relaxed);
    }

    /// Records an endpoint's live state, and when every circuit came to be open.
    pub(crate) fn set_endpoint(&self, index: usize, in_flight: usize, circuit: Circuit) {
        let mut a = self.accounts.lock();
        if let Some(e) = a.endpoints.get_mut(index) {
            e.in_flight = in_flight;
            e.circuit = circuit;
        }
        let all_open =
            !a.endpoints.is_empty() && a.endpoints.iter().all(|e| e.circuit == Circuit::Open);
        drop(a);
        let mut since = self.all_open_since.lock();
        match (all_open, since.is_some()) {
            (true, false) => *since = Some(std::time::Instant::now()),
            (false, true) => *since = None,
            _ => {}
        }
    }

    /// An answer: `latency` is the caller's whole wait, `leg` the answering leg's.
    pub fn answered(&self, role: &str, endpoint: usize, answer: Answered) {
        let Answered {
            usage,
            reasoned,
            latency,
            leg,
            ttft,
        } = answer;
        Self::bump(&self.counters.completed);
        let mut a = self.accounts.lock();
        a.role(role).answered(usage, reasoned, latency, ttft);
        if let Some(e) = a.endpoints.get_mut(endpoint) {
            e.account.answered(usage, reasoned, leg, ttft);
        }
    }

    /// A failed leg.
    pub(crate) fn leg_failed(&self, endpoint: usize, kind: AttemptErrorKind) {
        if kind == AttemptErrorKind::Timeout {
            Self::bump(&self.counters.timeouts);
        }
        let mut a = self.accounts.lock();
        if let Some(e) = a.endpoints.get_mut(endpoint) {
            e.account.failed += 1;
            let key = match kind {
                AttemptErrorKind::Status(s) | AttemptErrorKind::Rejected(s) => format!("http_{s}"),
                other => serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "other".to_owned()),
            };
            *e.failures.entry(key).or_default() += 1;
        }
    }

    /// A call of `role` that ended in an error.
    pub(crate) fn call_failed(&self, role: &str) {
        self.accounts.lock().role(role).failed += 1;
    }

    /// A serializable view.
    pub fn snapshot(&self) -> GatewaySnapshot {
        let c = &self.counters;
        let l = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let counters = BTreeMap::from([
            ("submitted", l(&c.submitted)),
            ("completed", l(&c.completed)),
            ("overloads", l(&c.overloads)),
            ("deadline_exceeded", l(&c.deadline_exceeded)),
            ("timeouts", l(&c.timeouts)),
            ("failovers", l(&c.failovers)),
            ("circuit_opened", l(&c.circuit_opened)),
            ("flips_back", l(&c.flips_back)),
            ("cancelled", l(&c.cancelled)),
            ("rejected", l(&c.rejected)),
            ("unavailable", l(&c.unavailable)),
            ("restarts", l(&c.restarts)),
            ("lease_lost", l(&c.lease_lost)),
            ("lease_errors", l(&c.lease_errors)),
        ]);
        let a = self.accounts.lock();
        let lease = self.leases.lock().as_ref().map(|t| LeaseSnapshot {
            granted: t.granted,
            overhead_ms: Percentiles::of(&t.overhead_us),
            waited_ms: Percentiles::of(&t.waited_us),
        });
        GatewaySnapshot {
            lease,
            degraded_for_s: self.unavailable_for().map(|d| d.as_secs()),
            queued: l(&self.queue_depth),
            queue_peak: l(&self.queue_peak),
            queue_capacity: l(&self.queue_capacity),
            counters,
            endpoints: a
                .endpoints
                .iter()
                .map(|e| EndpointSnapshot {
                    name: e.name.clone(),
                    url: e.url.clone(),
                    circuit: e.circuit,
                    in_flight: e.in_flight,
                    max_in_flight: e.max_in_flight,
                    failures: e.failures.clone(),
                    account: e.account.snapshot(),
                })
                .collect(),
            roles: a
                .roles
                .iter()
                .map(|(k, v)| (k.clone(), v.snapshot()))
                .collect(),
        }
    }
}

impl Accounts {
    fn role(&mut self, role: &str) -> &mut Account {
        self.roles.entry(role.to_owned()).or_default()
    }
}

impl GatewaySnapshot {
    /// A counter by name (0 when unknown).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// An endpoint by name.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointSnapshot> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

/// One role's model cost.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct ModelCost {
    /// Model answers received.
    pub calls: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Prompt tokens served from the server's prefix cache (where it says).
    pub tokens_cached: u64,
    /// `tokens_cached / tokens_in`.
    pub cached_share: f64,
    /// Cases the role decided with the model.
    pub cases: u64,
    /// Calls per case decided with the model.
    pub calls_per_case: f64,
    /// Prompt and completion tokens per case decided with the model.
    pub tokens_per_case: (f64, f64),
    /// Calls per 1,000 alerts read.
    pub calls_per_1k_alerts: f64,
    /// Prompt and completion tokens per 1,000 alerts read.
    pub tokens_per_1k_alerts: (f64, f64),
    /// Inputs decided by rules while the model was down.
    pub degraded: u64,
}

pub(crate) fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

impl ModelCost {
    /// The ratios of these counts over `alerts` alerts.
    pub fn with_ratios(mut self, alerts: u64) -> Self {
        let per_1k = |n: u64| ratio(n, alerts) * 1000.0;
        self.cached_share = ratio(self.tokens_cached, self.tokens_in);
        self.calls_per_case = ratio(self.calls, self.cases);
        self.tokens_per_case = (
            ratio(self.tokens_in, self.cases),
            ratio(self.tokens_out, self.cases),
        );
        self.calls_per_1k_alerts = per_1k(self.calls);
        self.tokens_per_1k_alerts = (per_1k(self.tokens_in), per_1k(self.tokens_out));
        self
    }

    /// Adds `other`'s counts (its ratios are recomputed by [`ModelCost::with_ratios`]).
    pub fn add(&mut self, other: &ModelCost) {
        self.calls += other.calls;
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.tokens_cached += other.tokens_cached;
        self.cases += other.cases;
        self.degraded += other.degraded;
    }
}
