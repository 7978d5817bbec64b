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
    let mut cfg = admin.clone();
    cfg.dbname(&name);
    let a = PgStore::with_config(cfg.clone(), 8, Arc::new(Histogram::default()))
        .await
        .expect("store a");
    let b = PgStore::with_config(cfg, 8, Arc::new(Histogram::default()))
        .await
        .expect("store b");
    (Arc::new(a), Arc::new(b), ())
}

store_suite!(open, #[ignore = "needs AUPWATCH_TEST_PG_URL (tests/pg.sh start); run with --include-ignored"]);
