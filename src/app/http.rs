//! The HTTP server actor (axum): `GET /` (the dashboard, [`crate::app::dashboard`]), `GET /healthz`,
//! `GET /metrics` ([`crate::app::metrics`]), the approval pages ([`crate::approvals::web`]) and the Webex webhook
//! ([`crate::webex::webhook`]).
//!
//! Input: requests on the configured address. Output: JSON answers built from the shared
//! [`Health`] the supervisor maintains. A restart re-binds the same address; in-flight requests
//! are lost (clients retry), nothing else is.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::health::Health;
use crate::task::spawn_watched;

/// Actor name (prefixed by the runtime instance).
pub(crate) const NAME: &str = "http";
/// How long in-flight requests get to finish when the server stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Messages of the HTTP actor.
pub(crate) enum Msg {
    /// The server task ended without being asked to: fail, so the supervisor restarts it.
    ServerExited,
}

/// Startup arguments.
pub(crate) struct Args {
    /// A listener bound by the runtime (first start), or the address to bind (restarts).
    pub listener: Arc<Mutex<Option<std::net::TcpListener>>>,
    /// The address actually bound.
    pub addr: SocketAddr,
    /// Shared health.
    pub health: Arc<Health>,
    /// The approval pages and the Webex webhook.
    pub pages: Option<Pages>,
    /// What `/metrics` reads.
    pub metrics: crate::app::metrics::Sources,
    /// HTTP ingest, when sources are configured.
    pub ingest: Option<Arc<crate::ingest::http::Ingest>>,
    /// Timeouts and the connection cap.
    pub limits: crate::app::serve::Limits,
    /// The token `/metrics` asks for, if set.
    pub metrics_token: Option<crate::secret::Secret>,
}

/// What the approval pages and the Webex webhook work with.
pub(crate) struct Pages {
    /// Whether this process serves the dashboard, the approval pages and the Webex webhook
    /// (the `approvals` part); without it, only `/healthz` and `/metrics`.
    pub approval_pages: bool,
    /// The store they read and record decisions and feedback in.
    pub store: std::path::PathBuf,
    /// Approvers, sessions, the SSO proxy.
    pub approvals: crate::approvals::ApprovalsConfig,
    /// The webhook's secret and the API it looks actions up in.
    pub webex: crate::webex::WebexConfig,
    /// Where recorded feedback also goes (the rules reasoner's knowledge).
    pub knowledge: Option<Arc<crate::knowledge::Knowledge>>,
    /// Where the dashboard finds `last-backtest.json`.
    pub data_dir: std::path::PathBuf,
    /// The tools (the case page names ATT&CK techniques from the bundle).
    pub tools: Option<Arc<crate::tools::Toolbox>>,
}

/// The HTTP server actor.
pub(crate) struct HttpServer;

/// State: the serving task and the token that stops it gracefully.
pub(crate) struct State {
    stop: CancellationToken,
    server: Option<AbortOnDropHandle<()>>,
    /// Publishes HTTP-ingested cases' updates each second.
    _ticker: Option<AbortOnDropHandle<()>>,
}

