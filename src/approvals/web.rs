//! The approval pages (axum, server-rendered, no external assets).
//!
//! - `GET /login`, `POST /login`, `POST /logout`: local approvers from `[approvals]` sign in
//!   with their password (Argon2); the session is a cookie (`HttpOnly`, `SameSite=Strict`)
//!   holding the name and expiry, signed with HMAC-SHA256. Roles are read from the config at
//!   each request, never from the cookie.
//! - `GET /approvals/{action_id}?decision=approve|reject`: the confirmation page. Opening it
//!   (a click from a card) records nothing; its form does.
//! - `POST /approvals/{action_id}/decision` (`decision`, `reason`, `csrf`): records the
//!   decision once. The CSRF token is an HMAC of the session and the action, so a form
//!   forged elsewhere or copied from another action is refused (403). Unknown action 404, a
//!   signed-in person without the approver role 403, decided before 409 (showing the first),
//!   expired 410.
//! - `GET /approvals?pending=1`: the audit list of proposals and decisions.
//! - Behind an SSO proxy (`sso_header`), the proxy's identity header signs the person in, but
//!   only on requests from `sso_proxies`; their roles come from `approvers`.
//!
//! Action ids hold a `/` (`<ticket>/<step>`): links encode it as `%2F`.
//!
//! Sign-in is throttled per account and per address (`approvals::throttle`: five failures,
//! then locks doubling from 1 s to 15 min); each failure is logged and kept in the store
//! (`sign_in_failures`). A sign-out revokes its session on the server (`revoked_sessions`), so
//! a cookie copied before it stops working; a session also ends when its approver's password
//! hash changes (the hash is part of what the cookie's signature covers).
//!
//! State: the store (every decision) and the signing key. A restart loses sign-ins only when
//! no `session_key` is configured (the key is then random per start).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use sqlx::SqlitePool;

use super::{ApprovalsConfig, Approver, ApproverConfig, DecideError, Proposal};
use crate::proto::{ApprovalDecision, label};
use crate::text::{encode, esc, show};

const COOKIE: &str = "soc_session";

/// The approval pages' state.
pub struct Web {
    /// Password checks (Argon2, ~19 MiB and tens of ms each) run two at a time, off the async
    /// threads, so a flood of sign-ins cannot stall the runtime.
    hashing: tokio::sync::Semaphore,
    pool: SqlitePool,
    config: ApprovalsConfig,
    key: Vec<u8>,
    approvers: HashMap<String, ApproverConfig>,
    /// Whether cookies get `Secure` (served behind TLS).
    secure: bool,
    /// Failed sign-ins per account and address.
    throttle: super::throttle::Throttle,
    /// Signatures of sessions signed out before their expiry.
    revoked: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Sign-in outcomes since start.
    pub(crate) sign_ins: SignInStats,
}

