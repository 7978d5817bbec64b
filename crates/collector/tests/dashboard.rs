//! The web dashboard through `app()` with `tower::ServiceExt::oneshot`: logins through the
//! real form, sessions, CSRF, roles, security headers, the list against its CSV, and host
//! strings that must come out as text, never as markup.

mod common;

use aupwatch_collector::clock::{Clock, ManualClock};
use aupwatch_collector::config::Config;
use aupwatch_collector::http::{app, AppState};
use aupwatch_collector::metrics::{Histogram, Metrics};
use aupwatch_collector::secret;
use aupwatch_collector::store::sqlite::SqliteStore;
use aupwatch_collector::store::{EnrollOutcome, Enrollment, Role, Store};
use aupwatch_collector::web::{auth, pct, CSP};
use aupwatch_proto::{Category, Subject};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use std::collections::BTreeMap;
use std::sync::Arc;
use tower::ServiceExt;

const T0: u64 = 1_796_659_300_000;
const PASSWORD: &str = "correct horse battery";
const HOSTILE_COMM: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_ARG: &str = "<script>alert(2)</script>\u{1b}[31mred";
const HOSTILE_HOST: &str = "vm-<b>bold</b>\"'&";

struct Fixture {
    state: AppState,
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }
    /// The value of the first hidden input `name`.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let at = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        self.body[at..].split('"').next().unwrap_or("").to_string()
    }
}

/// `name=value` of a `Set-Cookie` line.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or("").to_string()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn fixture() -> Fixture {
    fixture_with(Config::default()).await
}

async fn fixture_with(config: Config) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            &dir.path().join("c.db"),
            64,
            16,
            Arc::new(Histogram::default()),
        )
        .expect("open"),
    );
    let clock = Arc::new(ManualClock::new(T0));
    let state = AppState {
        store: store.clone(),
        clock: clock.clone() as Arc<dyn Clock>,
        config: Arc::new(config),
        metrics: Arc::new(Metrics::default()),
        alerts: Arc::new(aupwatch_collector::alerts::Alerter::disabled()),
        auth_cache: Default::default(),
        logins: Default::default(),
    };
    let f = Fixture {
        state,
        clock,
        store,
        _dir: dir,
    };
    f.seed().await;
    f
}

impl Fixture {
    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = app(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut r = Request::get(path);
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        self.send(r.body(Body::empty()).expect("request")).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, body: String) -> Answer {
        let mut r =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        self.send(r.body(Body::from(body)).expect("request")).await
    }

    /// Two hosts: one hostile (its hostname, process name and command line), one plain,
    /// with findings in two categories.
    async fn seed(&self) {
        self.store
            .create_secret(secret::hash("s"), Some("c-1042".into()), T0)
            .await
            .expect("secret");
        for (m, hostname, n) in [("m1", HOSTILE_HOST, 3), ("m2", "vm-plain", 2)] {
            let out = self
                .store
                .enroll(Enrollment {
                    secret_hash: secret::hash("s"),
                    machine_id: m.into(),
                    hostname: hostname.into(),
                    agent_version: "0.1.0".into(),
                    labels: BTreeMap::from([("customer".to_string(), "c-1042".to_string())]),
                    new_host_id: format!("h-{m}"),
                    node_key_hash: secret::hash(&format!("k-{m}")),
                    require_approval: false,
                    now_unix_ms: T0 - 60_000,
                    in_use_intervals: 2,
                })
                .await
                .expect("enroll");
            let EnrollOutcome::Enrolled { host_id, .. } = out else {
                panic!("{out:?}");
            };
            let mut r = common::report(&format!("r-{m}"), m, 1);
            r.hostname = hostname.into();
            let mut open = Vec::new();
            for i in 0..n {
                let cat = if i % 2 == 0 {
                    Category::Mining
                } else {
                    Category::Proxy
                };
                let mut t = common::finding(&format!("t{i}"), cat, &format!("sig.{i}"));
                if let Subject::Process(p) = &mut t.finding.subject {
                    p.comm = HOSTILE_COMM.into();
                    p.cmdline = vec!["./miner".into(), HOSTILE_ARG.into()];
                }
                open.push(t);
            }
            r.open_findings = open;
            r.events.clear();
            self.store
                .ingest(host_id, vec![r], T0 - 30_000)
                .await
                .expect("ingest");
        }
    }

