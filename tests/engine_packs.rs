//! The shipped signature packs on snapshot fixtures: each family's offenders are found with
//! the right category, and benign look-alikes are not. Pure: no /proc, no network. Every
//! fixture is judged by `detect::run` and by `detect::run_cached` (cold, then with the cache
//! it filled), which must agree.

use aupwatch::detect::{run, run_cached, Cache, Finding, History};
use aupwatch::inventory::{Interface, Process, Protocol, Snapshot, Socket, SocketState};
use aupwatch::signatures::{load_bundled, SignatureSet};

const NS: u64 = 4026532000;
const TPS: u64 = 100;
const UPTIME: f64 = 200_000.0;

fn packs() -> &'static SignatureSet {
    static SET: std::sync::OnceLock<SignatureSet> = std::sync::OnceLock::new();
    SET.get_or_init(|| match load_bundled() {
        Ok(s) => s,
        Err(e) => panic!("bundled packs must load: {e}"),
    })
}

/// A fixture process: `argv` is the full command line; comm and exe follow from argv[0]
/// unless overridden.
struct P {
    proc: Process,
    sockets: Vec<Socket>,
}

fn p(pid: i32, argv: &[&str]) -> P {
    let exe = argv[0].to_string();
    let base = exe.rsplit('/').next().unwrap_or(&exe).to_string();
    let exe = if exe.starts_with('/') {
        exe
    } else {
        format!("/usr/bin/{exe}")
    };
    P {
        proc: Process {
            pid,
            ppid: 1,
            uid: 1000,
            user: Some("customer".into()),
            comm: base.chars().take(15).collect(),
            exe: Some(exe),
            cmdline: argv.iter().map(|s| s.to_string()).collect(),
            // started an hour ago, mostly idle
            start_ticks: ((UPTIME - 3600.0) * TPS as f64) as u64,
            cpu_ticks: 50,
            netns: NS,
            threads: 1,
            ..Process::default()
        },
        sockets: Vec::new(),
    }
}

impl P {
    fn comm(mut self, comm: &str) -> P {
        self.proc.comm = comm.into();
        self
    }
    fn exe(mut self, exe: &str) -> P {
        self.proc.exe = Some(exe.into());
        self
    }
    fn user(mut self, user: &str, uid: u32) -> P {
        self.proc.user = Some(user.into());
        self.proc.uid = uid;
        self
    }
    fn deleted(mut self) -> P {
        self.proc.exe_deleted = true;
        self
    }
    fn syn_sent(mut self, remote: &str) -> P {
        self.sockets.push(sock(
            Protocol::Tcp,
            "10.0.0.5:40000",
            Some(remote),
            SocketState::SynSent,
        ));
        self
    }
    fn listen(mut self, proto: Protocol, addr: &str) -> P {
        let state = if proto == Protocol::Tcp {
            SocketState::Listen
        } else {
            SocketState::Unconnected
        };
        self.sockets.push(sock(proto, addr, None, state));
        self
    }
    fn connect(mut self, proto: Protocol, local: &str, remote: &str) -> P {
        self.sockets
            .push(sock(proto, local, Some(remote), SocketState::Established));
        self
    }
    /// Busy at `pct` % of a core since it started `hours` ago.
    fn busy(mut self, pct: f64, hours: f64) -> P {
        self.proc.start_ticks = ((UPTIME - hours * 3600.0) * TPS as f64) as u64;
        self.proc.cpu_ticks = (hours * 3600.0 * pct / 100.0 * TPS as f64) as u64;
        self
    }
}

fn sock(proto: Protocol, local: &str, remote: Option<&str>, state: SocketState) -> Socket {
    Socket {
        netns: NS,
        protocol: proto,
        local: local.parse().expect("fixture address"),
        remote: remote.map(|r| r.parse().expect("fixture address")),
        state,
        uid: 1000,
        inode: 0,
        owners: Vec::new(),
    }
}