/// Sign-in outcomes since start, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct SignInStats {
    /// Successful sign-ins.
    pub ok: std::sync::atomic::AtomicU64,
    /// Wrong name or password.
    pub failed: std::sync::atomic::AtomicU64,
    /// Refused unchecked because the account or the address was locked.
    pub locked: std::sync::atomic::AtomicU64,
    /// Sessions revoked by a sign-out.
    pub revoked: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("approvers", &self.approvers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Web {
    /// The pages over the store at `pool`, as `config` says; `secure` cookies when served
    /// behind TLS (see [`ApprovalsConfig::secure_cookies`]).
    pub fn new(pool: SqlitePool, config: ApprovalsConfig, secure: bool) -> Self {
        let key = match &config.session_key {
            Some(k) if !k.expose().is_empty() => k.expose().as_bytes().to_vec(),
            _ => {
                let mut key = vec![0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
                key
            }
        };
        let approvers = config
            .approvers
            .iter()
            .map(|a| (a.name.clone(), a.clone()))
            .collect();
        Self {
            hashing: tokio::sync::Semaphore::new(2),
            pool,
            config,
            key,
            approvers,
            secure,
            throttle: super::throttle::Throttle::default(),
            revoked: parking_lot::Mutex::default(),
            sign_ins: SignInStats::default(),
        }
    }

    /// Loads the sessions revoked before this start (and forgets the expired ones).
    pub(crate) async fn load_revoked(&self) -> Result<(), sqlx::Error> {
        let now = crate::proto::now_ms();
        sqlx::query("DELETE FROM revoked_sessions WHERE expires_ms < ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let tags: Vec<(String,)> = sqlx::query_as("SELECT tag FROM revoked_sessions")
            .fetch_all(&self.pool)
            .await?;
        self.revoked.lock().extend(tags.into_iter().map(|(t,)| t));
        Ok(())
    }

    /// What a session's signature covers of its approver's password: the hash itself, so a
    /// new password ends the sessions signed in with the old one.
    fn password_mark(&self, name: &str) -> &str {
        self.approvers
            .get(name)
            .and_then(|a| a.password_hash.as_deref())
            .unwrap_or("")
    }

    /// `; Secure` when cookies must only travel over TLS.
    fn secure_attr(&self) -> &'static str {
        if self.secure { "; Secure" } else { "" }
    }

    fn mac(&self, parts: &[&str]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(&[0]);
        }
        mac
    }

    fn session_cookie(&self, name: &str, now_ms: i64) -> String {
        let expires = now_ms + i64::try_from(self.config.session_ttl_s).unwrap_or(0) * 1000;
        let expires = expires.to_string();
        let tag = hex(&self
            .mac(&["session", name, &expires, self.password_mark(name)])
            .finalize()
            .into_bytes());
        format!(
            "{COOKIE}={}.{expires}.{tag}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            hex(name.as_bytes()),
            self.config.session_ttl_s,
            self.secure_attr()
        )
    }

    /// Whether pages other than the approvals' (the dashboard) need a sign-in: yes as soon
    /// as anyone can sign in (approvers or an SSO proxy are configured).
    pub(crate) fn sign_in_required(&self) -> bool {
        !self.approvers.is_empty() || !self.config.sso_header.is_empty()
    }

    /// The signed-in person, if any.
    pub(crate) fn viewer(&self, headers: &HeaderMap, peer: Peer) -> Option<Approver> {
        self.session(headers, peer).map(|(who, _)| who)
    }

    /// The signed-in person and their session (the cookie's expiry, or `sso`): the SSO
    /// proxy's header when the request comes from a configured proxy, else a valid cookie.
    pub(crate) fn session(&self, headers: &HeaderMap, peer: Peer) -> Option<(Approver, String)> {
        if let Some(person) = self.sso_person(headers, peer) {
            let roles = self
                .approvers
                .get(&person)
                .map(|a| a.roles.clone())
                .unwrap_or_default();
            return Some((
                Approver {
                    name: person,
                    roles,
                },
                self.sso_session(crate::proto::now_ms(), 0),
            ));
        }
        self.cookie_session(headers)
    }

    /// The person the SSO proxy names, if SSO is configured and the request comes from one of
    /// its proxies. The header from anyone else is ignored (and logged): a client cannot name
    /// itself.
    fn sso_person(&self, headers: &HeaderMap, peer: Peer) -> Option<String> {
        if self.config.sso_header.is_empty() {
            return None;
        }
        let mut values = headers.get_all(self.config.sso_header.as_str()).iter();
        let value = values.next()?;
        let trusted = peer
            .0
            .is_some_and(|ip| self.config.sso_proxies.contains(&ip.to_canonical()));
        if !trusted {
            tracing::warn!(peer = ?peer.0, header = %self.config.sso_header,
                "identity header from an address that is not a configured SSO proxy: ignored");
            return None;
        }
        if values.next().is_some() {
            // A proxy that appends instead of replacing would pass a client's own value on.
            tracing::warn!(header = %self.config.sso_header,
                "identity header sent more than once: ignored");
            return None;
        }
        let person = value.to_str().ok()?.trim();
        (!person.is_empty() && person.len() <= 256).then(|| person.to_owned())
    }

    /// The session cookie's name, expiry and signature, if it is one this server signed
    /// (whether or not revoked or expired).
    fn signed_cookie(&self, headers: &HeaderMap) -> Option<(String, i64, String)> {
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))?;
        let mut parts = value.split('.');
        let (name, expires, tag) = (parts.next()?, parts.next()?, parts.next()?);
        let name = String::from_utf8(unhex(name)?).ok()?;
        self.mac(&["session", &name, expires, self.password_mark(&name)])
            .verify_slice(&unhex(tag)?)
            .ok()?;
        Some((name, expires.parse::<i64>().ok()?, tag.to_owned()))
    }

    /// The approver whose session cookie is valid, and its expiry.
    fn cookie_session(&self, headers: &HeaderMap) -> Option<(Approver, String)> {
        let (name, expires, tag) = self.signed_cookie(headers)?;
        if expires < crate::proto::now_ms() || self.revoked.lock().contains(&tag) {
            return None;
        }
        let expires = expires.to_string();
        let found = self.approvers.get(&name)?;
        Some((
            Approver {
                name,
                roles: found.roles.clone(),
            },
            expires.to_owned(),
        ))
    }

    /// The CSRF token of `who`'s `session` for one form: `purpose` and its `subject` (an
    /// action id, a ticket), so a token of one form never passes for another's.
    pub(crate) fn csrf(&self, purpose: Purpose, who: &str, session: &str, subject: &str) -> String {
        hex(&self
            .mac(&[purpose.label(), who, session, subject])
            .finalize()
            .into_bytes())
    }

    /// An SSO sign-in's session: the current `session_ttl_s` window (`back` windows ago), so
    /// its CSRF tokens expire like a cookie session's.
    fn sso_session(&self, now_ms: i64, back: i64) -> String {
        let window = i64::try_from(self.config.session_ttl_s.max(1))
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        format!("sso:{}", now_ms / window - back)
    }

    pub(crate) fn csrf_ok(
        &self,
        purpose: Purpose,
        who: &str,
        session: &str,
        subject: &str,
        token: &str,
    ) -> bool {
        let Some(token) = unhex(token) else {
            return false;
        };
        let check = |session: &str| {
            self.mac(&[purpose.label(), who, session, subject])
                .verify_slice(&token)
                .is_ok()
        };
        // A form opened just before an SSO window ended stays good for one more window.
        check(session)
            || (session.starts_with("sso:") && check(&self.sso_session(crate::proto::now_ms(), 1)))
    }
}

