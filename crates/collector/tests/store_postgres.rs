//! The store suite on PostgreSQL: two stores (two collectors) on one fresh database per
//! test, in the cluster named by `AUPWATCH_TEST_PG_URL` (`tests/pg.sh start` makes one on
//! 127.0.0.1:55432).
//!
//! The suite is `#[ignore]`d so that a plain `cargo test` reports it as not run; run it
//! with `-- --include-ignored`. Asked to run without the URL, it fails. Under `CI=true`
//! `pg_url_is_set_under_ci` fails when the URL is missing, so CI cannot skip it quietly.

mod common;

use aupwatch_collector::metrics::Histogram;
use aupwatch_collector::secret;
use aupwatch_collector::store::postgres::PgStore;
use aupwatch_collector::store::Store;
use std::sync::Arc;

const URL_VAR: &str = "AUPWATCH_TEST_PG_URL";

fn url() -> Option<String> {
    std::env::var(URL_VAR).ok().filter(|u| !u.is_empty())
}

#[test]
fn pg_url_is_set_under_ci() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match url() {
        Some(_) => {}
        None if ci => panic!("CI=true and {URL_VAR} is unset: the PostgreSQL suite cannot run"),
        None => eprintln!(
            "NOT RUN: the PostgreSQL store suite needs {URL_VAR} (tests/pg.sh start) and --include-ignored"
        ),
    }
}

async fn open() -> (Arc<dyn Store>, Arc<dyn Store>, ()) {
    let (_admin, url, name) = fresh_database().await;
    let admin: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
    let mut cfg = admin.clone();
    cfg.dbname(&name);
    let a = PgStore::with_config(
        cfg.clone(),
        tokio_postgres::NoTls,
        8,
        Arc::new(Histogram::default()),
    )
    .await
    .expect("store a");
    let b = PgStore::with_config(
        cfg,
        tokio_postgres::NoTls,
        8,
        Arc::new(Histogram::default()),
    )
    .await
    .expect("store b");
    (Arc::new(a), Arc::new(b), ())
}

store_suite!(open, #[ignore = "needs AUPWATCH_TEST_PG_URL (tests/pg.sh start); run with --include-ignored"]);

/// A fresh database in the test cluster; the admin client and its name.
async fn fresh_database() -> (tokio_postgres::Client, String, String) {
    let url = url().unwrap_or_else(|| panic!("{URL_VAR} is unset: run tests/pg.sh start"));
    let admin: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
    let (client, conn) = admin
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(conn);
    let name = format!("aupwatch_t_{}", secret::random_hex(8).expect("random"));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    (client, url, name)
}

/// With `tls_ca_file` the store's connections use TLS and verify the server against that CA
/// (the cluster's own certificate, from tests/pg.sh): the server sees TLS sessions. A CA that
/// did not sign the server's certificate is refused at connect, as is `sslmode=require`
/// without a CA to verify with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs AUPWATCH_TEST_PG_URL and AUPWATCH_TEST_PG_CA (tests/pg.sh start); run with --include-ignored"]
async fn tls_connections_verify_the_server() {
    let ca = std::env::var("AUPWATCH_TEST_PG_CA")
        .unwrap_or_else(|_| panic!("AUPWATCH_TEST_PG_CA is unset: run tests/pg.sh start"));
    let (admin, url, name) = fresh_database().await;
    let db_url = format!("{url} dbname={name}");
    let store = PgStore::connect(
        &db_url,
        Some(std::path::Path::new(&ca)),
        2,
        Arc::new(Histogram::default()),
    )
    .await
    .expect("a TLS store verified with the cluster's certificate");
    assert_eq!(
        store.count_rows("hosts").await.expect("a query over TLS"),
        0
    );
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s
             JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.datname = $1",
            &[&name],
        )
        .await
        .expect("pg_stat_ssl");
    let (tls, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all > 0 && tls == all, "{tls} of {all} sessions use TLS");

    // Another CA: the server's certificate does not chain to it.
    let dir = tempfile::tempdir().expect("tempdir");
    let (other, _) = common::self_signed(dir.path(), "other");
    let err = match PgStore::connect(&db_url, Some(&other), 2, Arc::new(Histogram::default())).await
    {
        Ok(_) => panic!("a server certificate of another CA was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let err = match PgStore::connect(
        &format!("{db_url} sslmode=require"),
        None,
        2,
        Arc::new(Histogram::default()),
    )
    .await
    {
        Ok(_) => panic!("sslmode=require without a CA was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("tls_ca_file"), "{err}");
}

/// A version 2 database (before the alert outbox) is migrated in place to version 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs AUPWATCH_TEST_PG_URL (tests/pg.sh start); run with --include-ignored"]
async fn a_version_2_database_gets_the_outbox() {
    use aupwatch_collector::store::{schema_steps, NewAlert};
    let steps = schema_steps(include_str!("../src/store/schema_postgres.sql"));
    assert_eq!(steps.len(), 3);
    assert!(steps[2].contains("CREATE TABLE alerts"));
    let (_admin, url, name) = fresh_database().await;
    let mut cfg: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
    cfg.dbname(&name);
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the fresh database");
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "{}\n{}\nCREATE TABLE schema_version (version BIGINT NOT NULL);
             INSERT INTO schema_version VALUES (1), (2);",
            steps[0], steps[1]
        ))
        .await
        .expect("a version 2 schema");
    let store = PgStore::with_config(
        cfg,
        tokio_postgres::NoTls,
        2,
        Arc::new(Histogram::default()),
    )
    .await
    .expect("migrate");
    let alert = NewAlert {
        route: "desk".into(),
        alert_id: "h1/silent/1".into(),
        kind: "net.aupwatch.host.silent".into(),
        host_id: "h1".into(),
        report_id: None,
        body: "{}".into(),
    };
    assert_eq!(
        store.enqueue_alerts(vec![alert], 1).await.expect("outbox"),
        1
    );
    let v: i64 = client
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(v, 3);
}
