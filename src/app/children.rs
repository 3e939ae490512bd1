//! The supervisor's children as data: one [`ChildSpec`] each (its name, its stage in a drain,
//! how it starts), listed by [`children`] for this process's configuration. Stateless: what a
//! child keeps across its restarts lives in the context ([`super::context`]).

use std::time::Duration;

use ractor::{Actor, ActorCell};

use super::context::Context;
use crate::actors::RoleEnv;
use crate::actors::alert_source::{self, AlertSource};
use crate::actors::calendar::{self, Calendar};
use crate::actors::notifier::{self, Notifier};
use crate::actors::projector::{self, Projector};
use crate::actors::role::{self, RoleSpec};
use crate::actors::roles::REACTIVE_ROLES;
use crate::actors::xsoar;
use crate::app::http::{self, HttpServer};
use crate::bus::bridge::{self, BusBridge};
use crate::llm::gateway::{self, Gateway};

/// Where a child stands in a drain: stages stop in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The alert source: told to stop publishing, then stopped.
    Feed,
    /// Other publishers of new work (the calendar roles): stopped with the feed.
    Publisher,
    /// A reactive role: stops reading, finishes its mailbox.
    Role,
    /// The LLM gateway.
    Gateway,
    /// The bus bridge: writes what is queued.
    Bridge,
    /// The projector: folds the audit to its end.
    Projector,
    /// Everything else (HTTP, the notifier, the XSOAR poller).
    Last,
}

/// Why a child did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// What it needs is not in this runtime.
    #[error("{0}")]
    Missing(&'static str),
    /// ractor refused the spawn (the name is taken, or `pre_start` failed).
    #[error(transparent)]
    Spawn(#[from] ractor::SpawnErr),
}

pub(crate) type SpawnFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<ActorCell, StartError>> + Send + 'a>>;

/// How a child starts: from the shared context, under its actor name, linked to the
/// supervisor.
#[derive(Clone, Copy)]
pub(crate) enum Start {
    /// A child with its own start function.
    Actor(fn(&Context, String, ActorCell) -> SpawnFuture<'_>),
    /// A reactive role (all started the same way, from its [`RoleSpec`]).
    Role(&'static RoleSpec),
}

/// One supervised child: its name, its place in a drain, how it starts. The supervisor's
/// children are a list of these ([`children`]); nothing else enumerates them.
#[derive(Clone, Copy)]
pub(crate) struct ChildSpec {
    pub(crate) name: &'static str,
    pub(crate) stage: Stage,
    pub(crate) start: Start,
}

impl ChildSpec {
    const fn of(
        name: &'static str,
        stage: Stage,
        start: fn(&Context, String, ActorCell) -> SpawnFuture<'_>,
    ) -> Self {
        Self {
            name,
            stage,
            start: Start::Actor(start),
        }
    }
}

/// The children this process runs, in start order.
pub(crate) fn children(ctx: &Context) -> Vec<ChildSpec> {
    let parts = &ctx.config.supervisor;
    let mut specs = Vec::new();
    if ctx.bridge_queue.is_some() {
        specs.push(ChildSpec::of(bridge::NAME, Stage::Bridge, start_bridge));
    }
    if ctx.http.is_some() {
        specs.push(ChildSpec::of(http::NAME, Stage::Last, start_http));
    }
    if ctx.llm_stats.is_some() {
        specs.push(ChildSpec::of(gateway::NAME, Stage::Gateway, start_gateway));
    }
    specs.push(ChildSpec::of(
        projector::NAME,
        Stage::Projector,
        start_projector,
    ));
    if ctx.config.webex.sends_cards() && parts.runs("approvals") {
        specs.push(ChildSpec::of(notifier::NAME, Stage::Last, start_notifier));
    }
    for role in REACTIVE_ROLES.iter().filter(|r| parts.runs(r.name)) {
        specs.push(ChildSpec {
            name: role.name,
            stage: Stage::Role,
            start: Start::Role(role),
        });
    }
    if parts.runs("source") {
        // The JSONL feed (or the demo feed) unless XSOAR or HTTP ingest is the source.
        let pushed = !ctx.config.ingest.sources.is_empty();
        if ctx.config.alerts.is_some()
            || (!ctx.config.xsoar.enabled() && !pushed)
            || ctx.config.demo
        {
            specs.push(ChildSpec::of(alert_source::NAME, Stage::Feed, start_source));
        }
        if ctx.config.xsoar.enabled() {
            specs.push(ChildSpec::of(xsoar::NAME, Stage::Last, start_xsoar));
        }
    }
    if ctx.config.calendar.enabled && parts.runs("calendar") {
        specs.push(ChildSpec::of(
            calendar::NAME,
            Stage::Publisher,
            start_calendar,
        ));
    }
    specs
}

/// Spawns `actor` linked to `parent`, as its cell.
async fn linked<A: Actor>(
    name: String,
    actor: A,
    args: A::Arguments,
    parent: ActorCell,
) -> Result<ActorCell, StartError> {
    Actor::spawn_linked(Some(name), actor, args, parent)
        .await
        .map(|(a, _)| a.get_cell())
        .map_err(StartError::from)
}

fn start_bridge(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let queue = ctx
            .bridge_queue
            .clone()
            .ok_or(StartError::Missing("no bridge queue"))?;
        let args = bridge::Args {
            url: ctx.config.bus.redis_url.clone(),
            config: ctx.bus.config().clone(),
            queue,
        };
        linked(name, BusBridge, args, parent).await
    })
}

fn start_http(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let (listener, addr) = ctx.http.clone().ok_or(StartError::Missing("http is off"))?;
        let args = http::Args {
            listener,
            addr,
            health: ctx.health.clone(),
            pages: Some(http::Pages {
                approval_pages: ctx.config.supervisor.runs("approvals"),
                store: ctx.store_path.clone(),
                approvals: ctx.config.approvals.clone(),
                webex: ctx.config.webex.clone(),
                knowledge: Some(ctx.knowledge.clone()),
                tools: Some(ctx.tools.clone()),
                data_dir: ctx.config.data_dir.clone(),
            }),
            metrics: crate::app::metrics::Sources {
                // Only the roles this process runs: several processes' scrapes add up.
                roles: REACTIVE_ROLES
                    .iter()
                    .filter(|r| ctx.config.supervisor.runs(r.name))
                    .map(|r| (r.name, (r.input, ctx.role_stats[r.name].clone())))
                    .collect(),
                xsoar: ctx.config.xsoar.enabled().then(|| ctx.xsoar_stats.clone()),
                source: ctx.source_stats.clone(),
                llm: ctx.llm_stats.clone(),
                projector: ctx.projector_stats.clone(),
                bus: ctx.bus.clone(),
                pool: None,
                ingest: ctx.ingest.as_ref().map(|i| i.stats()).unwrap_or_default(),
                http: ctx.http_stats.clone(),
                bridge: ctx.bridge_queue.clone(),
                sign_ins: None,
            },
            ingest: ctx.ingest.clone(),
            limits: ctx.config.http.limits(),
            metrics_token: ctx.config.http.metrics_token.clone(),
        };
        linked(name, HttpServer, args, parent).await
    })
}

