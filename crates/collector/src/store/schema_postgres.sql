-- aupwatch-collector PostgreSQL schema, version 3 (the part below the line "-- version N" migrates a version N - 1 database). SQLite's is store/schema_sqlite.sql;
-- keep them alike.
CREATE TABLE enroll_secrets (
    id BIGSERIAL PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    customer TEXT,
    created_unix_ms BIGINT NOT NULL,
    revoked_unix_ms BIGINT
);
CREATE TABLE tokens (
    id BIGSERIAL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_unix_ms BIGINT NOT NULL,
    revoked_unix_ms BIGINT
);
CREATE TABLE hosts (
    host_id TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL UNIQUE,
    hostname TEXT NOT NULL,
    labels TEXT NOT NULL,
    customer TEXT,
    node_key_hash TEXT UNIQUE,
    approved BOOLEAN NOT NULL,
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    stopped BOOLEAN NOT NULL DEFAULT FALSE,
    enrolled_unix_ms BIGINT NOT NULL,
    interval_secs BIGINT,
    agent_version TEXT,
    signature_version TEXT,
    last_sequence BIGINT,
    boot_id TEXT,
    findings_as_of_unix_ms BIGINT NOT NULL DEFAULT 0,
    sequence_gaps BIGINT NOT NULL DEFAULT 0,
    sequence_resets BIGINT NOT NULL DEFAULT 0,
    boot_changes BIGINT NOT NULL DEFAULT 0,
    last_anomaly TEXT
);
-- Narrow and written once per batch: the host list's hot column lives apart from hosts.
CREATE TABLE last_seen (
    host_id TEXT PRIMARY KEY,
    last_seen_unix_ms BIGINT NOT NULL
);
CREATE TABLE reports (
    report_id TEXT PRIMARY KEY,
    host_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    boot_id TEXT NOT NULL,
    created_unix_ms BIGINT NOT NULL,
    received_unix_ms BIGINT NOT NULL,
    goodbye BOOLEAN NOT NULL,
    heartbeat TEXT NOT NULL
);
CREATE INDEX reports_received ON reports (received_unix_ms);
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    report_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at_unix_ms BIGINT NOT NULL,
    tracked_id TEXT NOT NULL,
    tracked TEXT NOT NULL
);
CREATE INDEX events_host ON events (host_id, at_unix_ms);
CREATE TABLE findings (
    host_id TEXT NOT NULL,
    tracked_id TEXT NOT NULL,
    category TEXT NOT NULL,
    severity TEXT NOT NULL,
    severity_rank BIGINT NOT NULL,
    state TEXT NOT NULL,
    signatures TEXT NOT NULL,
    excepted BOOLEAN NOT NULL,
    first_seen_unix_ms BIGINT NOT NULL,
    last_seen_unix_ms BIGINT NOT NULL,
    resolved_unix_ms BIGINT,
    tracked TEXT NOT NULL,
    PRIMARY KEY (host_id, tracked_id)
);
CREATE INDEX findings_state ON findings (state, category, severity_rank);
-- version 2
-- The web dashboard's operator accounts, sessions and audit log.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_unix_ms BIGINT NOT NULL
);
-- Only the SHA-256 of a session id is stored.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_unix_ms BIGINT NOT NULL,
    expires_unix_ms BIGINT NOT NULL
);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at_unix_ms BIGINT NOT NULL,
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
    seq BIGSERIAL PRIMARY KEY,
    route TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    host_id TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    created_unix_ms BIGINT NOT NULL,
    next_attempt_unix_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_unix_ms BIGINT,
    done_unix_ms BIGINT,
    last_error TEXT,
    UNIQUE (route, alert_id)
);
CREATE INDEX alerts_due ON alerts (state, next_attempt_unix_ms);