fn snapshot(items: Vec<P>) -> Snapshot {
    let mut snap = Snapshot {
        uptime_secs: UPTIME,
        ticks_per_second: TPS,
        cpus: 2,
        ..Snapshot::default()
    };
    for item in items {
        for mut s in item.sockets {
            s.owners = vec![item.proc.pid];
            snap.sockets.push(s);
        }
        snap.processes.push(item.proc);
    }
    snap
}

fn scan(items: Vec<P>) -> Vec<Finding> {
    judge(&snapshot(items))
}

/// The packs' findings on `snap`, from `detect::run`, after checking that `run_cached` finds
/// the same with an empty cache and again with the cache that first run filled (the steady
/// state of the agent and `scan --iterations`).
#[track_caller]
fn judge(snap: &Snapshot) -> Vec<Finding> {
    let history = History::default();
    let findings = run(snap, &history, packs());
    let mut cache = Cache::new();
    for pass in ["cold", "warm"] {
        let cached = run_cached(snap, &history, packs(), &mut cache);
        assert_eq!(
            cached, findings,
            "run_cached ({pass} cache) must find what run finds"
        );
    }
    findings
}

/// Asserts that the lone process in `item` is found with `category` (and nothing else is,
/// but `evasion`: hiding is evidence that goes with any category).
#[track_caller]
fn found_as(category: &str, item: P) {
    let pid = item.proc.pid;
    let argv = item.proc.cmdline.join(" ");
    let findings = scan(vec![item]);
    assert!(
        findings.iter().any(|f| f.category.as_str() == category
            && f.process.as_ref().is_some_and(|p| p.pid == pid)
            && !f.evidence.is_empty()),
        "{argv:?} should be found as {category}; got {:?}",
        summary(&findings)
    );
    let other: Vec<_> = findings
        .iter()
        .filter(|f| f.category.as_str() != category && f.category.as_str() != "evasion")
        .collect();
    assert!(
        other.is_empty(),
        "{argv:?}: findings of other categories: {:?}",
        summary(&findings)
    );
}

#[track_caller]
fn clean(item: P) {
    let argv = item.proc.cmdline.join(" ");
    let findings = scan(vec![item]);
    assert!(
        findings.is_empty(),
        "{argv:?} is benign but got {:?}",
        summary(&findings)
    );
}

fn summary(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .map(|f| {
            format!(
                "{} [{}] {:?}",
                f.signature,
                f.severity,
                f.evidence
                    .iter()
                    .map(|e| format!("{}: {}", e.predicate, e.value))
                    .collect::<Vec<_>>()
            )
        })
        .collect()
}

use Protocol::{Tcp, Udp};

#[test]
fn packs_load_and_cover_the_core_categories() {
    let set = packs();
    for cat in ["mining", "compute-donation", "irc", "tor", "vpn", "proxy"] {
        let n = set
            .signatures
            .iter()
            .filter(|s| s.category.as_str() == cat)
            .count();
        assert!(n >= 3, "only {n} signatures for {cat}");
    }
}

#[test]
fn miners() {
    found_as("mining", p(100, &["./xmrig", "-c", "config.json"]));
    found_as(
        "mining",
        p(
            101,
            &[
                "/tmp/.cache/kworker",
                "-o",
                "stratum+tcp://pool.example:3333",
                "-u",
                "x",
            ],
        )
        .comm("kworker"),
    );
    found_as(
        "mining",
        p(
            102,
            &[
                "./systemd-helper",
                "--donate-level",
                "1",
                "-o",
                "127.0.0.1:3333",
            ],
        ),
    );
    found_as(
        "mining",
        p(
            103,
            &[
                "/opt/cpuminer/minerd",
                "-a",
                "scrypt",
                "-o",
                "stratum+tcp://127.0.0.1:3333",
            ],
        ),
    );
    found_as(
        "mining",
        p(
            104,
            &[
                "./t-rex",
                "-a",
                "kawpow",
                "-o",
                "stratum+ssl://127.0.0.1:443",
            ],
        ),
    );
    found_as(
        "mining",
        p(
            105,
            &[
                "./lolMiner",
                "--algo",
                "ETCHASH",
                "--pool",
                "127.0.0.1:4444",
            ],
        ),
    );
    found_as("mining", p(106, &["/usr/local/bin/xmr-stak-rx"]));
    found_as(
        "mining",
        p(
            107,
            &[
                "/opt/SRBMiner-Multi/SRBMiner-MULTI",
                "--algorithm",
                "randomx",
            ],
        )
        .comm("SRBMiner-MULTI"),
    );
    found_as(
        "mining",
        p(108, &["./cgminer", "-o", "stratum+tcp://127.0.0.1:3333"]),
    );
    found_as(
        "mining",
        p(
            109,
            &["./ethminer", "-P", "stratum1+tcp://0xabc@127.0.0.1:4444"],
        ),
    );
}

