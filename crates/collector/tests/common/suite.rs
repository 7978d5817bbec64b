//! One store test suite, run against every backend: each test gets two stores opened on one
//! fresh database (two collectors sharing it).

use super::{finding, report};
use aupwatch_collector::secret;
use aupwatch_collector::store::{
    AlertCounts, AlertOutcome, AlertState, AuditEntry, EnrollOutcome, Enrollment, FindingFilter,
    HostAction, IngestOutcome, NewAlert, NewSession, Refusal, Role, StateFilter, Store,
};
use aupwatch_proto::protocol::Stored;
use aupwatch_proto::{Category, Severity};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const NOW: u64 = 1_796_659_300_000;

pub fn enrollment(secret: &str, machine_id: &str, host_id: &str, key: &str) -> Enrollment {
    Enrollment {
        secret_hash: secret::hash(secret),
        machine_id: machine_id.into(),
        hostname: format!("host-{machine_id}"),
        agent_version: "0.1.0".into(),
        labels: BTreeMap::from([("rack".to_string(), "r1".to_string())]),
        new_host_id: host_id.into(),
        node_key_hash: secret::hash(key),
        require_approval: false,
        now_unix_ms: NOW,
        in_use_intervals: 2,
    }
}

/// Enrolls machine `m` as host `h` with node key `key-<m>`.
pub async fn enrolled(s: &dyn Store, m: &str, h: &str) -> String {
    // Several hosts share the one secret: the second create fails on its unique hash.
    let _ = s
        .create_secret(secret::hash("s-enroll"), Some("c-1".into()), NOW)
        .await;
    match s
        .enroll(enrollment("s-enroll", m, h, &format!("key-{m}")))
        .await
        .expect("enroll")
    {
        EnrollOutcome::Enrolled { host_id, .. } => host_id,
        other => panic!("{other:?}"),
    }
}

pub async fn enroll_secrets_and_node_keys(a: Arc<dyn Store>, _b: Arc<dyn Store>) {
    let s = a.as_ref();
    let e = enrollment("nope", "m1", "h1", "k1");
    assert_eq!(s.enroll(e).await.expect("enroll"), EnrollOutcome::BadSecret);
    let old = s
        .create_secret(secret::hash("old"), None, NOW)
        .await
        .expect("secret");
    s.create_secret(secret::hash("new"), Some("c-1042".into()), NOW)
        .await
        .expect("secret");
    // Two active secrets: both enroll.
    let out = s
        .enroll(enrollment("old", "m1", "h1", "k1"))
        .await
        .expect("enroll");
    assert_eq!(
        out,
        EnrollOutcome::Enrolled {
            host_id: "h1".into(),
            pending_approval: false
        }
    );
    let out = s
        .enroll(enrollment("new", "m2", "h2", "k2"))
        .await
        .expect("enroll");
    assert!(matches!(out, EnrollOutcome::Enrolled { .. }));
    // Rotation: the old one revoked, the new one still works.
    assert!(s.revoke_secret(old, NOW).await.expect("revoke"));
    let e = enrollment("old", "m3", "h3", "k3");
    assert_eq!(s.enroll(e).await.expect("enroll"), EnrollOutcome::BadSecret);
    let auth = s
        .authenticate(secret::hash("k2"))
        .await
        .expect("auth")
        .expect("known key");
    assert_eq!(
        (auth.host_id.as_str(), auth.machine_id.as_str()),
        ("h2", "m2")
    );
    assert!(s
        .authenticate(secret::hash("k3"))
        .await
        .expect("auth")
        .is_none());
    let hosts = s.hosts().await.expect("hosts");
    let h2 = hosts.iter().find(|h| h.host_id == "h2").expect("h2");
    assert_eq!(
        h2.labels.get("customer").map(String::as_str),
        Some("c-1042")
    );
    assert_eq!(h2.labels.get("rack").map(String::as_str), Some("r1"));
    // Re-enrolling the same machine keeps its host id and replaces its key.
    let out = s
        .enroll(enrollment("new", "m2", "hX", "k2b"))
        .await
        .expect("enroll");
    assert!(matches!(out, EnrollOutcome::Enrolled { ref host_id, .. } if host_id == "h2"));
    assert!(s
        .authenticate(secret::hash("k2"))
        .await
        .expect("auth")
        .is_none());
    assert!(s
        .authenticate(secret::hash("k2b"))
        .await
        .expect("auth")
        .is_some());
    assert_eq!(s.secrets().await.expect("list").len(), 2);
}

