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
use crate::proto::ApprovalDecision;
use crate::text::{encode, esc};

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
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("approvers", &self.approvers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Web {
    /// The pages over the store at `pool`, as `config` says.
    pub fn new(pool: SqlitePool, config: ApprovalsConfig) -> Self {
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
        }
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
            .mac(&["session", name, &expires])
            .finalize()
            .into_bytes());
        format!(
            "{COOKIE}={}.{expires}.{tag}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            hex(name.as_bytes()),
            self.config.session_ttl_s
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
    fn session(&self, headers: &HeaderMap, peer: Peer) -> Option<(Approver, String)> {
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

    /// The approver whose session cookie is valid, and its expiry.
    fn cookie_session(&self, headers: &HeaderMap) -> Option<(Approver, String)> {
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))?;
        let mut parts = value.split('.');
        let (name, expires, tag) = (parts.next()?, parts.next()?, parts.next()?);
        let name = String::from_utf8(unhex(name)?).ok()?;
        self.mac(&["session", &name, expires])
            .verify_slice(&unhex(tag)?)
            .ok()?;
        if expires.parse::<i64>().ok()? < crate::proto::now_ms() {
            return None;
        }
        let found = self.approvers.get(&name)?;
        Some((
            Approver {
                name,
                roles: found.roles.clone(),
            },
            expires.to_owned(),
        ))
    }

    fn csrf(&self, who: &str, session: &str, action_id: &str) -> String {
        hex(&self
            .mac(&["csrf", who, session, action_id])
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

    fn csrf_ok(&self, who: &str, session: &str, action_id: &str, token: &str) -> bool {
        let Some(token) = unhex(token) else {
            return false;
        };
        let check = |session: &str| {
            self.mac(&["csrf", who, session, action_id])
                .verify_slice(&token)
                .is_ok()
        };
        // A form opened just before an SSO window ended stays good for one more window.
        check(session)
            || (session.starts_with("sso:") && check(&self.sso_session(crate::proto::now_ms(), 1)))
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
    decision: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

async fn login_page(State(web): State<Arc<Web>>, Query(q): Query<NextQuery>) -> Html<String> {
    Html(login_html(
        &web,
        q.next.as_deref().unwrap_or("/approvals"),
        None,
    ))
}

async fn login(State(web): State<Arc<Web>>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
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
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_html(&web, next, Some("Wrong name or password."))),
        )
            .into_response();
    }
    let cookie = web.session_cookie(form.name.trim(), crate::proto::now_ms());
    let mut response = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn logout() -> Response {
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("soc_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
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
    match super::proposal(&web.pool, &action_id).await {
        Ok(Some(p)) => {
            let csrf = web.csrf(&me.name, &session, &action_id);
            Html(confirm_html(
                &web,
                &me,
                &p,
                q.decision.as_deref(),
                &csrf,
                None,
            ))
            .into_response()
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
    if !web.csrf_ok(&me.name, &session, &action_id, &form.csrf) {
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
                    let csrf = web.csrf(&me.name, &session, &action_id);
                    let page = confirm_html(&web, &me, &p, None, &csrf, Some(&e.to_string()));
                    (code, Html(page)).into_response()
                }
                _ => error_page(&web, code, &e.to_string()),
            }
        }
    }
}

fn error_page(web: &Web, code: StatusCode, message: &str) -> Response {
    let body = format!("<p class=\"error\">{}</p>", esc(message));
    (code, Html(page(web, "Approvals", &body))).into_response()
}

fn page(web: &Web, title: &str, body: &str) -> String {
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
         .error{{color:#b91c1c;font-weight:bold}}.required{{font-size:1.2rem}}</style></head>\
         <body>{banner}<h1>{title}</h1>{body}</body></html>",
        title = esc(title)
    )
}

fn login_html(web: &Web, next: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\">{}</p>", esc(e))
    });
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
    )
}

fn when(ms: i64) -> String {
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
        esc(&d.decided_by),
        when(d.decided_at_ms),
        esc(&d.reason)
    )
}

fn confirm_html(
    web: &Web,
    me: &Approver,
    p: &Proposal,
    wanted: Option<&str>,
    csrf: &str,
    error: Option<&str>,
) -> String {
    let a = &p.proposed;
    let mut body = String::new();
    if let Some(e) = error {
        let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(e));
    }
    let _ = write!(
        body,
        "<p class=\"required\">Action required from: <strong id=\"approver-role\">{}</strong></p>\
         <table><tr><th>Action</th><td id=\"action\">{} on {}</td></tr>\
         <tr><th>Why</th><td>{}</td></tr>\
         <tr><th>Ticket</th><td id=\"ticket\">{}</td></tr>\
         <tr><th>Host</th><td>{}</td></tr><tr><th>User</th><td>{}</td></tr>\
         <tr><th>Rule</th><td>{} ({})</td></tr>\
         <tr><th>Severity</th><td>{:?}</td></tr><tr><th>Plan</th><td>{}</td></tr>\
         <tr><th>Proposed by</th><td>{} at {}</td></tr><tr><th>Expires</th><td>{}</td></tr></table>",
        esc(&a.approver_role),
        esc(&a.step.action),
        esc(&a.step.target),
        esc(&a.step.description),
        esc(&a.case.ticket),
        esc(&a.case.host),
        esc(a.case.user.as_deref().unwrap_or("-")),
        esc(&a.case.rule_name),
        esc(&a.case.rule_id),
        a.severity,
        esc(&a.plan_id),
        esc(&p.proposed_by),
        when(p.proposed_at_ms),
        when(a.expires_at_ms),
    );
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
        let approve = wanted != Some("reject");
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/approvals/{}/decision\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <p><label><input type=\"radio\" name=\"decision\" value=\"approve\"{}> Approve</label>\
             <label><input type=\"radio\" name=\"decision\" value=\"reject\"{}> Reject</label></p>\
             <p><label>Reason<br><textarea name=\"reason\" rows=\"3\" cols=\"60\"></textarea>\
             </label></p><p><button type=\"submit\" id=\"confirm\">Confirm decision as {}</button>\
             </p></form>",
            encode(&a.action_id),
            if approve { " checked" } else { "" },
            if approve { "" } else { " checked" },
            esc(&me.name)
        );
    }
    body.push_str("<p><a href=\"/approvals\">All approvals</a></p>");
    page(web, "Confirm a proposed action", &body)
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
            "<tr><td>{}</td><td><a href=\"/approvals/{}\">{} on {}</a></td><td>{}</td>\
             <td>{:?}</td><td>{}</td><td>{}</td></tr>",
            when(p.proposed_at_ms),
            encode(&a.action_id),
            esc(&a.step.action),
            esc(&a.step.target),
            esc(&a.case.ticket),
            a.severity,
            esc(&a.approver_role),
            p.decision
                .as_ref()
                .map_or_else(|| "pending".to_owned(), decision_text)
        );
    }
    body.push_str("</table>");
    page(web, "Approvals", &body)
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
