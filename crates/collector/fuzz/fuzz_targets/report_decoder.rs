#![no_main]

use aupwatch_collector::http::{gunzip, parse_document};
use aupwatch_proto::protocol::{EnrollRequest, ReportBatch};

// As the collector reads a request body: gunzipped (within a limit) when it is gzip, then
// parsed as a strict, versioned document.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(plain) = gunzip(data, 1 << 20) {
        let _ = parse_document::<ReportBatch>(&plain);
    }
    let _ = parse_document::<ReportBatch>(data);
    let _ = parse_document::<EnrollRequest>(data);
});