#[test]
fn volunteer_computing() {
    found_as(
        "compute-donation",
        p(200, &["/usr/bin/boinc", "--dir", "/var/lib/boinc-client"]).comm("boinc"),
    );
    found_as(
        "compute-donation",
        p(201, &["/usr/bin/boinc_client"]).comm("boinc_client"),
    );
    found_as(
        "compute-donation",
        p(
            202,
            &[
                "/usr/bin/FAHClient",
                "--config",
                "/etc/fahclient/config.xml",
            ],
        )
        .comm("FAHClient"),
    );
}

#[test]
fn irc() {
    found_as(
        "irc",
        p(300, &["/usr/sbin/ngircd", "-n"])
            .user("irc", 39)
            .listen(Tcp, "0.0.0.0:6667"),
    );
    found_as(
        "irc",
        p(301, &["/usr/bin/znc", "-f"]).listen(Tcp, "0.0.0.0:6697"),
    );
    found_as("irc", p(302, &["./eggdrop", "-m", "bot.conf"]));
    found_as("irc", p(303, &["/usr/sbin/inspircd", "--nofork"]));
    found_as(
        "irc",
        p(304, &["/usr/bin/irssi"]).connect(Tcp, "127.0.0.1:40000", "127.0.0.1:6667"),
    );
    // an unknown program serving IRC's port
    found_as("irc", p(305, &["./srv"]).listen(Tcp, "0.0.0.0:6667"));
}

#[test]
fn tor() {
    found_as(
        "tor",
        p(400, &["/usr/bin/tor", "-f", "/etc/tor/torrc"])
            .user("debian-tor", 107)
            .listen(Tcp, "0.0.0.0:9001")
            .listen(Tcp, "0.0.0.0:9030"),
    );
    found_as(
        "tor",
        p(401, &["/usr/bin/tor", "--SocksPort", "9050"]).listen(Tcp, "127.0.0.1:9050"),
    );
    found_as("tor", p(402, &["/usr/bin/obfs4proxy", "-enableLogging"]));
    found_as(
        "tor",
        p(403, &["/usr/bin/snowflake-proxy"]).comm("snowflake-proxy"),
    );
    found_as(
        "tor",
        p(
            404,
            &["/usr/bin/tor", "--ORPort", "443", "--ExitRelay", "1"],
        ),
    );
}

#[test]
fn vpn() {
    found_as(
        "vpn",
        p(
            500,
            &["/usr/sbin/openvpn", "--config", "/etc/openvpn/server.conf"],
        )
        .listen(Udp, "0.0.0.0:1194"),
    );
    found_as(
        "vpn",
        p(
            501,
            &[
                "/usr/sbin/openvpn",
                "--mode",
                "server",
                "--tls-server",
                "--dev",
                "tun0",
            ],
        ),
    );
    found_as(
        "vpn",
        p(
            502,
            &[
                "/usr/bin/ss-server",
                "-c",
                "/etc/shadowsocks-libev/config.json",
            ],
        )
        .listen(Tcp, "0.0.0.0:8388"),
    );
    found_as(
        "vpn",
        p(
            503,
            &["/usr/local/bin/xray", "run", "-c", "/etc/xray/config.json"],
        ),
    );
    found_as("vpn", p(504, &["/usr/sbin/ocserv", "-f"]));
    found_as("vpn", p(505, &["/usr/lib/ipsec/charon"]).comm("charon"));
    found_as(
        "vpn",
        p(506, &["/usr/bin/vpnserver", "execsvc"]).exe("/usr/local/vpnserver/vpnserver"),
    );
    // WireGuard lives in the kernel: its interface is the evidence
    let mut snap = snapshot(vec![]);
    snap.interfaces.push(Interface {
        netns: NS,
        name: "wg0".into(),
        rx_bytes: 0,
        rx_packets: 0,
        tx_bytes: 0,
        tx_packets: 0,
        multicast_groups: Vec::new(),
    });
    let f = judge(&snap);
    assert!(
        f.iter()
            .any(|f| f.category.as_str() == "vpn" && f.interface.is_some()),
        "wg0 not found: {:?}",
        summary(&f)
    );
}