/// Two agents with one machine id (a cloned image): while the first reports with its key, the
/// second is refused and the first keeps its key; once the first said goodbye, went quiet for
/// two intervals, or had its key revoked, a new enrollment replaces the key.
pub async fn a_machine_id_in_use_keeps_its_key(a: Arc<dyn Store>, _b: Arc<dyn Store>) {
    let s = a.as_ref();
    let h = enrolled(s, "m1", "h1").await;
    // Enrolled but never reported: a re-enrollment (a restart that lost its key) is let in.
    let again = |key: &str, now: u64| {
        let mut e = enrollment("s-enroll", "m1", "hX", key);
        e.now_unix_ms = now;
        e
    };
    let out = s.enroll(again("key-m1", NOW)).await.expect("enroll");
    assert!(matches!(out, EnrollOutcome::Enrolled { ref host_id, .. } if host_id == "h1"));
    // It reports (interval 15 s) at NOW.
    s.ingest(h.clone(), vec![report("r1", "m1", 1)], NOW)
        .await
        .expect("ingest");
    // A twin 10 s later: refused until two intervals after that report; the key is kept.
    let out = s.enroll(again("twin", NOW + 10_000)).await.expect("enroll");
    assert_eq!(
        out,
        EnrollOutcome::InUse {
            host_id: "h1".into(),
            retry_after_secs: 20
        }
    );
    assert!(s
        .authenticate(secret::hash("key-m1"))
        .await
        .expect("auth")
        .is_some());
    assert!(s
        .authenticate(secret::hash("twin"))
        .await
        .expect("auth")
        .is_none());
    // Quiet for two intervals: the key may be replaced.
    let out = s
        .enroll(again("later", NOW + 30_001))
        .await
        .expect("enroll");
    assert!(matches!(out, EnrollOutcome::Enrolled { .. }), "{out:?}");
    // A goodbye frees it at once.
    let h_now = NOW + 60_000;
    let mut bye = report("r2", "m1", 2);
    bye.goodbye = true;
    s.ingest(h.clone(), vec![bye], h_now).await.expect("ingest");
    let out = s
        .enroll(again("after-bye", h_now + 1))
        .await
        .expect("enroll");
    assert!(matches!(out, EnrollOutcome::Enrolled { .. }), "{out:?}");
    // So does a revoke by an operator.
    s.ingest(h.clone(), vec![report("r3", "m1", 3)], h_now + 2)
        .await
        .expect("ingest");
    let out = s.enroll(again("refused", h_now + 3)).await.expect("enroll");
    assert!(matches!(out, EnrollOutcome::InUse { .. }), "{out:?}");
    assert!(s
        .host_action("h1".into(), HostAction::Revoke, h_now + 4)
        .await
        .expect("revoke"));
    let out = s
        .enroll(again("after-revoke", h_now + 5))
        .await
        .expect("enroll");
    assert!(matches!(out, EnrollOutcome::Enrolled { .. }), "{out:?}");
}

pub async fn revoke_block_approve(a: Arc<dyn Store>, _b: Arc<dyn Store>) {
    let s = a.as_ref();
    enrolled(s, "m1", "h1").await;
    assert!(s
        .host_action("h1".into(), HostAction::Revoke, NOW)
        .await
        .expect("revoke"));
    assert!(s
        .authenticate(secret::hash("key-m1"))
        .await
        .expect("auth")
        .is_none());
    // Re-enrollment after a revoke is allowed; after a block it is not.
    let e = enrollment("s-enroll", "m1", "hX", "key-m1b");
    assert!(matches!(
        s.enroll(e).await.expect("enroll"),
        EnrollOutcome::Enrolled { .. }
    ));
    assert!(s
        .host_action("m1".into(), HostAction::Block, NOW)
        .await
        .expect("block"));
    let e = enrollment("s-enroll", "m1", "hX", "key-m1c");
    assert_eq!(s.enroll(e).await.expect("enroll"), EnrollOutcome::Blocked);
    assert!(!s
        .host_action("nobody".into(), HostAction::Block, NOW)
        .await
        .expect("none"));
    // Approval.
    let mut e = enrollment("s-enroll", "m2", "h2", "key-m2");
    e.require_approval = true;
    assert_eq!(
        s.enroll(e).await.expect("enroll"),
        EnrollOutcome::Enrolled {
            host_id: "h2".into(),
            pending_approval: true
        }
    );
    let auth = s
        .authenticate(secret::hash("key-m2"))
        .await
        .expect("auth")
        .expect("known");
    assert!(!auth.approved);
    assert!(s
        .host_action("h2".into(), HostAction::Approve, NOW)
        .await
        .expect("approve"));
    let auth = s
        .authenticate(secret::hash("key-m2"))
        .await
        .expect("auth")
        .expect("known");
    assert!(auth.approved);
}

