use super::*;
use crate::inventory::{Interface, Protocol, SocketState};
use crate::signatures::load_sources;

const NS: u64 = 4026532000;

fn set(body: &str) -> SignatureSet {
    load_sources(&[("t.toml".into(), body.into())]).expect("valid signatures")
}

fn sig(id: &str, matcher: &str) -> String {
    let cat = id.split('.').next().unwrap_or("mining");
    format!("[[signature]]\nid = \"{id}\"\ncategory = \"{cat}\"\nseverity = \"high\"\ndescription = \"d\"\naup = \"a\"\nmatch = {matcher}\n\n")
}

fn proc(pid: i32, ppid: i32, comm: &str, exe: &str, args: &[&str]) -> Process {
    Process {
        pid,
        ppid,
        comm: comm.into(),
        exe: Some(exe.into()),
        cmdline: args.iter().map(|s| s.to_string()).collect(),
        netns: NS,
        start_ticks: 1000,
        ..Process::default()
    }
}

fn socket(
    owner: i32,
    proto: Protocol,
    local: &str,
    remote: Option<&str>,
    state: SocketState,
) -> Socket {
    Socket {
        netns: NS,
        protocol: proto,
        local: local.parse().expect("addr"),
        remote: remote.map(|r| r.parse().expect("addr")),
        state,
        uid: 0,
        inode: 0,
        owners: vec![owner],
    }
}

fn snapshot(processes: Vec<Process>, sockets: Vec<Socket>) -> Snapshot {
    Snapshot {
        uptime_secs: 100_000.0,
        ticks_per_second: 100,
        processes,
        sockets,
        ..Snapshot::default()
    }
}

fn ids(findings: &[Finding]) -> Vec<(String, i32)> {
    findings
        .iter()
        .map(|f| (f.signature.clone(), f.process.as_ref().map_or(0, |p| p.pid)))
        .collect()
}

fn found(snap: &Snapshot, set: &SignatureSet) -> Vec<(String, i32)> {
    ids(&run(snap, &History::default(), set))
}

#[test]
fn name_matches_comm_exe_or_argv0_and_says_which() {
    let s = set(&sig("mining.x", "{ name = [\"xmrig\"] }"));
    let snap = snapshot(
        vec![
            proc(10, 1, "xmrig", "/opt/xmrig", &["./xmrig"]),
            proc(11, 1, "kworker", "/tmp/.x/XMRig", &["kworker"]),
            proc(
                12,
                1,
                "python3",
                "/usr/bin/python3",
                &["/home/u/xmrig", "-o"],
            ),
            proc(13, 1, "gzip", "/usr/bin/gzip", &["gzip", "xmrig.tar"]),
        ],
        vec![],
    );
    let f = run(&snap, &History::default(), &s);
    assert_eq!(
        ids(&f),
        vec![
            ("mining.x".into(), 10),
            ("mining.x".into(), 11),
            ("mining.x".into(), 12)
        ]
    );
    assert_eq!(f[0].evidence[0].value, "comm \"xmrig\"");
    assert_eq!(f[1].evidence[0].value, "exe basename \"XMRig\"");
    assert_eq!(f[2].evidence[0].value, "argv[0] basename \"xmrig\"");
}

#[test]
fn kernel_threads_never_match() {
    let s = set(&sig("mining.x", "{ name = [\"kworker*\"] }"));
    let mut k = proc(2, 0, "kworker/0:1", "", &[]);
    k.exe = None;
    k.kernel_thread = true;
    assert_eq!(found(&snapshot(vec![k], vec![]), &s), vec![]);
}

#[test]
fn listen_honours_port_protocol_and_bind() {
    let s = set(&[
        sig(
            "tor.public",
            "{ listen = { port = [9001], protocol = \"tcp\", bind = \"public\" } }",
        ),
        sig(
            "tor.loop",
            "{ listen = { port = [\"9000-9100\"], bind = \"loopback\" } }",
        ),
        sig(
            "tor.udp",
            "{ listen = { port = [9001], protocol = \"udp\" } }",
        ),
    ]
    .concat());
    let snap = snapshot(
        vec![
            proc(20, 1, "a", "/a", &["a"]),
            proc(21, 1, "b", "/b", &["b"]),
            proc(22, 1, "c", "/c", &["c"]),
        ],
        vec![
            socket(20, Protocol::Tcp, "0.0.0.0:9001", None, SocketState::Listen),
            socket(
                21,
                Protocol::Tcp,
                "127.0.0.1:9050",
                None,
                SocketState::Listen,
            ),
            socket(
                21,
                Protocol::Tcp,
                "[::ffff:127.0.0.1]:9051",
                None,
                SocketState::Listen,
            ),
            // connected, not listening, on the same port: never a listener
            socket(
                22,
                Protocol::Tcp,
                "10.0.0.1:9001",
                Some("127.0.0.1:5555"),
                SocketState::Established,
            ),
            socket(
                22,
                Protocol::Udp,
                "[::]:9001",
                None,
                SocketState::Unconnected,
            ),
        ],
    );
    let f = run(&snap, &History::default(), &s);
    assert_eq!(
        ids(&f),
        vec![
            ("tor.loop".into(), 21),
            ("tor.public".into(), 20),
            ("tor.udp".into(), 22)
        ]
    );
    assert_eq!(
        f[0].sockets.len(),
        2,
        "both loopback listeners are evidence"
    );
    assert_eq!(f[1].evidence[0].value, "tcp 0.0.0.0:9001");
}

