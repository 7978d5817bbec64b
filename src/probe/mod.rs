//! Active probes: asking a listening socket that looks like a proxy whether it serves
//! strangers. A side effect, run by the agent and `aupwatch scan` for the candidates detection
//! names ([`crate::detect::probe::candidates`]); the results go back to detection as input
//! ([`crate::detect::probe::apply`]).
//!
//! A probe connects to the listening socket's own address (127.0.0.1 or ::1 for a socket
//! bound to the unspecified address) from inside the socket's network namespace, over
//! loopback, and asks in turn: HTTP `CONNECT`, the SOCKS5 method negotiation, SOCKS4
//! `CONNECT` ([`wire::sequence`]). The only destination it ever names is 127.0.0.1 and a port
//! closed in that namespace; it never sends credentials and closes each connection as soon
//! as the reply is read. Each connection has a short timeout and the whole stage a budget;
//! probes run in parallel threads, one per socket, and a namespace that cannot be entered
//! (no `CAP_SYS_ADMIN`) is reported as such, never as an error of the scan.
//!
//! [`Prober`] keeps results per (network namespace, socket inode) for a while, so an agent
//! scanning every 15 s does not ask the same proxy every scan.

pub mod http;
pub mod socks;
pub mod wire;

pub use crate::detect::probe::{ProbeReport, ProbeResults, ProxyProtocol, Target, Verdict};
use crate::netns::{self, Place};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How probes run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timeout of each connection and each question. Default 1 s.
    pub step_timeout: Duration,
    /// The whole probe stage of one scan. Default 3 s.
    pub budget: Duration,
    /// At most this many sockets probed per scan (one thread each); the rest wait for a later
    /// scan. Default 32.
    pub max_parallel: usize,
    /// A result is reused this long. Default 10 minutes.
    pub reprobe_after: Duration,
    /// The procfs mount (for `<pid>/ns/net`).
    pub proc_root: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            step_timeout: Duration::from_secs(1),
            budget: Duration::from_secs(3),
            max_parallel: 32,
            reprobe_after: Duration::from_secs(600),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Runs probes and remembers their results.
#[derive(Debug)]
pub struct Prober {
    opts: Options,
    own: Option<(u64, u64)>,
    cache: HashMap<(u64, u64), (Instant, ProbeReport)>,
}

/// A probe thread's handle and what it probes.
type Running = (
    Target,
    std::thread::JoinHandle<netns::Visits<wire::Conclusion>>,
);

impl Prober {
    pub fn new(opts: Options) -> Prober {
        Prober {
            opts,
            own: netns::own(),
            cache: HashMap::new(),
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
        let mut running: Vec<Running> = Vec::new();
        for t in todo {
            let place = match crate::inventory::open_netns(&self.opts.proc_root, t.netns, &t.owners)
            {
                Ok((_, id)) if Some(id) == self.own => Place::Here,
                Ok((fd, _)) => Place::Enter(fd),
                Err(_) if self.own.is_some_and(|(_, ino)| ino == t.netns) => Place::Here,
                Err(e) => {
                    let r = report(
                        t,
                        Verdict::NotProbed,
                        None,
                        format!("cannot open network namespace {}: {e}", t.netns),
                    );
                    self.remember(t, &r, started);
                    results.insert(t.key(), r);
                    continue;
                }
            };
            let mut tcp = wire::Tcp {
                addr: t.address(),
                // A specific non-loopback address must prove it is local (see `wire::Tcp`).
                bind_source: !t.address().ip().is_loopback(),
                step: self.opts.step_timeout,
                deadline,
            };
            let port = t.closed_port;
            match netns::spawn_in("aupwatch-probe", vec![(t.netns, place)], move |_| {
                wire::sequence(&mut tcp, port)
            }) {
                Ok(handle) => running.push((t.clone(), handle)),
                Err(e) => {
                    let why = format!("cannot start a probe thread: {e}");
                    results.insert(t.key(), report(t, Verdict::NotProbed, None, why));
                }
            }
        }
        // Wait for the threads, at most a little past the budget (their own timeouts end
        // them by then); one still running is left to finish on its own.
        let give_up = deadline + Duration::from_millis(250);
        while running.iter().any(|(_, h)| !h.is_finished()) && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
        }
        for (t, handle) in running {
            if !handle.is_finished() {
                let why = format!(
                    "the probe did not finish within the {:?} budget",
                    self.opts.budget
                );
                results.insert(t.key(), report(&t, Verdict::NotProbed, None, why));
                continue;
            }
            let r = match handle.join() {
                Ok(mut out) => match out.pop() {
                    Some((_, Ok(c))) => report(&t, c.verdict, c.protocol, c.evidence),
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
        results
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
            closed_port: 1,
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

    /// A one-connection-at-a-time fake SOCKS5 server on 127.0.0.1 in this namespace.
    fn fake_socks5(choice: u8) -> (SocketAddr, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let Ok((mut s, _)) = l.accept() else { break };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 256];
                let n = s.read(&mut buf).unwrap_or(0);
                seen.push(buf[..n].to_vec());
                if buf.first() == Some(&5) {
                    let _ = s.write_all(&[5, choice]);
                    // Wait for the client to hang up: it must not send a request.
                    let n = s.read(&mut buf).unwrap_or(0);
                    seen.push(buf[..n].to_vec());
                    break;
                }
                // Anything else: hang up, like microsocks does.
            }
            seen
        });
        (addr, h)
    }

    #[test]
    fn a_real_socket_in_this_namespace() {
        let (addr, server) = fake_socks5(0);
        let mut p = Prober::new(Options::default());
        let t = target(addr, 77);
        let r = p.run(std::slice::from_ref(&t), 5);
        let got = &r[&t.key()];
        assert_eq!(got.verdict, Verdict::Open, "{got:?}");
        assert_eq!(got.protocol, Some(ProxyProtocol::Socks5));
        assert_eq!(got.address, addr);
        assert_eq!(got.probed_at_unix_ms, 5);
        let seen = server.join().expect("server");
        // CONNECT first (hung up on), then the greeting, then the probe hung up without a
        // request.
        assert!(seen[0].starts_with(b"CONNECT 127.0.0.1:1 "), "{seen:?}");
        assert_eq!(seen[1], socks::SOCKS5_GREETING);
        assert_eq!(seen[2], b"", "the probe must stop at the method reply");
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
            closed_port: 1,
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
