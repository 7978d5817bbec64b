-- aupwatch-collector SQLite schema, version 3 (the part below the line "-- version N" migrates a version N - 1 database). PostgreSQL's is store/schema_postgres.sql;
-- keep them alike.
CREATE TABLE enroll_secrets (
    id INTEGER PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    customer TEXT,
    created_unix_ms INTEGER NOT NULL,
    revoked_unix_ms INTEGER
);
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL,
    revoked_unix_ms INTEGER
);
CREATE TABLE hosts (
    host_id TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL UNIQUE,
    hostname TEXT NOT NULL,
    labels TEXT NOT NULL,
    customer TEXT,
    node_key_hash TEXT UNIQUE,
    approved INTEGER NOT NULL,
    blocked INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0,
    archived INTEGER NOT NULL DEFAULT 0,
    stopped INTEGER NOT NULL DEFAULT 0,
    enrolled_unix_ms INTEGER NOT NULL,
    interval_secs INTEGER,
    agent_version TEXT,
    signature_version TEXT,
    last_sequence INTEGER,
    boot_id TEXT,
    findings_as_of_unix_ms INTEGER NOT NULL DEFAULT 0,
    sequence_gaps INTEGER NOT NULL DEFAULT 0,
    sequence_resets INTEGER NOT NULL DEFAULT 0,
    boot_changes INTEGER NOT NULL DEFAULT 0,
    last_anomaly TEXT
);
-- Narrow and written once per batch: the host list's hot column lives apart from hosts.
CREATE TABLE last_seen (
    host_id TEXT PRIMARY KEY,
    last_seen_unix_ms INTEGER NOT NULL
);
CREATE TABLE reports (
    report_id TEXT PRIMARY KEY,
    host_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    boot_id TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    goodbye INTEGER NOT NULL,
    heartbeat TEXT NOT NULL
);
CREATE INDEX reports_received ON reports (received_unix_ms);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    report_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at_unix_ms INTEGER NOT NULL,
    tracked_id TEXT NOT NULL,
    tracked TEXT NOT NULL
);
CREATE INDEX events_host ON events (host_id, at_unix_ms);
CREATE TABLE findings (
    host_id TEXT NOT NULL,
    tracked_id TEXT NOT NULL,
    category TEXT NOT NULL,
    severity TEXT NOT NULL,
    severity_rank INTEGER NOT NULL,
    state TEXT NOT NULL,
    signatures TEXT NOT NULL,
    excepted INTEGER NOT NULL,
    first_seen_unix_ms INTEGER NOT NULL,
    last_seen_unix_ms INTEGER NOT NULL,
    resolved_unix_ms INTEGER,
    tracked TEXT NOT NULL,
    PRIMARY KEY (host_id, tracked_id)
);
CREATE INDEX findings_state ON findings (state, category, severity_rank);
-- version 2
-- The web dashboard's operator accounts, sessions and audit log.
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL
);
-- Only the SHA-256 of a session id is stored.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL,
    expires_unix_ms INTEGER NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at_unix_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_target ON audit (target, at_unix_ms);
CREATE INDEX findings_first_seen ON findings (first_seen_unix_ms);
CREATE INDEX findings_resolved ON findings (resolved_unix_ms);
-- version 3
-- The alert outbox: written in the transaction of the report (or liveness change) that
-- causes it, claimed by a deliverer under a lease, kept as sent or failed.
CREATE TABLE alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    route TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    host_id TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_unix_ms INTEGER NOT NULL,
    next_attempt_unix_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_unix_ms INTEGER,
    done_unix_ms INTEGER,
    last_error TEXT,
    UNIQUE (route, alert_id)
);
CREATE INDEX alerts_due ON alerts (state, next_attempt_unix_ms);
