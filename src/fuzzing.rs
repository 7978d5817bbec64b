//! Entry points for the fuzz targets in `fuzz/` (not a workspace member; README.md,
//! "Reliability"): each takes arbitrary bytes and runs the agent's reader of one kind of
//! outside input on them. A crash a target finds is kept as a regression test in
//! `tests/fuzz_regressions.rs`, which runs every stored input through the same function.
//! Not an API.

/// The signature loader on one file's text.
pub fn signatures(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::signatures::load_sources(&[("fuzz.toml".to_string(), text.to_string())]);
}

/// The config loader on one file's text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::config::parse("agent.toml", text);
}

/// The /proc parsers: a process's files, the host's, the network text tables.
pub fn proc_parsers(data: &[u8]) {
    crate::inventory::fuzzing::proc_files(data);
    crate::inventory::fuzzing::host_files(data);
    crate::inventory::fuzzing::net_text(data);
}

/// One sock_diag reply datagram.
pub fn sock_diag(data: &[u8]) {
    crate::inventory::fuzzing::sock_diag(data);
}

/// The open-proxy probe's reply parsers (HTTP status line, SOCKS5, SOCKS4).
pub fn probe_replies(data: &[u8]) {
    let _ = crate::probe::http::parse_status(data);
    let _ = crate::probe::socks::parse_socks5(data);
    let _ = crate::probe::socks::parse_socks4(data);
}

/// The collector reports' spool: a file name, a spooled report, `state.json`.
pub fn spool(data: &[u8]) {
    crate::report::spool::read_untrusted(data);
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target by name, for the regression test and `fuzz/`.
pub const TARGETS: [(&str, Target); 6] = [
    ("signatures", signatures),
    ("config", config),
    ("proc_parsers", proc_parsers),
    ("sock_diag", sock_diag),
    ("probe_replies", probe_replies),
    ("spool", spool),
];
