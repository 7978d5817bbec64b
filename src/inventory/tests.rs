//! The inventory on the real `/proc`, through this test process and its children. Parsers
//! are tested next to them (procdir.rs, net.rs, diag.rs).

use super::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn me() -> i32 {
    std::process::id() as i32
}

fn own_netns() -> u64 {
    let t = std::fs::read_link("/proc/self/ns/net").expect("ns link");
    procdir::parse_ns_link(t.as_os_str().as_encoded_bytes()).expect("ns inode")
}

fn process(snap: &Snapshot, pid: i32) -> &Process {
    snap.processes
        .iter()
        .find(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in the inventory"))
}

fn socket_of(snap: &Snapshot, port: u16, protocol: Protocol) -> Option<&Socket> {
    snap.sockets
        .iter()
        .find(|s| s.protocol == protocol && s.local.port() == port && s.netns == own_netns())
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn this_process_is_inventoried_truthfully() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let snap = take(&Options::default()).expect("inventory");
    let p = process(&snap, me());
    assert_eq!(p.netns, own_netns());
    assert_eq!(p.uid, nix::unistd::geteuid().as_raw());
    assert_eq!(p.ppid, nix::unistd::getppid().as_raw());
    assert!(!p.kernel_thread);
    let exe = std::fs::read_link("/proc/self/exe").expect("exe");
    assert_eq!(p.exe.as_deref(), exe.to_str());
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(p.cmdline, args);
    assert!(p.start_ticks > 0 && snap.ticks_per_second > 0);
    let s = socket_of(&snap, port, Protocol::Tcp).expect("the test's listener");
    assert_eq!(s.state, SocketState::Listen);
    assert!(s.owners.contains(&me()), "{s:?}");
    assert!(p.socket_inodes.contains(&s.inode));
    // Owners ascending, processes ascending.
    assert!(snap.processes.windows(2).all(|w| w[0].pid < w[1].pid));
    assert!(snap
        .sockets
        .iter()
        .all(|s| s.owners.windows(2).all(|w| w[0] < w[1])));
    let src = snap
        .socket_sources
        .iter()
        .find(|n| n.netns == own_netns())
        .expect("own namespace read");
    assert_ne!(src.source, SocketSource::None);
    drop(listener);
}

#[test]
fn sockets_opened_after_a_scan_are_owned_in_the_next() {
    let mut inv = Inventory::new(Options::default());
    inv.take().expect("first");
    let _ = inv.take().expect("second");
    // New sockets of a process the inventory already knows: a listener, an accepted
    // connection and its client side, a bound UDP socket.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let uport = udp.local_addr().expect("addr").port();
    let snap = inv.take().expect("third");
    let l = socket_of(&snap, port, Protocol::Tcp).expect("listener");
    assert!(l.owners.contains(&me()), "listener {l:?}");
    let conns: Vec<&Socket> = snap
        .sockets
        .iter()
        .filter(|s| {
            s.netns == own_netns()
                && s.state == SocketState::Established
                && (s.local.port() == port || s.remote.is_some_and(|r| r.port() == port))
        })
        .collect();
    assert_eq!(conns.len(), 2, "{conns:?}");
    for c in conns {
        assert!(c.owners.contains(&me()), "connection {c:?}");
    }
    let u = socket_of(&snap, uport, Protocol::Udp).expect("udp");
    assert!(u.owners.contains(&me()), "udp {u:?}");
    // Closed sockets drop out of the next scan, and out of the process's list.
    let inode = l.inode;
    drop((listener, client, server, udp));
    let snap = inv.take().expect("fourth");
    assert!(snap.sockets.iter().all(|s| s.inode != inode));
    assert!(!process(&snap, me()).socket_inodes.contains(&inode));
}

#[test]
fn a_new_process_and_a_new_program_are_read_again() {
    // Every Linux has /bin/sh: without it this test fails rather than passes doing nothing.
    let sh = Command::new("/bin/sh")
        .args(["-c", "read x; exec sleep 30"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("start /bin/sh");
    let mut child = Kill(sh);
    let pid = child.0.id() as i32;
    wait_for("the shell", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sh")
    });
    let mut inv = Inventory::new(Options::default());
    let snap = inv.take().expect("first");
    let p = process(&snap, pid);
    assert_eq!(p.cmdline, ["/bin/sh", "-c", "read x; exec sleep 30"]);
    let start = p.start_ticks;
    // Same pid, same start time, another program: exe, cmdline and comm must follow.
    drop(child.0.stdin.take());
    wait_for("the exec", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    });
    let snap = inv.take().expect("second");
    let p = process(&snap, pid);
    assert_eq!(p.start_ticks, start);
    assert_eq!(p.comm, "sleep");
    assert_eq!(p.cmdline, ["sleep", "30"]);
    assert!(
        p.exe.as_deref().is_some_and(|e| e.ends_with("/sleep")),
        "{:?}",
        p.exe
    );
}

#[test]
#[ignore = "needs python3 (.ci/run installs it); run with --include-ignored (CI does)"]
fn a_child_with_a_listener_is_found_in_steady_state() {
    // A process started after the first scan, listening: new, so read in full.
    let Ok(py) = Command::new("python3")
        .args([
            "-c",
            "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\ntime.sleep(30)",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        panic!("python3 is not installed: this ignored test needs it when it is run");
    };
    let mut inv = Inventory::new(Options::default());
    inv.take().expect("first");
    let mut child = Kill(py);
    let mut line = String::new();
    let mut out = child.0.stdout.take().expect("stdout");
    let mut byte = [0u8; 1];
    while out.read(&mut byte).expect("read") == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    let port: u16 = line.trim().parse().expect("port");
    let snap = inv.take().expect("second");
    let s = socket_of(&snap, port, Protocol::Tcp).expect("child's listener");
    assert_eq!(s.owners, vec![child.0.id() as i32]);
}

#[test]
fn executables_are_hashed_once() {
    use sha2::{Digest, Sha256};
    let mut inv = Inventory::new(Options {
        hash_exes: true,
        ..Options::default()
    });
    let a = inv.take().expect("first");
    let b = inv.take().expect("second");
    let bytes = std::fs::read("/proc/self/exe").expect("own exe");
    let want: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(process(&a, me()).exe_sha256.as_deref(), Some(want.as_str()));
    assert_eq!(process(&b, me()).exe_sha256.as_deref(), Some(want.as_str()));
}

#[test]
fn a_fixture_tree_without_processes_is_empty_not_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("uptime"), "123.45 67.8\n").expect("uptime");
    let snap = take(&Options {
        proc_root: dir.path().to_path_buf(),
        ..Options::default()
    })
    .expect("inventory");
    assert_eq!(snap.uptime_secs, 123.45);
    assert!(snap.processes.is_empty() && snap.sockets.is_empty());
    let missing = take(&Options {
        proc_root: dir.path().join("nope"),
        ..Options::default()
    });
    assert!(missing.is_err());
}