#[test]
fn remote_counts_connections_and_peers_counts_addresses() {
    let s = set(&[
        sig(
            "irc.client",
            "{ remote = { port = [\"6660-6669\"], protocol = \"tcp\" } }",
        ),
        sig("irc.clones", "{ remote = { port = [6667], min = 3 } }"),
        sig(
            "vpn.service",
            "{ peers = { min = 3, local_port = [1194] } }",
        ),
    ]
    .concat());
    let est = SocketState::Established;
    let snap = snapshot(
        vec![
            proc(30, 1, "irssi", "/irssi", &["irssi"]),
            proc(31, 1, "bot", "/bot", &["bot"]),
            proc(32, 1, "openvpn", "/ovpn", &["openvpn"]),
        ],
        vec![
            socket(
                30,
                Protocol::Tcp,
                "127.0.0.1:40000",
                Some("127.0.0.1:6667"),
                est,
            ),
            socket(
                31,
                Protocol::Tcp,
                "127.0.0.1:40001",
                Some("127.0.0.1:6667"),
                est,
            ),
            socket(
                31,
                Protocol::Tcp,
                "127.0.0.1:40002",
                Some("127.0.0.1:6667"),
                SocketState::SynSent,
            ),
            socket(
                31,
                Protocol::Tcp,
                "127.0.0.1:40003",
                Some("127.0.0.2:6667"),
                est,
            ),
            // a closing connection is not a connection
            socket(
                30,
                Protocol::Tcp,
                "127.0.0.1:40004",
                Some("127.0.0.1:6667"),
                SocketState::TimeWait,
            ),
            // vpn: 4 connections but only 2 distinct peers on 1194, one on another port
            socket(
                32,
                Protocol::Tcp,
                "127.0.0.1:1194",
                Some("127.0.0.5:1000"),
                est,
            ),
            socket(
                32,
                Protocol::Tcp,
                "127.0.0.1:1194",
                Some("127.0.0.5:1001"),
                est,
            ),
            socket(
                32,
                Protocol::Tcp,
                "127.0.0.1:1194",
                Some("127.0.0.6:1000"),
                est,
            ),
            socket(
                32,
                Protocol::Tcp,
                "127.0.0.1:22",
                Some("127.0.0.7:1000"),
                est,
            ),
        ],
    );
    assert_eq!(
        found(&snap, &s),
        vec![
            ("irc.client".into(), 30),
            ("irc.client".into(), 31),
            ("irc.clones".into(), 31)
        ]
    );
    // a third distinct client makes it a service
    let mut snap = snap;
    snap.sockets.push(socket(
        32,
        Protocol::Udp,
        "0.0.0.0:1194",
        Some("127.0.0.8:999"),
        est,
    ));
    let f = run(&snap, &History::default(), &s);
    let vpn = f
        .iter()
        .find(|f| f.signature == "vpn.service")
        .expect("vpn finding");
    assert!(
        vpn.evidence[0].value.starts_with("3 distinct peer(s)"),
        "{:?}",
        vpn.evidence
    );
}

#[test]
fn combinators_and_evidence() {
    let s = set(&sig(
        "tor.relay",
        "{ all = [ { name = [\"tor\"] }, { any = [ { listen = { port = [9001] } }, { cmdline = '--ORPort\\b' } ] }, { not = { user = [\"nobody\"] } } ] }",
    ));
    let mut nobody = proc(41, 1, "tor", "/usr/bin/tor", &["tor", "--ORPort", "9001"]);
    nobody.user = Some("nobody".into());
    let snap = snapshot(
        vec![
            proc(40, 1, "tor", "/usr/bin/tor", &["tor", "--ORPort", "9001"]),
            nobody,
            proc(
                42,
                1,
                "tor",
                "/usr/bin/tor",
                &["tor", "--SocksPort", "9050"],
            ),
            proc(43, 1, "vim", "/usr/bin/vim", &["vim", "--ORPort"]),
        ],
        vec![],
    );
    let f = run(&snap, &History::default(), &s);
    assert_eq!(ids(&f), vec![("tor.relay".into(), 40)]);
    let preds: Vec<&str> = f[0].evidence.iter().map(|e| e.predicate.as_str()).collect();
    assert_eq!(preds, vec!["cmdline", "name"]);
    assert!(f[0].evidence[0].value.starts_with("\"--ORPort\" in"));
}

#[test]
fn children_fold_into_the_topmost_matching_ancestor() {
    let s = set(&sig("proxy.squid", "{ name = [\"squid\"] }"));
    let snap = snapshot(
        vec![
            proc(1, 0, "init", "/sbin/init", &["init"]),
            proc(50, 1, "squid", "/usr/sbin/squid", &["squid"]),
            proc(51, 50, "squid", "/usr/sbin/squid", &["(squid-1)"]),
            proc(52, 51, "helper", "/usr/lib/h", &["h"]),
            proc(53, 52, "squid", "/usr/sbin/squid", &["squid"]),
            proc(60, 1, "squid", "/usr/sbin/squid", &["squid"]),
        ],
        vec![],
    );
    let f = run(&snap, &History::default(), &s);
    assert_eq!(
        ids(&f),
        vec![("proxy.squid".into(), 50), ("proxy.squid".into(), 60)]
    );
    assert_eq!(f[0].related_pids, vec![51, 53]);
}

