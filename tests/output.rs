//! Snapshots of what a person reads (insta, `tests/snapshots/`): the `scan` table and
//! `scan --explain` of a process with a hostile name on the real /proc, `signatures list`, the
//! `status` table and `status --prometheus` of a fixed status document. A renamed field, a
//! changed layout or an escaping regression changes a snapshot and fails the test; review and
//! accept an intended change with `cargo insta review` (or `INSTA_UPDATE=always`).
//!
//! The status outputs come from the real `aupwatch status`, reading a fixed JSON document
//! from a stand-in status socket exactly as it would from the agent. Its times are shifted
//! to be relative to now, so that the ages shown are the same on every run. Volatile fields of
//! the real scan (pids, user, network namespaces, counts, host, temporary paths) are
//! redacted. No root needed.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_aupwatch");

fn aupwatch(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run aupwatch")
}

fn text(out: &[u8]) -> String {
    String::from_utf8(out.to_vec()).expect("UTF-8 output")
}

/// Terminal text must carry no raw control or format character but line breaks.
#[track_caller]
fn assert_escaped(what: &str, shown: &str) {
    let raw: Vec<char> = shown
        .chars()
        .filter(|&c| c != '\n' && (c.is_control() || "\u{202e}\u{200b}\u{2066}".contains(c)))
        .collect();
    assert!(raw.is_empty(), "{what}: raw characters {raw:?} in\n{shown}");
}

// ---------------------------------------------------------------------------------------------
// scan, scan --explain, signatures list

/// A bidi override, an escape sequence, a zero-width space and a C1 control: in the process
/// name (the executable's file name, hence comm) and in argv[0].
const HOSTILE_NAME: &str = "ab\u{202e}cd\u{1b}[1m";
const HOSTILE_ARGV0: &str = "\u{200b}sleeper\u{9b}31m";

const SIGNATURES: &str = r#"# tests/output.rs
[[signature]]
id = "mining.snapshot-name"
category = "mining"
severity = "high"
description = "a process named ab\u202Ecd (a right-to-left override in a description)"
aup = "test only"
match = { name = ["ab\u202Ecd*"] }

[[signature]]
id = "irc.snapshot-cmdline"
category = "irc"
severity = "low"
description = "a process named ab\u202Ecd whose command line starts with a zero-width space"
aup = "test only"
[signature.match]
all = [
  { name = ["ab\u202Ecd*"] },
  { cmdline = '^\x{200B}sleeper' },
]

[[signature]]
id = "tor.snapshot-never"
category = "tor"
severity = "medium"
description = "matches nothing: a signature that explain shows as not matching"
aup = "test only"
match = { name = ["aupw-never-*"] }
"#;

/// A copy of `sleep` under [`HOSTILE_NAME`], killed on drop.
struct Offender(Child);