#[test]
fn executables_are_searched_for_strings_across_reads_and_after_deletion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("innocent");
    let mut bytes = std::fs::read("/bin/sleep").expect("/bin/sleep");
    // Built at run time, so neither string is in this test binary or in sleep.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let marker = format!("Marker-{nanos}-STRATUM");
    let absent = format!("absent-{nanos}-string");
    // The marker straddles the boundary between the second and third 64 KiB read.
    let at = 2 * 64 * 1024 - 5;
    if bytes.len() < at {
        bytes.resize(at, 0);
    }
    bytes.splice(at..at, marker.bytes());
    std::fs::write(&exe, &bytes).expect("write exe");
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let child = Kill(
        Command::new(&exe)
            .arg("30")
            .spawn()
            .expect("start copy of sleep"),
    );
    let pid = child.0.id() as i32;
    let opts = Options {
        exe_strings: vec![marker.to_ascii_lowercase(), absent],
        ..Options::default()
    };
    let mut inv = Inventory::new(opts.clone());
    // wait for the exec to have happened
    let mut found = Vec::new();
    for _ in 0..100 {
        let snap = inv.take().expect("inventory");
        if let Some(p) = snap
            .processes
            .iter()
            .find(|p| p.pid == pid && p.exe.is_some())
        {
            if p.exe.as_deref() == exe.to_str() {
                found = p.exe_strings.clone();
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        found,
        vec![marker.to_ascii_lowercase()],
        "case ignored, absent not found"
    );
    std::fs::remove_file(&exe).expect("delete exe");
    let snap = take(&opts).expect("cold inventory");
    let p = process(&snap, pid);
    assert!(p.exe_deleted);
    assert_eq!(
        p.exe_strings,
        vec![marker.to_ascii_lowercase()],
        "read through /proc/<pid>/exe"
    );
}

#[test]
fn host_state_from_a_fixture_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("proc");
    let sys = dir.path().join("sys");
    let write = |path: &Path, text: &str| {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write(&root.join("uptime"), "123.45 67.8\n");
    write(&root.join("loadavg"), "0.10 0.20 0.30 1/7 999\n");
    write(
        &root.join("self/environ"),
        "PATH=/bin\0LD_PRELOAD=/opt/x/libx.so\0",
    );
    write(
        &root.join("self/mountinfo"),
        "22 1 0:21 / /proc rw - proc proc rw\n\
         90 22 0:50 / /proc/4242 rw - tmpfs none rw\n",
    );
    write(
        &sys.join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
        "1280\n",
    );
    write(&sys.join("module/msr/parameters/allow_writes"), "on\n");
    let preload = dir.path().join("ld.so.preload");
    write(&preload, "/usr/local/lib/libprocesshider.so\n");
    let snap = take(&Options {
        proc_root: root.clone(),
        sys_root: sys,
        preload_file: preload,
        ..Options::default()
    })
    .expect("inventory");
    let h = &snap.host;
    assert_eq!(h.preload, vec!["/usr/local/lib/libprocesshider.so"]);
    assert_eq!(h.preload_env.as_deref(), Some("/opt/x/libx.so"));
    assert_eq!(h.proc_mounts.len(), 1);
    assert_eq!(h.proc_mounts[0].pid, 4242);
    assert_eq!(
        h.hugepages,
        vec![HugePages {
            size_kb: 2048,
            total: 1280
        }]
    );
    assert_eq!(
        h.msr,
        Some(Msr {
            allow_writes: Some("on".into())
        })
    );
    // No processes in the fixture: the kernel's 7 tasks are all unlisted.
    assert_eq!(
        h.tasks,
        Some(TaskCount {
            kernel: 7,
            listed: 0
        })
    );
    // The same tree as the /proc of a container's PID namespace: the machine-wide count is
    // not compared with its listing. As the initial namespace: it is.
    for (ino, compared) in [(4_026_532_712_u64, false), (4_026_531_836, true)] {
        let link = root.join("self/ns/pid");
        std::fs::create_dir_all(root.join("self/ns")).expect("mkdir");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("pid:[{ino}]"), &link).expect("symlink");
        let snap = take(&Options {
            proc_root: root.clone(),
            ..Options::default()
        })
        .expect("inventory");
        assert_eq!(snap.host.tasks.is_some(), compared, "pid namespace {ino}");
        std::fs::remove_file(&link).expect("rm");
    }
    // A fixture is not the live host: no cgroup walk, so nothing is called hidden.
    assert_eq!(h.cgroups, None);
    assert!(h.hidden.is_empty());
    // A missing preload file is no entry and no gap; an unreadable one is a gap.
    let snap = take(&Options {
        proc_root: root.clone(),
        preload_file: dir.path().join("missing"),
        ..Options::default()
    })
    .expect("inventory");
    assert!(snap.host.preload.is_empty());
    assert!(snap.gaps.iter().all(|g| !g.what.contains("missing")));
    let snap = take(&Options {
        proc_root: root,
        preload_file: dir.path().to_path_buf(), // a directory: EISDIR
        ..Options::default()
    })
    .expect("inventory");
    assert!(
        snap.gaps
            .iter()
            .any(|g| g.what == dir.path().display().to_string()),
        "{:?}",
        snap.gaps
    );
}

