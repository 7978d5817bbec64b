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