pub async fn reports_are_stored_once(a: Arc<dyn Store>, _b: Arc<dyn Store>) {
    let s = a.as_ref();
    let h = enrolled(s, "m1", "h1").await;
    let r = report("r1", "m1", 1);
    let out = s
        .ingest(h.clone(), vec![r.clone()], NOW)
        .await
        .expect("ingest");
    assert_eq!(out, vec![Stored::Stored]);
    let out = s
        .ingest(h.clone(), vec![r.clone(), report("r2", "m1", 2)], NOW)
        .await
        .expect("ingest");
    assert_eq!(out, vec![Stored::Duplicate, Stored::Stored]);
    assert_eq!(s.count_rows("reports").await.expect("count"), 2);
    assert_eq!(s.count_rows("events").await.expect("count"), 2);
    // One row per offender verdict (two signatures matched it), not per signature.
    assert_eq!(s.count_rows("findings").await.expect("count"), 1);
    assert_eq!(s.count_rows("last_seen").await.expect("count"), 1);
    let hosts = s.hosts().await.expect("hosts");
    assert_eq!(hosts[0].last_seen_unix_ms, Some(NOW));
    assert_eq!(hosts[0].interval_secs, Some(15));
    assert_eq!(hosts[0].open_findings, 1);
}

pub async fn open_sets_reconcile(a: Arc<dyn Store>, _b: Arc<dyn Store>) {
    let s = a.as_ref();
    let h = enrolled(s, "m1", "h1").await;
    let mut r1 = report("r1", "m1", 1);
    r1.open_findings = vec![
        finding("fa", Category::Mining, "mining.xmrig"),
        finding("fb", Category::Tor, "tor.relay"),
    ];
    s.ingest(h.clone(), vec![r1], NOW).await.expect("ingest");
    let mut r2 = report("r2", "m1", 2);
    r2.events.clear();
    r2.open_findings = vec![finding("fb", Category::Tor, "tor.relay")];
    s.ingest(h.clone(), vec![r2], NOW).await.expect("ingest");
    let fa = s
        .finding(h.clone(), "fa".into())
        .await
        .expect("get")
        .expect("fa");
    assert_eq!(fa.state, "resolved");
    assert!(fa.resolved_unix_ms.is_some());
    let fb = s
        .finding(h.clone(), "fb".into())
        .await
        .expect("get")
        .expect("fb");
    assert_ne!(fb.state, "resolved");
    // An older report arriving late does not reopen what a newer one resolved.
    let mut old = report("r0", "m1", 0);
    old.open_findings = vec![finding("fa", Category::Mining, "mining.xmrig")];
    s.ingest(h.clone(), vec![old], NOW).await.expect("ingest");
    let fa = s
        .finding(h.clone(), "fa".into())
        .await
        .expect("get")
        .expect("fa");
    assert_eq!(fa.state, "resolved");
    let counts = s.counts(true).await.expect("counts");
    assert_eq!(counts.open.values().sum::<u64>(), 1);
    assert_eq!(
        counts.open.get(&("tor".to_string(), "high".to_string())),
        Some(&1)
    );
}

pub async fn sequence_gaps_and_reboots_are_recorded(a: Arc<dyn Store>, _b: Arc<dyn Store>) {
    let s = a.as_ref();
    let h = enrolled(s, "m1", "h1").await;
    s.ingest(h.clone(), vec![report("r1", "m1", 1)], NOW)
        .await
        .expect("ingest");
    s.ingest(h.clone(), vec![report("r5", "m1", 5)], NOW)
        .await
        .expect("ingest");
    let host = s.hosts().await.expect("hosts").remove(0);
    assert_eq!((host.sequence_gaps, host.last_sequence), (3, Some(5)));
    assert!(host
        .last_anomaly
        .as_deref()
        .is_some_and(|a| a.contains("gap")));
    let mut rb = report("r6", "m1", 6);
    rb.boot_id = "another-boot".into();
    s.ingest(h.clone(), vec![rb], NOW).await.expect("ingest");
    let host = s.hosts().await.expect("hosts").remove(0);
    assert_eq!(host.boot_changes, 1);
    assert_eq!(host.boot_id.as_deref(), Some("another-boot"));
    let mut back = report("r7", "m1", 1);
    back.boot_id = "another-boot".into();
    s.ingest(h, vec![back], NOW).await.expect("ingest");
    let host = s.hosts().await.expect("hosts").remove(0);
    assert_eq!(host.sequence_resets, 1);
}