#[test]
fn a_different_program_below_a_matching_parent_keeps_its_own_finding() {
    let s = set(&sig("evasion.deleted", "{ exe_deleted = true }"));
    let mut sshd = proc(50, 1, "sshd", "/usr/sbin/sshd", &["sshd"]);
    sshd.exe_deleted = true; // not restarted after an upgrade
    let mut worker = proc(51, 50, "sshd", "/usr/sbin/sshd", &["sshd: root"]);
    worker.exe_deleted = true;
    let mut miner = proc(52, 51, "x", "/tmp/.x/x", &["x"]);
    miner.exe_deleted = true;
    let mut elsewhere = proc(53, 51, "sshd", "/usr/sbin/sshd", &["sshd"]);
    elsewhere.exe_deleted = true;
    elsewhere.netns = NS + 1;
    let snap = snapshot(vec![sshd, worker, miner, elsewhere], vec![]);
    let f = run(&snap, &History::default(), &s);
    let mut got: Vec<(i32, Vec<i32>)> = f
        .iter()
        .map(|f| {
            (
                f.process.as_ref().map_or(0, |p| p.pid),
                f.related_pids.clone(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![(50, vec![51]), (52, vec![]), (53, vec![])]);
}

#[test]
fn sustained_cpu_needs_the_whole_window_or_a_long_busy_life() {
    let s = set(&sig(
        "mining.busy",
        "{ cpu = { min_percent = 80, for = \"10m\" } }",
    ));
    let at = |uptime: f64, ticks: &[(i32, u64)]| {
        let mut snap = snapshot(
            ticks
                .iter()
                .map(|&(pid, t)| {
                    let mut p = proc(pid, 1, "x", "/x", &["x"]);
                    p.cpu_ticks = t;
                    p.start_ticks = 0;
                    p
                })
                .collect(),
            vec![],
        );
        snap.uptime_secs = uptime;
        snap
    };
    let mut h = History::new(600);
    // pid 70: 100 % throughout; pid 71: 100 % but idles for one interval; pid 72: a short spike
    let mut t = [(70, 0u64), (71, 0), (72, 0)];
    for step in 0..=40 {
        let uptime = 1000.0 + step as f64 * 15.0;
        if step > 0 {
            t[0].1 += 1500;
            t[1].1 += if step == 30 { 0 } else { 1500 };
            t[2].1 += if step == 40 { 1500 } else { 0 };
        }
        h.observe(&at(uptime, &t));
    }
    let snap = at(1600.0, &t);
    let f = run(&snap, &h, &s);
    assert_eq!(ids(&f), vec![("mining.busy".into(), 70)]);
    assert!(
        f[0].evidence[0].value.contains("over the last 10m"),
        "{:?}",
        f[0].evidence
    );

    // One-shot: no history beyond a 2 s sample, so the average since start decides.
    let mut old_busy = proc(80, 1, "x", "/x", &["x"]);
    old_busy.start_ticks = 0; // started at boot, 100 000 s ago
    old_busy.cpu_ticks = 9_500_000; // 95 % on average
    let mut young = proc(81, 1, "x", "/x", &["x"]);
    young.start_ticks = 100_000 * 100 - 300 * 100; // 5 minutes old, 100 % busy
    young.cpu_ticks = 300 * 100;
    let snap = snapshot(vec![old_busy, young], vec![]);
    assert_eq!(found(&snap, &s), vec![("mining.busy".into(), 80)]);
}

#[test]
fn interface_signatures_match_interfaces() {
    let s = set("[[signature]]\nid = \"vpn.wg\"\ncategory = \"vpn\"\nseverity = \"high\"\ndescription = \"d\"\naup = \"a\"\nsubject = \"interface\"\nmatch = { interface = [\"wg*\"] }\n");
    let iface = |name: &str| Interface {
        netns: NS,
        name: name.into(),
        rx_bytes: 0,
        rx_packets: 0,
        tx_bytes: 0,
        tx_packets: 0,
        multicast_groups: Vec::new(),
    };
    let mut snap = snapshot(vec![], vec![]);
    snap.interfaces = vec![iface("lo"), iface("wg0"), iface("eth0")];
    let f = run(&snap, &History::default(), &s);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].interface,
        Some(InterfaceRef {
            netns: NS,
            name: "wg0".into()
        })
    );
}

#[test]
fn output_is_sorted_and_deterministic() {
    let s = set(&[
        sig("irc.a", "{ name = [\"a*\"] }"),
        sig("mining.b", "{ name = [\"a*\"] }"),
    ]
    .concat());
    let mut procs = vec![
        proc(90, 1, "a1", "/a1", &["a1"]),
        proc(91, 1, "a2", "/a2", &["a2"]),
    ];
    let f1 = run(&snapshot(procs.clone(), vec![]), &History::default(), &s);
    procs.reverse();
    let f2 = run(&snapshot(procs, vec![]), &History::default(), &s);
    assert_eq!(f1, f2);
    // same severity: category order (mining before irc), then pid
    assert_eq!(
        ids(&f1),
        vec![
            ("mining.b".into(), 90),
            ("mining.b".into(), 91),
            ("irc.a".into(), 90),
            ("irc.a".into(), 91)
        ]
    );
}

#[test]
fn explain_shows_every_predicate_tried() {
    let s = set(&sig(
        "tor.relay",
        "{ all = [ { name = [\"tor\"] }, { listen = { port = [9001] } } ] }",
    ));
    let snap = snapshot(vec![proc(95, 1, "tor", "/usr/bin/tor", &["tor"])], vec![]);
    let e = explain(&snap, &History::default(), &s, 95).expect("pid exists");
    assert_eq!(e.len(), 1);
    assert!(!e[0].matched);
    let trials: Vec<(&str, bool)> = e[0]
        .trials
        .iter()
        .map(|t| (t.predicate, t.matched))
        .collect();
    assert_eq!(trials, vec![("name", true), ("listen", false)]);
    assert_eq!(e[0].trials[1].seen, "not listening");
    assert!(explain(&snap, &History::default(), &s, 96).is_none());
}

#[test]
fn udp_client_sockets_are_not_listeners_unless_their_port_is_named() {
    let s = set(&[
        sig("proxy.any", "{ listen = { bind = \"public\" } }"),
        sig(
            "vpn.named",
            "{ listen = { port = [51820], protocol = \"udp\" } }",
        ),
    ]
    .concat());
    let udp = |pid, addr: &str| socket(pid, Protocol::Udp, addr, None, SocketState::Unconnected);
    let snap = snapshot(
        vec![
            proc(110, 1, "resolver", "/r", &["r"]),
            proc(111, 1, "dns", "/d", &["d"]),
            proc(112, 1, "wg", "/w", &["w"]),
        ],
        vec![
            udp(110, "0.0.0.0:47155"),
            udp(111, "0.0.0.0:53"),
            udp(112, "0.0.0.0:51820"),
        ],
    );
    assert_eq!(
        found(&snap, &s),
        vec![("vpn.named".into(), 112), ("proxy.any".into(), 111)]
    );
}

#[test]
fn traffic_rule_needs_small_packets_above_the_floor() {
    let s = set("[[signature]]\nid = \"traffic-shape.pps\"\ncategory = \"traffic-shape\"\nseverity = \"medium\"\ndescription = \"d\"\naup = \"a\"\nsubject = \"interface\"\nmatch = { all = [ { not = { interface = [\"lo\"] } }, { traffic = { min_pps = 1000, max_avg_packet_bytes = 125 } } ] }\n");
    // (name, packets/s, bytes/packet)
    let ifaces = [
        ("flood0", 20_000u64, 60u64),
        ("bulk0", 20_000, 1500),
        ("quiet0", 500, 60),
        ("lo", 50_000, 60),
        ("idle0", 0, 0),
    ];
    let at = |uptime: f64, secs: u64| {
        let mut snap = snapshot(vec![], vec![]);
        snap.uptime_secs = uptime;
        snap.interfaces = ifaces
            .iter()
            .map(|&(name, pps, size)| Interface {
                netns: NS,
                name: name.into(),
                rx_bytes: 0,
                rx_packets: 0,
                tx_packets: 1_000_000 + pps * secs,
                tx_bytes: 9_000_000 + pps * size * secs,
                multicast_groups: Vec::new(),
            })
            .collect();
        snap
    };
    let mut h = History::new(60);
    h.observe(&at(1000.0, 0));
    let snap = at(1002.0, 2);
    h.observe(&snap);
    let f = run(&snap, &h, &s);
    let names: Vec<&str> = f
        .iter()
        .filter_map(|f| f.interface.as_ref().map(|i| i.name.as_str()))
        .collect();
    assert_eq!(names, vec!["flood0"]);
    assert_eq!(
        f[0].evidence[0].value,
        "sent 20000 packets/s at 9600 kbit/s (60 bytes/packet on average) over 2s"
    );
    // without two samples there is no rate, so nothing is claimed
    assert!(run(&snap, &History::default(), &s).is_empty());
}

#[test]
fn a_failed_all_leaves_no_evidence_behind() {
    // the first alternative's name test holds but its traffic test cannot (no history):
    // only the second alternative's evidence may show
    let s = set("[[signature]]\nid = \"vpn.wg\"\ncategory = \"vpn\"\nseverity = \"high\"\ndescription = \"d\"\naup = \"a\"\nsubject = \"interface\"\nmatch = { any = [ { all = [ { interface = [\"wg*\"] }, { traffic = { min_pps = 1, max_avg_packet_bytes = 9999 } } ] }, { interface = [\"wg0\"] } ] }\n");
    let mut snap = snapshot(vec![], vec![]);
    snap.interfaces = vec![Interface {
        netns: NS,
        name: "wg0".into(),
        rx_bytes: 0,
        rx_packets: 0,
        tx_bytes: 0,
        tx_packets: 0,
        multicast_groups: Vec::new(),
    }];
    let f = run(&snap, &History::default(), &s);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].evidence,
        vec![Evidence {
            predicate: "interface".into(),
            value: "name \"wg0\"".into()
        }]
    );
}