impl Offender {
    fn start(dir: &Path) -> Offender {
        let exe = dir.join(HOSTILE_NAME);
        // Copied by another process (`install`): a copy written here could still be open in
        // a child another test thread forks meanwhile, and exec would fail with ETXTBSY.
        let installed = Command::new("install")
            .args(["-m", "0755", "/bin/sleep"])
            .arg(&exe)
            .status()
            .expect("run install (coreutils)");
        assert!(installed.success(), "install /bin/sleep {}", exe.display());
        let child = Command::new(&exe)
            .arg0(HOSTILE_ARGV0)
            .arg("300")
            .spawn()
            .expect("start the offender");
        let offender = Offender(child);
        // Until exec has happened, /proc shows the test's comm.
        let comm = format!("/proc/{}/comm", offender.0.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read(&comm).map_or(true, |c| c != format!("{HOSTILE_NAME}\n").as_bytes()) {
            assert!(Instant::now() < deadline, "the offender did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        offender
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Offender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The filters that make a real scan's output the same on every run and machine.
fn scan_filters(dir: &Path, pid: u32) -> Vec<(String, String)> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| nix::unistd::getuid().to_string(), |u| u.name);
    let e = |s: &str| regex::escape(s);
    vec![
        (e(&dir.to_string_lossy()), "[dir]".into()),
        // The table pads PID and USER to their widest cell: the padding goes with them.
        (
            r"PID +USER +PROCESS".into(),
            "PID    USER    PROCESS".into(),
        ),
        (
            format!(r"\b{pid} +{} +", e(&user)),
            "[pid]  [user]  ".into(),
        ),
        (format!(r"\bpid {pid}\b"), "pid [pid]".into()),
        (format!(r"\buser {}\b", e(&user)), "user [user]".into()),
        (r"netns \d+".into(), "netns [netns]".into()),
        (
            format!(
                r"— \d+ processes, \d+ sockets, \d+ network namespaces on {};",
                e(host.trim())
            ),
            "— [n] processes, [n] sockets, [n] network namespaces on [host];".into(),
        ),
        (r"version [0-9a-f]{12}".into(), "version [version]".into()),
    ]
}

fn with_filters(filters: Vec<(String, String)>, check: impl FnOnce()) {
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in filters {
        settings.add_filter(&pattern, replacement);
    }
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(check);
}

#[test]
fn scan_table_and_explain_of_a_hostile_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sigs = dir.path().join("signatures");
    std::fs::create_dir(&sigs).expect("mkdir");
    std::fs::write(sigs.join("test.toml"), SIGNATURES).expect("write signatures");
    let sigs = sigs.to_string_lossy().into_owned();
    let offender = Offender::start(dir.path());
    let pid = offender.pid().to_string();
    let scan = ["scan", "--sample", "0", "--no-probe", "--signatures", &sigs];

    let table = aupwatch(&scan);
    assert_eq!(table.status.code(), Some(1), "{table:?}");
    let shown = text(&table.stdout);
    assert_escaped("scan", &shown);

    let explain = aupwatch(&[&scan[..], &["--explain", &pid]].concat());
    assert_eq!(explain.status.code(), Some(1), "{explain:?}");
    let explained = text(&explain.stdout);
    assert_escaped("scan --explain", &explained);

    // JSON for machines: the same escapes as JSON `\u` escapes, the data unchanged.
    let json = aupwatch(&[&scan[..], &["--json"]].concat());
    assert_eq!(json.status.code(), Some(1), "{json:?}");
    let json_text = text(&json.stdout);
    assert_escaped("scan --json", &json_text);
    let doc: serde_json::Value = serde_json::from_str(&json_text).expect("scan --json");
    let comms: Vec<&str> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["process"]["comm"].as_str())
        .collect();
    assert_eq!(comms, [HOSTILE_NAME, HOSTILE_NAME], "{json_text}");

    // --matched: only the signatures with a matching predicate (tor.snapshot-never has none).
    let only = aupwatch(&[&scan[..], &["--explain", &pid, "--matched"]].concat());
    assert_eq!(only.status.code(), Some(1), "{only:?}");
    let only_matched = text(&only.stdout);
    assert_escaped("scan --explain --matched", &only_matched);
    assert!(
        !only_matched.contains("tor.snapshot-never"),
        "{only_matched}"
    );
    assert!(
        only_matched.contains("irc.snapshot-cmdline"),
        "{only_matched}"
    );

    with_filters(scan_filters(dir.path(), offender.pid()), || {
        insta::assert_snapshot!("scan_table", shown);
        insta::assert_snapshot!("scan_explain", explained);
        insta::assert_snapshot!("scan_explain_matched", only_matched);
    });
}

/// `scan --explain` of a process this user cannot fully read (pid 1, root's, seen by user
/// nobody) lists the unreadable parts as gaps instead of showing `exe -, netns 0`.
#[test]
fn explain_lists_what_it_could_not_read() {
    let args = [
        "scan",
        "--sample",
        "0",
        "--no-probe",
        "--explain",
        "1",
        "--matched",
    ];
    let out = if nix::unistd::geteuid().is_root() {
        // As root everything of pid 1 may be readable: look as user nobody.
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run setpriv (util-linux)")
    } else {
        aupwatch(&args)
    };
    let shown = text(&out.stdout);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}\n{shown}");
    assert!(shown.contains(", exe unreadable, "), "{shown}");
    assert!(shown.contains("\n  gap: /proc/1/exe: "), "{shown}");
    assert!(!shown.contains("exe -"), "{shown}");
}