pub async fn findings_filter_and_page(a: Arc<dyn Store>, _b: Arc<dyn Store>) {
    let s = a.as_ref();
    let h1 = enrolled(s, "m1", "h1").await;
    let h2 = enrolled(s, "m2", "h2").await;
    let mut r = report("r1", "m1", 1);
    r.open_findings = vec![
        finding("f1", Category::Mining, "mining.xmrig"),
        finding("f2", Category::Tor, "tor.relay"),
    ];
    r.open_findings[1].finding.severity = Severity::Low;
    s.ingest(h1.clone(), vec![r], NOW).await.expect("ingest");
    let mut r = report("r2", "m2", 1);
    r.open_findings = vec![finding("f3", Category::Mining, "mining.pool-port")];
    s.ingest(h2.clone(), vec![r], NOW).await.expect("ingest");
    let all = FindingFilter {
        limit: 100,
        ..FindingFilter::default()
    };
    let ids = |rows: Vec<aupwatch_proto::api::FindingRow>| {
        rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(s.findings(all.clone()).await.expect("list")),
        vec!["h1:f1", "h1:f2", "h2:f3"]
    );
    let f = FindingFilter {
        category: Some("mining".into()),
        ..all.clone()
    };
    assert_eq!(
        ids(s.findings(f).await.expect("list")),
        vec!["h1:f1", "h2:f3"]
    );
    let f = FindingFilter {
        min_severity: Some(Severity::Medium),
        ..all.clone()
    };
    assert_eq!(
        ids(s.findings(f).await.expect("list")),
        vec!["h1:f1", "h2:f3"]
    );
    let f = FindingFilter {
        signature: Some("mining.pool-port".into()),
        ..all.clone()
    };
    assert_eq!(ids(s.findings(f).await.expect("list")), vec!["h2:f3"]);
    // `mining.pool` is not `mining.pool-port`.
    let f = FindingFilter {
        signature: Some("mining.pool".into()),
        ..all.clone()
    };
    assert!(s.findings(f).await.expect("list").is_empty());
    let f = FindingFilter {
        host: Some("h2".into()),
        customer: Some("c-1".into()),
        ..all.clone()
    };
    assert_eq!(ids(s.findings(f).await.expect("list")), vec!["h2:f3"]);
    let f = FindingFilter {
        customer: Some("c-2".into()),
        ..all.clone()
    };
    assert!(s.findings(f).await.expect("list").is_empty());
    let f = FindingFilter {
        state: StateFilter::Resolved,
        ..all.clone()
    };
    assert!(s.findings(f).await.expect("list").is_empty());
    let f = FindingFilter {
        since_unix_ms: Some(1_796_659_200_001),
        ..all.clone()
    };
    assert!(s.findings(f).await.expect("list").is_empty());
    // Keyset paging, one at a time.
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = s
            .findings(FindingFilter {
                limit: 1,
                after: after.clone(),
                ..all.clone()
            })
            .await
            .expect("page");
        let Some(row) = page.into_iter().next() else {
            break;
        };
        after = Some((
            row.host_id.clone(),
            row.id.split_once(':').expect("id").1.to_string(),
        ));
        seen.push(row.id);
    }
    assert_eq!(seen, vec!["h1:f1", "h1:f2", "h2:f3"]);
    let row = s.finding(h1, "f1".into()).await.expect("get").expect("f1");
    assert_eq!(row.customer.as_deref(), Some("c-1"));
    assert_eq!(row.signatures, vec!["mining.xmrig"]);
    assert!(row.tracked.is_some());
}

pub async fn tokens_have_roles(a: Arc<dyn Store>, _b: Arc<dyn Store>) {
    let s = a.as_ref();
    s.create_token(secret::hash("t1"), "ops".into(), Role::Analyst, NOW)
        .await
        .expect("token");
    assert_eq!(
        s.token_role(secret::hash("t1")).await.expect("role"),
        Some(Role::Analyst)
    );
    assert_eq!(s.token_role(secret::hash("t2")).await.expect("role"), None);
    assert_eq!(s.tokens().await.expect("list")[0].name, "ops");
}

/// Two collectors on one database get the same report at once: stored once.
pub async fn concurrent_delivery_is_stored_once(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let h = enrolled(a.as_ref(), "m1", "h1").await;
    for round in 0..20 {
        let r = report(&format!("r{round}"), "m1", round + 1);
        let (x, y) = tokio::join!(
            a.ingest(h.clone(), vec![r.clone()], NOW),
            b.ingest(h.clone(), vec![r.clone()], NOW)
        );
        let mut got = vec![x.expect("a")[0], y.expect("b")[0]];
        got.sort_by_key(|s| *s == Stored::Stored);
        assert_eq!(
            got,
            vec![Stored::Duplicate, Stored::Stored],
            "round {round}"
        );
    }
    assert_eq!(a.count_rows("reports").await.expect("count"), 20);
    assert_eq!(b.count_rows("events").await.expect("count"), 20);
}