#[test]
fn process_profile_predicates_policy_nice_exe_and_comm() {
    let s = set(&[
        sig("mining.idle", "{ policy = [\"idle\", \"batch\"] }"),
        sig("mining.nice", "{ nice = { min = 19 } }"),
        sig("evasion.deleted", "{ exe_deleted = true }"),
        sig(
            "mining.strings",
            "{ exe_strings = { strings = [\"randomx\", \"stratum+tcp\"], min = 2 } }",
        ),
        sig("evasion.comm", "{ comm_mismatch = true }"),
    ]
    .concat());
    let mut idle = proc(10, 1, "a", "/usr/bin/a", &["a"]);
    idle.sched_policy = 5;
    let mut nice = proc(11, 1, "b", "/usr/bin/b", &["b"]);
    nice.nice = 19;
    let mut deleted = proc(12, 1, "c", "/tmp/c", &["c"]);
    deleted.exe_deleted = true;
    let mut memfd = proc(13, 1, "d", "/memfd:x", &["d"]);
    memfd.exe_deleted = true;
    let mut strings = proc(14, 1, "e", "/usr/bin/e", &["e"]);
    strings.exe_strings = vec!["randomx".into(), "stratum+tcp".into()];
    let mut one_string = proc(15, 1, "f", "/usr/bin/f", &["f"]);
    one_string.exe_strings = vec!["randomx".into()];
    // comm renamed to look like a kernel worker; argv[0] and exe agree with each other
    let renamed = proc(16, 1, "kworker/0:1", "/tmp/.x/miner", &["/tmp/.x/miner"]);
    // 15-byte comm cut of a long executable name is not a mismatch, nor is argv[0] alone
    let long = proc(
        17,
        1,
        "systemd-journal",
        "/usr/lib/systemd/systemd-journald",
        &["j"],
    );
    let script = proc(18, 1, "backup.sh", "/usr/bin/bash", &["backup.sh"]);
    let snap = snapshot(
        vec![
            idle, nice, deleted, memfd, strings, one_string, renamed, long, script,
        ],
        vec![],
    );
    let mut got = found(&snap, &s);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("evasion.comm".to_string(), 16),
            ("evasion.deleted".to_string(), 12),
            ("evasion.deleted".to_string(), 13),
            ("mining.idle".to_string(), 10),
            ("mining.nice".to_string(), 11),
            ("mining.strings".to_string(), 14),
        ]
    );
    let f = run(&snap, &History::default(), &s);
    let ev = |sig: &str| {
        f.iter()
            .find(|f| f.signature == sig)
            .map(|f| f.evidence[0].value.clone())
            .unwrap_or_default()
    };
    assert_eq!(ev("mining.idle"), "scheduling policy idle");
    assert_eq!(
        ev("mining.strings"),
        "executable contains \"randomx\", \"stratum+tcp\""
    );
    assert!(
        ev("evasion.comm").contains("\"kworker/0:1\""),
        "{}",
        ev("evasion.comm")
    );
}