#[test]
fn signatures_list_escapes_what_the_files_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("test.toml"), SIGNATURES).expect("write signatures");
    let out = aupwatch(&[
        "signatures",
        "list",
        "--signatures",
        &dir.path().to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let shown = text(&out.stdout);
    assert_escaped("signatures list", &shown);
    with_filters(
        vec![(r"version [0-9a-f]{12}".into(), "version [version]".into())],
        || insta::assert_snapshot!("signatures_list", shown),
    );
}

/// A signature file whose errors quote hostile text: `signatures check` and a `scan` with it
/// print escaped error lines.
#[test]
fn errors_about_signature_files_are_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.toml"),
        // TOML escapes: the id holds the raw characters once parsed.
        "[[signature]]\nid = \"irc.a\\u202Eb\\u001B[2J\"\ncategory = \"irc\"\nseverity = \"low\"\n\
         description = \"d\"\naup = \"a\"\nmatch = { name = [\"x\"] }\n",
    )
    .expect("write");
    let dir = dir.path().to_string_lossy().into_owned();
    for args in [
        vec!["signatures", "check", &dir],
        vec!["scan", "--sample", "0", "--no-probe", "--signatures", &dir],
    ] {
        let out = aupwatch(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = text(&out.stderr);
        assert_escaped(&format!("{args:?}"), &err);
        assert!(
            err.contains("irc.a\\u{202e}b\\u{1b}[2J") && err.contains("bad.toml:2"),
            "{args:?}: the id, escaped, with file and line: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// status, status --prometheus

/// When the fixed status documents were "taken": their `*_unix_ms` times are shifted by
/// (now - this) before they are served.
const FIXTURE_NOW_MS: u64 = 1_796_662_500_000;

/// A status document as the agent serves it (every field of the agent's document), with
/// host-supplied text that must be escaped: a right-to-left override in a process name, an
/// escape sequence and a zero-width space in an interface name, a bidi isolate in an
/// exception's reason, a reload error of several lines.
const STATUS_BUSY: &str = r#"{
  "schema_version": 1,
  "agent": {
    "version": "0.1.0",
    "pid": 2901,
    "host": "web-17",
    "health": "degraded",
    "started_at_unix_ms": 1796644500000,
    "uptime_secs": 18000,
    "config": "/etc/aupwatch/agent.toml",
    "interval_secs": 15,
    "cpu_ms": 1022.559,
    "max_rss_kib": 23008,
    "history": {
      "subjects": 32,
      "entries": 117
    }
  },
  "last_scan": {
    "at_unix_ms": 1796662489000,
    "duration_ms": 13.169292,
    "cpu_ms": 9.029,
    "processes": 366,
    "sockets": 1001,
    "namespaces": 3,
    "gaps": 3,
    "findings": 6,
    "probe_candidates": 1
  },
  "scans": 1200,
  "last_reload": {
    "at_unix_ms": 1796399700000,
    "trigger": "SIGHUP",
    "ok": false,
    "error": "/etc/aupwatch/signatures.d/local.toml:4: signature irc.x: unknown severity `extreme`\n/etc/aupwatch/signatures.d/local.toml:9: signature irc.y: unknown key `bogus`"
  },
  "signatures": {
    "count": 146,
    "version": "89d4678a0426",
    "shipped": "bundled",
    "local": "/etc/aupwatch/signatures.d",
    "overridden": ["mining.xmrig"]
  },
  "findings": [
    {
      "id": "d33f431c87eb4906",
      "state": "ongoing",
      "first_seen_unix_ms": 1796655000000,
      "last_seen_unix_ms": 1796661885000,
      "scans": 480,
      "excepted": null,
      "finding": {
        "category": "mining",
        "severity": "critical",
        "subject": {
          "kind": "process",
          "pid": 4242,
          "ppid": 1,
          "start_ticks": 69940,
          "uid": 1000,
          "user": "alice",
          "comm": "xmrig",
          "exe": "/home/alice/.cache/xmrig",
          "exe_deleted": false,
          "cmdline": [
            "/home/alice/.cache/xmrig",
            "-o",
            "stratum+tcp://pool:3333"
          ],
          "netns": 4026531833,
          "container": null
        },
        "matches": [
          {
            "signature": "mining.xmrig",
            "severity": "critical",
            "description": "XMRig CPU/GPU miner",
            "aup": "Use of unused CPU: cryptocurrency mining",
            "evidence": [
              {
                "predicate": "name",
                "value": "comm \"xmrig\""
              }
            ]
          }
        ]
      }
    },
    {
      "id": "0a1b2c3d4e5f6071",
      "state": "new",
      "first_seen_unix_ms": 1796661885000,
      "last_seen_unix_ms": 1796661885000,
      "scans": 1,
      "excepted": null,
      "finding": {
        "category": "mining",
        "severity": "high",
        "subject": {
          "kind": "process",
          "pid": 1605,
          "ppid": 1,
          "start_ticks": 123456,
          "uid": 0,
          "user": "root",
          "comm": "gpj\u202excod",
          "exe": null,
          "exe_deleted": true,
          "cmdline": [
            "gpj\u202excod"
          ],
          "netns": 4026532177,
          "container": null
        },
        "matches": [
          {
            "signature": "mining.exe-strings",
            "severity": "high",
            "description": "an executable with miner strings",
            "aup": "Use of unused CPU: cryptocurrency mining",
            "related_pids": [
              1606,
              1607
            ],
            "evidence": [
              {
                "predicate": "exe_strings",
                "value": "executable contains \"stratum+tcp://\""
              }
            ]
          }
        ]
      }
    },
    {
      "id": "1122334455667788",
      "state": "ongoing",
      "first_seen_unix_ms": 1796655000000,
      "last_seen_unix_ms": 1796661885000,
      "scans": 480,
      "excepted": null,
      "finding": {
        "category": "proxy",
        "severity": "high",
        "subject": {
          "kind": "process",
          "pid": 1439,
          "ppid": 1,
          "start_ticks": 5000,
          "uid": 0,
          "user": "root",
          "comm": "microsocks",
          "exe": "/usr/bin/microsocks",
          "exe_deleted": false,
          "cmdline": [
            "microsocks",
            "-i",
            "0.0.0.0"
          ],
          "netns": 4026532177,
          "container": null
        },
        "matches": [
          {
            "signature": "proxy.software-public",
            "severity": "high",
            "description": "a proxy listening publicly",
            "aup": "Open proxies",
            "sockets": [
              {
                "protocol": "tcp",
                "local": "0.0.0.0:1080",
                "remote": null,
                "state": "listen",
                "netns": 4026532177,
                "inode": 99887
              }
            ],
            "evidence": [
              {
                "predicate": "listen",
                "value": "tcp 0.0.0.0:1080"
              }
            ],
            "probe": {
              "verdict": "open",
              "protocol": "socks5",
              "address": "127.0.0.1:1080",
              "netns": 4026532177,
              "inode": 99887,
              "evidence": "server chose 0x00, no authentication",
              "probed_at_unix_ms": 1796661885000
            }
          }
        ]
      }
    },
    {
      "id": "99aabbccddeeff00",
      "state": "ongoing",
      "first_seen_unix_ms": 1796568900000,
      "last_seen_unix_ms": 1796661885000,
      "scans": 6000,
      "excepted": {
        "reason": "one personal IRC connection \u2066(granted)\u2069",
        "ticket": "ABUSE-1234",
        "expires": "2027-06-30",
        "source": "/etc/aupwatch/agent.toml:12"
      },
      "finding": {
        "category": "irc",
        "severity": "low",
        "subject": {
          "kind": "process",
          "pid": 1777,
          "ppid": 1700,
          "start_ticks": 777,
          "uid": 1001,
          "user": "bob",
          "comm": "irssi",
          "exe": "/usr/bin/irssi",
          "exe_deleted": false,
          "cmdline": [
            "irssi"
          ],
          "netns": 4026531833,
          "container": null
        },
        "matches": [
          {
            "signature": "irc.client-connection",
            "severity": "low",
            "description": "an IRC client connection",
            "aup": "IRC",
            "evidence": [
              {
                "predicate": "remote",
                "value": "1 connection(s): tcp 10.0.0.5:40000 -> 192.0.2.1:6667"
              }
            ]
          }
        ]
      }
    },
    {
      "id": "abcdefabcdefabcd",
      "state": "ongoing",
      "first_seen_unix_ms": 1796655000000,
      "last_seen_unix_ms": 1796661885000,
      "scans": 480,
      "excepted": null,
      "finding": {
        "category": "traffic-shape",
        "severity": "medium",
        "subject": {
          "kind": "interface",
          "netns": 4026531833,
          "name": "eth\u200b0\u001b[2J"
        },
        "matches": [
          {
            "signature": "traffic-shape.small-packets",
            "severity": "medium",
            "description": "more packets than the traffic rule allows",
            "aup": "At most 1 packet/s per kbit/s",
            "evidence": [
              {
                "predicate": "traffic",
                "value": "12000 packets/s at 800 kbit/s"
              }
            ]
          }
        ]
      }
    },
    {
      "id": "fedcbafedcbafedc",
      "state": "ongoing",
      "first_seen_unix_ms": 1796655000000,
      "last_seen_unix_ms": 1796661885000,
      "scans": 480,
      "excepted": null,
      "finding": {
        "category": "evasion",
        "severity": "high",
        "subject": {
          "kind": "host"
        },
        "matches": [
          {
            "signature": "evasion.ld-preload",
            "severity": "high",
            "description": "a library preloaded into every process",
            "aup": "Abuse that hides itself",
            "evidence": [
              {
                "predicate": "preload",
                "value": "/etc/ld.so.preload: /lib/libhide.so"
              }
            ]
          }
        ]
      }
    }
  ],
  "recently_resolved": [
    {
      "id": "5555666677778888",
      "state": "resolved",
      "first_seen_unix_ms": 1796655000000,
      "last_seen_unix_ms": 1796658000000,
      "scans": 200,
      "excepted": null,
      "finding": {
        "category": "tor",
        "severity": "high",
        "subject": {
          "kind": "process",
          "pid": 3000,
          "ppid": 1,
          "start_ticks": 3000,
          "uid": 110,
          "user": "debian-tor",
          "comm": "tor",
          "exe": "/usr/bin/tor",
          "exe_deleted": false,
          "cmdline": [
            "tor"
          ],
          "netns": 4026531833,
          "container": null
        },
        "matches": [
          {
            "signature": "tor.relay",
            "severity": "high",
            "description": "a Tor relay",
            "aup": "Tor",
            "evidence": [
              {
                "predicate": "name",
                "value": "comm \"tor\""
              }
            ]
          }
        ]
      }
    }
  ],
  "reporting": {
    "syslog": {
      "target": "/dev/log",
      "sent": 40,
      "errors": 2,
      "last_error": "syslog write to /dev/log failed: Connection refused (os error 111)"
    },
    "event_log": {
      "target": "/var/lib/aupwatch/events.jsonl",
      "sent": 41,
      "errors": 0,
      "last_error": null
    },
    "collector": {
      "url": "https://collector.example.net:8740",
      "enrolled": true,
      "spool_reports": 12,
      "spool_bytes": 48213,
      "delivered": 1402,
      "last_delivery_unix_ms": 1796662380000,
      "last_error": "sending: connection refused\u001b[31m",
      "dropped": {
        "heartbeats": 3,
        "ongoing": 1,
        "transitions": 0
      },
      "quarantined": 1
    }
  }
}"#;

/// An agent that has just started: no scan yet, nothing found, no sinks.
const STATUS_STARTING: &str = r#"{
  "schema_version": 1,
  "agent": {
    "version": "0.1.0",
    "pid": 77,
    "host": "db-2",
    "health": "starting",
    "started_at_unix_ms": 1796662499000,
    "uptime_secs": 1,
    "config": null,
    "interval_secs": 15,
    "cpu_ms": 12.5,
    "max_rss_kib": 9000,
    "history": {
      "subjects": 0,
      "entries": 0
    }
  },
  "last_scan": null,
  "scans": 0,
  "last_reload": null,
  "signatures": {
    "count": 146,
    "version": "89d4678a0426",
    "shipped": "bundled",
    "local": null
  },
  "findings": [],
  "recently_resolved": [],
  "reporting": {
    "syslog": null,
    "event_log": null,
    "collector": null
  }
}"#;

/// `document` with every `*_unix_ms` time moved from [`FIXTURE_NOW_MS`] to now, as text.
fn shifted(document: &str) -> String {
    fn shift(v: &mut serde_json::Value, by: i64) {
        match v {
            serde_json::Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if key.ends_with("_unix_ms") {
                        if let Some(t) = value.as_i64() {
                            *value = (t + by).into();
                        }
                    } else {
                        shift(value, by);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| shift(i, by)),
            _ => {}
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut doc: serde_json::Value = serde_json::from_str(document).expect("fixture is JSON");
    shift(&mut doc, now - FIXTURE_NOW_MS as i64);
    doc.to_string()
}

/// `aupwatch status ARGS --socket S` against a stand-in agent that serves `document`.
fn status(document: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).expect("bind the status socket");
    let served = shifted(document);
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.write_all(served.as_bytes())
            .expect("serve the document");
    });
    let out = aupwatch(&[&["status", "--socket", &socket.to_string_lossy()], args].concat());
    server.join().expect("stand-in agent");
    out
}