#[test]
fn the_live_host_is_cross_checked_and_this_process_is_not_hidden() {
    let snap = take(&Options::default()).expect("inventory");
    let h = &snap.host;
    // Every test host has a cgroup file system; CI must not silently skip the cross-check.
    let walk = h
        .cgroups
        .as_ref()
        .unwrap_or_else(|| panic!("no cgroup hierarchy was walked; gaps: {:?}", snap.gaps));
    assert!(walk.cgroups >= 1 && walk.pids >= 1, "{walk:?}");
    assert!(
        h.hidden.iter().all(|x| x.pid != me()),
        "this test process is not hidden: {:?}",
        h.hidden
    );
    assert!(h.tasks.is_some());
    process(&snap, me());
}

#[test]
fn a_process_missing_from_the_listing_is_found_through_the_cgroups_and_inventoried() {
    let child = Kill(
        Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("start sleep"),
    );
    let pid = child.0.id() as i32;
    wait_for("sleep to exec", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    let mut inv = Inventory::new(Options::default());
    // As a rootkit filtering getdents would: the pid is in no listing of /proc.
    inv.unlisted = vec![pid];
    for round in 0..2 {
        let snap = inv.take().expect("inventory");
        let h = snap
            .host
            .hidden
            .iter()
            .find(|h| h.pid == pid)
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: pid {pid} is missing from the listing but not reported hidden: {:?}, cgroups {:?}, gaps {:?}",
                    snap.host.hidden, snap.host.cgroups, snap.gaps
                )
            });
        assert_eq!(h.how, HiddenHow::Unlisted);
        assert!(h.inventoried);
        let p = process(&snap, pid);
        assert_eq!(p.comm, "sleep");
        assert_eq!(p.cmdline, vec!["sleep", "30"]);
    }
    // Listed again, it is an ordinary process.
    inv.unlisted.clear();
    let snap = inv.take().expect("inventory");
    assert!(snap.host.hidden.iter().all(|h| h.pid != pid));
    process(&snap, pid);
}