    /// Creates an account and logs in through the form: the session cookie and the
    /// page's CSRF token.
    async fn login(&self, name: &str, role: Role) -> (String, String) {
        let hash = auth::hash_password(PASSWORD).expect("hash");
        self.store
            .create_user(name.into(), role, hash, T0)
            .await
            .expect("create")
            .expect("new");
        let page = self.get("/login", None).await;
        assert_eq!(page.status, StatusCode::OK);
        let login_cookie = cookie_pair(&page.set_cookies()[0]);
        let token = page.hidden("login_token");
        let a = self
            .post(
                "/login",
                Some(&login_cookie),
                form(&[
                    ("login_token", &token),
                    ("name", name),
                    ("password", PASSWORD),
                ]),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        assert_eq!(a.location(), "/");
        let set = a
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("aupwatch_session="))
            .expect("session cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
            "{set}"
        );
        assert_eq!(
            set.contains("; Secure"),
            self.state.config.tls.is_some(),
            "Secure exactly over TLS: {set}"
        );
        let cookie = cookie_pair(&set);
        let home = self.get("/", Some(&cookie)).await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        let csrf = home.hidden("csrf");
        (cookie, csrf)
    }
}

#[tokio::test]
async fn pages_need_a_login() {
    let f = fixture().await;
    for path in [
        "/",
        "/findings",
        "/findings.csv",
        "/findings/h-m1:t0",
        "/hosts/h-m1",
    ] {
        let a = f.get(path, None).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(a.location(), "/login", "{path}");
    }
    let a = f.get("/", Some("aupwatch_session=00ff")).await;
    assert_eq!(a.location(), "/login", "an unknown session");
    let a = f
        .post(
            "/findings/h-m1:t0/action",
            None,
            form(&[("action", "note")]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(f.store.count_rows("audit").await.expect("count"), 0);
    // The login page and the stylesheet are public.
    assert_eq!(f.get("/login", None).await.status, StatusCode::OK);
    let css = f.get("/static/dashboard.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .starts_with("text/css"));
}

#[tokio::test]
async fn logins_are_checked_and_sessions_end() {
    let f = fixture().await;
    let (cookie, csrf) = f.login("ana", Role::Analyst).await;
    // A wrong password, an unknown name, a missing login token.
    let page = f.get("/login", None).await;
    let lc = cookie_pair(&page.set_cookies()[0]);
    let token = page.hidden("login_token");
    for (name, pw) in [("ana", "wrong password!!"), ("nobody", PASSWORD)] {
        let a = f
            .post(
                "/login",
                Some(&lc),
                form(&[("login_token", &token), ("name", name), ("password", pw)]),
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(a.body.contains("Wrong name or password"));
        assert!(a
            .set_cookies()
            .iter()
            .all(|c| !c.starts_with("aupwatch_session=")));
    }
    let a = f
        .post(
            "/login",
            None,
            form(&[("name", "ana"), ("password", PASSWORD)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "no login token");
    // Logout needs the CSRF token too, then the session is gone.
    let a = f.post("/logout", Some(&cookie), form(&[])).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = f
        .post("/logout", Some(&cookie), form(&[("csrf", &csrf)]))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), "/login");
    assert_eq!(f.get("/", Some(&cookie)).await.location(), "/login");
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let f = fixture().await;
    let (cookie, _) = f.login("vic", Role::Viewer).await;
    for path in [
        "/",
        "/findings",
        "/findings/h-m1:t0",
        "/hosts/h-m1",
        "/login",
    ] {
        let a = f.get(path, Some(&cookie)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let h = |k: &str| a.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(h("content-security-policy"), CSP, "{path}");
        assert!(CSP.starts_with("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"));
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("referrer-policy"), "no-referrer");
        assert!(!a.body.contains("<script"), "{path}: no script at all");
        assert!(
            !a.body.contains("style=\""),
            "{path}: no inline style (CSP)"
        );
    }
}

#[tokio::test]
async fn posts_need_the_sessions_csrf_token() {
    let f = fixture().await;
    let (cookie, csrf) = f.login("ana", Role::Analyst).await;
    let path = format!("/findings/{}/action", pct("h-m2:t0"));
    for body in [
        form(&[("action", "acknowledge")]),
        form(&[("action", "acknowledge"), ("csrf", "00")]),
        form(&[("action", "acknowledge"), ("csrf", &csrf[..csrf.len() - 1])]),
    ] {
        let a = f.post(&path, Some(&cookie), body).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert!(a.body.contains("CSRF"));
    }
    assert_eq!(f.store.count_rows("audit").await.expect("count"), 0);
    // Another session's token is not this one's.
    let (_, other) = f.login("bob", Role::Analyst).await;
    let a = f
        .post(
            &path,
            Some(&cookie),
            form(&[("action", "acknowledge"), ("csrf", &other)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // With it: written, with who and when, and shown on the page.
    for (action, text) in [
        ("acknowledge", ""),
        ("assign", "noc-team"),
        ("note", "called <the> customer"),
        ("false_positive", "lab box"),
    ] {
        let a = f
            .post(
                &path,
                Some(&cookie),
                form(&[("action", action), ("text", text), ("csrf", &csrf)]),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{action}: {}", a.body);
    }
    let page = f
        .get(&format!("/findings/{}", pct("h-m2:t0")), Some(&cookie))
        .await;
    for s in [
        "acknowledge",
        "assigned to noc-team",
        "called &#60;the&#62; customer",
        "false_positive",
        "ana",
    ] {
        assert!(page.body.contains(s), "{s}");
    }
    let log = f
        .store
        .audit_log("finding:h-m2:t0".into())
        .await
        .expect("log");
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|e| e.actor == "ana" && e.at_unix_ms == T0));
}

#[tokio::test]
async fn viewers_see_no_actions_and_their_posts_are_refused() {
    let f = fixture().await;
    let (cookie, csrf) = f.login("vic", Role::Viewer).await;
    let page = f.get("/findings/h-m1:t0", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("name=\"action\""), "no action buttons");
    let host = f.get("/hosts/h-m1", Some(&cookie)).await;
    assert!(!host.body.contains("name=\"action\""));
    let a = f
        .post(
            "/findings/h-m1:t0/action",
            Some(&cookie),
            form(&[("action", "acknowledge"), ("csrf", &csrf)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = f
        .post(
            "/hosts/h-m1/action",
            Some(&cookie),
            form(&[("action", "block"), ("csrf", &csrf)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // An analyst acts on findings, not on hosts; an admin on both, audited.
    let (ac, acsrf) = f.login("ana", Role::Analyst).await;
    let finding = f.get("/findings/h-m1:t0", Some(&ac)).await;
    assert!(finding.body.contains("name=\"action\""));
    let a = f
        .post(
            "/hosts/h-m1/action",
            Some(&ac),
            form(&[("action", "block"), ("csrf", &acsrf)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(f.store.count_rows("audit").await.expect("count"), 0);
    let (dc, dcsrf) = f.login("root", Role::Admin).await;
    let a = f
        .post(
            "/hosts/h-m1/action",
            Some(&dc),
            form(&[("action", "block"), ("csrf", &dcsrf)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let host = f.get("/hosts/h-m1", Some(&dc)).await;
    assert!(host.body.contains("blocked"), "liveness shows the block");
    assert_eq!(
        f.store
            .audit_log("host:h-m1".into())
            .await
            .expect("log")
            .len(),
        1
    );
}

/// The finding ids a list page links to, in order.
fn listed_ids(html: &str) -> Vec<String> {
    html.split("href=\"/findings/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_csv_has_exactly_the_rows_of_the_page() {
    let f = fixture().await;
    let (cookie, _) = f.login("vic", Role::Viewer).await;
    let all = f.get("/findings?state=all", Some(&cookie)).await;
    assert_eq!(listed_ids(&all.body).len(), 5);
    for q in [
        "category=mining",
        "category=proxy&host=h-m1",
        "customer=c-1042&severity=high&signature=sig.0",
        "limit=2",
        "limit=2&after=h-m1%3At1",
        "range=24h&category=mining",
        "category=&severity=&host=",
    ] {
        let page = f.get(&format!("/findings?{q}"), Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{q}: {}", page.body);
        let csv = f.get(&format!("/findings.csv?{q}"), Some(&cookie)).await;
        assert_eq!(csv.status, StatusCode::OK, "{q}");
        let csv_ids: Vec<String> = csv
            .body
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').next())
            .map(pct)
            .collect();
        assert_eq!(listed_ids(&page.body), csv_ids, "{q}");
        // The page's own CSV link carries the same filter.
        let href = page.hidden_href("csv");
        let linked = f.get(&href, Some(&cookie)).await;
        assert_eq!(linked.body, csv.body, "{q}: {href}");
    }
    let ranged = f.get("/findings?range=24h", Some(&cookie)).await;
    assert!(
        ranged.body.contains("<option value=\"24h\" selected>"),
        "the range stays chosen"
    );
    assert!(
        !ranged.body.contains("name=\"since\""),
        "no stale since beside a range"
    );
    let narrowed = f.get("/findings?category=proxy", Some(&cookie)).await;
    assert_eq!(
        listed_ids(&narrowed.body).len(),
        2,
        "a filter narrows the list"
    );
    let paged = f.get("/findings?limit=2", Some(&cookie)).await;
    assert!(paged.body.contains("id=\"next\""), "a next page link");
    assert_eq!(
        f.get("/findings?severity=bogus", Some(&cookie))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        f.get("/findings?format=json", Some(&cookie)).await.status,
        StatusCode::BAD_REQUEST
    );
}

impl Answer {
    /// The `href` of the element with this id, entities undone.
    fn hidden_href(&self, id: &str) -> String {
        let marker = "href=\"";
        let tag_end = self
            .body
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id}"));
        let start = self.body[..tag_end].rfind(marker).expect("href") + marker.len();
        self.body[start..]
            .split('"')
            .next()
            .unwrap_or("")
            .replace("&#38;", "&")
    }
}

#[tokio::test]
async fn host_strings_are_text_never_markup() {
    let f = fixture().await;
    let (cookie, _) = f.login("vic", Role::Viewer).await;
    let id = pct("h-m1:t0");
    for path in [
        "/".to_string(),
        "/findings".to_string(),
        format!("/findings/{id}"),
        "/hosts/h-m1".to_string(),
    ] {
        let a = f.get(&path, Some(&cookie)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let b = &a.body;
        assert!(
            !b.contains("<img"),
            "{path}: an element from the process name"
        );
        assert!(!b.contains("<script"), "{path}");
        assert!(
            !b.contains("<b>bold"),
            "{path}: an element from the hostname"
        );
        assert!(!b.contains('\u{1b}'), "{path}: a raw escape character");
        if path != "/" {
            assert!(
                b.contains("&#60;img src=x onerror=alert(1)&#62;"),
                "{path}: shown as text"
            );
        }
    }
    let page = f.get(&format!("/findings/{id}"), Some(&cookie)).await;
    assert!(
        page.body.contains("\\u{1b}[31mred"),
        "the escape shown visibly"
    );
    assert!(page
        .body
        .contains("&#60;script&#62;alert(2)&#60;/script&#62;"));
}

#[tokio::test]
async fn the_overview_counts_the_fleet() {
    let f = fixture().await;
    let (cookie, _) = f.login("vic", Role::Viewer).await;
    let a = f.get("/", Some(&cookie)).await;
    let num = |id: &str| {
        let m = format!("id=\"{id}\">");
        let at = a.body.find(&m).unwrap_or_else(|| panic!("#{id}")) + m.len();
        a.body[at..].split('<').next().unwrap_or("").to_string()
    };
    assert_eq!(num("hosts-total"), "2");
    assert_eq!(num("open-total"), "5");
    assert_eq!(
        num("reports-rate"),
        "0.2",
        "2 reports in the last 10 minutes"
    );
    assert!(a.body.contains("<svg class=\"chart\""));
    assert!(
        a.body.contains("new (5)"),
        "5 findings first seen this week"
    );
}

#[tokio::test]
async fn sessions_expire_and_cookies_are_secure_over_tls() {
    let f = fixture().await;
    let (cookie, _) = f.login("vic", Role::Viewer).await;
    f.clock.advance_secs(12 * 3600 - 1);
    assert_eq!(f.get("/", Some(&cookie)).await.status, StatusCode::OK);
    f.clock.advance_secs(1);
    assert_eq!(
        f.get("/", Some(&cookie)).await.location(),
        "/login",
        "expired"
    );
    let mut config = Config::default();
    config.tls = Some(aupwatch_collector::config::Tls {
        cert: "unused.pem".into(),
        key: "unused.key".into(),
    });
    // `login` checks the Secure attribute against the config.
    fixture_with(config).await.login("vic", Role::Viewer).await;
}

#[tokio::test]
async fn silent_agents_are_listed_on_the_overview() {
    let f = fixture().await;
    let (cookie, _) = f.login("vic", Role::Viewer).await;
    let quiet = f.get("/", Some(&cookie)).await;
    assert!(quiet.body.contains("No silent agents."));
    // Both hosts announced 15 s; ten minutes later they are silent.
    f.clock.advance_secs(600);
    let a = f.get("/", Some(&cookie)).await;
    let silent = a.body.split("id=\"silent\"").nth(1).expect("#silent");
    assert!(silent.contains("vm-plain") && silent.contains("href=\"/hosts/h-m2\""));
    assert!(silent.contains("0.1.0"), "the agent version");
    assert!(silent.contains("c-1042"), "the customer label");
    assert!(
        !silent.contains("<b>bold"),
        "the hostile hostname escaped here too"
    );
}

#[tokio::test]
async fn failed_logins_back_off() {
    let f = fixture().await;
    let hash = auth::hash_password(PASSWORD).expect("hash");
    f.store
        .create_user("ana".into(), Role::Analyst, hash, T0)
        .await
        .expect("create");
    let attempt = |pw: &'static str| {
        let f = &f;
        async move {
            let page = f.get("/login", None).await;
            let lc = cookie_pair(&page.set_cookies()[0]);
            let token = page.hidden("login_token");
            f.post(
                "/login",
                Some(&lc),
                form(&[("login_token", &token), ("name", "ana"), ("password", pw)]),
            )
            .await
        }
    };
    for _ in 0..auth::FREE_FAILURES {
        assert_eq!(
            attempt("wrong password!!").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password waits now, unchecked.
    let a = attempt(PASSWORD).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
    f.clock.advance_secs(1);
    assert_eq!(attempt(PASSWORD).await.status, StatusCode::SEE_OTHER);
}
