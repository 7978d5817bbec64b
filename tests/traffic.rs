//! The AUP's traffic-shape rule (at most 1 packet/s per 1 kbit/s sent) on real interface
//! counters: a small-packet UDP flood trips it, a bulk transfer does not. Both run on the
//! loopback of their own loopback-only network namespace, bounded in count and time.

mod common;

use common::{prerequisites, Lab, Spawn};

/// The shipped rule leaves `lo` out (traffic that never leaves the host); these tests can
/// only use loopback, so they load the same rule with `lo` allowed.
const SIGNATURES: &str = r#"
[[signature]]
id = "traffic-shape.test_small_packets"
category = "traffic-shape"
severity = "medium"
description = "more packets/s than kbit/s above 1000 packets/s"
aup = "Traffic shape: at most 1 packet/s per 1 kbit/s sent"
subject = "interface"
match = { traffic = { min_pps = 1000, max_avg_packet_bytes = 125 } }
"#;

/// Sends 32-byte UDP datagrams to a closed port on 127.0.0.1 for at most 40 s or 20 million
/// packets, whichever comes first.
const FLOOD: &str = r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * 32
end = time.monotonic() + 40
n = 0
while n < 20_000_000 and time.monotonic() < end:
    for _ in range(1000):
        s.sendto(payload, ("127.0.0.1", 9))
    n += 1000
"#;

/// A TCP server that drains, and a client that sends 64 KiB writes to it over 127.0.0.1,
/// for at most 40 s or 20 GiB.
const BULK: &str = r#"
import socket, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 47100)); srv.listen(1)
def drain():
    c, _ = srv.accept()
    while c.recv(1 << 20):
        pass
threading.Thread(target=drain, daemon=True).start()
cli = socket.create_connection(("127.0.0.1", 47100))
chunk = b"y" * 65536
end = time.monotonic() + 40
sent = 0
while sent < 20 << 30 and time.monotonic() < end:
    cli.sendall(chunk)
    sent += len(chunk)
"#;

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn a_small_packet_flood_breaks_the_traffic_rule_and_a_bulk_transfer_does_not() {
    const T: &str = "a_small_packet_flood_breaks_the_traffic_rule_and_a_bulk_transfer_does_not";
    let programs = prerequisites(T, &["python3"]);
    let python = &programs[0];
    let mut flood = Lab::new(T, "pps");
    let mut bulk = Lab::new(T, "bulk");
    let sigdir = flood.dir().join("signatures");
    flood.write("signatures/traffic.toml", SIGNATURES);

    flood.start("udp flood", Spawn::new(python).args(["-c", FLOOD]));
    let bulk_pid = bulk.start("bulk transfer", Spawn::new(python).args(["-c", BULK]));
    bulk.wait_connected("bulk transfer", bulk_pid, 47100);

    let report = common::scan(&["--signatures", &sigdir.to_string_lossy()]);
    let f = report.expect_interface(&flood, "lo", "traffic-shape");
    let evidence = f["evidence"][0]["value"].as_str().unwrap_or("");
    assert!(
        evidence.starts_with("sent "),
        "traffic evidence: {evidence}"
    );
    assert!(
        report.in_netns(bulk.netns()).is_empty(),
        "a bulk transfer is not a traffic-shape breach: {}",
        report.explain(&bulk)
    );
}
