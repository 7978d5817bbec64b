//! JSON Schemas of the documents, generated from the types (feature `schema`). The
//! published files under `crates/proto/schema/` are checked against these by a test.

use schemars::Schema;

/// Every top-level document: (file stem, schema).
pub fn all() -> Vec<(&'static str, Schema)> {
    vec![
        ("event", schemars::schema_for!(crate::Event)),
        ("status", schemars::schema_for!(crate::status::Status)),
        (
            "enroll-request",
            schemars::schema_for!(crate::protocol::EnrollRequest),
        ),
        (
            "enroll-response",
            schemars::schema_for!(crate::protocol::EnrollResponse),
        ),
        (
            "report-batch",
            schemars::schema_for!(crate::protocol::ReportBatch),
        ),
        (
            "report-ack",
            schemars::schema_for!(crate::protocol::ReportAck),
        ),
        (
            "api-error",
            schemars::schema_for!(crate::protocol::ApiError),
        ),
        ("api-hosts", schemars::schema_for!(Vec<crate::api::HostRow>)),
        ("api-finding", schemars::schema_for!(crate::api::FindingRow)),
        (
            "api-finding-page",
            schemars::schema_for!(crate::api::FindingPage),
        ),
        ("api-summary", schemars::schema_for!(crate::api::Summary)),
    ]
}
