//! The dashboard's handlers and the views their templates render. Host-supplied text goes
//! into views as plain strings (made visible with [`super::shown`]) and is HTML-escaped by
//! askama; nothing here builds markup from it.

use super::auth::{self, LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL_MS};
use super::{chart, pct, shown, when};
use crate::http::{
    build_summary_parts, finding_page, findings_csv as csv_text, host_rows, AppState,
};
use crate::liveness;
use crate::secret;
use crate::store::{
    split_finding_id, AuditEntry, FindingFilter, HostAction, NewSession, Role, Session,
    StateFilter, StoreError,
};
use askama::Template;
use aupwatch_proto::api::{FindingRow, HostRow, Liveness};
use aupwatch_proto::{Category, Severity, Subject};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use std::collections::{BTreeMap, HashMap};

/// An error page (or a redirect to the login form).
pub enum PageError {
    Login,
    Status(StatusCode, String),
}

impl PageError {
    fn store(e: StoreError) -> PageError {
        crate::log(&format!("dashboard: {e}"));
        PageError::Status(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
    }
    fn forbidden(why: &str) -> PageError {
        PageError::Status(StatusCode::FORBIDDEN, why.into())
    }
    fn not_found() -> PageError {
        PageError::Status(StatusCode::NOT_FOUND, "not found".into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login => Redirect::to("/login").into_response(),
            PageError::Status(status, message) => {
                let page = ErrorPage {
                    status: status.as_u16(),
                    message,
                };
                (status, html(&page)).into_response()
            }
        }
    }
}

/// A rendered page (500 if the template fails, which only a bug can make it do).
fn html<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(body) => {
            let mut resp = Response::new(axum::body::Body::from(body));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            resp
        }
        Err(e) => {
            crate::log(&format!("dashboard template: {e}"));
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The logged-in operator (an extractor: no session, no page).
pub struct Operator(pub Session);

impl FromRequestParts<AppState> for Operator {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, PageError> {
        let sid = auth::cookie(&parts.headers, SESSION_COOKIE).ok_or(PageError::Login)?;
        st.store
            .session(secret::hash(&sid), st.clock.now_unix_ms())
            .await
            .map_err(PageError::store)?
            .map(Operator)
            .ok_or(PageError::Login)
    }
}

impl Operator {
    /// Checks a POST: the session's CSRF token, then the role.
    fn may_post(&self, form: &HashMap<String, String>, least: Role) -> Result<(), PageError> {
        let given = form.get("csrf").map(String::as_str).unwrap_or("");
        if !auth::same(given, &self.0.csrf) {
            return Err(PageError::forbidden("missing or wrong CSRF token"));
        }
        if self.0.role < least {
            return Err(PageError::forbidden(&format!(
                "the {} role may not do this",
                self.0.role.as_str()
            )));
        }
        Ok(())
    }
}

/// What every page's frame shows.
pub struct Frame {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    pub can_act: bool,
    pub is_admin: bool,
}

fn frame(op: &Operator) -> Frame {
    Frame {
        user: op.0.user.clone(),
        role: op.0.role.as_str(),
        csrf: op.0.csrf.clone(),
        can_act: op.0.role >= Role::Analyst,
        is_admin: op.0.role >= Role::Admin,
    }
}

fn secure(st: &AppState) -> bool {
    st.config.tls.is_some()
}

// ---- login ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    token: String,
    error: Option<String>,
}

fn login_page(st: &AppState, error: Option<String>, status: StatusCode) -> Response {
    let token = match secret::random_hex(32) {
        Ok(t) => t,
        Err(e) => {
            crate::log(&format!("dashboard: {e}"));
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let mut resp = html(&LoginPage {
        token: token.clone(),
        error,
    });
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(LOGIN_COOKIE, &token, 600, secure(st))) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub async fn login_form(State(st): State<AppState>) -> Response {
    login_page(&st, None, StatusCode::OK)
}

pub async fn login(
    State(st): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let expected = auth::cookie(&headers, LOGIN_COOKIE);
    let given = form.get("login_token").map(String::as_str).unwrap_or("");
    if expected.as_deref().is_none_or(|e| !auth::same(e, given)) {
        return login_page(
            &st,
            Some("The login form expired: try again.".into()),
            StatusCode::FORBIDDEN,
        );
    }
    let name = form.get("name").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let now = st.clock.now_unix_ms();
    let wait = st.logins.wait_secs(&name, now);
    if wait > 0 {
        let mut resp = login_page(
            &st,
            Some(format!(
                "Too many failed logins for this name: try again in {wait} s."
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let user = match st.store.user(name.clone()).await {
        Ok(u) => u,
        Err(e) => return PageError::store(e).into_response(),
    };
    let phc = user.as_ref().map_or_else(
        || auth::dummy_hash().to_string(),
        |u| u.password_hash.clone(),
    );
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &phc))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        st.logins.failed(&name, now);
        return login_page(
            &st,
            Some("Wrong name or password.".into()),
            StatusCode::UNAUTHORIZED,
        );
    };
    let (Ok(sid), Ok(csrf)) = (secret::random_hex(32), secret::random_hex(32)) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
    };
    st.logins.succeeded(&name);
    if let Err(e) = st
        .store
        .create_session(NewSession {
            id_hash: secret::hash(&sid),
            user_id: user.id,
            csrf,
            now_unix_ms: now,
            expires_unix_ms: now + SESSION_TTL_MS,
        })
        .await
    {
        return PageError::store(e).into_response();
    }
    let mut resp = Redirect::to("/").into_response();
    let h = resp.headers_mut();
    for c in [
        auth::set_cookie(SESSION_COOKIE, &sid, SESSION_TTL_MS / 1000, secure(&st)),
        auth::set_cookie(LOGIN_COOKIE, "", 0, secure(&st)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    op.may_post(&form, Role::Viewer)?;
    if let Some(sid) = auth::cookie(&headers, SESSION_COOKIE) {
        st.store
            .delete_session(secret::hash(&sid))
            .await
            .map_err(PageError::store)?;
    }
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(SESSION_COOKIE, "", 0, secure(&st))) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

// ---- views of rows ----

/// A finding row as the list shows it.
pub struct FindingView {
    pub href: String,
    pub host_href: String,
    pub hostname: String,
    pub customer: String,
    pub category: String,
    pub severity: &'static str,
    pub state: String,
    pub subject: String,
    pub signatures: String,
    pub first_seen: String,
    pub last_seen: String,
}

fn subject_line(r: &FindingRow) -> String {
    match r.tracked.as_ref().map(|t| &t.finding.subject) {
        Some(Subject::Process(p)) => shown(&format!("{} (pid {})", p.comm, p.pid)),
        Some(Subject::Interface(i)) => shown(&format!("interface {}", i.name)),
        Some(Subject::Host) => "the host".into(),
        None => "agent".into(),
    }
}

fn finding_view(r: &FindingRow) -> FindingView {
    FindingView {
        href: format!("/findings/{}", pct(&r.id)),
        host_href: format!("/hosts/{}", pct(&r.host_id)),
        hostname: shown(&r.hostname),
        customer: shown(r.customer.as_deref().unwrap_or("")),
        category: shown(&r.category),
        severity: r.severity.as_str(),
        state: shown(&r.state),
        subject: subject_line(r),
        signatures: shown(&r.signatures.join(", ")),
        first_seen: when(r.first_seen_unix_ms),
        last_seen: when(r.last_seen_unix_ms),
    }
}

pub struct HostView {
    pub href: String,
    pub hostname: String,
    pub customer: String,
    pub liveness: &'static str,
    pub last_seen: String,
    pub agent_version: String,
    pub open_findings: u64,
}

fn host_view(h: &HostRow) -> HostView {
    HostView {
        href: format!("/hosts/{}", pct(&h.host_id)),
        hostname: shown(&h.hostname),
        customer: shown(h.labels.get("customer").map_or("", String::as_str)),
        liveness: h.liveness.as_str(),
        last_seen: h.last_seen_unix_ms.map_or_else(|| "never".into(), when),
        agent_version: shown(h.agent_version.as_deref().unwrap_or("")),
        open_findings: h.open_findings,
    }
}

// ---- overview ----

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    frame: Frame,
    hosts: u64,
    by_liveness: Vec<(&'static str, u64)>,
    open_findings: u64,
    severities: Vec<&'static str>,
    /// (category, count per severity in `severities`' order, total).
    by_category: Vec<(String, String, Vec<u64>, u64)>,
    severity_totals: Vec<u64>,
    chart: chart::Chart,
    reports_per_minute: String,
    newest: Vec<FindingView>,
    silent: Vec<HostView>,
}

const HOUR_MS: u64 = 3_600_000;
/// The window reports per minute are averaged over.
const RATE_WINDOW_MS: u64 = 10 * 60_000;

pub async fn overview(State(st): State<AppState>, op: Operator) -> Result<Response, PageError> {
    let now = st.clock.now_unix_ms();
    let hosts = host_rows(st.store.as_ref(), now, &st.config)
        .await
        .map_err(PageError::store)?;
    let counts = st.store.counts(false).await.map_err(PageError::store)?;
    let mut open = counts.open.clone();
    let summary = build_summary_parts(&hosts, counts);
    let silent_n = summary
        .hosts_by_liveness
        .get("silent")
        .copied()
        .unwrap_or(0);
    if silent_n > 0 {
        *open.entry(("agent".into(), "high".into())).or_default() += silent_n;
    }
    let severities: Vec<&'static str> = Severity::ALL.iter().rev().map(|s| s.as_str()).collect();
    let mut cats: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for ((c, s), n) in &open {
        let row = cats
            .entry(c.clone())
            .or_insert_with(|| vec![0; severities.len()]);
        if let Some(i) = severities.iter().position(|v| v == s) {
            row[i] += n;
        }
    }
    let severity_totals = (0..severities.len())
        .map(|i| cats.values().map(|r| r[i]).sum())
        .collect();
    let by_category = cats
        .into_iter()
        .map(|(c, r)| {
            let t = r.iter().sum();
            (shown(&c), format!("/findings?category={}", pct(&c)), r, t)
        })
        .collect();
    // The chart: 7 days of hourly buckets ending with the current hour.
    let end = now / HOUR_MS * HOUR_MS;
    let start = end.saturating_sub(167 * HOUR_MS);
    let activity = st
        .store
        .activity(start, HOUR_MS, now.saturating_sub(RATE_WINDOW_MS))
        .await
        .map_err(PageError::store)?;
    let newest = st
        .store
        .newest_findings(Severity::High, 10)
        .await
        .map_err(PageError::store)?;
    let mut silent: Vec<&HostRow> = hosts
        .iter()
        .filter(|h| h.liveness == Liveness::Silent)
        .collect();
    silent.sort_by_key(|h| h.last_seen_unix_ms);
    let page = OverviewPage {
        frame: frame(&op),
        hosts: summary.hosts,
        by_liveness: Liveness::ALL
            .iter()
            .map(|l| {
                (
                    l.as_str(),
                    summary
                        .hosts_by_liveness
                        .get(l.as_str())
                        .copied()
                        .unwrap_or(0),
                )
            })
            .collect(),
        open_findings: summary.open_findings,
        severities,
        by_category,
        severity_totals,
        chart: chart::chart(start, HOUR_MS, 168, &activity.new, &activity.resolved),
        reports_per_minute: format!(
            "{:.1}",
            activity.reports as f64 / (RATE_WINDOW_MS as f64 / 60_000.0)
        ),
        newest: newest.iter().map(finding_view).collect(),
        silent: silent.into_iter().take(50).map(host_view).collect(),
    };
    Ok(html(&page))
}

// ---- findings list and CSV ----

/// The list's filter form as the URL carries it: the API's parameters (`host`, `customer`,
/// `category`, `severity`, `state`, `signature`, `since`, `until`, `after`, `limit`), empty
/// ones ignored, and `range` (`1h`, `24h`, `7d`, `30d`) turned into an absolute `since`.
struct ListQuery {
    filter: FindingFilter,
    /// The parameters as given (range resolved), for links and the form.
    params: BTreeMap<String, String>,
}

fn list_query(q: &HashMap<String, String>, now: u64) -> Result<ListQuery, PageError> {
    let mut params: BTreeMap<String, String> = q
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.clone(), v.trim().to_string()))
        .collect();
    if let Some(r) = params.remove("range") {
        let ms = match r.as_str() {
            "1h" => HOUR_MS,
            "24h" => 24 * HOUR_MS,
            "7d" => 7 * 24 * HOUR_MS,
            "30d" => 30 * 24 * HOUR_MS,
            _ => return Err(bad(&format!("range {r:?}: 1h, 24h, 7d or 30d"))),
        };
        params.insert("since".into(), now.saturating_sub(ms).to_string());
    }
    if params.contains_key("format") {
        return Err(bad("unknown parameter \"format\""));
    }
    let as_map: HashMap<String, String> = params.clone().into_iter().collect();
    let (filter, _) = crate::http::parse_filter(&as_map).map_err(|e| bad(&e))?;
    Ok(ListQuery { filter, params })
}

fn bad(why: &str) -> PageError {
    PageError::Status(StatusCode::BAD_REQUEST, shown(why))
}

fn query_string(params: &BTreeMap<String, String>, skip: &[&str]) -> String {
    params
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Template)]
#[template(path = "findings.html")]
struct FindingsPage {
    frame: Frame,
    rows: Vec<FindingView>,
    next_href: Option<String>,
    first_href: Option<String>,
    csv_href: String,
    /// The form's current values.
    f: BTreeMap<String, String>,
    categories: Vec<&'static str>,
    severities: Vec<&'static str>,
    states: Vec<&'static str>,
    since_shown: Option<String>,
    until_shown: Option<String>,
    /// The `range` asked for, if any (it became `since`).
    range: String,
}

impl FindingsPage {
    fn val(&self, k: &str) -> String {
        self.f.get(k).cloned().unwrap_or_default()
    }
    fn is(&self, k: &str, v: &str) -> bool {
        self.f.get(k).is_some_and(|x| x == v)
    }
    fn range_is(&self, v: &str) -> bool {
        self.range == v
    }
}

pub async fn findings(
    State(st): State<AppState>,
    op: Operator,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let now = st.clock.now_unix_ms();
    let lq = list_query(&q, now)?;
    let page = finding_page(st.store.as_ref(), now, &st.config, lq.filter)
        .await
        .map_err(PageError::store)?;
    let base = query_string(&lq.params, &["after"]);
    let next_href = page.next.as_ref().map(|n| {
        let mut p = lq.params.clone();
        p.insert("after".into(), n.clone());
        format!("/findings?{}", query_string(&p, &[]))
    });
    let first_href = lq
        .params
        .contains_key("after")
        .then(|| format!("/findings?{base}"));
    let mut categories: Vec<&'static str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    categories.push("agent");
    let p = FindingsPage {
        frame: frame(&op),
        rows: page.findings.iter().map(finding_view).collect(),
        next_href,
        first_href,
        csv_href: format!("/findings.csv?{}", query_string(&lq.params, &[])),
        since_shown: lq
            .params
            .get("since")
            .and_then(|s| s.parse().ok())
            .map(when),
        until_shown: lq
            .params
            .get("until")
            .and_then(|s| s.parse().ok())
            .map(when),
        f: lq
            .params
            .iter()
            .map(|(k, v)| (k.clone(), shown(v)))
            .collect(),
        categories,
        range: q.get("range").cloned().unwrap_or_default(),
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        states: vec!["open", "new", "ongoing", "resolved", "all"],
    };
    Ok(html(&p))
}

/// The list's rows as CSV: the same parameters give the same rows as the page.
pub async fn findings_csv(
    State(st): State<AppState>,
    _op: Operator,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let now = st.clock.now_unix_ms();
    let lq = list_query(&q, now)?;
    let page = finding_page(st.store.as_ref(), now, &st.config, lq.filter)
        .await
        .map_err(PageError::store)?;
    let mut resp = csv_text(&page.findings).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"findings.csv\""),
    );
    Ok(resp)
}

