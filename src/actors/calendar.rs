//! The calendar actor: wakes the calendar roles on their schedules ([`crate::calendar`]).
//!
//! Every [`TICK`] it works out, for each role, the latest scheduled window that has ended.
//! A window it has not yet reported gets its report: the audit stream for that window is read,
//! the report computed and published once. Its id is the window's end, so a report published
//! before a restart is not published again.
//!
//! At start, the latest window of each role is reported (catch-up after downtime) if it ended
//! less than one window length ago. Older missed windows are not replayed:
//! `soc-runtime report <role> --at TIME` computes one on demand.
//!
//! A window whose read or publish fails is tried again on the next tick.

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::task::AbortOnDropHandle;

use crate::bus::Bus;
use crate::calendar::{self, CalendarRole};

/// Actor name suffix.
pub(crate) const NAME: &str = "calendar";

/// How often the schedules are checked.
pub(crate) const TICK: Duration = Duration::from_secs(30);

/// Messages.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Check the schedules.
    Tick,
}

/// Startup arguments.
#[derive(Clone)]
pub(crate) struct Args {
    /// The bus (its audit is read, reports are published to it).
    pub bus: Bus,
    /// Time zone of the schedules.
    pub tz: String,
}

/// The actor.
pub(crate) struct Calendar;

/// Its state.
pub(crate) struct State {
    bus: Bus,
    tz: String,
    /// End of the last window reported, per role.
    done: HashMap<&'static str, i64>,
    started_ms: i64,
    _ticker: AbortOnDropHandle<()>,
}

impl Actor for Calendar {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        // A bad zone fails the start, with the reason, rather than every tick.
        calendar::window_at(
            CalendarRole::SocManager,
            crate::proto::now_ms(),
            &args.tz,
            None,
        )?;
        let ticker = AbortOnDropHandle::new(myself.send_interval(TICK, || Msg::Tick));
        let _ = myself.cast(Msg::Tick);
        Ok(State {
            bus: args.bus,
            tz: args.tz,
            done: HashMap::new(),
            started_ms: crate::proto::now_ms(),
            _ticker: ticker,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Msg>,
        Msg::Tick: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let now = crate::proto::now_ms();
        for role in CalendarRole::ALL {
            let window = match calendar::window_at(role, now, &state.tz, None) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(role = role.name(), error = %e, "no window");
                    continue;
                }
            };
            if state.done.get(role.name()) == Some(&window.end_ms) {
                continue;
            }
            // Catch up once after downtime: only a window that ended recently.
            let missed_long_ago = window.end_ms < state.started_ms
                && state.started_ms - window.end_ms > role.window_ms();
            if missed_long_ago {
                state.done.insert(role.name(), window.end_ms);
                continue;
            }
            match run(&state.bus, role, window).await {
                Ok(published) => {
                    tracing::info!(
                        role = role.name(),
                        report = %calendar::report_id(role, &window),
                        published,
                        "calendar report"
                    );
                    state.done.insert(role.name(), window.end_ms);
                }
                Err(e) => {
                    tracing::warn!(role = role.name(), error = %e, "calendar report failed; retrying next tick")
                }
            }
        }
        Ok(())
    }
}

/// Reports `role` over `window`; how many reports were new.
async fn run(
    bus: &Bus,
    role: CalendarRole,
    window: crate::proto::Window,
) -> Result<usize, crate::bus::BusError> {
    let events = calendar::read_audit(bus, &window).await?;
    let mut published = 0;
    for report in calendar::reports(role, window, &events) {
        published += usize::from(calendar::publish(bus, role, &report).await?);
    }
    Ok(published)
}
