//! Shared by the collector's tests: reports built from the published example, and the one
//! store suite every backend runs.
#![allow(dead_code)]

pub mod server;
pub mod suite;

use aupwatch_proto::protocol::{Report, ReportBatch};
use aupwatch_proto::Tracked;
use std::path::{Path, PathBuf};

/// A self-signed P-256 certificate for 127.0.0.1 made with openssl: `<dir>/<name>.pem` and
/// its key `<dir>/<name>.key`.
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl req");
    assert!(
        made.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

/// The published example batch (`crates/proto/schema/examples/report-batch.json`).
pub fn example_batch() -> ReportBatch {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/schema/examples/report-batch.json"
    );
    let text = std::fs::read_to_string(path).expect("example report batch");
    serde_json::from_str(&text).expect("example parses")
}

/// The example report, re-identified.
pub fn report(report_id: &str, machine_id: &str, sequence: u64) -> Report {
    let mut r = example_batch().reports.remove(0);
    r.report_id = report_id.to_string();
    r.machine_id = machine_id.to_string();
    r.sequence = sequence;
    r.created_unix_ms = 1_796_659_200_000 + sequence * 15_000;
    r
}

/// The example's open finding under another id, category and signature.
pub fn finding(id: &str, category: aupwatch_proto::Category, signature: &str) -> Tracked {
    let mut t = example_batch().reports.remove(0).open_findings.remove(0);
    t.id = id.to_string();
    t.finding.category = category;
    t.finding.matches.truncate(1);
    t.finding.matches[0].signature = signature.to_string();
    t
}

pub fn batch(reports: Vec<Report>) -> ReportBatch {
    ReportBatch {
        schema_version: aupwatch_proto::SCHEMA_VERSION,
        reports,
    }
}