#[test]
fn proxies() {
    found_as(
        "proxy",
        p(600, &["/usr/sbin/squid", "-N"])
            .user("proxy", 13)
            .listen(Tcp, "0.0.0.0:3128"),
    );
    found_as(
        "proxy",
        p(601, &["/usr/sbin/danted", "-f", "/etc/danted.conf"]).listen(Tcp, "0.0.0.0:1080"),
    );
    found_as(
        "proxy",
        p(602, &["/usr/bin/microsocks", "-i", "0.0.0.0", "-p", "1080"]).listen(Tcp, "0.0.0.0:1080"),
    );
    found_as(
        "proxy",
        p(603, &["/usr/bin/3proxy", "/etc/3proxy.cfg"]).listen(Tcp, "127.0.0.1:1080"),
    );
    found_as(
        "proxy",
        p(604, &["/usr/bin/tinyproxy", "-d"]).listen(Tcp, "0.0.0.0:8888"),
    );
    found_as(
        "proxy",
        p(605, &["ssh", "-N", "-D", "0.0.0.0:1080", "user@127.0.0.1"]).listen(Tcp, "0.0.0.0:1080"),
    );
    found_as(
        "proxy",
        p(606, &["/usr/local/bin/gost", "-L", "socks5://:1080"]).listen(Tcp, "[::]:1080"),
    );
    // A renamed program on a classic proxy port: only the low port signature, which asks the
    // probe to decide.
    let findings = scan(vec![
        p(607, &["/opt/x/relayd", "-p", "8118"]).listen(Tcp, "0.0.0.0:8118")
    ]);
    assert_eq!(
        summary(&findings),
        ["proxy.proxy-port-public [low] [\"listen: tcp 0.0.0.0:8118\"]"],
        "{findings:#?}"
    );
}

#[test]
fn public_proxy_signatures_ask_for_the_proxy_probe() {
    let probed: Vec<&str> = packs()
        .signatures
        .iter()
        .filter(|s| s.probe == Some(aupwatch::signatures::ProbeKind::Proxy))
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(
        probed,
        [
            "proxy.software-public",
            "proxy.ssh-dynamic-public",
            "proxy.socks-port-public",
            "proxy.http-proxy-port-public",
            "proxy.proxy-port-public",
            "proxy.ncat-proxy",
        ]
    );
}

#[test]
fn a_vpn_server_is_judged_by_its_number_of_clients() {
    let server = |pid: i32, clients: u8| {
        let mut p = p(
            pid,
            &["/usr/sbin/openvpn", "--config", "/etc/openvpn/server.conf"],
        )
        .listen(Udp, "0.0.0.0:1194");
        for c in 1..=clients {
            p = p.connect(Tcp, "10.0.0.5:1194", &format!("198.51.100.{c}:40000"));
        }
        p
    };
    let severities = |clients: u8| -> Vec<(String, String)> {
        scan(vec![server(520, clients)])
            .iter()
            .filter(|f| f.signature.ends_with("-clients") || f.signature == "vpn.openvpn-server")
            .map(|f| (f.signature.clone(), f.severity.to_string()))
            .collect()
    };
    let alone = severities(1);
    assert_eq!(
        alone,
        vec![("vpn.openvpn-server".to_string(), "medium".to_string())],
        "one client: may be personal use"
    );
    let several = severities(4);
    assert!(
        several.contains(&("vpn.several-clients".into(), "high".into()))
            && !several.iter().any(|(s, _)| s == "vpn.many-clients"),
        "{several:?}"
    );
    let many = severities(12);
    assert!(
        many.contains(&("vpn.many-clients".into(), "critical".into()))
            && !many.iter().any(|(s, _)| s == "vpn.several-clients"),
        "{many:?}"
    );
}