/// What a CSRF token is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// A decision on a proposed action (subject: the action id).
    Decision,
    /// A disposition of a case (subject: the ticket).
    Disposition,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Self::Decision => "csrf",
            Self::Disposition => "csrf-disposition",
        }
    }
}

/// The peer's address, when the server records it (`into_make_service_with_connect_info`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The routes of the approval pages.
pub fn routes(web: Arc<Web>) -> axum::Router {
    axum::Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/approvals", get(list))
        .route("/approvals/{action_id}", get(confirm_page))
        .route("/approvals/{action_id}/decision", post(decide))
        .with_state(web)
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

#[derive(Deserialize)]
struct ConfirmQuery {
    decision: Option<String>,
}

#[derive(Deserialize)]
struct ListQuery {
    pending: Option<String>,
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

async fn login_page(State(web): State<Arc<Web>>, Query(q): Query<NextQuery>) -> Response {
    if !web.sign_in_required() {
        // Nobody can sign in: say so and how to fix it, rather than a form that always fails.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(no_approvers_html(&web)),
        )
            .into_response();
    }
    let note = q.signed_out.is_some().then_some("You are signed out.");
    Html(login_html(
        &web,
        q.next.as_deref().unwrap_or("/approvals"),
        None,
        note,
    ))
    .into_response()
}

/// The page shown where a sign-in would be, when no approver is configured.
fn no_approvers_html(web: &Web) -> String {
    page(
        web,
        "No approvers yet",
        "<p id=\"no-approvers\">Nobody can sign in: this runtime has no approvers configured, \
         so proposed actions can be read on the dashboard and case pages but not decided.</p>\
         <p>To add one, hash a password (at least 12 characters, not a common one) and add an \
         entry to the configuration, then restart:</p>\
         <pre>echo 'a long passphrase of unrelated words' | soc-runtime approvers hash-password\n\n\
         [[approvals.approvers]]\nname = \"ana\"\npassword_hash = \"$argon2id$...\"\n\
         roles = [\"IR Lead On-Call\", \"SOC Shift Lead\"]</pre>\
         <p>Behind a single sign-on proxy, set <code>approvals.sso_header</code> and \
         <code>approvals.sso_proxies</code> instead.</p><p><a href=\"/\">Dashboard</a></p>",
        None,
    )
}

async fn login(State(web): State<Arc<Web>>, peer: Peer, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    let name: String = form.name.trim().chars().take(256).collect();
    let address = peer
        .0
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_default();
    let keys = [format!("account:{name}"), format!("address:{address}")];
    let keys = [keys[0].as_str(), keys[1].as_str()];
    let now = std::time::Instant::now();
    if let Some(wait) = web.throttle.locked(&keys, now) {
        web.sign_ins
            .locked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Counted, not stored: a flood of refused tries must not grow the store.
        tracing::debug!(name = %name.escape_debug(), address, "sign-in refused while locked");
        return locked_response(&web, next, wait);
    }
    // An unknown name is checked against a dummy hash too, so timing does not tell names.
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29jLXJ1bnRpbWUtZHVtbXk$\
                         4Fz7ZmCqj1fZ3mQJQ0m0xL2V7r0b4mDqS5H7bQvG3jE";
    let known = web.approvers.get(form.name.trim());
    // An approver without a password (SSO only) cannot sign in here either.
    let hash = known
        .and_then(|a| a.password_hash.as_deref())
        .unwrap_or(DUMMY)
        .to_owned();
    let password = form.password.clone();
    let checked = match web.hashing.acquire().await {
        #[allow(
            clippy::disallowed_methods,
            reason = "awaited right here: the check ends before the request does"
        )]
        Ok(_permit) => {
            tokio::task::spawn_blocking(move || super::verify_password(&password, &hash)).await
        }
        Err(_) => Ok(false),
    };
    let ok = known.is_some_and(|a| a.password_hash.is_some()) && checked.unwrap_or(false);
    if !ok {
        web.sign_ins
            .failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        web.record_failure(&name, &address, "wrong_password").await;
        if let Some(wait) = web.throttle.failed(&keys, now) {
            return locked_response(&web, next, wait);
        }
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_html(
                &web,
                next,
                Some("Wrong name or password."),
                None,
            )),
        )
            .into_response();
    }
    web.throttle.succeeded(&keys);
    web.sign_ins
        .ok
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cookie = web.session_cookie(form.name.trim(), crate::proto::now_ms());
    let mut response = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    // Revoked on the server, so a copy of the cookie taken before stops working too.
    if let Some((name, expires, tag)) = web.signed_cookie(&headers)
        && expires >= crate::proto::now_ms()
        && web.revoked.lock().insert(tag.clone())
    {
        web.sign_ins
            .revoked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stored =
            sqlx::query("INSERT OR IGNORE INTO revoked_sessions (tag, expires_ms) VALUES (?, ?)")
                .bind(&tag)
                .bind(expires)
                .execute(&web.pool)
                .await;
        if let Err(e) = stored {
            // Still revoked in this process; a restart would forget it.
            tracing::error!(error = %e, approver = %name,
                "cannot store a revoked session: it stays revoked until this process stops");
        }
    }
    let mut response = Redirect::to("/login?signed_out=1").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        web.secure_attr()
    )) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// The answer to a sign-in while its account or address is locked: 429, when to try again.
