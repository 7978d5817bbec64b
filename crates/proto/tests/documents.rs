//! The documents on the wire: the published schemas match the types, examples round-trip,
//! and strict readers refuse what they do not know.

use aupwatch_proto::protocol::{ReportBatch, REPORT_PATH};
use aupwatch_proto::{Event, EventKind, Finding, Subject, SCHEMA_VERSION};
use std::path::PathBuf;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema")
}

/// `crates/proto/schema/*.json` are what the types say. To refresh them after changing a
/// type: `UPDATE_SCHEMAS=1 cargo test -p aupwatch-proto --test documents`.
#[test]
fn published_schemas_match_the_types() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (stem, schema) in aupwatch_proto::schema::all() {
        let mut text = serde_json::to_string_pretty(&schema).expect("schema serializes");
        text.push('\n');
        let path = schema_dir().join(format!("{stem}.schema.json"));
        if update {
            std::fs::write(&path, &text).expect("write schema");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "schema files differ from the types (run with UPDATE_SCHEMAS=1 and review the diff): {stale:?}"
    );
}

fn example(name: &str) -> String {
    let path = schema_dir().join("examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn example_report_batch_round_trips() {
    let text = example("report-batch.json");
    let batch: ReportBatch = serde_json::from_str(&text).expect("example parses");
    assert_eq!(batch.schema_version, SCHEMA_VERSION);
    let report = &batch.reports[0];
    assert_eq!(report.events[0].kind, EventKind::New);
    let finding: &Finding = &report.open_findings[0].finding;
    assert!(matches!(finding.subject, Subject::Process(_)));
    assert_eq!(
        finding.signatures().collect::<Vec<_>>(),
        ["mining.xmrig", "mining.pool-port"]
    );
    let again: ReportBatch =
        serde_json::from_str(&serde_json::to_string(&batch).expect("serialize")).expect("parse");
    assert_eq!(again, batch);
    assert!(REPORT_PATH.starts_with("/api/agent/v1/"));
}

#[test]
fn unknown_keys_are_refused_at_every_depth() {
    let text = example("report-batch.json");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("parses");
    value["reports"][0]["open_findings"][0]["finding"]["subject"]["surprise"] = 1.into();
    let err = serde_json::from_value::<ReportBatch>(value).expect_err("unknown key refused");
    assert!(err.to_string().contains("surprise"), "{err}");

    let mut value: serde_json::Value = serde_json::from_str(&text).expect("parses");
    value["reports"][0]["heartbeat"]["extra"] = true.into();
    assert!(serde_json::from_value::<ReportBatch>(value).is_err());
}

#[test]
fn an_event_is_one_json_line_with_its_version() {
    let text = example("report-batch.json");
    let batch: ReportBatch = serde_json::from_str(&text).expect("parses");
    let event: &Event = &batch.reports[0].events[0];
    let line = serde_json::to_string(event).expect("serialize");
    assert!(!line.contains('\n'));
    assert!(line.starts_with(&format!("{{\"schema_version\":{SCHEMA_VERSION},")));
}