#[test]
fn scanners_and_dos_tools() {
    found_as("scanner", p(800, &["nmap", "-sT", "-p-", "192.0.2.0/24"]));
    found_as(
        "scanner",
        p(801, &["/usr/bin/masscan", "-p80", "0.0.0.0/0"]),
    );
    // a renamed connect scanner: 30 half-open connections to distinct ports
    let mut sweep = p(802, &["/usr/bin/python3", "probe.py"]);
    for port in 1..=30 {
        sweep = sweep.syn_sent(&format!("192.0.2.10:{port}"));
    }
    found_as("scanner", sweep);
    let mut hosts = p(803, &["/usr/bin/python3", "probe.py"]);
    for host in 1..=25 {
        hosts = hosts.syn_sent(&format!("192.0.2.{host}:22"));
    }
    found_as("scanner", hosts);
    // hping3 is a scanner by name, and a DoS tool in flood mode: both findings
    let both = scan(vec![p(
        810,
        &["hping3", "--flood", "-S", "-p", "80", "192.0.2.1"],
    )]);
    let cats: Vec<&str> = both.iter().map(|f| f.category.as_str()).collect();
    assert_eq!(cats, vec!["dos", "scanner"], "{:?}", summary(&both));
    found_as(
        "dos",
        p(811, &["/usr/bin/python3", "slowloris.py", "192.0.2.1"]),
    );
    found_as(
        "dos",
        p(
            812,
            &["slowhttptest", "-c", "1000", "-u", "http://192.0.2.1/"],
        ),
    );
}

#[test]
fn torrent_file_serving_multicast_and_evasion() {
    found_as(
        "torrent",
        p(820, &["/usr/bin/transmission-daemon", "-f"]).listen(Tcp, "0.0.0.0:51413"),
    );
    found_as(
        "torrent",
        p(821, &["aria2c", "--seed-time=60", "ubuntu.iso.torrent"]),
    );
    found_as(
        "torrent",
        p(822, &["/opt/x/sync"]).listen(Tcp, "0.0.0.0:6881"),
    );
    found_as(
        "file-serving",
        p(830, &["/usr/sbin/vsftpd", "/etc/vsftpd.conf"]).listen(Tcp, "0.0.0.0:21"),
    );
    found_as(
        "file-serving",
        p(831, &["miniserve", "/srv/files"]).listen(Tcp, "[::]:8080"),
    );
    found_as("multicast", p(840, &["/usr/bin/smcrouted", "-n"]));
    found_as(
        "multicast",
        p(841, &["/opt/stream/tx"]).listen(Udp, "239.1.2.3:5000"),
    );
    found_as("evasion", p(850, &["/tmp/.x/kworker"]).comm("kworker/0:2"));
    found_as("evasion", p(851, &["/dev/shm/.s/a"]).deleted());
    found_as(
        "evasion",
        p(852, &["/memfd:payload"]).comm("payload").deleted(),
    );
}

#[test]
fn behaviour_look_alikes_stay_clean() {
    // a browser-like client with many established connections is not a sweep
    let mut browser = p(860, &["/usr/bin/curl", "--parallel"]);
    for host in 1..=40 {
        browser = browser.connect(Tcp, "10.0.0.5:40000", &format!("192.0.2.{host}:443"));
    }
    clean(browser);
    // a web server on 8080 and a database are not torrent or file-sharing
    clean(p(861, &["/usr/sbin/nginx"]).listen(Tcp, "0.0.0.0:8080"));
    clean(p(862, &["/usr/sbin/avahi-daemon"]).listen(Udp, "0.0.0.0:5353"));
    // a busy compression job at nice 19 in a one-shot scan: no history, no steadiness
    let mut gzip = p(863, &["gzip", "-9"]).busy(100.0, 6.0);
    gzip.proc.nice = 19;
    clean(gzip);
    // a shell script: comm is the script, exe is the shell
    clean(p(864, &["/usr/bin/bash", "/usr/local/bin/backup.sh"]).comm("backup.sh"));
}

