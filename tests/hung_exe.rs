//! The agent's loop never blocks on the host: an executable on a file system that stops
//! answering (a FUSE daemon that never replies, as a dead NFS server or a hostile mount
//! would) costs that process a gap, not the agent its scans.
//!
//! `tests/common/stallfs.c` (libfuse3) serves one executable, a copy of `sleep`, and stops
//! answering every request once a trigger file exists. The process runs from it in a
//! private mount namespace (nothing is mounted in the host's); the agent, in a
//! loopback-only network namespace, finds it through `/proc/<pid>/exe`, whose `stat` and
//! `read` would block forever in the kernel.
//!
//! Only the agent is tried: a one-shot `aupwatch scan` also finishes its scan and prints the
//! gap, but its process cannot exit while its reader thread is blocked in such a request
//! (the kernel waits for the file system's answer), so a test would hang on its exit.

#[path = "common/agent.rs"]
mod agent_util;
mod common;

use agent_util::{Agent, Opts, Setup, TIMEOUT};

use common::{prerequisites, Lab};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STALLFS_C: &str = include_str!("common/stallfs.c");

/// The stalled program and its file system, killed (which aborts the mount) on drop.
struct Stalled {
    shell: Child,
    prog_pid: u32,
}

impl Drop for Stalled {
    fn drop(&mut self) {
        // The file system first: its death fails every blocked request (ENOTCONN).
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.prog_pid.to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-KILL", &self.prog_pid.to_string()])
            .status();
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

// The shell is waited for by `Stalled`'s Drop.
#[allow(clippy::zombie_processes)]
fn start_stalled(lab: &Lab, stallfs: &Path, trigger: &Path) -> Stalled {
    let mnt = lab.dir().join("mnt");
    std::fs::create_dir_all(&mnt).expect("create the mount point");
    // In a private mount namespace: stallfs mounts there, and the shell, once the file is
    // served, becomes the program run from it.
    let script = format!(
        "{fs} /bin/sleep {trigger} {mnt} & i=0; \
         while [ ! -x {mnt}/prog ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
         exec {mnt}/prog 600",
        fs = stallfs.display(),
        trigger = trigger.display(),
        mnt = mnt.display(),
    );
    let mut shell = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start unshare");
    let pid = shell.id();
    let want = format!("{}/prog", mnt.display());
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == Path::new(&want)) {
            return Stalled {
                shell,
                prog_pid: pid,
            };
        }
        if Instant::now() >= deadline {
            let _ = shell.kill();
            let _ = shell.wait();
            panic!("the program from the FUSE mount did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root, network and mount namespaces, /dev/fuse and libfuse3-dev; CI runs it with --include-ignored"]
fn an_executable_on_a_hung_file_system_does_not_stop_the_scans() {
    let test = "an_executable_on_a_hung_file_system_does_not_stop_the_scans";
    prerequisites(test, &["unshare", "pkill", "cc"]);
    let lab = Lab::new(test, "hx");
    let stallfs = lab.compile_c(
        "stallfs",
        STALLFS_C,
        &["-O2", "-Wall", "-I/usr/include/fuse3"],
        &["-lfuse3", "-lpthread"],
    );
    let trigger = lab.dir().join("stall-now");
    let stalled = start_stalled(&lab, &stallfs, &trigger);
    // From now on, every stat, open and read of the program's executable blocks.
    std::fs::write(&trigger, b"").expect("create the trigger");

    let setup = Setup::new(lab.dir(), "hx");
    setup.write_config(&Opts::default());
    // Fields drop in order: the file system first, so that the agent, whose reader thread
    // is blocked in it, can then exit (also when an assertion fails).
    struct Scene {
        _stalled: Stalled,
        agent: Agent,
    }
    let mut scene = Scene {
        agent: Agent::start(test, &lab, &setup),
        _stalled: stalled,
    };
    let agent = &mut scene.agent;
    // Scans go on (the interval is 1 s): the first one met the hung file, and later ones
    // must still happen.
    let doc = agent.wait_status("five scans past the hung executable", |d| {
        d["scans"].as_u64().unwrap_or(0) >= 5
    });
    assert!(
        doc["last_scan"]["gaps"].as_u64().unwrap_or(0) >= 1,
        "the process whose executable could not be read is a gap: {doc}"
    );
    // The agent's abandoned reader thread stays blocked in the kernel until the file
    // system answers (a FUSE request already read by its daemon cannot be interrupted):
    // the file system goes first, then the agent (Scene's drop order).
    drop(scene);
}
