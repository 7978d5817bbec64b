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

/// A version 1 database (before the dashboard) is migrated in place to version 3 (the
/// dashboard's tables, then the alert outbox); a version 2 one gets the outbox.
#[tokio::test]
async fn older_databases_are_migrated() {
    use aupwatch_collector::store::{schema_steps, Role};
    let steps = schema_steps(include_str!("../src/store/schema_sqlite.sql"));
    assert_eq!(steps.len(), 3);
    assert!(steps[1].contains("CREATE TABLE users"));
    assert!(steps[2].contains("CREATE TABLE alerts"));
    for from in [1, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        {
            let conn = rusqlite::Connection::open(&path).expect("open");
            for step in &steps[..from] {
                conn.execute_batch(step).expect("old schema");
            }
            conn.execute_batch(&format!("PRAGMA user_version = {from}"))
                .expect("version");
        }
        let s = SqliteStore::open(&path, 64, 16, Arc::new(Histogram::default())).expect("migrate");
        if from == 1 {
            assert!(s
                .create_user("ana".into(), Role::Admin, "h".into(), 1)
                .await
                .expect("users table")
                .is_some());
        }
        assert_eq!(s.count_rows("alerts").await.expect("alerts table"), 0);
        let conn = rusqlite::Connection::open(&path).expect("open");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, 3, "from version {from}");
    }
}