#[test]
fn status_table_of_a_busy_agent() {
    let out = status(STATUS_BUSY, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "active findings: exit 1: {out:?}"
    );
    let shown = text(&out.stdout);
    assert_escaped("status", &shown);
    with_filters(Vec::new(), || insta::assert_snapshot!("status_busy", shown));
}

#[test]
fn status_table_of_a_starting_agent() {
    let out = status(STATUS_STARTING, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    with_filters(Vec::new(), || {
        insta::assert_snapshot!("status_starting", text(&out.stdout))
    });
}

/// The same agent, its last scan 10 minutes old at a 15 s interval: `stalled`, exit 2.
#[test]
fn status_of_a_stalled_agent() {
    let stale = STATUS_BUSY.replace("1796662489000", "1796661885000");
    assert_ne!(stale, STATUS_BUSY);
    for args in [&[][..], &["--json"], &["--prometheus"]] {
        let out = status(&stale, args);
        assert_eq!(out.status.code(), Some(2), "stalled: exit 2: {out:?}");
        assert!(
            text(&out.stderr).contains("the agent is stalled: its last scan is 615s old"),
            "{out:?}"
        );
        let shown = text(&out.stdout);
        let said = match args.first() {
            None => shown.lines().next().is_some_and(|l| l.contains("stalled")),
            Some(&"--json") => shown.contains("\"health\": \"stalled\""),
            Some(_) => shown.contains("aupwatch_up 0"),
        };
        assert!(said, "{args:?}:\n{shown}");
    }
}

#[test]
fn status_prometheus() {
    let busy = status(STATUS_BUSY, &["--prometheus"]);
    assert_eq!(busy.status.code(), Some(1), "{busy:?}");
    let starting = status(STATUS_STARTING, &["--prometheus"]);
    assert_eq!(starting.status.code(), Some(0), "{starting:?}");
    // The absolute times shown: the last scan's and the last delivery's, shifted to now.
    let timestamp = (
        r"aupwatch_last_scan_timestamp_seconds \d+\.\d{3}".to_string(),
        "aupwatch_last_scan_timestamp_seconds [now - 11]".to_string(),
    );
    let shown = text(&busy.stdout);
    let line = shown
        .lines()
        .find_map(|l| l.strip_prefix("aupwatch_last_scan_timestamp_seconds "))
        .expect("the last scan's time");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let age = now - line.parse::<f64>().expect("a number");
    assert!((11.0..71.0).contains(&age), "last scan 11 s ago: {line}");
    let delivery = (
        r"aupwatch_collector_last_delivery_timestamp_seconds \d+\.\d{3}".to_string(),
        "aupwatch_collector_last_delivery_timestamp_seconds [now - 120]".to_string(),
    );
    with_filters(vec![timestamp, delivery], || {
        insta::assert_snapshot!("prometheus_busy", shown);
        insta::assert_snapshot!("prometheus_starting", text(&starting.stdout));
    });
}

// ---------------------------------------------------------------------------------------------
// small frictions

#[test]
fn signatures_check_of_a_missing_directory_names_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    let missing = missing.to_string_lossy();
    let out = aupwatch(&["signatures", "check", &missing]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert_eq!(err.matches(&*missing).count(), 1, "{err}");
}

/// The commands whose exit status means something beyond success say so in `-h` and `--help`.
#[test]
fn help_states_exit_status() {
    for cmd in [
        &["scan"][..],
        &["status"],
        &["signatures", "check"],
        &["config", "check"],
    ] {
        for help in ["-h", "--help"] {
            let out = aupwatch(&[cmd, &[help]].concat());
            assert_eq!(out.status.code(), Some(0), "{cmd:?} {help}: {out:?}");
            let shown = text(&out.stdout);
            assert!(
                shown.contains("Exit status: 0 "),
                "{cmd:?} {help}:\n{shown}"
            );
        }
    }
}