// ---- one finding ----

pub struct MatchView {
    pub signature: String,
    pub severity: &'static str,
    pub description: String,
    pub aup: String,
    pub related_pids: String,
    pub evidence: Vec<(String, String)>,
    pub sockets: Vec<String>,
    pub probe: Option<String>,
}

pub struct TimelineEntry {
    pub at: String,
    pub what: String,
    pub who: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "finding.html")]
struct FindingPageView {
    frame: Frame,
    row: FindingView,
    action_href: String,
    /// (label, value) of the subject.
    subject: Vec<(&'static str, String)>,
    cmdline: Vec<String>,
    matches: Vec<MatchView>,
    timeline: Vec<TimelineEntry>,
    audit: Vec<TimelineEntry>,
    excepted: Option<String>,
    resolved: Option<String>,
}

fn audit_views(log: Vec<AuditEntry>) -> Vec<TimelineEntry> {
    log.into_iter()
        .map(|e| TimelineEntry {
            at: when(e.at_unix_ms),
            what: shown(&e.action),
            who: shown(&e.actor),
            detail: shown(&e.detail),
        })
        .collect()
}

async fn load_finding(st: &AppState, id: &str) -> Result<FindingRow, PageError> {
    let (host_id, tracked_id) = split_finding_id(id).ok_or_else(PageError::not_found)?;
    if tracked_id == liveness::SILENT_SIGNATURE {
        let hosts = host_rows(st.store.as_ref(), st.clock.now_unix_ms(), &st.config)
            .await
            .map_err(PageError::store)?;
        if let Some(r) = hosts
            .iter()
            .filter(|h| h.host_id == host_id)
            .find_map(liveness::silent_row)
        {
            return Ok(r);
        }
    }
    st.store
        .finding(host_id, tracked_id)
        .await
        .map_err(PageError::store)?
        .ok_or_else(PageError::not_found)
}

pub async fn finding(
    State(st): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let row = load_finding(&st, &id).await?;
    let (host_id, tracked_id) = split_finding_id(&row.id).ok_or_else(PageError::not_found)?;
    let events = st
        .store
        .finding_events(host_id, tracked_id)
        .await
        .map_err(PageError::store)?;
    let audit = st
        .store
        .audit_log(format!("finding:{}", row.id))
        .await
        .map_err(PageError::store)?;
    let mut subject = Vec::new();
    let mut cmdline = Vec::new();
    let mut matches = Vec::new();
    let mut excepted = None;
    if let Some(t) = &row.tracked {
        match &t.finding.subject {
            Subject::Process(p) => {
                subject.push(("process", shown(&p.comm)));
                subject.push(("pid", format!("{} (parent {})", p.pid, p.ppid)));
                subject.push((
                    "user",
                    format!(
                        "{} (uid {})",
                        shown(p.user.as_deref().unwrap_or("?")),
                        p.uid
                    ),
                ));
                subject.push((
                    "executable",
                    format!(
                        "{}{}",
                        shown(p.exe.as_deref().unwrap_or("unknown")),
                        if p.exe_deleted { " (deleted)" } else { "" }
                    ),
                ));
                subject.push(("network namespace", p.netns.to_string()));
                if let Some(c) = &p.container {
                    subject.push(("container", shown(c)));
                }
                cmdline = p.cmdline.iter().map(|a| shown(a)).collect();
            }
            Subject::Interface(i) => {
                subject.push(("interface", shown(&i.name)));
                subject.push(("network namespace", i.netns.to_string()));
            }
            Subject::Host => subject.push(("subject", "the host".into())),
        }
        subject.push(("scans", t.scans.to_string()));
        excepted = t.excepted.as_ref().map(|e| {
            shown(&format!(
                "{} ({}{})",
                e.reason,
                e.source,
                e.ticket
                    .as_deref()
                    .map(|t| format!(", ticket {t}"))
                    .unwrap_or_default()
            ))
        });
        for m in &t.finding.matches {
            matches.push(MatchView {
                signature: shown(&m.signature),
                severity: m.severity.as_str(),
                description: shown(&m.description),
                aup: shown(&m.aup),
                related_pids: m
                    .related_pids
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                evidence: m
                    .evidence
                    .iter()
                    .map(|e| (shown(&e.predicate), shown(&e.value)))
                    .collect(),
                sockets: m
                    .sockets
                    .iter()
                    .map(|s| {
                        shown(&format!(
                            "{:?} {} → {} {:?} (netns {}, inode {})",
                            s.protocol,
                            s.local,
                            s.remote.map_or_else(|| "*".into(), |r| r.to_string()),
                            s.state,
                            s.netns,
                            s.inode
                        ))
                    })
                    .collect(),
                probe: m.probe.as_ref().map(|p| {
                    shown(&format!(
                        "{:?}{} at {} ({}): {}",
                        p.verdict,
                        p.protocol.map(|x| format!(" {x:?}")).unwrap_or_default(),
                        p.address,
                        when(p.probed_at_unix_ms),
                        p.evidence
                    ))
                }),
            });
        }
    }
    let page = FindingPageView {
        frame: frame(&op),
        action_href: format!("/findings/{}/action", pct(&row.id)),
        row: finding_view(&row),
        subject,
        cmdline,
        matches,
        timeline: events
            .into_iter()
            .map(|(kind, at)| TimelineEntry {
                at: when(at),
                what: shown(&kind),
                who: "agent".into(),
                detail: String::new(),
            })
            .collect(),
        audit: audit_views(audit),
        excepted,
        resolved: row.resolved_unix_ms.map(when),
    };
    Ok(html(&page))
}

/// The most text an action's note or assignee may carry.
const MAX_DETAIL: usize = 4000;

pub async fn finding_action(
    State(st): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    op.may_post(&form, Role::Analyst)?;
    let row = load_finding(&st, &id).await?;
    let action = form.get("action").map(String::as_str).unwrap_or("");
    let text = form.get("text").map(|s| s.trim()).unwrap_or("");
    if text.chars().count() > MAX_DETAIL {
        return Err(bad("text too long"));
    }
    let (action, detail) = match action {
        "acknowledge" => ("acknowledge", text.to_string()),
        "assign" if !text.is_empty() => ("assign", format!("assigned to {text}")),
        "note" if !text.is_empty() => ("note", text.to_string()),
        "false_positive" => ("false_positive", text.to_string()),
        "assign" | "note" => return Err(bad("this action needs a text")),
        _ => return Err(bad("unknown action")),
    };
    st.store
        .audit(AuditEntry {
            at_unix_ms: st.clock.now_unix_ms(),
            actor: op.0.user.clone(),
            action: action.into(),
            target: format!("finding:{}", row.id),
            detail,
        })
        .await
        .map_err(PageError::store)?;
    Ok(Redirect::to(&format!("/findings/{}", pct(&row.id))).into_response())
}

// ---- one host ----

#[derive(Template)]
#[template(path = "host.html")]
struct HostPage {
    frame: Frame,
    host: HostView,
    action_href: String,
    host_id: String,
    machine_id: String,
    labels: Vec<(String, String)>,
    signature_version: String,
    interval: String,
    enrolled: String,
    anomalies: Vec<(&'static str, String)>,
    open: Vec<FindingView>,
    past: Vec<FindingView>,
    audit: Vec<TimelineEntry>,
}

/// Findings a host page lists at most, open and past each.
const HOST_FINDINGS: usize = 200;

pub async fn host(
    State(st): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let now = st.clock.now_unix_ms();
    let hosts = host_rows(st.store.as_ref(), now, &st.config)
        .await
        .map_err(PageError::store)?;
    let h = hosts
        .into_iter()
        .find(|h| h.host_id == id)
        .ok_or_else(PageError::not_found)?;
    // The store's rows of this host, and its silent row (the host is at hand: no second
    // read of every host, as `finding_page` would do).
    let list = |state| {
        st.store.findings(FindingFilter {
            host: Some(h.host_id.clone()),
            state,
            limit: HOST_FINDINGS,
            ..FindingFilter::default()
        })
    };
    let mut open = list(StateFilter::Open).await.map_err(PageError::store)?;
    open.extend(liveness::silent_row(&h));
    let past = list(StateFilter::Resolved)
        .await
        .map_err(PageError::store)?;
    let audit = st
        .store
        .audit_log(format!("host:{}", h.host_id))
        .await
        .map_err(PageError::store)?;
    let anomalies = vec![
        (
            "sequence gaps (reports missing)",
            h.sequence_gaps.to_string(),
        ),
        ("sequence resets", h.sequence_resets.to_string()),
        ("boot changes", h.boot_changes.to_string()),
        (
            "last anomaly",
            shown(h.last_anomaly.as_deref().unwrap_or("none")),
        ),
    ];
    let page = HostPage {
        frame: frame(&op),
        host: host_view(&h),
        action_href: format!("/hosts/{}/action", pct(&h.host_id)),
        host_id: shown(&h.host_id),
        machine_id: shown(&h.machine_id),
        labels: h.labels.iter().map(|(k, v)| (shown(k), shown(v))).collect(),
        signature_version: shown(h.signature_version.as_deref().unwrap_or("")),
        interval: h
            .interval_secs
            .map_or_else(|| "unknown".into(), |s| format!("{s} s")),
        enrolled: when(h.enrolled_unix_ms),
        anomalies,
        open: open.iter().map(finding_view).collect(),
        past: past.iter().map(finding_view).collect(),
        audit: audit_views(audit),
    };
    Ok(html(&page))
}

pub async fn host_action(
    State(st): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    op.may_post(&form, Role::Admin)?;
    let (name, action) = match form.get("action").map(String::as_str).unwrap_or("") {
        "revoke" => ("revoke", HostAction::Revoke),
        "block" => ("block", HostAction::Block),
        "unblock" => ("unblock", HostAction::Unblock),
        "approve" => ("approve", HostAction::Approve),
        _ => return Err(bad("unknown action")),
    };
    let now = st.clock.now_unix_ms();
    let found = st
        .store
        .host_action(id.clone(), action, now)
        .await
        .map_err(PageError::store)?;
    if !found {
        return Err(PageError::not_found());
    }
    st.store
        .audit(AuditEntry {
            at_unix_ms: now,
            actor: op.0.user.clone(),
            action: name.into(),
            target: format!("host:{id}"),
            detail: String::new(),
        })
        .await
        .map_err(PageError::store)?;
    Ok(Redirect::to(&format!("/hosts/{}", pct(&id))).into_response())
}