#[test]
fn benign_look_alikes_stay_clean() {
    clean(
        p(700, &["/usr/sbin/sshd", "-D"])
            .user("root", 0)
            .listen(Tcp, "0.0.0.0:22"),
    );
    clean(
        p(701, &["nginx: master process /usr/sbin/nginx"])
            .exe("/usr/sbin/nginx")
            .comm("nginx")
            .listen(Tcp, "0.0.0.0:8080")
            .listen(Tcp, "0.0.0.0:443"),
    );
    clean(p(702, &["python3", "-m", "http.server", "8080"]).listen(Tcp, "0.0.0.0:8080"));
    clean(p(703, &["gzip", "-9"]).busy(100.0, 6.0));
    clean(p(704, &["make", "-j2"]).busy(95.0, 2.0));
    clean(
        p(
            705,
            &[
                "/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus",
                "-O2",
                "miner.cpp",
            ],
        )
        .comm("cc1plus")
        .busy(99.0, 1.0),
    );
    clean(p(706, &["vim", "/etc/tor/torrc"]));
    clean(p(707, &["apt-get", "install", "tor", "squid", "openvpn"]));
    clean(p(708, &["grep", "-r", "xmrig", "/var/log"]));
    clean(p(709, &["less", "/etc/squid/squid.conf"]));
    clean(p(710, &["man", "tor"]));
    clean(
        p(
            711,
            &[
                "/usr/lib/postgresql/15/bin/postgres",
                "-D",
                "/var/lib/postgresql",
            ],
        )
        .comm("postgres")
        .listen(Tcp, "127.0.0.1:5432"),
    );
    clean(
        p(712, &["/usr/bin/redis-server", "127.0.0.1:6379"])
            .comm("redis-server")
            .listen(Tcp, "127.0.0.1:6379"),
    );
    clean(p(713, &["ssh", "user@127.0.0.1"]).connect(Tcp, "127.0.0.1:50000", "127.0.0.1:22"));
    clean(p(714, &["curl", "https://example.org/"]).connect(
        Tcp,
        "127.0.0.1:50001",
        "127.0.0.1:443",
    ));
    clean(p(715, &["/lib/systemd/systemd", "--system"]).comm("systemd"));
    clean(p(716, &["sleep", "600"]));
    clean(p(717, &["cargo", "build", "--release"]).busy(100.0, 0.5));
    clean(p(718, &["/usr/bin/python3", "/usr/bin/unattended-upgrade"]));
    clean(p(
        719,
        &["ssh", "-L", "8080:127.0.0.1:80", "user@127.0.0.1"],
    ));
    clean(p(720, &["/usr/bin/dockerd", "-H", "fd://"]).comm("dockerd"));
    clean(
        p(721, &["/usr/bin/node", "server.js"])
            .comm("node")
            .listen(Tcp, "0.0.0.0:3000"),
    );
    // Jupyter's default port, on loopback as it ships; Tomcat on 8080.
    clean(p(722, &["/usr/bin/python3", "/usr/bin/jupyter-notebook"]).listen(Tcp, "127.0.0.1:8888"));
    clean(
        p(723, &["/usr/bin/java", "-Dcatalina.base=/var/lib/tomcat"])
            .comm("java")
            .listen(Tcp, "0.0.0.0:8080"),
    );
}

