//! The report decoder's fuzz inputs kept in the repository (`fuzz/seeds/report_decoder/`,
//! and `fuzz/regressions/report_decoder/`: inputs a run found crashing, kept once fixed),
//! run through what the fuzz target runs, in the normal test suite.

use aupwatch_collector::http::{gunzip, parse_document};
use aupwatch_proto::protocol::{EnrollRequest, ReportBatch};
use std::path::Path;

fn decode(data: &[u8]) {
    if let Ok(plain) = gunzip(data, 1 << 20) {
        let _ = parse_document::<ReportBatch>(&plain);
    }
    let _ = parse_document::<ReportBatch>(data);
    let _ = parse_document::<EnrollRequest>(data);
}

#[test]
fn every_stored_report_decoder_input_runs_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir).join("report_decoder")) else {
            continue;
        };
        for entry in rd {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            let r = std::panic::catch_unwind(|| decode(&bytes));
            assert!(r.is_ok(), "{} panics", path.display());
            n += 1;
        }
    }
    assert!(n >= 2, "the seeds are there");
    // The seeds decode: the example batch, plain and gzipped.
    let plain = std::fs::read(root.join("seeds/report_decoder/batch.json")).expect("seed");
    parse_document::<ReportBatch>(&plain).expect("the example batch parses");
    let gz = std::fs::read(root.join("seeds/report_decoder/batch.json.gz")).expect("seed");
    let back = gunzip(&gz, 1 << 20).expect("gunzip");
    assert_eq!(back, plain);
}