#[test]
fn steady_cpu_needs_low_variation_over_the_window() {
    let s = set(&sig(
        "mining.steady",
        "{ cpu = { min_percent = 50, for = \"60s\", max_variation = 0.1 } }",
    ));
    let mut h = History::new(600);
    let at = |uptime: f64, ticks: &[(i32, u64)]| {
        let mut snap = snapshot(
            ticks
                .iter()
                .map(|&(pid, t)| {
                    let mut p = proc(pid, 1, "w", "/usr/bin/w", &["w"]);
                    p.cpu_ticks = t;
                    p
                })
                .collect(),
            vec![],
        );
        snap.uptime_secs = uptime;
        snap
    };
    // pid 10: 100% every interval; pid 11: alternates 100% and 60% (above 50, not steady)
    let mut t10 = 0;
    let mut t11 = 0;
    let mut last = snapshot(vec![], vec![]);
    for i in 0..=6u64 {
        let snap = at(100_000.0 + i as f64 * 15.0, &[(10, t10), (11, t11)]);
        h.observe(&snap);
        last = snap;
        t10 += 1500;
        t11 += if i % 2 == 0 { 1500 } else { 900 };
    }
    assert_eq!(ids(&run(&last, &h, &s)), vec![("mining.steady".into(), 10)]);
    // one-shot: no history over the window, so steadiness cannot be shown
    assert!(run(&last, &History::default(), &s).is_empty());
}

#[test]
fn windowed_connections_count_what_history_saw() {
    let s = set(&[
        sig(
            "mail.bulk",
            "{ remote = { port = [25, 587], min = 3, for = \"10m\" } }",
        ),
        sig(
            "scanner.ports",
            "{ peers = { min = 3, count = \"ports\", state = [\"syn_sent\"] } }",
        ),
    ]
    .concat());
    assert!(s.needs_connection_history);
    let mut h = History::new(600);
    h.set_connection_filters(s.connection_filters.clone());
    let mailer = || proc(10, 1, "mailer", "/usr/bin/python3", &["mailer"]);
    let conn = |port: u16, remote: &str| {
        socket(
            10,
            Protocol::Tcp,
            &format!("127.0.0.1:{port}"),
            Some(remote),
            SocketState::Established,
        )
    };
    // one connection at a time, a different one each scan: never 3 at once
    let mut last = snapshot(vec![], vec![]);
    for (i, port) in [40001u16, 40002, 40003].iter().enumerate() {
        let mut snap = snapshot(vec![mailer()], vec![conn(*port, "127.0.0.2:25")]);
        snap.uptime_secs = 100_000.0 + i as f64 * 15.0;
        h.observe(&snap);
        last = snap;
    }
    let f = run(&last, &h, &s);
    assert_eq!(ids(&f), vec![("mail.bulk".into(), 10)]);
    assert!(f[0].evidence[0]
        .value
        .starts_with("3 distinct connection(s) seen over the last 10m"));
    // the same connections are forgotten once they fall out of the window
    let mut later = snapshot(vec![mailer()], vec![]);
    later.uptime_secs = 100_000.0 + 3600.0;
    h.observe(&later);
    assert!(run(&later, &h, &s).is_empty());
    assert_eq!(h.connections(&mailer()).count(), 0, "connections forgotten");
    // half-open connections to distinct ports: a sweep
    let syn = |port: u16| {
        socket(
            11,
            Protocol::Tcp,
            "127.0.0.1:50000",
            Some(&format!("127.0.0.1:{port}")),
            SocketState::SynSent,
        )
    };
    let snap = snapshot(
        vec![proc(11, 1, "x", "/usr/bin/x", &["x"])],
        vec![syn(22), syn(80), syn(443)],
    );
    assert_eq!(found(&snap, &s), vec![("scanner.ports".into(), 11)]);
}

