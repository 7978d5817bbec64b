//! Active probes: asking a listening socket that looks like a proxy whether it serves
//! strangers. A side effect, run by the agent and `aupwatch scan` for the candidates detection
//! names ([`crate::detect::probe::candidates`]); the results go back to detection as input
//! ([`crate::detect::probe::apply`]).
//!
//! A probe runs inside the socket's network namespace. It opens its own **canary** there (a
//! listener on a port the kernel picks, on the address the probe connects from) and asks the
//! listener to reach that canary: HTTP `CONNECT`, an absolute-form `GET`, SOCKS5 (method
//! negotiation, then CONNECT when no authentication is asked), SOCKS4 CONNECT
//! ([`wire::sequence`]). `open` is proof: the canary saw the proxy connect for us (and, for a
//! tunnel, our bytes went through both ways). The canary is the only destination ever named;
//! the probe never sends credentials and closes each connection once its answer is read.
//! A listener a `probe = "smtp-relay"` signature names is asked the open-relay question
//! instead ([`smtp::relay`]: EHLO, MAIL FROM, RCPT TO a `.invalid` address, never DATA).
//!
//! Where it connects from ([`wire::route`]): a listener on the unspecified address is reached
//! at, and from, a non-loopback address of its namespace when there is one (delivered
//! locally all the same), so an ACL that admits only localhost judges the probe as it would a
//! stranger; without one the probe comes from loopback and its evidence says so. Each
//! connection has a short timeout and the whole stage a budget; probes run in parallel
//! threads, one per socket, and a namespace that cannot be entered (no `CAP_SYS_ADMIN`) is
//! reported as such, never as an error of the scan.
//!
//! [`Prober`] keeps results per (network namespace, socket inode) for a while, so an agent
//! scanning every 15 s does not ask the same proxy every scan.

pub mod http;
pub mod smtp;
pub mod socks;
pub mod wire;

pub use crate::detect::probe::{ProbeReport, ProbeResults, ProxyProtocol, Target, Verdict};
use crate::netns::{self, Place};
use crate::signatures::ProbeKind;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The most probe threads that run at once, whatever the options say (see
/// `systemd/aupwatch-agent.service`, `TasksMax=`).
pub const MAX_PROBE_THREADS: usize = 8;

/// How probes run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timeout of each connection and each question. Default 1 s.
    pub step_timeout: Duration,
    /// The whole probe stage of one scan. Default 3 s.
    pub budget: Duration,
    /// At most this many sockets probed per scan; the rest wait for a later scan. Default 32.
    pub max_parallel: usize,
    /// At most this many probe threads at once (one per socket; the next starts when one
    /// ends, until the budget is spent). Default and ceiling [`MAX_PROBE_THREADS`], so the
    /// agent's threads stay within the unit's `TasksMax=`.
    pub max_threads: usize,
    /// A result is reused this long. Default 10 minutes.
    pub reprobe_after: Duration,
    /// The procfs mount (for `<pid>/ns/net`).
    pub proc_root: PathBuf,
    /// The network-namespace helper's socket: probes of a namespace this process cannot
    /// enter get their sockets from it, when the file exists ([`crate::netns_helper`]).
    pub netns_helper: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            step_timeout: Duration::from_secs(1),
            budget: Duration::from_secs(3),
            max_parallel: 32,
            max_threads: MAX_PROBE_THREADS,
            reprobe_after: Duration::from_secs(600),
            proc_root: PathBuf::from("/proc"),
            netns_helper: Some(PathBuf::from(crate::netns_helper::DEFAULT_SOCKET)),
        }
    }
}

/// Runs probes and remembers their results.
#[derive(Debug)]
pub struct Prober {
    opts: Options,
    own: Option<(u64, u64)>,
    cache: HashMap<(u64, u64), (Instant, ProbeReport)>,
    /// The most probe threads the last run had at once.
    last_peak: usize,
}

/// A probe thread's handle and what it probes.
type Running = (Target, std::thread::JoinHandle<netns::Visits<Probed>>);

/// What one probe thread found: where it connected, and its conclusion.
#[derive(Debug)]
struct Probed {
    address: SocketAddr,
    conclusion: wire::Conclusion,
}