/// Many requests at once, for many hosts, through both stores (group commit takes several
/// into one transaction): overlapping and repeated reports are stored once each, a revoked
/// host's requests are refused and store nothing, and nothing else is refused.
pub async fn a_crowd_of_requests_is_stored_once_and_refused_alone(
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
) {
    const HOSTS: u64 = 10;
    let mut hosts = Vec::new();
    for m in 0..HOSTS {
        hosts.push(enrolled(a.as_ref(), &format!("m{m}"), &format!("h{m}")).await);
    }
    assert!(a
        .host_action(hosts[9].clone(), HostAction::Revoke, NOW)
        .await
        .expect("revoke"));
    let mut tasks = Vec::new();
    for round in 0..4u64 {
        for (m, h) in hosts.iter().enumerate() {
            let machine = format!("m{m}");
            // Rounds 0..3 send r1+r2, r2+r3, r3+r4, r3+r4: overlaps and repeats.
            let ids = [(round + 1).min(3), (round + 2).min(4)]
                .map(|seq| report(&format!("r{m}-{seq}"), &machine, seq));
            for store in [&a, &b] {
                let store = Arc::clone(store);
                let (h, key) = (h.clone(), secret::hash(&format!("key-{machine}")));
                let reports = ids.to_vec();
                tasks.push(tokio::spawn(async move {
                    let ids: Vec<String> = reports.iter().map(|r| r.report_id.clone()).collect();
                    let out = store
                        .ingest_checked(h, key, reports, Vec::new(), NOW + round)
                        .await;
                    (m, ids, out)
                }));
            }
        }
    }
    let mut stored: BTreeMap<String, u32> = BTreeMap::new();
    for t in tasks {
        let (m, ids, out) = t.await.expect("task");
        match out.expect("ingest") {
            IngestOutcome::Refused(r) => {
                assert_eq!(m, 9, "only the revoked host is refused: {r:?}");
                assert_eq!(r, Refusal::UnknownKey);
            }
            IngestOutcome::Done(results) => {
                assert_ne!(m, 9, "the revoked host's reports are refused");
                assert_eq!(results.len(), ids.len());
                for (id, r) in ids.into_iter().zip(results) {
                    let n = stored.entry(id).or_default();
                    if r == Stored::Stored {
                        *n += 1;
                    }
                }
            }
        }
    }
    // Hosts 0..9 have reports r-1 … r-4 each, every one stored exactly once.
    assert_eq!(stored.len(), 9 * 4, "{stored:?}");
    assert!(stored.values().all(|n| *n == 1), "{stored:?}");
    assert_eq!(a.count_rows("reports").await.expect("count"), 36);
    assert_eq!(a.count_rows("events").await.expect("count"), 36);
    assert_eq!(a.count_rows("findings").await.expect("count"), 9);
    assert_eq!(b.count_rows("last_seen").await.expect("count"), 9);
    let list = a.hosts().await.expect("hosts");
    for h in &list {
        if h.host_id == hosts[9] {
            assert_eq!(h.last_seen_unix_ms, None, "the revoked host was not seen");
        } else {
            // (The order of arrival is the tasks', so the sequence may have gone back.)
            assert!(h.last_sequence.is_some(), "{}", h.host_id);
            assert_eq!(h.last_seen_unix_ms.map(|t| t >= NOW), Some(true));
            assert_eq!(h.open_findings, 1, "{}", h.host_id);
        }
    }
}

pub async fn retention_prunes_events_and_archives_hosts(a: Arc<dyn Store>, _b: Arc<dyn Store>) {
    let s = a.as_ref();
    let h = enrolled(s, "m1", "h1").await;
    enrolled(s, "m2", "h2").await;
    // The example's event is at 1_796_659_200_000; m1 reports at NOW, m2 (enrolled at NOW)
    // never.
    s.ingest(h, vec![report("r1", "m1", 1)], NOW)
        .await
        .expect("ingest");
    let r = s
        .retain(Some(1_796_659_200_000), Some(NOW))
        .await
        .expect("retain");
    assert_eq!((r.events_deleted, r.hosts_archived), (0, 0));
    let r = s
        .retain(Some(1_796_659_200_001), Some(NOW + 1))
        .await
        .expect("retain");
    assert_eq!((r.events_deleted, r.hosts_archived), (1, 2));
    assert_eq!(s.count_rows("events").await.expect("count"), 0);
    assert_eq!(
        s.count_rows("reports").await.expect("count"),
        1,
        "reports stay"
    );
    assert!(s.hosts().await.expect("hosts").iter().all(|h| h.archived));
    let r = s.retain(None, None).await.expect("retain");
    assert_eq!(r, Default::default());
}