#[test]
fn connection_history_is_bounded_per_process() {
    let mut h = History::new(86_400);
    h.set_connection_filters(vec![crate::signatures::ConnFilter::default()]);
    for scan in 0..3u32 {
        let sockets: Vec<Socket> = (0..3000u32)
            .map(|i| {
                let n = scan * 3000 + i;
                socket(
                    10,
                    Protocol::Tcp,
                    "127.0.0.1:1000",
                    Some(&format!(
                        "127.{}.{}.{}:25",
                        (n >> 16) & 255,
                        (n >> 8) & 255,
                        n & 255
                    )),
                    SocketState::Established,
                )
            })
            .collect();
        let mut snap = snapshot(vec![proc(10, 1, "m", "/usr/bin/m", &["m"])], sockets);
        snap.uptime_secs = 1000.0 + f64::from(scan);
        h.observe(&snap);
    }
    let held = h
        .connections(&proc(10, 1, "m", "/usr/bin/m", &["m"]))
        .count();
    assert_eq!(held, history::MAX_CONNECTIONS);
}

#[test]
fn multicast_sockets_and_interface_groups() {
    let s = set(&[
        sig("multicast.socket", "{ multicast = {} }"),
        "[[signature]]\nid = \"multicast.groups\"\ncategory = \"multicast\"\nseverity = \"low\"\ndescription = \"d\"\naup = \"a\"\nsubject = \"interface\"\nmatch = { multicast_groups = { min = 1 } }\n".to_string(),
    ]
    .concat());
    let mut snap = snapshot(
        vec![
            proc(10, 1, "rx", "/usr/bin/rx", &["rx"]),
            proc(11, 1, "dns", "/usr/bin/dns", &["dns"]),
        ],
        vec![
            socket(
                10,
                Protocol::Udp,
                "239.1.2.3:5000",
                None,
                SocketState::Unconnected,
            ),
            socket(
                11,
                Protocol::Udp,
                "0.0.0.0:53",
                None,
                SocketState::Unconnected,
            ),
        ],
    );
    let iface = |name: &str, groups: &[&str]| Interface {
        netns: NS,
        name: name.into(),
        rx_bytes: 0,
        rx_packets: 0,
        tx_bytes: 0,
        tx_packets: 0,
        multicast_groups: groups.iter().map(|g| g.parse().expect("ip")).collect(),
    };
    snap.interfaces = vec![
        iface(
            "eth0",
            &["224.0.0.1", "ff02::1", "ff02::1:ff00:2", "ff01::1"],
        ),
        iface("lo", &["224.0.0.1", "239.1.2.3"]),
    ];
    let f = run(&snap, &History::default(), &s);
    let got: Vec<(String, String)> = f
        .iter()
        .map(|f| {
            (
                f.signature.clone(),
                f.interface.as_ref().map_or_else(
                    || f.process.as_ref().map_or(0, |p| p.pid).to_string(),
                    |i| i.name.clone(),
                ),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("multicast.socket".into(), "10".into()),
            ("multicast.groups".into(), "lo".into()),
        ]
    );
    assert_eq!(f[1].evidence[0].value, "joined 1 group(s): 239.1.2.3");
}

#[test]
fn long_lived_connections_and_threads() {
    let s = set(&[
        sig(
            "mining.long",
            "{ remote = { port = [443], min_age = \"30m\" } }",
        ),
        sig("mining.threads", "{ threads = { min = 8 } }"),
    ]
    .concat());
    let mut h = History::new(3600);
    h.set_connection_filters(s.connection_filters.clone());
    let mut p = proc(10, 1, "w", "/usr/bin/w", &["w"]);
    p.threads = 8;
    let long = socket(
        10,
        Protocol::Tcp,
        "10.0.0.5:40000",
        Some("192.0.2.7:443"),
        SocketState::Established,
    );
    let short = socket(
        10,
        Protocol::Tcp,
        "10.0.0.5:40001",
        Some("192.0.2.8:443"),
        SocketState::Established,
    );
    let mut last = snapshot(vec![], vec![]);
    for i in 0..=40u32 {
        let mut socks = vec![long.clone()];
        // the second connection comes and goes: never 30 minutes unbroken
        if i % 10 != 0 {
            socks.push(short.clone());
        }
        let mut snap = snapshot(vec![p.clone()], socks);
        snap.uptime_secs = 100_000.0 + f64::from(i) * 60.0;
        h.observe(&snap);
        last = snap;
    }
    let f = run(&last, &h, &s);
    let long_f = f
        .iter()
        .find(|f| f.signature == "mining.long")
        .expect("long-lived found");
    assert_eq!(
        long_f.evidence[0].value,
        "1 connection(s) open for at least 30m: tcp 10.0.0.5:40000 -> 192.0.2.7:443"
    );
    assert!(f.iter().any(|f| f.signature == "mining.threads"));
    // a one-shot scan has no such history
    assert!(run(&last, &History::default(), &s)
        .iter()
        .all(|f| f.signature != "mining.long"));
}

#[test]
fn history_does_not_grow_with_uptime() {
    // A day of 15 s scans with churning processes and connections: what history holds after
    // an hour is what it holds after a day.
    let s = set(&[
        sig(
            "mail.bulk",
            "{ remote = { port = [25], min = 20, for = \"10m\" } }",
        ),
        sig(
            "mining.cpu",
            "{ cpu = { min_percent = 50, for = \"10m\" } }",
        ),
    ]
    .concat());
    let mut h = History::new(s.longest_window_secs);
    h.set_connection_filters(s.connection_filters.clone());
    let mut sizes = Vec::new();
    for scan in 0..5760u32 {
        let procs: Vec<Process> = (0..50)
            .map(|k| {
                // half the processes live forever, half are replaced every scan
                let pid = if k < 25 {
                    k + 2
                } else {
                    1000 + (scan as i32) * 25 + k
                };
                let mut p = proc(pid, 1, "p", "/usr/bin/p", &["p"]);
                p.cpu_ticks = u64::from(scan) * 100;
                p
            })
            .collect();
        let sockets: Vec<Socket> = (0..25)
            .map(|k| {
                socket(
                    k + 2,
                    Protocol::Tcp,
                    &format!("10.0.0.5:{}", 30000 + (scan % 30000)),
                    Some("192.0.2.9:25"),
                    SocketState::Established,
                )
            })
            .collect();
        let mut snap = snapshot(procs, sockets);
        snap.uptime_secs = 1000.0 + f64::from(scan) * 15.0;
        h.observe(&snap);
        if scan == 240 || scan == 5759 {
            sizes.push(h.size());
        }
    }
    assert_eq!(sizes[0], sizes[1], "after 1 h vs after 24 h");
}

#[test]
fn the_cache_gives_the_same_findings_and_notices_a_changed_process() {
    let s = crate::signatures::load_bundled().expect("bundled packs");
    let mut cache = Cache::new();
    let mut h = History::new(600);
    h.set_connection_filters(s.connection_filters.clone());
    // the real host, three scans: cached and uncached agree every time
    let mut inv = crate::inventory::Inventory::new(crate::inventory::Options {
        exe_strings: s.exe_strings.clone(),
        ..crate::inventory::Options::default()
    });
    for _ in 0..3 {
        let snap = inv.take().expect("inventory");
        h.observe(&snap);
        assert_eq!(run_cached(&snap, &h, &s, &mut cache), run(&snap, &h, &s));
        assert_eq!(
            cache.len(),
            snap.processes.iter().filter(|p| !p.kernel_thread).count()
        );
    }
    // a fixture process that changes its command line under the same pid and start time
    let quiet = proc(4242, 1, "worker", "/usr/bin/worker", &["worker", "--serve"]);
    let snap = snapshot(vec![quiet.clone()], vec![]);
    let h = History::default();
    assert!(run_cached(&snap, &h, &s, &mut cache).is_empty());
    let mut loud = quiet;
    loud.cmdline = vec!["worker".into(), "--donate-level=1".into()];
    let snap = snapshot(vec![loud], vec![]);
    let cached = run_cached(&snap, &h, &s, &mut cache);
    assert!(!cached.is_empty(), "a changed command line is judged again");
    assert_eq!(cached, run(&snap, &h, &s));
    // a socket appearing on an unchanged process is judged again too
    let tor = proc(4343, 1, "tor", "/usr/bin/tor", &["tor"]);
    let snap = snapshot(vec![tor.clone()], vec![]);
    let before = run_cached(&snap, &h, &s, &mut cache);
    let snap = snapshot(
        vec![tor],
        vec![socket(
            4343,
            Protocol::Tcp,
            "0.0.0.0:9001",
            None,
            SocketState::Listen,
        )],
    );
    let after = run_cached(&snap, &h, &s, &mut cache);
    assert_eq!(after, run(&snap, &h, &s));
    let sigs = |f: &[Finding]| f.iter().map(|f| f.signature.clone()).collect::<Vec<_>>();
    assert_eq!(sigs(&before), vec!["tor.client".to_string()]);
    assert!(sigs(&after).contains(&"tor.relay-listener".to_string()));
}

fn host_sig(id: &str, matcher: &str) -> String {
    let cat = id.split('.').next().unwrap_or("evasion");
    format!("[[signature]]\nid = \"{id}\"\ncategory = \"{cat}\"\nseverity = \"high\"\ndescription = \"d\"\naup = \"a\"\nsubject = \"host\"\nmatch = {matcher}\n\n")
}

fn host_found(snap: &Snapshot, set: &SignatureSet) -> Vec<String> {
    run(snap, &History::default(), set)
        .into_iter()
        .inspect(|f| {
            assert!(f.host, "a host finding says so: {f:?}");
            assert!(f.process.is_none() && f.interface.is_none(), "{f:?}");
            assert!(!f.evidence.is_empty(), "a host finding has evidence: {f:?}");
        })
        .map(|f| f.signature)
        .collect()
}

#[test]
fn host_predicates_match_the_host_state() {
    use crate::inventory::{
        HiddenHow, HiddenProcess, HostState, HugePages, Msr, ProcMount, TaskCount,
    };
    let s = set(&[
        host_sig("evasion.preload", "{ preload = {} }"),
        host_sig("evasion.hidden", "{ hidden_processes = { min = 2 } }"),
        host_sig("evasion.mounts", "{ proc_mounts = {} }"),
        host_sig("evasion.tasks", "{ unlisted_tasks = { min = 16 } }"),
        host_sig("mining.pages", "{ hugepages = { min_mib = 2336 } }"),
        host_sig("mining.msr-on", "{ msr = { allow_writes = [\"on\"] } }"),
        host_sig("mining.msr", "{ msr = {} }"),
        host_sig(
            "mining.both",
            "{ all = [{ hugepages = { min_mib = 2336 } }, { not = { msr = {} } }] }",
        ),
    ]
    .concat());
    // A clean host: nothing, not even with an msr module that refuses writes.
    let mut snap = snapshot(vec![], vec![]);
    snap.host = HostState {
        tasks: Some(TaskCount {
            kernel: 400,
            listed: 390,
        }),
        hugepages: vec![HugePages {
            size_kb: 2048,
            total: 1024,
        }],
        ..HostState::default()
    };
    assert_eq!(host_found(&snap, &s), Vec::<String>::new());
    snap.host.msr = Some(Msr {
        allow_writes: Some("off".into()),
    });
    assert_eq!(host_found(&snap, &s), vec!["mining.msr".to_string()]);

    // Everything at once.
    snap.host = HostState {
        preload: vec!["/usr/local/lib/libprocesshider.so".into()],
        preload_env: None,
        hidden: vec![
            HiddenProcess {
                pid: 4242,
                how: HiddenHow::Masked,
                cgroup: "/user.slice".into(),
                inventoried: false,
            },
            HiddenProcess {
                pid: 4343,
                how: HiddenHow::Unlisted,
                cgroup: "/".into(),
                inventoried: true,
            },
        ],
        proc_mounts: vec![ProcMount {
            pid: 4242,
            mount_point: "/proc/4242".into(),
            fstype: "tmpfs".into(),
            source: "none".into(),
            root: "/".into(),
        }],
        tasks: Some(TaskCount {
            kernel: 420,
            listed: 400,
        }),
        cgroups: None,
        hugepages: vec![
            HugePages {
                size_kb: 2048,
                total: 16,
            },
            HugePages {
                size_kb: 1048576,
                total: 3,
            },
        ],
        msr: Some(Msr {
            allow_writes: Some("on".into()),
        }),
    };
    let f = run(&snap, &History::default(), &s);
    let by_id = |id: &str| {
        f.iter()
            .find(|f| f.signature == id)
            .unwrap_or_else(|| panic!("{id} not found in {f:?}"))
    };
    assert_eq!(
        host_found(&snap, &s),
        // Sorted by severity, then category (mining before evasion), then id.
        vec![
            "mining.msr",
            "mining.msr-on",
            "mining.pages",
            "evasion.hidden",
            "evasion.mounts",
            "evasion.preload",
            "evasion.tasks",
        ]
    );
    let ev = |id: &str| by_id(id).evidence[0].value.clone();
    assert_eq!(
        ev("evasion.preload"),
        "/etc/ld.so.preload: /usr/local/lib/libprocesshider.so"
    );
    assert!(ev("evasion.hidden").starts_with("2 hidden: pid 4242 (its /proc/<pid> cannot be read; cgroup /user.slice), pid 4343 (missing from the /proc listing"), "{}", ev("evasion.hidden"));
    assert!(ev("evasion.mounts").contains("/ over /proc/4242 (pid 4242): tmpfs none"));
    assert!(
        ev("evasion.tasks").ends_with("20 unlisted"),
        "{}",
        ev("evasion.tasks")
    );
    assert_eq!(
        ev("mining.pages"),
        "3104 MiB reserved in huge pages: 16 × 2048 kB, 3 × 1048576 kB"
    );
    assert_eq!(ev("mining.msr-on"), "msr module loaded, allow_writes=on");

    // One hidden process is below `min = 2`; the agent's own LD_PRELOAD is a preload.
    snap.host.hidden.truncate(1);
    snap.host.preload.clear();
    snap.host.preload_env = Some("/tmp/h.so".into());
    let ids = host_found(&snap, &s);
    assert!(!ids.contains(&"evasion.hidden".to_string()), "{ids:?}");
    assert!(ids.contains(&"evasion.preload".to_string()), "{ids:?}");
    let f = run(&snap, &History::default(), &s);
    let pre = f.iter().find(|f| f.signature == "evasion.preload");
    assert_eq!(
        pre.map(|f| f.evidence[0].value.as_str()),
        Some("LD_PRELOAD of the agent: /tmp/h.so")
    );
}

#[test]
fn a_hidden_process_is_matched_and_its_findings_say_it_was_hidden() {
    use crate::inventory::{HiddenHow, HiddenProcess};
    let s = set(&sig("mining.xmrig", "{ name = [\"xmrig\"] }"));
    let mut snap = snapshot(
        vec![
            proc(50, 1, "xmrig", "/tmp/xmrig", &["xmrig"]),
            proc(51, 1, "xmrig", "/tmp/xmrig", &["xmrig"]),
        ],
        vec![],
    );
    snap.host.hidden = vec![HiddenProcess {
        pid: 51,
        how: HiddenHow::Unlisted,
        cgroup: "/".into(),
        inventoried: true,
    }];
    let f = run(&snap, &History::default(), &s);
    assert_eq!(
        ids(&f),
        vec![("mining.xmrig".into(), 50), ("mining.xmrig".into(), 51)]
    );
    let hidden = |i: usize| {
        f[i].evidence
            .iter()
            .any(|e| e.predicate == "hidden" && e.value.starts_with("hidden from /proc listing"))
    };
    assert!(!hidden(0), "{:?}", f[0].evidence);
    assert!(hidden(1), "{:?}", f[1].evidence);
}