fn start_gateway(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let stats = ctx
            .llm_stats
            .clone()
            .ok_or(StartError::Missing("no llm endpoints"))?;
        let leases = ctx.bus.redis_connection().map(|conn| {
            std::sync::Arc::new(crate::llm::lease::Leases::new(
                conn,
                &ctx.bus.config().namespace,
                ctx.config.llm.endpoints.len(),
                stats.clone(),
            ))
        });
        let args = gateway::Args {
            config: ctx.config.llm.clone(),
            stats,
            leases,
        };
        linked(name, Gateway, args, parent).await
    })
}

fn start_projector(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let args = projector::Args {
            bus: ctx.bus.clone(),
            path: ctx.store_path.clone(),
            projection: ctx.projection.clone(),
            // On the in-memory bus a look for new audit entries costs microseconds, so the
            // projector looks as often as the idle check (a replay's 1 ms: it folds while the
            // roles work instead of after); on Redis at most every 100 ms.
            interval: Duration::from_millis(match ctx.bus.backend_name() {
                "redis" => ctx.config.supervisor.idle_poll_ms.max(100),
                _ => ctx.config.supervisor.idle_poll_ms,
            }),
            stats: ctx.projector_stats.clone(),
            knowledge: Some(ctx.knowledge.clone()),
            timelines: ctx.options.timelines,
            shared: ctx.options.store.clone(),
        };
        linked(name, Projector, args, parent).await
    })
}

fn start_notifier(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let args = notifier::Args {
            path: ctx.store_path.clone(),
            config: ctx.config.webex.clone(),
            approvals_url: ctx.approvals_url(),
            max_age_ms: ctx.proposal_ttl_ms(),
        };
        linked(name, Notifier, args, parent).await
    })
}

fn start_xsoar(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let args = xsoar::Args {
            config: ctx.config.xsoar.clone(),
            bus: ctx.bus.clone(),
            store: ctx.store_path.clone(),
            stats: ctx.xsoar_stats.clone(),
        };
        linked(name, xsoar::XsoarPoller, args, parent).await
    })
}

fn start_calendar(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let args = calendar::Args {
            bus: ctx.bus.clone(),
            tz: ctx.config.calendar.tz.clone(),
        };
        linked(name, Calendar, args, parent).await
    })
}

fn start_source(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let args = alert_source::Args {
            feed: ctx.feed.clone(),
            format: ctx.config.feed.clone(),
            state: match (&ctx.feed, ctx.config.feed.follow) {
                (alert_source::Feed::File(path), true) => Some(crate::ingest::follow::state_path(
                    &ctx.config.data_dir,
                    path,
                )),
                _ => None,
            },
            bus: ctx.bus.clone(),
            stats: ctx.source_stats.clone(),
            batch: ctx.config.supervisor.source_batch,
            spool: match (&ctx.feed, ctx.config.feed.follow) {
                (alert_source::Feed::File(path), false) => Some(
                    crate::ingest::pipe::Spool::for_feed(&ctx.config.data_dir, path),
                ),
                _ => None,
            },
            // A third of the drain: the roles and the bridge need the rest.
            drain_budget: std::time::Duration::from_secs(
                ctx.config.supervisor.drain_timeout_s.max(3) / 3,
            ),
        };
        linked(name, AlertSource, args, parent).await
    })
}

pub(crate) async fn start_role(
    ctx: &Context,
    spec: &RoleSpec,
    name: String,
    parent: ActorCell,
) -> Result<ActorCell, StartError> {
    let args = role::Args {
        bus: ctx.bus.clone(),
        consumer: ctx.consumer_name(spec.name),
        stats: ctx.role_stats[spec.name].clone(),
        faults: ctx.options.faults.clone(),
        llm: ctx.llm(),
        env: RoleEnv {
            knowledge: ctx.knowledge.clone(),
            reasoning: ctx.config.reasoning.clone(),
            tools: ctx.tools.clone(),
            proposal_ttl_ms: ctx.proposal_ttl_ms(),
            networks: std::sync::Arc::new(
                crate::response::Networks::parse(&ctx.config.response).unwrap_or_default(),
            ),
        },
    };
    spec.spawn(name, args, parent)
        .await
        .map(|a| a.get_cell())
        .map_err(StartError::from)
}
