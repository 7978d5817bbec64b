//! The store suite on SQLite: two stores (two writers, as two collector processes would
//! be) on one fresh file.

mod common;

use aupwatch_collector::metrics::Histogram;
use aupwatch_collector::store::sqlite::SqliteStore;
use aupwatch_collector::store::Store;
use std::sync::Arc;

async fn open() -> (Arc<dyn Store>, Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.db");
    let a = SqliteStore::open(&path, 64, 16, Arc::new(Histogram::default())).expect("open a");
    let b = SqliteStore::open(&path, 64, 16, Arc::new(Histogram::default())).expect("open b");
    (Arc::new(a), Arc::new(b), dir)
}

store_suite!(open);

/// A version 1 database (before the dashboard) is migrated in place to version 2.
#[tokio::test]
async fn a_version_1_database_gets_the_dashboard_tables() {
    use aupwatch_collector::store::{schema_parts, Role};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v1.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        let (v1, v2) = schema_parts(include_str!("../src/store/schema_sqlite.sql"));
        assert!(v2.contains("CREATE TABLE users"));
        conn.execute_batch(v1).expect("v1 schema");
        conn.execute_batch("PRAGMA user_version = 1")
            .expect("version");
    }
    let s = SqliteStore::open(&path, 64, 16, Arc::new(Histogram::default())).expect("migrate");
    assert!(s
        .create_user("ana".into(), Role::Admin, "h".into(), 1)
        .await
        .expect("users table")
        .is_some());
    let conn = rusqlite::Connection::open(&path).expect("open");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, 2);
}