/// The key check inside the report's transaction: a revoke or block that committed first
/// wins over any earlier check.
pub async fn checked_ingest_sees_revokes_and_blocks(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    use aupwatch_collector::store::{IngestOutcome, Refusal};
    let h = enrolled(a.as_ref(), "m1", "h1").await;
    let key = secret::hash("key-m1");
    let out = a
        .ingest_checked(
            h.clone(),
            key.clone(),
            vec![report("r1", "m1", 1)],
            Vec::new(),
            NOW,
        )
        .await
        .expect("ingest");
    assert_eq!(out, IngestOutcome::Done(vec![Stored::Stored]));
    let out = a
        .ingest_checked(
            h.clone(),
            secret::hash("other"),
            vec![report("r2", "m1", 2)],
            Vec::new(),
            NOW,
        )
        .await
        .expect("ingest");
    assert_eq!(out, IngestOutcome::Refused(Refusal::UnknownKey));
    // Blocked by the other collector.
    assert!(b
        .host_action(h.clone(), HostAction::Block, NOW)
        .await
        .expect("block"));
    let out = a
        .ingest_checked(
            h.clone(),
            key.clone(),
            vec![report("r2", "m1", 2)],
            Vec::new(),
            NOW,
        )
        .await
        .expect("ingest");
    assert_eq!(out, IngestOutcome::Refused(Refusal::Blocked));
    assert!(b
        .host_action(h.clone(), HostAction::Unblock, NOW)
        .await
        .expect("unblock"));
    assert!(b
        .host_action(h.clone(), HostAction::Revoke, NOW)
        .await
        .expect("revoke"));
    let out = a
        .ingest_checked(h.clone(), key, vec![report("r2", "m1", 2)], Vec::new(), NOW)
        .await
        .expect("ingest");
    assert_eq!(out, IngestOutcome::Refused(Refusal::UnknownKey));
    assert_eq!(a.count_rows("reports").await.expect("count"), 1);
}

/// Declares one `#[tokio::test]` per suite test, each on a fresh pair from `$open`.
pub async fn users_sessions_and_audit(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let id = a
        .create_user("ana".into(), Role::Analyst, "$argon2id$x".into(), NOW)
        .await
        .expect("create")
        .expect("new name");
    assert_eq!(
        a.create_user("ana".into(), Role::Admin, "$argon2id$y".into(), NOW)
            .await
            .expect("create"),
        None,
        "a taken name"
    );
    let u = b.user("ana".into()).await.expect("user").expect("found");
    assert_eq!(
        (u.id, u.role, u.password_hash.as_str()),
        (id, Role::Analyst, "$argon2id$x")
    );
    assert_eq!(b.user("bob".into()).await.expect("user"), None);
    assert_eq!(a.users().await.expect("users").len(), 1);
    a.create_session(NewSession {
        id_hash: secret::hash("sid"),
        user_id: id,
        csrf: "tok".into(),
        now_unix_ms: NOW,
        expires_unix_ms: NOW + 1000,
    })
    .await
    .expect("session");
    let s = b
        .session(secret::hash("sid"), NOW + 999)
        .await
        .expect("session")
        .expect("live");
    assert_eq!(
        (s.user.as_str(), s.role, s.csrf.as_str()),
        ("ana", Role::Analyst, "tok")
    );
    assert_eq!(
        b.session(secret::hash("sid"), NOW + 1000).await.expect("s"),
        None,
        "expired"
    );
    assert_eq!(
        b.session(secret::hash("other"), NOW).await.expect("s"),
        None
    );
    assert!(a.delete_session(secret::hash("sid")).await.expect("delete"));
    assert_eq!(
        b.session(secret::hash("sid"), NOW).await.expect("s"),
        None,
        "logged out"
    );
    for (i, action) in ["acknowledge", "note"].iter().enumerate() {
        a.audit(AuditEntry {
            at_unix_ms: NOW + i as u64,
            actor: "ana".into(),
            action: action.to_string(),
            target: "finding:h1:t1".into(),
            detail: format!("d{i}"),
        })
        .await
        .expect("audit");
    }
    let log = b.audit_log("finding:h1:t1".into()).await.expect("log");
    assert_eq!(
        log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["acknowledge", "note"]
    );
    assert!(b.audit_log("host:h1".into()).await.expect("log").is_empty());
}

pub async fn dashboard_activity_and_events(a: Arc<dyn Store>, _b: Arc<dyn Store>) {
    let s = a.as_ref();
    let h = enrolled(s, "m1", "h1").await;
    let r = report("r1", "m1", 1);
    let tracked = r.open_findings[0].clone();
    s.ingest(h.clone(), vec![r], NOW).await.expect("ingest");
    let act = s.activity(0, 3_600_000, NOW - 1).await.expect("activity");
    assert_eq!(act.new.values().sum::<u64>(), 1, "{act:?}");
    assert_eq!(act.reports, 1);
    assert_eq!(
        s.activity(0, 3_600_000, NOW + 1).await.expect("a").reports,
        0
    );
    let newest = s.newest_findings(Severity::Low, 10).await.expect("newest");
    assert_eq!(newest.len(), 1);
    let events = s
        .finding_events(h.clone(), tracked.id.clone())
        .await
        .expect("events");
    assert!(
        !events.is_empty(),
        "the example report's event is the finding's"
    );
}

/// An outbox row for `route` and CloudEvents id `id`, of report `report` (none: liveness).
fn alert(route: &str, id: &str, report: Option<&str>) -> NewAlert {
    NewAlert {
        route: route.into(),
        alert_id: id.into(),
        kind: "net.aupwatch.finding.new".into(),
        host_id: "h1".into(),
        report_id: report.map(str::to_string),
        body: format!("{{\"id\":\"{id}\"}}"),
    }
}