impl Actor for HttpServer {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let taken = args.listener.lock().take();
        let listener = match taken {
            Some(l) => TcpListener::from_std(l)?,
            None => TcpListener::bind(args.addr)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?,
        };
        tracing::debug!(addr = %listener.local_addr()?, "http listening");
        let stop = CancellationToken::new();
        let mut app = router(args.health.clone());
        let mut metrics = args.metrics;
        let mut viewer = None;
        if let Some(pages) = args.pages {
            let store = crate::store::Store::open(&pages.store).await?;
            let pool = store.pool().clone();
            if pages.approval_pages {
                metrics.pool = Some(pool.clone());
            }
            let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
            let secure = pages.approvals.secure_cookies.unwrap_or(!loopback);
            if secure && pages.approvals.secure_cookies.is_none() {
                tracing::info!(addr = %args.addr,
                    "session cookies are Secure (sent over TLS only): serve the pages behind TLS, \
                     or set approvals.secure_cookies = false for plain HTTP on a trusted network");
            }
            let web = Arc::new(crate::approvals::web::Web::new(
                pool.clone(),
                pages.approvals,
                secure,
            ));
            web.load_revoked().await?;
            if pages.approval_pages {
                metrics.sign_ins = Some(web.clone());
            }
            viewer = Some(web.clone());
            let hook = crate::webex::webhook::Hook::new(
                pool.clone(),
                pages.webex,
                pages.knowledge.clone(),
            )?;
            let console = Arc::new(crate::app::console::Console::new(
                web.clone(),
                pool.clone(),
                pages.tools.clone(),
                pages.knowledge.clone(),
            ));
            let dashboard = crate::app::dashboard::Dashboard::new(
                web.clone(),
                Arc::new(metrics.clone()),
                args.health,
                pool,
                pages.data_dir,
            );
            if pages.approval_pages {
                app = app
                    .merge(crate::approvals::web::routes(web))
                    .merge(crate::webex::webhook::routes(Arc::new(hook)))
                    .merge(crate::app::dashboard::routes(Arc::new(dashboard)))
                    .merge(crate::app::console::routes(console));
            }
        }
        let guarded = MetricsAccess {
            token: args.metrics_token,
            web: viewer,
        };
        if guarded.token.is_none() && guarded.web.as_ref().is_some_and(|w| w.sign_in_required()) {
            tracing::info!(
                "/metrics needs a signed-in session because approvers are configured: \
                 set http.metrics_token (SOC_METRICS_TOKEN) for scrapers"
            );
        }
        let conn_stats = metrics.http.clone();
        app = app.merge(
            axum::Router::new()
                .route("/metrics", get(metrics_text))
                .with_state(Arc::new((metrics, guarded))),
        );
        let ticker = args.ingest.map(|ingest| {
            app = app
                .clone()
                .merge(crate::ingest::http::routes(ingest.clone()));
            let me = myself.clone();
            spawn_watched(
                async move {
                    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
                    loop {
                        every.tick().await;
                        ingest.tick().await;
                    }
                },
                move || {
                    let _ = me.cast(Msg::ServerExited);
                },
            )
        });
        let shutdown = stop.clone();
        let limits = args.limits;
        let app = app.layer(axum::middleware::from_fn_with_state(
            (limits.request_timeout, conn_stats.clone()),
            crate::app::serve::guard,
        ));
        let server = spawn_watched(
            async move {
                // Each request carries its peer address, so the approval pages trust an SSO
                // proxy's header only from the configured proxies.
                crate::app::serve::serve(listener, app, limits, conn_stats, shutdown.clone()).await;
                // Ending is expected only once asked to shut down.
                shutdown.is_cancelled()
            },
            move || {
                let _ = myself.cast(Msg::ServerExited);
            },
        );
        Ok(State {
            stop,
            server: Some(server),
            _ticker: ticker,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        // Stop accepting, let in-flight requests finish, close idle keep-alive connections.
        state.stop.cancel();
        if let Some(server) = state.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err()
        {
            tracing::warn!("http connections did not close in time; dropping them");
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Msg>,
        msg: Msg,
        _state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::ServerExited => Err("http server stopped unexpectedly".into()),
        }
    }
}

/// The routes.
pub(crate) fn router(health: Arc<Health>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .with_state(health)
}

async fn healthz(AxumState(health): AxumState<Arc<Health>>) -> impl IntoResponse {
    let report = health.report();
    let code = if report.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}

/// Who may read `/metrics`: a scraper with the token, or (when people can sign in) a
/// signed-in person.
struct MetricsAccess {
    token: Option<crate::secret::Secret>,
    web: Option<Arc<crate::approvals::web::Web>>,
}

impl MetricsAccess {
    fn allows(&self, headers: &axum::http::HeaderMap, peer: crate::approvals::web::Peer) -> bool {
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let (Some(token), Some(given)) = (&self.token, bearer)
            && constant_time_eq(token.expose().as_bytes(), given.trim().as_bytes())
        {
            return true;
        }
        let signed_in = self
            .web
            .as_ref()
            .and_then(|w| w.viewer(headers, peer))
            .is_some();
        let open = self.token.is_none() && !self.web.as_ref().is_some_and(|w| w.sign_in_required());
        open || signed_in
    }
}

/// Equal bytes, compared in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics_text(
    AxumState(state): AxumState<Arc<(crate::app::metrics::Sources, MetricsAccess)>>,
    peer: crate::approvals::web::Peer,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let (sources, access) = &*state;
    if !access.allows(&headers, peer) {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                axum::http::header::WWW_AUTHENTICATE,
                "Bearer realm=\"metrics\"",
            )],
            "/metrics needs `Authorization: Bearer <http.metrics_token>` or a signed-in session\n",
        )
            .into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        sources.render().await,
    )
        .into_response()
}