#[test]
fn the_one_pass_regex_set_agrees_with_each_regex() {
    use aupwatch::signatures::Predicate;
    let set = packs();
    let Some(rs) = set.cmdlines() else {
        panic!("the bundled packs' command-line regexes must build as one set")
    };
    let mut regexes = Vec::new();
    for s in &set.signatures {
        s.matcher.visit(&mut |p| {
            if let Predicate::Cmdline { re, index } = p {
                regexes.push((re.clone(), *index));
            }
        });
    }
    assert_eq!(rs.len(), regexes.len());
    let lines = [
        "./xmrig --donate-level 1 -o stratum+tcp://127.0.0.1:3333 -u 4AdUndXHHZ6cfufTMvppY6JwXNouMBzSkbLYfpAV5Usx3skxNgYeYTRj5UzqtReoS44qo9mtmXCqY45DJ852K5Jv2684Rge",
        "tor --ORPort 9001 --ExitRelay 1",
        "openvpn --mode server --tls-server",
        "ssh -N -D 0.0.0.0:1080 user@127.0.0.1",
        "vim /etc/tor/torrc",
        "python3 -m http.server 8080",
        "",
    ];
    for line in lines {
        let hits = rs.matches(line);
        for (re, index) in &regexes {
            assert_eq!(
                hits.matched(*index),
                re.regex().is_some_and(|r| r.is_match(line)),
                "regex {:?} on {line:?}",
                re.as_str()
            );
        }
    }
}

#[test]
fn the_one_pass_name_set_agrees_with_each_glob_list() {
    use aupwatch::signatures::Predicate;
    let set = packs();
    let Some(globs) = set.names() else {
        panic!("the bundled packs' name globs must build as one set")
    };
    let mut lists = Vec::new();
    for s in &set.signatures {
        s.matcher.visit(&mut |p| {
            if let Predicate::Name { globs, index } = p {
                lists.push((globs.clone(), *index));
            }
        });
    }
    assert_eq!(lists.len(), set.name_predicates);
    for name in [
        "xmrig",
        "XMRig-6.21",
        "tor",
        "ngircd",
        "squid",
        "sshd",
        "kworker/0:1",
        "SRBMiner-MULTI",
        "python3",
        "",
        "a b",
    ] {
        let mut hits = Vec::new();
        globs
            .matches_into(name, &mut hits)
            .expect("the case-insensitive set builds");
        let found: std::collections::BTreeSet<usize> =
            hits.into_iter().map(|g| globs.owner[g]).collect();
        for (list, index) in &lists {
            assert_eq!(
                found.contains(index),
                list.is_match(name),
                "name list {:?} on {name:?}",
                list.patterns
            );
        }
    }
}

/// The host signatures of the packs (`subject = "host"`) found on `host`, by id.
fn host_findings(host: aupwatch::inventory::HostState) -> Vec<String> {
    let mut snap = snapshot(vec![p(100, &["/usr/sbin/sshd", "-D"])]);
    snap.host = host;
    let mut ids: Vec<String> = judge(&snap)
        .into_iter()
        .filter(|f| f.host)
        .map(|f| f.signature)
        .collect();
    ids.sort();
    ids
}

#[test]
fn host_evasion_and_miner_tuning() {
    use aupwatch::inventory::{
        HiddenHow, HiddenProcess, HostState, HugePages, Msr, ProcMount, TaskCount,
    };
    let plain = HostState {
        tasks: Some(TaskCount {
            kernel: 403,
            listed: 404,
        }),
        ..HostState::default()
    };
    assert_eq!(host_findings(plain.clone()), Vec::<String>::new());

    // Benign look-alikes: a database's 2 GiB of huge pages, the msr module loaded by a
    // monitoring tool with the kernel's default, a few tasks of churn.
    let benign = HostState {
        hugepages: vec![HugePages {
            size_kb: 2048,
            total: 1024,
        }],
        msr: Some(Msr {
            allow_writes: Some("default".into()),
        }),
        tasks: Some(TaskCount {
            kernel: 410,
            listed: 400,
        }),
        ..plain.clone()
    };
    assert_eq!(host_findings(benign), Vec::<String>::new());

    // XMRig's tuning: 1280 × 2 MiB pages and msr writes on.
    let tuned = HostState {
        hugepages: vec![HugePages {
            size_kb: 2048,
            total: 1280,
        }],
        msr: Some(Msr {
            allow_writes: Some("on".into()),
        }),
        ..plain.clone()
    };
    assert_eq!(
        host_findings(tuned),
        vec![
            "mining.hugepages-randomx",
            "mining.msr-writes",
            "mining.randomx-tuning"
        ]
    );
    // Three 1 GiB pages alone (enable_1gb_pages.sh on one NUMA node).
    let gb = HostState {
        hugepages: vec![HugePages {
            size_kb: 1048576,
            total: 3,
        }],
        ..plain.clone()
    };
    assert_eq!(host_findings(gb), vec!["mining.hugepages-randomx"]);

    // A hiding host.
    let hiding = HostState {
        preload: vec!["/usr/local/lib/libprocesshider.so".into()],
        hidden: vec![HiddenProcess {
            pid: 4242,
            how: HiddenHow::Masked,
            cgroup: "/".into(),
            inventoried: false,
        }],
        proc_mounts: vec![ProcMount {
            pid: 4242,
            mount_point: "/proc/4242".into(),
            fstype: "ext4".into(),
            source: "/dev/vda1".into(),
            root: "/tmp/.x".into(),
        }],
        tasks: Some(TaskCount {
            kernel: 460,
            listed: 400,
        }),
        ..plain
    };
    assert_eq!(
        host_findings(hiding),
        vec![
            "evasion.hidden-process",
            "evasion.ld-preload",
            "evasion.proc-mount",
            "evasion.unlisted-tasks"
        ]
    );
}