/// The alerts of a report are written with it (for every route), never for a duplicate copy,
/// a refused request or the already stored reports of a batch; liveness alerts once per id.
pub async fn alerts_are_written_with_their_report_only(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let h = enrolled(a.as_ref(), "m1", "h1").await;
    let key = secret::hash("key-m1");
    let out = a
        .ingest_checked(
            h.clone(),
            key.clone(),
            vec![report("r1", "m1", 1)],
            vec![
                alert("desk", "r1/0", Some("r1")),
                alert("ops", "r1/0", Some("r1")),
            ],
            NOW,
        )
        .await
        .expect("ingest");
    assert_eq!(out, IngestOutcome::Done(vec![Stored::Stored]));
    assert_eq!(a.count_rows("alerts").await.expect("count"), 2);
    // The same report again, through the other collector: a duplicate, no alert.
    let out = b
        .ingest_checked(
            h.clone(),
            key.clone(),
            vec![report("r1", "m1", 1)],
            vec![alert("desk", "r1/0", Some("r1"))],
            NOW,
        )
        .await
        .expect("ingest");
    assert_eq!(out, IngestOutcome::Done(vec![Stored::Duplicate]));
    // A refused request writes nothing.
    let out = a
        .ingest_checked(
            h.clone(),
            secret::hash("wrong"),
            vec![report("r2", "m1", 2)],
            vec![alert("desk", "r2/0", Some("r2"))],
            NOW,
        )
        .await
        .expect("ingest");
    assert_eq!(out, IngestOutcome::Refused(Refusal::UnknownKey));
    assert_eq!(a.count_rows("alerts").await.expect("count"), 2);
    // A batch of a stored and a new report: only the new one's alert.
    let out = a
        .ingest_checked(
            h.clone(),
            key,
            vec![report("r1", "m1", 1), report("r2", "m1", 2)],
            vec![
                alert("desk", "r1/1", Some("r1")),
                alert("desk", "r2/0", Some("r2")),
            ],
            NOW + 1,
        )
        .await
        .expect("ingest");
    assert_eq!(
        out,
        IngestOutcome::Done(vec![Stored::Duplicate, Stored::Stored])
    );
    let rows = b.alerts(None, 100).await.expect("alerts");
    let mut ids: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.route.clone(), r.alert_id.clone()))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [("desk", "r1/0"), ("desk", "r2/0"), ("ops", "r1/0")]
            .map(|(r, i)| (r.to_string(), i.to_string()))
    );
    let r2 = rows.iter().find(|r| r.alert_id == "r2/0").expect("r2/0");
    assert_eq!(
        (
            r2.state,
            r2.attempts,
            r2.created_unix_ms,
            r2.next_attempt_unix_ms
        ),
        (AlertState::Pending, 0, NOW + 1, NOW + 1)
    );
    assert_eq!(r2.body, "{\"id\":\"r2/0\"}");
    // Liveness alerts: one row per (route, id), whichever collector writes it.
    let silent = alert("desk", "h1/silent/5", None);
    assert_eq!(
        a.enqueue_alerts(vec![silent.clone()], NOW)
            .await
            .expect("enqueue"),
        1
    );
    assert_eq!(
        b.enqueue_alerts(vec![silent], NOW).await.expect("enqueue"),
        0
    );
    assert_eq!(
        a.alert_counts().await.expect("counts"),
        AlertCounts {
            pending: 4,
            ..AlertCounts::default()
        }
    );
}