/// A child that prints the port of a listener it opens when told to (a line on stdin).
fn listener_on_request() -> Option<(Kill, std::process::ChildStdin, std::process::ChildStdout)> {
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import socket,sys,time\nsys.stdin.readline()\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let stdin = py.stdin.take()?;
    let stdout = py.stdout.take()?;
    Some((Kill(py), stdin, stdout))
}

fn read_port(out: &mut std::process::ChildStdout) -> u16 {
    let mut line = String::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).expect("read") == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    line.trim().parse().expect("port")
}

#[test]
#[ignore = "needs python3 (.ci/run installs it); run with --include-ignored (CI does)"]
fn a_socket_an_unreadable_process_may_hold_is_not_searched_for_everywhere() {
    use std::io::Write;
    let Some((child, mut stdin, mut stdout)) = listener_on_request() else {
        panic!("python3 is not installed: this ignored test needs it when it is run");
    };
    let pid = child.0.id() as i32;
    // The executable, not `comm`: a `python3` on PATH may be a wrapper script (pyenv's
    // shim) whose comm already says python3 while it execs on; the child must have reached
    // the interpreter before the scans start, or its re-exec makes it new again.
    wait_for("python", || {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| {
            e.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python"))
        })
    });
    let mut inv = Inventory::new(Options::default());
    inv.take().expect("first");
    // Keep the 1/32 refresh away from the child for the scans below (it would re-read its
    // descriptors and find the socket by another way).
    inv.scan = (1 - i64::from(pid)).rem_euclid(REFRESH_SCANS as i64) as u64 + REFRESH_SCANS;
    inv.take().expect("second");
    // Pretend its fd/ cannot be read (as /proc/1/fd in some sandboxes, even for root).
    let unreadable = |inv: &mut Inventory, yes: bool| {
        let e = inv.procs.get_mut(&pid).expect("child known");
        e.fds_unreadable = yes;
        let gap = yes.then(|| Gap {
            what: format!("/proc/{pid}/fd"),
            error: "EACCES: Permission denied".into(),
        });
        e.set_gap(Part::Fds, gap);
    };
    unreadable(&mut inv, true);
    stdin.write_all(b"go\n").expect("tell the child");
    let port = read_port(&mut stdout);
    let snap = inv.take().expect("third");
    let s = socket_of(&snap, port, Protocol::Tcp).expect("child's listener");
    let inode = s.inode;
    assert!(s.owners.is_empty(), "{s:?}");
    assert!(inv.pending.contains(&inode));
    // Still unowned after the search of its namespace: explained by the child, not an
    // orphan of a search of every process, and not pending any more.
    let snap = inv.take().expect("fourth");
    assert!(socket_of(&snap, port, Protocol::Tcp).is_some_and(|s| s.owners.is_empty()));
    assert!(inv.explained.contains(&inode), "explained");
    assert!(!inv.orphans.contains(&inode) && !inv.pending.contains(&inode));
    inv.take().expect("fifth");
    assert!(inv.explained.contains(&inode));
    // The child's fd/ becomes readable: the set of unreadable processes changed, so the
    // socket is searched for again and found.
    unreadable(&mut inv, false);
    let snap = inv.take().expect("sixth");
    let s = socket_of(&snap, port, Protocol::Tcp).expect("child's listener");
    assert_eq!(s.owners, vec![pid]);
    assert!(inv.explained.is_empty());
    drop(child);
}

