//! Processes hidden from the usual views of `/proc`, and what aupwatch sees of them.
//!
//! - A preload library (tests/common/hider.c, in the manner of libprocesshider) hooks
//!   `readdir`/`readdir64` and `open`/`openat`/`fopen` so that a process named `xmrig`
//!   disappears from `ls /proc`, `ps` and `/proc/<pid>/…` reads. It is handed to programs
//!   through `LD_PRELOAD` only; the machine's `/etc/ld.so.preload` is never touched.
//!   aupwatch, run under the same `LD_PRELOAD`, must still report the miner (its /proc reads
//!   are direct system calls) and report the preload itself.
//! - A bind mount of an empty directory over `/proc/<pid>`, made in a private mount
//!   namespace (`unshare -m`) in which the scan also runs, so the machine's /proc is never
//!   changed. The cgroup cross-check must report the pid as hidden and the mount.
//!
//! The hidden process is the impostor (tests/common/impostor.c) named `xmrig`; it opens no
//! socket, and it runs inside a loopback-only network namespace like every test process.

mod common;

use common::{aupwatch_bin, prerequisites, scan, scan_command, Lab, Report, Spawn};
use std::path::{Path, PathBuf};
use std::process::Command;

const HIDER_C: &str = include_str!("common/hider.c");

/// Starts the impostor as `name` with a miner's flags (`xmrig`, `xmrig-*`: `mining.xmrig`
/// matches it by name).
fn miner(lab: &mut Lab, name: &str) -> u32 {
    let path = lab.impostor(name);
    let pid = lab.start(
        name,
        Spawn::new(&path).args(["--donate-level", "1", "-o", "stratum+tcp://127.0.0.1:3333"]),
    );
    lab.wait_log(name, "impostor ready");
    pid
}

/// Builds the hiding library for processes whose comm is `name`.
fn build_hider(lab: &Lab, name: &str) -> PathBuf {
    let define = format!("-DHIDE_NAME=\"{name}\"");
    lab.compile_c(
        "libhide.so",
        HIDER_C,
        &["-shared", "-fPIC", "-O2", "-Wall", &define],
        &["-ldl"],
    )
}