fn locked_response(web: &Web, next: &str, wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Html(login_html(
            web,
            next,
            Some(&format!(
                "Too many failed sign-ins for this name or from this address: try again in {secs} s."
            )),
            None,
        )),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

impl Web {
    /// Logs a failed sign-in and keeps it in the store's audit of failures.
    async fn record_failure(&self, name: &str, address: &str, reason: &str) {
        tracing::warn!(name = %name.escape_debug(), address, reason, "failed sign-in");
        let stored = sqlx::query(
            "INSERT INTO sign_in_failures (at_ms, name, address, reason) VALUES (?, ?, ?, ?)",
        )
        .bind(crate::proto::now_ms())
        .bind(name)
        .bind(address)
        .bind(reason)
        .execute(&self.pool)
        .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, "cannot record a failed sign-in in the store");
        }
    }
}

/// Only a path of this site: never another host (`//host`, `https://...`).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        // No control characters or spaces either: browsers drop a tab, so "/\t/host" would
        // become "//host".
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.bytes().any(|b| b < 0x21 || b == 0x7f) =>
        {
            n
        }
        _ => "/approvals",
    }
}

fn to_login(path: &str) -> Response {
    Redirect::to(&format!("/login?next={}", encode(path))).into_response()
}

async fn list(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let Some((me, _)) = web.session(&headers, peer) else {
        return to_login("/approvals");
    };
    let pending = q
        .pending
        .as_deref()
        .is_some_and(|p| p == "1" || p == "true");
    match super::list(&web.pool, pending, 500).await {
        Ok(rows) => Html(list_html(&web, &me, &rows, pending)).into_response(),
        Err(e) => error_page(&web, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn confirm_page(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    Path(action_id): Path<String>,
    Query(q): Query<ConfirmQuery>,
) -> Response {
    let Some((me, session)) = web.session(&headers, peer) else {
        let mut path = format!("/approvals/{}", encode(&action_id));
        if let Some(d) = &q.decision {
            let _ = write!(path, "?decision={}", encode(d));
        }
        return to_login(&path);
    };
    // `?decision=` (from a card's button) is kept for old links but chooses nothing.
    let _ = q.decision;
    match super::proposal(&web.pool, &action_id).await {
        Ok(Some(p)) => {
            let csrf = web.csrf(Purpose::Decision, &me.name, &session, &action_id);
            let behind = Behind::load(&web.pool, &p).await;
            Html(confirm_html(&web, &me, &p, &behind, &csrf, None)).into_response()
        }
        Ok(None) => error_page(
            &web,
            StatusCode::NOT_FOUND,
            &format!("No proposed action {action_id}."),
        ),
        Err(e) => error_page(&web, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn decide(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    Path(action_id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let Some((me, session)) = web.session(&headers, peer) else {
        return error_page(&web, StatusCode::UNAUTHORIZED, "Sign in to decide.");
    };
    if !web.csrf_ok(
        Purpose::Decision,
        &me.name,
        &session,
        &action_id,
        &form.csrf,
    ) {
        return error_page(
            &web,
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or invalid: open the approval page again.",
        );
    }
    let decision = match form.decision.as_str() {
        "approve" | "approved" => ApprovalDecision::Approved,
        "reject" | "rejected" => ApprovalDecision::Rejected,
        other => {
            return error_page(
                &web,
                StatusCode::BAD_REQUEST,
                &format!("decision must be approve or reject, not {other:?}"),
            );
        }
    };
    let now = crate::proto::now_ms();
    match super::decide(&web.pool, &action_id, &me, decision, &form.reason, now).await {
        Ok(_) => Redirect::to(&format!("/approvals/{}", encode(&action_id))).into_response(),
        Err(e) => {
            let code = match &e {
                DecideError::NotFound(_) => StatusCode::NOT_FOUND,
                DecideError::Forbidden { .. } => StatusCode::FORBIDDEN,
                DecideError::AlreadyDecided(_) => StatusCode::CONFLICT,
                DecideError::Expired(_) => StatusCode::GONE,
                DecideError::Invalid(_) => StatusCode::BAD_REQUEST,
                DecideError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            // Show the proposal as it stands (with the first decision, for a 409).
            match super::proposal(&web.pool, &action_id).await {
                Ok(Some(p)) => {
                    let csrf = web.csrf(Purpose::Decision, &me.name, &session, &action_id);
                    let behind = Behind::load(&web.pool, &p).await;
                    let page = confirm_html(&web, &me, &p, &behind, &csrf, Some(&e.to_string()));
                    (code, Html(page)).into_response()
                }
                _ => error_page(&web, code, &e.to_string()),
            }
        }
    }
}

fn error_page(web: &Web, code: StatusCode, message: &str) -> Response {
    error_response(web, code, message, None)
}

/// A page with the message, for `me` when signed in.
pub(crate) fn error_response(
    web: &Web,
    code: StatusCode,
    message: &str,
    me: Option<&Approver>,
) -> Response {
    // Messages may quote what a request or an alert said (an id, a ticket): shown inert.
    let body = format!("<p class=\"error\">{}</p>", show(message));
    (code, Html(page(web, "Approvals", &body, me))).into_response()
}

/// The pages' frame: the demo or live banner, the navigation and, for a signed-in person, who
/// they are and a sign-out button.
pub(crate) fn page(web: &Web, title: &str, body: &str, me: Option<&Approver>) -> String {
    let live = web.config.mode.eq_ignore_ascii_case("live");
    let banner = if live {
        "<div class=\"banner live\">LIVE: decisions are recorded for real systems \
         (nothing executes from this page)</div>"
    } else {
        "<div class=\"banner demo\">DEMO: decisions are recorded, nothing is executed</div>"
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title} - soc-runtime</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem}}\
         .banner{{padding:.5rem 1rem;font-weight:bold;color:#fff}}.demo{{background:#2563eb}}\
         .live{{background:#b91c1c}}table{{border-collapse:collapse;width:100%}}\
         td,th{{border:1px solid #ccc;padding:.3rem;text-align:left;vertical-align:top}}\
         .error{{color:#b91c1c;font-weight:bold}}.required{{font-size:1.2rem}}\
         nav{{display:flex;gap:1rem;align-items:center;padding:.4rem 0;border-bottom:1px solid #ccc}}\
         nav form{{margin-left:auto}}.untrusted{{background:#fff8c5;font-family:monospace;\
         white-space:pre-wrap;word-break:break-all}}.muted{{color:#57606a}}\
         .badge{{padding:.05rem .5rem;border-radius:1rem;background:#ddf4ff}}\
         .hot{{background:#ffebe9}}.warn{{background:#fff8c5}}section{{margin:1rem 0}}\
         </style></head><body>{banner}{nav}<h1>{title}</h1>{body}</body></html>",
        title = show(title),
        nav = nav(me)
    )
}

/// The navigation bar: the console's pages and, signed in, a sign-out button.
fn nav(me: Option<&Approver>) -> String {
    let mut html = String::from(
        "<nav><a href=\"/\">Dashboard</a><a href=\"/queues\">Queues</a>\
         <a href=\"/approvals?pending=1\">Pending approvals</a>",
    );
    if let Some(me) = me {
        let _ = write!(
            html,
            "<form method=\"post\" action=\"/logout\"><span>Signed in as <b id=\"me\">{}</b> \
             </span><button type=\"submit\" id=\"sign-out\">Sign out</button></form>",
            esc(&me.name)
        );
    }
    html.push_str("</nav>");
    html
}

fn login_html(web: &Web, next: &str, error: Option<&str>, note: Option<&str>) -> String {
    let mut error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\">{}</p>", esc(e))
    });
    if let Some(n) = note {
        let _ = write!(error, "<p id=\"note\">{}</p>", esc(n));
    }
    page(
        web,
        "Sign in",
        &format!(
            "{error}<form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"next\" value=\"{}\">\
             <p><label>Name <input name=\"name\" autocomplete=\"username\" required></label></p>\
             <p><label>Password <input name=\"password\" type=\"password\" \
             autocomplete=\"current-password\" required></label></p>\
             <p><button type=\"submit\" id=\"sign-in\">Sign in</button></p></form>",
            esc(safe_next(Some(next)))
        ),
        None,
    )
}

pub(crate) fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn decision_text(d: &super::Decision) -> String {
    format!(
        "{} by {} at {}: {}",
        match d.decision {
            ApprovalDecision::Approved => "Approved",
            ApprovalDecision::Rejected => "Rejected",
        },
        show(&d.decided_by),
        when(d.decided_at_ms),
        show(&d.reason)
    )
}

/// What the confirmation page shows of the case behind a proposal.
pub(crate) struct Behind {
    /// The case as recorded, when the store has it.
    pub(crate) view: Option<crate::memory::case_view::CaseView>,
    /// Other cases touching the action's target (`Ok(None)`: not indexed by it).
    pub(crate) blast_radius: Result<Option<i64>, crate::store::StoreError>,
}

impl Behind {
    async fn load(pool: &SqlitePool, p: &Proposal) -> Self {
        let ticket = &p.proposed.case.ticket;
        Self {
            view: crate::memory::case_view::load_recorded(pool, ticket)
                .await
                .ok()
                .flatten(),
            blast_radius: crate::memory::case_view::blast_radius(
                pool,
                &p.proposed.step.action,
                &p.proposed.step.target,
                &p.proposed.case,
            )
            .await,
        }
    }
}

/// What an action will do, in words an approver can check.
fn effect(action: &str, target: &str) -> String {
    let target = show(target);
    match action {
        "isolate_host" => format!(
            "Cut <b>{target}</b> off the network (EDR network containment): it keeps running but \
             reaches nothing and nothing reaches it, until it is released."
        ),
        "block_ip" => {
            format!("Block all traffic from and to <b>{target}</b> at the perimeter firewall.")
        }
        "disable_account" => format!(
            "Disable the account <b>{target}</b>: its sessions end and it cannot sign in until \
             it is re-enabled."
        ),
        other => format!("{} on <b>{target}</b>.", show(other)),
    }
}

fn confirm_html(
    web: &Web,
    me: &Approver,
    p: &Proposal,
    behind: &Behind,
    csrf: &str,
    error: Option<&str>,
) -> String {
    let a = &p.proposed;
    let case_link = format!("/cases/{}", encode(&a.case.ticket));
    let mut body = String::new();
    if let Some(e) = error {
        let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(e));
    }
    let _ = write!(
        body,
        "<p class=\"required\">Action required from: <strong id=\"approver-role\">{}</strong></p>\
         <section id=\"what\"><h2>What will happen</h2>\
         <table><tr><th>Action</th><td id=\"action\">{} on {}</td></tr>\
         <tr><th>Effect</th><td id=\"effect\">{}</td></tr>\
         <tr><th>Blast radius</th><td id=\"blast-radius\">{}</td></tr>\
         <tr><th>Executed by</th><td>Nothing executes from this page: the decision is recorded \
         and published as an ActionDecision for your responders.</td></tr>\
         <tr><th>Severity</th><td>{}</td></tr>\
         <tr><th>Proposed by</th><td>{} at {}</td></tr><tr><th>Expires</th><td>{}</td></tr>\
         </table></section>",
        esc(&a.approver_role),
        show(&a.step.action),
        show(&a.step.target),
        effect(&a.step.action, &a.step.target),
        match &behind.blast_radius {
            Ok(Some(0)) => "no other case touches this target".to_owned(),
            Ok(Some(n)) => format!("{n} other case(s) at this site touch this target"),
            Ok(None) => "unknown: case memory does not index this target (an account, a \
                         reserved address); search for it before deciding"
                .to_owned(),
            Err(e) => format!(
                "unknown: the store could not be read ({})",
                esc(&e.to_string())
            ),
        },
        label(&a.severity),
        esc(&p.proposed_by),
        when(p.proposed_at_ms),
        when(a.expires_at_ms),
    );
    // Why: the evidence the proposal rests on, then the case behind it.
    body.push_str("<section id=\"why\"><h2>Why</h2>");
    if a.step.evidence.is_empty() {
        body.push_str(
            "<p class=\"warn\" id=\"no-evidence\">The proposal records no evidence for this \
             step: read the case before deciding.</p>",
        );
    } else {
        body.push_str("<ul id=\"evidence\">");
        for e in &a.step.evidence {
            let _ = write!(body, "<li>{}</li>", show(e));
        }
        body.push_str("</ul>");
    }
    let _ = write!(
        body,
        "<table><tr><th>Case</th><td id=\"ticket\"><a href=\"{case_link}\">{}</a></td></tr>\
         <tr><th>Rule</th><td>{} ({})</td></tr><tr><th>Host</th><td>{}</td></tr>\
         <tr><th>User</th><td>{}</td></tr><tr><th>Sources</th><td>{}</td></tr>\
         <tr><th>Destinations</th><td>{}</td></tr>\
         <tr><th>Alerts</th><td>{} from {} to {}</td></tr>\
         <tr><th>Plan</th><td><a id=\"plan-link\" href=\"{case_link}#plan\">{}</a></td></tr>",
        show(&a.case.ticket),
        show(&a.case.rule_name),
        show(&a.case.rule_id),
        show(&a.case.host),
        show(a.case.user.as_deref().unwrap_or("-")),
        show(&or_dash(&a.case.src_ips.join(", "))),
        show(&or_dash(&a.case.dest_ips.join(", "))),
        a.case.alert_count,
        show(&a.case.first_seen),
        show(&a.case.last_seen),
        esc(&a.plan_id),
    );
    if let Some(v) = &behind.view {
        for s in v
            .steps
            .iter()
            .filter(|s| s.confidence.is_some() || s.meta.is_some())
        {
            let _ = write!(
                body,
                "<tr><th>{}</th><td>{}{}<br><span class=\"muted\">{}</span></td></tr>",
                esc(&s.role),
                show(&s.headline),
                s.confidence
                    .map_or(String::new(), |c| format!(", confidence {c:.2}")),
                show(s.details.first().map_or("", String::as_str)),
            );
        }
        if !v.techniques.is_empty() {
            let _ = write!(
                body,
                "<tr><th>Threat intel</th><td>{}{}</td></tr>",
                v.actor
                    .as_deref()
                    .map_or(String::new(), |a| format!("{}; ", show(a))),
                v.techniques
                    .iter()
                    .map(|t| format!("{} {}", show(&t.id), show(&t.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !v.precedents.is_empty() {
            let _ = write!(
                body,
                "<tr><th>Precedents</th><td>{}</td></tr>",
                v.precedents
                    .iter()
                    .take(5)
                    .map(|p| format!(
                        "<a href=\"/cases/{}\">{}</a> (analysts: {})",
                        encode(&p.ticket),
                        show(&p.ticket),
                        p.disposition.label()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    body.push_str("</table></section>");
    if let Some(d) = &p.decision {
        let _ = write!(body, "<p id=\"decision\">{}</p>", decision_text(d));
    } else if !me.holds(&a.approver_role) {
        let _ = write!(
            body,
            "<p id=\"read-only\">Read only: you ({}) do not hold the role {}.</p>",
            esc(&me.name),
            esc(&a.approver_role)
        );
    } else if crate::proto::now_ms() > a.expires_at_ms {
        let _ = write!(body, "<p id=\"expired\">This proposal has expired.</p>");
    } else {
        // No choice is made for the approver: the form is refused until one is picked.
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/approvals/{}/decision\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <fieldset><legend>Your decision</legend>\
             <p><label><input type=\"radio\" name=\"decision\" value=\"approve\" required> \
             Approve</label> <label><input type=\"radio\" name=\"decision\" value=\"reject\"> \
             Reject</label></p>\
             <p><label>Reason<br><textarea name=\"reason\" rows=\"3\" cols=\"60\"></textarea>\
             </label></p><p><button type=\"submit\" id=\"confirm\">Confirm decision as {}</button>\
             </p></fieldset></form>",
            encode(&a.action_id),
            esc(&me.name)
        );
    }
    body.push_str("<p><a href=\"/approvals\">All approvals</a></p>");
    page(web, "Confirm a proposed action", &body, Some(me))
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

fn list_html(web: &Web, me: &Approver, rows: &[Proposal], pending: bool) -> String {
    let mut body = format!(
        "<p>Signed in as {} ({}). <a href=\"/approvals{}\">{}</a></p>\
         <table><tr><th>Proposed</th><th>Action</th><th>Ticket</th><th>Severity</th>\
         <th>For</th><th>Decision</th></tr>",
        esc(&me.name),
        esc(&me.roles.join(", ")),
        if pending { "" } else { "?pending=1" },
        if pending { "All" } else { "Pending only" }
    );
    for p in rows {
        let a = &p.proposed;
        let _ = write!(
            body,
            "<tr><td>{}</td><td><a href=\"/approvals/{}\">{} on {}</a></td>\
             <td><a href=\"/cases/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            when(p.proposed_at_ms),
            encode(&a.action_id),
            show(&a.step.action),
            show(&a.step.target),
            encode(&a.case.ticket),
            show(&a.case.ticket),
            label(&a.severity),
            esc(&a.approver_role),
            p.decision
                .as_ref()
                .map_or_else(|| "pending".to_owned(), decision_text)
        );
    }
    body.push_str("</table>");
    page(web, "Approvals", &body, Some(me))
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_encoding_and_redirects_are_safe() {
        assert_eq!(
            esc("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
        assert_eq!(encode("t-1/contain-host"), "t-1%2Fcontain-host");
        assert_eq!(safe_next(Some("//evil.example/")), "/approvals");
        assert_eq!(safe_next(Some("https://evil.example/")), "/approvals");
        assert_eq!(safe_next(Some("/approvals/x")), "/approvals/x");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/approvals");
        assert_eq!(safe_next(Some("/ /evil.example")), "/approvals");
        assert_eq!(unhex(&hex(b"ana")).unwrap(), b"ana");
        assert!(unhex("zz").is_none() && unhex("abc").is_none());
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = super::super::hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(super::super::verify_password("correct horse", &hash));
        assert!(!super::super::verify_password("wrong", &hash));
        assert!(!super::super::verify_password("x", "not a hash"));
    }
}