/// The packs' verdicts on one fixture: one per offender and category, as the agent rolls
/// them up, with every matching signature, raised one level where independent kinds of
/// evidence agree (signatures/README.md, "One verdict per offender").
#[test]
fn verdicts_on_the_packs_one_per_offender_raised_when_kinds_agree() {
    use aupwatch::detect::verdict::roll_up;
    use aupwatch::signatures::Severity;
    // A renamed miner under a kernel thread's name: miner strings in its executable, a
    // connection to a pool port, a core busy for hours.
    let mut miner = p(900, &["[kworker/0:2]"])
        .comm("kworker/0:2")
        .exe("/tmp/.x/kworker")
        .busy(97.0, 3.0)
        .connect(Tcp, "10.0.0.5:40000", "203.0.113.9:3333");
    miner.proc.exe_strings = vec!["mining.subscribe".into(), "randomx".into()];
    // An IRC server: a name and a listener.
    let ircd = p(901, &["/usr/sbin/ngircd", "-n"])
        .user("irc", 39)
        .listen(Tcp, "0.0.0.0:6667");
    let gzip = p(902, &["gzip", "-9"]).busy(100.0, 6.0);
    let findings = scan(vec![miner, ircd, gzip]);
    let per_signature = findings.len();
    let verdicts = roll_up(findings);
    let shape: Vec<(i32, &str, Severity, bool)> = verdicts
        .iter()
        .map(|v| {
            (
                v.process().map_or(0, |p| p.pid),
                v.category.as_str(),
                v.severity,
                v.raised.is_some(),
            )
        })
        .collect();
    // The miner: one mining verdict, raised to critical; its kernel-thread name is evasion
    // (a category of its own). ngircd: one IRC verdict of its two signatures, not raised (a
    // name and a listener). gzip: nothing.
    assert_eq!(
        shape,
        [
            (900, "mining", Severity::Critical, true),
            (901, "irc", Severity::High, false),
            (900, "evasion", Severity::High, false),
        ],
        "{verdicts:#?}"
    );
    assert!(
        per_signature > verdicts.len(),
        "signatures fold into verdicts"
    );
    let miner = &verdicts[0];
    let sigs: Vec<&str> = miner.signatures().collect();
    for want in [
        "mining.exe-strings",
        "mining.kthread-masquerade-cpu",
        "mining.pool-port-cpu",
        "mining.pool-port",
    ] {
        assert!(sigs.contains(&want), "{want} in {sigs:?}");
    }
    let why = miner.raised.as_deref().unwrap_or_default();
    assert!(
        why.starts_with("raised from high: 4 independent kinds of evidence agree: ")
            && why.contains("executable contents (mining.exe-strings)")
            && why.contains("CPU behaviour (")
            && why.contains("network behaviour (")
            && why.contains("name or command line ("),
        "{why}"
    );
}