/// Runs `program args` with `LD_PRELOAD=lib` (when given); stdout, and whether it succeeded.
fn run_with(lib: Option<&Path>, program: &str, args: &[&str]) -> (String, bool) {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(lib) = lib {
        cmd.env("LD_PRELOAD", lib);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

fn lists(listing: &str, pid: u32) -> bool {
    listing.lines().any(|l| l.trim() == pid.to_string())
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn a_preload_library_that_hides_a_miner_does_not_hide_it_from_aupwatch() {
    const T: &str = "a_preload_library_that_hides_a_miner_does_not_hide_it_from_aupwatch";
    let tools = prerequisites(T, &["cc", "ls", "cat"]);
    let (ls, cat) = (tools[1].to_string_lossy(), tools[2].to_string_lossy());
    let mut lab = Lab::new(T, "hide");
    let pid = miner(&mut lab, "xmrig");
    let lib = build_hider(&lab, "xmrig");
    let stat = format!("/proc/{pid}/stat");

    // The library works: under it, `ls /proc` does not list the miner and its stat cannot be
    // opened; without it, both do.
    let (plain, _) = run_with(None, &ls, &["-1", "/proc"]);
    assert!(lists(&plain, pid), "{T}: `ls /proc` must list pid {pid}");
    let (hidden, _) = run_with(Some(&lib), &ls, &["-1", "/proc"]);
    if lists(&hidden, pid) {
        lab.fail(&format!(
            "the preload library does not hide pid {pid} from `ls /proc`: the test proves nothing"
        ));
    }
    assert!(
        run_with(None, &cat, &[&stat]).1,
        "{T}: {stat} must read without the library"
    );
    if run_with(Some(&lib), &cat, &[&stat]).1 {
        lab.fail(&format!(
            "the preload library does not hide {stat} from `cat`: the test proves nothing"
        ));
    }

    // aupwatch under the same library still sees the miner, by name, with its command line.
    let mut cmd = Command::new(aupwatch_bin());
    cmd.args(["scan", "--json", "--sample", "1"])
        .env("LD_PRELOAD", &lib);
    let report = scan_command(cmd, "LD_PRELOAD=libhide.so aupwatch scan --json");
    report.expect(&lab, "xmrig hidden by a preload library", pid, "mining");
    assert!(
        report
            .involving(pid)
            .iter()
            .any(|f| f["signature"] == "mining.xmrig"),
        "{T}: the miner must be matched by name (mining.xmrig)"
    );

    // … and says that it runs with a preload library, naming it.
    let Some(pre) = report.host_finding("evasion.ld-preload") else {
        panic!(
            "{T}: no evasion.ld-preload finding while running with LD_PRELOAD; findings: {:?}",
            report
                .findings()
                .iter()
                .map(|f| common::describe(f))
                .collect::<Vec<_>>()
        );
    };
    let evidence = Report::evidence_text(pre);
    assert!(
        evidence.contains(&format!("LD_PRELOAD of the agent: {}", lib.display())),
        "{T}: the preload evidence must name the library: {evidence}"
    );
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn processes_masked_by_mounts_over_their_proc_directories_are_reported_hidden() {
    const T: &str = "processes_masked_by_mounts_over_their_proc_directories_are_reported_hidden";
    let tools = prerequisites(T, &["cc", "unshare", "mount", "sh"]);
    let mut lab = Lab::new(T, "mask");
    // One miner masked with an empty directory, one with a decoy's /proc directory.
    let empty_masked = miner(&mut lab, "xmrig");
    let decoy_masked = miner(&mut lab, "xmrig-2");
    let decoy_path = lab.impostor("decoy");
    let decoy = lab.start("decoy", Spawn::new(&decoy_path));
    lab.wait_log("decoy", "impostor ready");
    let empty = lab.dir().join("empty");
    std::fs::create_dir_all(&empty).expect("create the empty directory");

    // Control: without the mounts, no hidden process and no /proc mount names these pids,
    // and both miners are reported.
    let before = scan(&[]);
    for id in ["evasion.hidden-process", "evasion.proc-mount"] {
        if let Some(f) = before.host_finding(id) {
            let ev = Report::evidence_text(f);
            for pid in [empty_masked, decoy_masked] {
                assert!(
                    !ev.contains(&format!("pid {pid}")),
                    "{T}: {id} names pid {pid} before anything hides it: {ev}"
                );
            }
        }
    }
    before.expect(&lab, "xmrig (not hidden yet)", empty_masked, "mining");
    before.expect(&lab, "xmrig-2 (not hidden yet)", decoy_masked, "mining");

    // In a private mount namespace: mask both /proc/<pid>, check that they are masked there,
    // then scan from inside that namespace.
    let script = r#"set -e
mount --bind "$1" "/proc/$2"
mount --bind "/proc/$4" "/proc/$3"
if [ -e "/proc/$2/stat" ]; then echo "the mount did not mask /proc/$2" >&2; exit 3; fi
if [ "$(cut -d' ' -f1 "/proc/$3/stat")" != "$4" ]; then echo "/proc/$3 is not the decoy's" >&2; exit 3; fi
shift 4
exec "$@""#;
    let mut cmd = Command::new(&tools[1]);
    cmd.args(["-m", "--propagation", "private"])
        .arg(&tools[3])
        .args(["-c", script, "sh"])
        .arg(&empty)
        .arg(empty_masked.to_string())
        .arg(decoy_masked.to_string())
        .arg(decoy.to_string())
        .arg(aupwatch_bin())
        .args(["scan", "--json", "--sample", "1"]);
    let report = scan_command(
        cmd,
        "unshare -m: mounts over /proc/<pid>; aupwatch scan --json",
    );

    let Some(hidden) = report.host_finding("evasion.hidden-process") else {
        lab.fail(&format!(
            "pids {empty_masked} and {decoy_masked}, masked by mounts over their /proc \
             directories, were not reported hidden; findings: {:?}",
            report
                .findings()
                .iter()
                .map(|f| common::describe(f))
                .collect::<Vec<_>>()
        ));
    };
    let ev = Report::evidence_text(hidden);
    for pid in [empty_masked, decoy_masked] {
        assert!(
            ev.contains(&format!("pid {pid} (its /proc/<pid> cannot be read")),
            "{T}: the hidden-process evidence must name pid {pid} as masked: {ev}"
        );
    }
    assert!(
        !ev.contains(&format!("pid {decoy} ")),
        "{T}: the decoy (pid {decoy}) is not hidden: {ev}"
    );
    // The masked pid is not reported with the decoy's identity.
    if let Some(f) = report.involving(decoy_masked).first() {
        panic!(
            "{T}: pid {decoy_masked} reads as the decoy's directory and must not be reported as a process: {}",
            common::describe(f)
        );
    }
    let Some(mount) = report.host_finding("evasion.proc-mount") else {
        panic!("{T}: the mounts over /proc/<pid> were not reported");
    };
    let ev = Report::evidence_text(mount);
    // The mount's root is the directory's path inside its own file system (/tmp may be one).
    assert!(
        ev.contains(&format!(
            "/empty over /proc/{empty_masked} (pid {empty_masked})"
        )),
        "{T}: the proc-mount evidence must name the empty-directory mount: {ev}"
    );
    assert!(
        ev.contains(&format!(
            "/{decoy} over /proc/{decoy_masked} (pid {decoy_masked}): proc"
        )),
        "{T}: the proc-mount evidence must name the decoy mount: {ev}"
    );

    // The machine's /proc was never changed: the miners read here, and no mount is on it.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for pid in [empty_masked, decoy_masked] {
        assert!(
            common::alive(pid) && common::comm(pid).is_some_and(|c| c.starts_with("xmrig")),
            "{T}: /proc/{pid} must still read as the miner outside the private namespace"
        );
        assert!(
            !mounts.contains(&format!(" /proc/{pid} ")),
            "{T}: a mount leaked out of its namespace"
        );
    }
}

/// The kernel's task count (`/proc/loadavg`) is the machine's. A scan inside a PID namespace
/// of its own (a container: nspawn, LXC, Docker) lists only the namespace's processes and must
/// not call every other task of the machine unlisted; a scan of the machine's `/proc` still
/// compares the two.
#[test]
#[ignore = "needs root and util-linux's unshare; run with --include-ignored (CI does)"]
fn a_scan_inside_a_pid_namespace_does_not_count_the_machines_tasks_as_hidden() {
    let test = "a_scan_inside_a_pid_namespace_does_not_count_the_machines_tasks_as_hidden";
    prerequisites(test, &["unshare"]);
    let run = |in_namespace: bool, args: &[&str]| -> serde_json::Value {
        let mut cmd = if in_namespace {
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc", aupwatch_bin()]);
            c
        } else {
            Command::new(aupwatch_bin())
        };
        let out = cmd.args(args).output().expect("run aupwatch");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} (namespace: {in_namespace}): {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let inside = run(true, &["inventory"]);
    let procs = inside["processes"].as_array().map_or(0, Vec::len);
    assert!(
        (1..=2).contains(&procs),
        "the namespace's /proc lists only the scan: {procs}"
    );
    assert!(
        inside["host"]["tasks"].is_null(),
        "no machine-wide count compared inside: {}",
        inside["host"]["tasks"]
    );
    let scan = run(true, &["scan", "--sample", "0", "--json"]);
    let sigs: Vec<&str> = scan["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["signature"].as_str())
        .collect();
    assert!(!sigs.contains(&"evasion.unlisted-tasks"), "{sigs:?}");

    let outside = run(false, &["inventory"]);
    let tasks = &outside["host"]["tasks"];
    assert!(
        tasks["kernel"].as_u64().is_some_and(|k| k > 0) && tasks["listed"].as_u64().is_some(),
        "the machine's /proc is cross-checked: {tasks}"
    );
}