/// A claimed row is leased: nobody else gets it until it is settled or its lease runs out;
/// only the lease holder settles it; retries wait for their time; failed and sent rows stay
/// for the CLI until retention deletes the sent ones.
pub async fn alerts_are_claimed_under_a_lease_and_settled(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let lease = 60_000;
    a.enqueue_alerts(
        vec![
            alert("desk", "x/0", None),
            alert("desk", "x/1", None),
            alert("desk", "x/2", None),
        ],
        NOW,
    )
    .await
    .expect("enqueue");
    // Not due before it was made.
    assert!(a
        .claim_alerts("A".into(), NOW - 1, lease, 10)
        .await
        .expect("claim")
        .is_empty());
    let first = a
        .claim_alerts("A".into(), NOW, lease, 2)
        .await
        .expect("claim");
    let ids: Vec<&str> = first.iter().map(|r| r.alert_id.as_str()).collect();
    assert_eq!(ids, ["x/0", "x/1"]);
    assert!(first.iter().all(|r| r.attempts == 1));
    let third = b
        .claim_alerts("B".into(), NOW, lease, 10)
        .await
        .expect("claim");
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].alert_id, "x/2");
    assert!(b
        .claim_alerts("B".into(), NOW + 1, lease, 10)
        .await
        .expect("claim")
        .is_empty());
    let (x0, x1, x2) = (first[0].seq, first[1].seq, third[0].seq);
    // Only the holder settles.
    assert!(!b
        .settle_alert(x0, "B".into(), AlertOutcome::Sent, NOW + 2)
        .await
        .expect("settle"));
    assert!(a
        .settle_alert(x0, "A".into(), AlertOutcome::Sent, NOW + 2)
        .await
        .expect("settle"));
    assert!(!a
        .settle_alert(x0, "A".into(), AlertOutcome::Sent, NOW + 3)
        .await
        .expect("settled once"));
    // A retry waits for its time, then anyone may claim it.
    assert!(a
        .settle_alert(
            x1,
            "A".into(),
            AlertOutcome::Retry {
                next_unix_ms: NOW + 1_000,
                error: "HTTP 500".into()
            },
            NOW + 2,
        )
        .await
        .expect("settle"));
    assert!(b
        .claim_alerts("B".into(), NOW + 999, lease, 10)
        .await
        .expect("claim")
        .is_empty());
    let again = b
        .claim_alerts("B".into(), NOW + 1_000, lease, 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].seq, again[0].attempts), (x1, 2));
    assert!(b
        .settle_alert(
            x1,
            "B".into(),
            AlertOutcome::Failed {
                error: "HTTP 500".into()
            },
            NOW + 1_001,
        )
        .await
        .expect("settle"));
    // A lease that ran out (its holder died): claimed again, the old holder cannot settle.
    let taken = a
        .claim_alerts("A".into(), NOW + lease, lease, 10)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].seq, taken[0].attempts), (x2, 2));
    assert!(!b
        .settle_alert(x2, "B".into(), AlertOutcome::Sent, NOW + lease)
        .await
        .expect("settle"));
    assert_eq!(
        b.alert_counts().await.expect("counts"),
        AlertCounts {
            pending: 1,
            retrying: 1,
            sent: 1,
            failed: 1,
            retries: 2,
        }
    );
    let failed = b
        .alerts(Some(AlertState::Failed), 10)
        .await
        .expect("alerts");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].seq, x1);
    assert_eq!(failed[0].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(failed[0].done_unix_ms, Some(NOW + 1_001));
    let all = a.alerts(None, 10).await.expect("alerts");
    let order: Vec<i64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(order, [x2, x1, x0], "newest first");
    // Retention deletes sent alerts older than the events' cutoff, keeps failed ones.
    let r = a.retain(Some(NOW + 3), None).await.expect("retain");
    assert_eq!(r.alerts_deleted, 1);
    assert_eq!(a.count_rows("alerts").await.expect("count"), 2);
}

/// Four deliverers on the two stores claim and settle 120 alerts at once: every alert is
/// claimed exactly once.
pub async fn concurrent_claimers_never_share_an_alert(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let rows: Vec<NewAlert> = (0..120)
        .map(|i| alert("desk", &format!("c/{i}"), None))
        .collect();
    assert_eq!(a.enqueue_alerts(rows, NOW).await.expect("enqueue"), 120);
    let mut tasks = Vec::new();
    for (n, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let owner = format!("d{n}");
            let mut got = Vec::new();
            loop {
                let claimed = store
                    .claim_alerts(owner.clone(), NOW, 60_000, 7)
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    return got;
                }
                for r in claimed {
                    assert!(store
                        .settle_alert(r.seq, owner.clone(), AlertOutcome::Sent, NOW)
                        .await
                        .expect("settle"));
                    got.push(r.alert_id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (120, 120), "each alert claimed once");
    assert_eq!(a.alert_counts().await.expect("counts").sent, 120);
}

#[macro_export]
macro_rules! store_suite {
    ($open:ident $(, #[$attr:meta])*) => {
        $crate::store_suite!(@each $open [$(#[$attr])*]
            enroll_secrets_and_node_keys
            a_machine_id_in_use_keeps_its_key
            revoke_block_approve
            reports_are_stored_once
            open_sets_reconcile
            sequence_gaps_and_reboots_are_recorded
            findings_filter_and_page
            tokens_have_roles
            concurrent_delivery_is_stored_once
            a_crowd_of_requests_is_stored_once_and_refused_alone
            retention_prunes_events_and_archives_hosts
            checked_ingest_sees_revokes_and_blocks
            users_sessions_and_audit
            dashboard_activity_and_events
            alerts_are_written_with_their_report_only
            alerts_are_claimed_under_a_lease_and_settled
            concurrent_claimers_never_share_an_alert
        );
    };
    (@each $open:ident $attrs:tt $($name:ident)*) => {
        $( $crate::store_suite!(@one $open $attrs $name); )*
    };
    (@one $open:ident [$(#[$attr:meta])*] $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() {
            let (a, b, _guard) = $open().await;
            common::suite::$name(a, b).await;
        }
    };
}