#[test]
fn clone_from_copies_every_field() {
    let full = Process {
        pid: 7,
        ppid: 1,
        uid: 1000,
        user: Some("alice".into()),
        comm: "xmrig".into(),
        exe: Some("/tmp/xmrig".into()),
        exe_deleted: true,
        cmdline: vec!["xmrig".into(), "-o".into(), "pool:3333".into()],
        start_ticks: 42,
        cpu_ticks: 4242,
        threads: 4,
        nice: 19,
        rss_bytes: 1 << 20,
        kernel_thread: false,
        cgroup: Some("/user.slice".into()),
        container: Some("c".repeat(64)),
        cmdline_truncated: None,
        netns: 4026531840,
        socket_inodes: vec![1, 2, 3],
        exe_sha256: Some("0".repeat(64)),
        sched_policy: 5,
        exe_strings: vec!["randomx".into()],
    };
    // Into an empty process, and from a sparser one into a fuller one.
    let mut p = Process::default();
    p.clone_from(&full);
    assert_eq!(p, full);
    assert_eq!(full.clone(), full);
    let sparse = Process {
        pid: 8,
        comm: "sh".into(),
        cmdline: vec!["sh".into()],
        ..Process::default()
    };
    p.clone_from(&sparse);
    assert_eq!(p, sparse);
}

#[test]
fn a_recycled_snapshot_gives_the_same_inventory() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut inv = Inventory::new(Options::default());
    let mut fresh = Inventory::new(Options::default());
    for round in 0..3 {
        let a = inv.take().expect("recycling inventory");
        let b = fresh.take().expect("fresh inventory");
        let (pa, pb) = (process(&a, me()), process(&b, me()));
        // (Not the descriptor lists: each inventory holds netlink sockets of its own.)
        assert_eq!(
            (&pa.comm, &pa.cmdline, &pa.exe, &pa.cgroup, pa.netns, pa.uid),
            (&pb.comm, &pb.cmdline, &pb.exe, &pb.cgroup, pb.netns, pb.uid),
            "round {round}"
        );
        let (sa, sb) = (
            socket_of(&a, port, Protocol::Tcp).expect("listener"),
            socket_of(&b, port, Protocol::Tcp).expect("listener"),
        );
        assert_eq!(sa, sb, "round {round}");
        assert_eq!(sa.owners, vec![me()]);
        // No socket keeps an owner list from the snapshot it was recycled from.
        assert!(a
            .sockets
            .iter()
            .all(|s| s.inode != 0 || s.owners.is_empty()));
        inv.recycle(a);
    }
    drop(listener);
}

#[test]
fn an_elf_executable_is_searched_except_its_code() {
    // This test binary: an ELF file with code sections; its read-only data holds this
    // literal, which a search of the file outside its code must find.
    const MARKER: &str = "aupwatch-rodata-marker-5c1e9a";
    let exe = std::fs::File::open("/proc/self/exe").expect("own exe");
    let fd = std::os::fd::OwnedFd::from(exe);
    let size = i64::try_from(fd_size(&fd)).expect("size");
    let ranges = hash::elf_data_ranges(&fd, size).expect("an ELF file with code");
    let searched: u64 = ranges.iter().map(|(_, l)| l).sum();
    assert!(
        searched < size as u64 && ranges.len() >= 2,
        "{ranges:?} of {size}"
    );
    let dir = std::fs::File::open("/proc/self").expect("/proc/self");
    let dir = std::os::fd::OwnedFd::from(dir);
    // Built at run time: not in the binary.
    let absent = format!("absent-{}", std::process::id() * 7919);
    let wanted = hash::Wanted::new(false, &[MARKER.to_string(), absent]);
    let mut hashes = hash::Hashes::default();
    match hashes.hash(std::os::fd::AsFd::as_fd(&dir), me(), &wanted) {
        hash::Hashed::Facts(_, facts, None) => {
            assert_eq!(facts.strings, vec![MARKER.to_string()]);
        }
        _ => panic!("no facts"),
    }
}

fn fd_size(fd: &std::os::fd::OwnedFd) -> u64 {
    rustix::fs::fstat(fd).expect("fstat").st_size as u64
}