impl Prober {
    pub fn new(mut opts: Options) -> Prober {
        opts.max_threads = opts.max_threads.clamp(1, MAX_PROBE_THREADS);
        Prober {
            opts,
            own: netns::own(),
            cache: HashMap::new(),
            last_peak: 0,
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Probes every target (reusing recent results), at most the stage budget long, and
    /// returns a result for each. `now_unix_ms` stamps new results. Results of sockets that
    /// are no longer targets are forgotten.
    pub fn run(&mut self, targets: &[Target], now_unix_ms: u64) -> ProbeResults {
        let started = Instant::now();
        let keep = self.opts.reprobe_after;
        let wanted: std::collections::HashSet<(u64, u64)> =
            targets.iter().map(Target::key).collect();
        self.cache
            .retain(|k, (at, _)| wanted.contains(k) && started.duration_since(*at) < keep);

        let mut results = ProbeResults::new();
        let mut todo: Vec<&Target> = Vec::new();
        for t in targets {
            if results.contains_key(&t.key()) || todo.iter().any(|o| o.key() == t.key()) {
                continue;
            }
            match self.cache.get(&t.key()) {
                Some((_, r)) => {
                    results.insert(t.key(), r.clone());
                }
                None => todo.push(t),
            }
        }
        let report = |t: &Target, verdict, protocol, evidence: String| ProbeReport {
            verdict,
            protocol,
            address: t.address(),
            netns: t.netns,
            inode: t.inode,
            evidence,
            probed_at_unix_ms: now_unix_ms,
        };
        if todo.len() > self.opts.max_parallel {
            for t in todo.split_off(self.opts.max_parallel) {
                let why = format!(
                    "not probed this scan: more than {} candidates, left for a later scan",
                    self.opts.max_parallel
                );
                results.insert(t.key(), report(t, Verdict::NotProbed, None, why));
            }
        }
        let deadline = started + self.opts.budget;
        // Wait for the threads at most a little past the budget (their own timeouts end them
        // by then); one still running is left to finish on its own.
        let give_up = deadline + Duration::from_millis(250);
        let mut queue: std::collections::VecDeque<&Target> = todo.into();
        let mut running: Vec<Running> = Vec::new();
        self.last_peak = 0;
        loop {
            while running.len() < self.opts.max_threads && Instant::now() < deadline {
                let Some(t) = queue.pop_front() else { break };
                match self.start(t, deadline) {
                    Ok(handle) => running.push((t.clone(), handle)),
                    Err((why, remember)) => {
                        let r = report(t, Verdict::NotProbed, None, why);
                        if remember {
                            self.remember(t, &r, started);
                        }
                        results.insert(t.key(), r);
                    }
                }
            }
            self.last_peak = self.last_peak.max(running.len());
            let (done, still): (Vec<Running>, Vec<Running>) =
                running.into_iter().partition(|(_, h)| h.is_finished());
            running = still;
            for (t, handle) in done {
                let r = match handle.join() {
                    Ok(mut out) => match out.pop() {
                        Some((_, Ok(p))) => ProbeReport {
                            address: p.address,
                            ..report(
                                &t,
                                p.conclusion.verdict,
                                p.conclusion.protocol,
                                p.conclusion.evidence,
                            )
                        },
                        Some((_, Err(e))) => report(&t, Verdict::NotProbed, None, e.to_string()),
                        None => report(&t, Verdict::NotProbed, None, "no result".into()),
                    },
                    Err(_) => report(
                        &t,
                        Verdict::NotProbed,
                        None,
                        "the probe thread panicked".into(),
                    ),
                };
                self.remember(&t, &r, started);
                results.insert(t.key(), r);
            }
            let now = Instant::now();
            let nothing_to_start = queue.is_empty() || now >= deadline;
            if (running.is_empty() && nothing_to_start) || now >= give_up {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for (t, _) in running {
            let why = format!(
                "the probe did not finish within the {:?} budget",
                self.opts.budget
            );
            results.insert(t.key(), report(&t, Verdict::NotProbed, None, why));
        }
        for t in queue {
            let why = format!(
                "not probed this scan: the {:?} budget was spent on other candidates, left for a later scan",
                self.opts.budget
            );
            results.insert(t.key(), report(t, Verdict::NotProbed, None, why));
        }
        results
    }

    /// Starts one probe thread; the error says why not, and whether to remember that.
    fn start(
        &self,
        t: &Target,
        deadline: Instant,
    ) -> Result<std::thread::JoinHandle<netns::Visits<Probed>>, (String, bool)> {
        let place = match crate::inventory::open_netns(&self.opts.proc_root, t.netns, &t.owners) {
            Ok((_, id)) if Some(id) == self.own => Place::Here,
            Ok((fd, _)) => Place::Enter(fd),
            Err(_) if self.own.is_some_and(|(_, ino)| ino == t.netns) => Place::Here,
            Err(e) => {
                return Err((
                    format!("cannot open network namespace {}: {e}", t.netns),
                    true,
                ))
            }
        };
        let listen = t.listen;
        let question = t.question;
        let step = self.opts.step_timeout;
        let proc_root = self.opts.proc_root.clone();
        let owner = t.owners.first().copied();
        let helper = self.opts.netns_helper.clone();
        netns::spawn_in(
            "aupwatch-probe",
            vec![(t.netns, place)],
            helper,
            move |_, inside| {
                let local = match (inside.is_native(), owner) {
                    (true, _) => wire::local_addresses(),
                    // Through the helper the thread is not in the namespace: its addresses
                    // come from a process inside it.
                    (false, Some(pid)) => wire::local_addresses_of(&proc_root, pid),
                    (false, None) => Vec::new(),
                };
                let route = wire::route(listen, &local);
                let conclusion = match wire::Tcp::new(&route, step, deadline, inside) {
                    Ok(mut tcp) => {
                        let c = match question {
                            ProbeKind::Proxy => wire::sequence(&mut tcp),
                            ProbeKind::SmtpRelay => smtp::relay(&mut tcp),
                        };
                        wire::Conclusion {
                            evidence: format!("{}; {}", route.note, c.evidence),
                            ..c
                        }
                    }
                    Err(e) => wire::Conclusion {
                        verdict: Verdict::NotProbed,
                        protocol: None,
                        evidence: e.to_string(),
                    },
                };
                Probed {
                    address: route.addr,
                    conclusion,
                }
            },
        )
        .map_err(|e| (format!("cannot start a probe thread: {e}"), false))
    }

    fn remember(&mut self, t: &Target, r: &ProbeReport, at: Instant) {
        self.cache.insert(t.key(), (at, r.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};

    fn target(listen: SocketAddr, inode: u64) -> Target {
        Target {
            netns: netns::own().map(|(_, i)| i).unwrap_or(0),
            inode,
            listen,
            owners: vec![std::process::id() as i32],
            question: ProbeKind::Proxy,
        }
    }

    #[test]
    fn addresses() {
        let t = |a: &str| target(a.parse().expect("addr"), 1).address().to_string();
        assert_eq!(t("0.0.0.0:1080"), "127.0.0.1:1080");
        assert_eq!(t("[::]:1080"), "[::1]:1080");
        assert_eq!(t("[::ffff:0.0.0.0]:3128"), "127.0.0.1:3128");
        assert_eq!(t("[::ffff:127.0.0.1]:3128"), "127.0.0.1:3128");
        assert_eq!(t("127.0.0.5:8118"), "127.0.0.5:8118");
        assert_eq!(t("[2001:db8::1]:8888"), "[2001:db8::1]:8888");
    }

    /// A small real SOCKS5 proxy on 127.0.0.1 in this namespace, one connection at a time:
    /// it hangs up on anything but SOCKS5, offers no authentication, really connects where
    /// it is asked (IPv4 only) and relays one exchange each way. Returns what it received.
    fn tiny_socks5() -> (SocketAddr, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let read = |s: &mut std::net::TcpStream| {
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).unwrap_or(0);
                buf[..n].to_vec()
            };
            for _ in 0..2 {
                let Ok((mut s, _)) = l.accept() else { break };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let greeting = read(&mut s);
                seen.push(greeting.clone());
                if greeting.first() != Some(&5) {
                    continue; // hang up, like microsocks
                }
                let _ = s.write_all(&[5, 0]);
                let req = read(&mut s);
                seen.push(req.clone());
                let Some(dest) = (req.len() == 10 && req[3] == 1).then(|| {
                    SocketAddr::from((
                        [req[4], req[5], req[6], req[7]],
                        u16::from_be_bytes([req[8], req[9]]),
                    ))
                }) else {
                    break;
                };
                let Ok(mut up) = std::net::TcpStream::connect(dest) else {
                    let _ = s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
                    break;
                };
                let _ = up.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
                let from_client = read(&mut s);
                seen.push(from_client.clone());
                let _ = up.write_all(&from_client);
                let back = read(&mut up);
                let _ = s.write_all(&back);
                break;
            }
            seen
        });
        (addr, h)
    }

    #[test]
    fn a_real_socket_in_this_namespace() {
        let (addr, server) = tiny_socks5();
        let mut p = Prober::new(Options::default());
        let t = target(addr, 77);
        let r = p.run(std::slice::from_ref(&t), 5);
        let got = &r[&t.key()];
        assert_eq!(got.verdict, Verdict::Open, "{got:?}");
        assert_eq!(got.protocol, Some(ProxyProtocol::Socks5));
        assert_eq!(got.address, addr);
        assert_eq!(got.probed_at_unix_ms, 5);
        assert!(
            got.evidence.contains("the canary's answer came back"),
            "{got:?}"
        );
        let seen = server.join().expect("server");
        // CONNECT first (hung up on), then the greeting, a CONNECT to the canary (on
        // loopback: the listener is bound to 127.0.0.1) and the token through it.
        assert!(seen[0].starts_with(b"CONNECT 127.0.0.1:"), "{seen:?}");
        assert_eq!(seen[1], socks::SOCKS5_GREETING);
        assert_eq!(seen[2][..8], [5, 1, 0, 1, 127, 0, 0, 1], "{seen:?}");
        assert!(seen[3].starts_with(b"aupwatch-canary-"), "{seen:?}");
        // The second run reuses the result: nothing listens any more, yet it is the same.
        let again = p.run(std::slice::from_ref(&t), 9);
        assert_eq!(again[&t.key()], *got);
        // A target that is gone is forgotten; with a zero re-probe age nothing is reused.
        let mut p = Prober::new(Options {
            reprobe_after: Duration::ZERO,
            ..Options::default()
        });
        let r = p.run(std::slice::from_ref(&t), 10);
        assert_eq!(r[&t.key()].verdict, Verdict::NoAnswer, "{:?}", r[&t.key()]);
        assert!(
            r[&t.key()].evidence.contains("cannot connect"),
            "{:?}",
            r[&t.key()]
        );
    }

    #[test]
    fn a_silent_listener_is_bounded_by_the_budget() {
        // Accepts (the kernel does, into the backlog) and never answers.
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let t = target(l.local_addr().expect("addr"), 78);
        let mut p = Prober::new(Options {
            step_timeout: Duration::from_millis(300),
            budget: Duration::from_millis(600),
            ..Options::default()
        });
        let start = Instant::now();
        let r = p.run(std::slice::from_ref(&t), 1);
        let took = start.elapsed();
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        assert_eq!(r[&t.key()].verdict, Verdict::NoAnswer, "{:?}", r[&t.key()]);
    }

    #[test]
    fn probe_threads_are_bounded() {
        assert_eq!(Options::default().max_threads, MAX_PROBE_THREADS);
        // systemd/aupwatch-agent.service TasksMax= counts on at most 8.
        const { assert!(MAX_PROBE_THREADS <= 8) };
        let p = Prober::new(Options {
            max_threads: 1000,
            ..Options::default()
        });
        assert_eq!(p.options().max_threads, MAX_PROBE_THREADS);
        let p = Prober::new(Options {
            max_threads: 0,
            ..Options::default()
        });
        assert_eq!(p.options().max_threads, 1);
    }

    #[test]
    fn more_candidates_than_threads_are_probed_in_turn() {
        // Listeners that accept and say nothing: each probe takes its step timeout.
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let mut p = Prober::new(Options {
            max_threads: 2,
            step_timeout: Duration::from_millis(50),
            budget: Duration::from_secs(5),
            ..Options::default()
        });
        let ts: Vec<Target> = (1..=5).map(|i| target(addr, i)).collect();
        let r = p.run(&ts, 1);
        drop(l);
        assert_eq!(r.len(), 5);
        assert!(
            r.values().all(|x| x.verdict != Verdict::NotProbed),
            "every candidate probed in turn within the budget: {r:?}"
        );
        assert_eq!(p.last_peak, 2, "probe threads at once");
    }

    #[test]
    fn too_many_candidates_wait_for_a_later_scan() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let mut p = Prober::new(Options {
            max_parallel: 1,
            step_timeout: Duration::from_millis(100),
            budget: Duration::from_millis(400),
            ..Options::default()
        });
        let ts = [target(addr, 1), target(addr, 2)];
        let r = p.run(&ts, 1);
        assert_eq!(r.len(), 2);
        assert_eq!(r[&ts[1].key()].verdict, Verdict::NotProbed);
        // Not remembered: the next scan probes it.
        let r = p.run(&ts[1..], 2);
        assert_ne!(r[&ts[1].key()].verdict, Verdict::NotProbed, "{:?}", r);
    }

    #[test]
    fn a_namespace_that_cannot_be_opened_is_reported() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let t = Target {
            netns: 1, // no such namespace
            inode: 5,
            listen: l.local_addr().expect("addr"),
            owners: vec![std::process::id() as i32],
            question: ProbeKind::Proxy,
        };
        let r = Prober::new(Options::default()).run(std::slice::from_ref(&t), 1);
        let got = &r[&t.key()];
        assert_eq!(got.verdict, Verdict::NotProbed);
        assert!(
            got.evidence
                .starts_with("cannot open network namespace 1: "),
            "{got:?}"
        );
    }
}
