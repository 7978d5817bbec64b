//! What detection remembers between scans: per-process CPU samples, per-interface sent
//! counters and, when a signature counts connections over a window, the connections each
//! process was seen holding. Bounded: samples and connections older than the longest window
//! any signature asks for are dropped, so are processes that exited and interfaces that went
//! away, and no process or interface keeps more than [`MAX_SAMPLES`] samples or
//! [`MAX_CONNECTIONS`] connections.

use crate::inventory::{cpu_percent_of_ticks, Process, Protocol, Snapshot, SocketState};
use crate::signatures::ConnFilter;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Hard cap on samples per process, whatever the window and interval.
pub const MAX_SAMPLES: usize = 512;
/// Hard cap on connections remembered per process (the oldest go first).
pub const MAX_CONNECTIONS: usize = 4096;

/// One connection a process held: protocol and both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub protocol: Protocol,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// When a connection was last seen, and in which states (bit per [`SocketState`] as `u16`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeenConn {
    /// First seen in an unbroken run of scans (a connection missing from one scan starts
    /// over when it comes back).
    pub first_seen: f64,
    pub last_seen: f64,
    states: u16,
}

impl SeenConn {
    pub fn was(&self, state: SocketState) -> bool {
        self.states & state_bit(state) != 0
    }
}

fn state_bit(s: SocketState) -> u16 {
    1 << (s as u16).min(15)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    uptime_secs: f64,
    cpu_ticks: u64,
}

/// Identity of a process across snapshots.
pub type ProcessKey = (i32, u64);

pub fn key(p: &Process) -> ProcessKey {
    (p.pid, p.start_ticks)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct TxSample {
    uptime_secs: f64,
    bytes: u64,
    packets: u64,
}

/// Identity of an interface: network namespace and name.
pub type InterfaceKey = (u64, String);

#[derive(Debug, Clone, Default)]
pub struct History {
    keep_secs: f64,
    ticks_per_second: u64,
    cpu: HashMap<ProcessKey, VecDeque<Sample>>,
    tx: HashMap<InterfaceKey, VecDeque<TxSample>>,
    /// Connections per process, only when `keep_connections`.
    conns: HashMap<ProcessKey, HashMap<ConnKey, SeenConn>>,
    keep_connections: bool,
    /// Only connections fitting one of these are remembered.
    conn_filters: Vec<ConnFilter>,
    /// Uptime of the last snapshot whose connections were recorded.
    last_observed: f64,
}

/// Sent traffic of one interface over a window, from history.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficWindow {
    pub covered_secs: f64,
    pub packets_per_sec: f64,
    pub bytes_per_sec: f64,
}

impl TrafficWindow {
    /// Average sent packet size; `None` when nothing was sent.
    pub fn avg_packet_bytes(&self) -> Option<f64> {
        (self.packets_per_sec > 0.0).then(|| self.bytes_per_sec / self.packets_per_sec)
    }
}

/// CPU use over a window, from history.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuWindow {
    /// Seconds covered by the samples.
    pub covered_secs: f64,
    /// Lowest and mean CPU % between consecutive samples in the window.
    pub min_percent: f64,
    pub mean_percent: f64,
    pub intervals: usize,
    /// Standard deviation of the per-interval CPU % over their mean: 0 for a perfectly
    /// steady load. `None` with fewer than two intervals or a mean of 0.
    pub variation: Option<f64>,
}

impl History {
    /// A history that keeps `keep_secs` of samples (at least long enough for one interval).
    pub fn new(keep_secs: u64) -> History {
        History {
            keep_secs: keep_secs as f64,
            ..History::default()
        }
    }

    /// Changes how much history is kept (a reloaded signature set may ask for another window);
    /// the samples held stay, and the next `observe` trims to the new window.
    pub fn set_keep_secs(&mut self, keep_secs: u64) {
        self.keep_secs = keep_secs as f64;
    }

    /// Which connections are remembered: those fitting one of `filters` (the windowed
    /// `remote` / `peers` predicates of the set, [`SignatureSet::connection_filters`]).
    /// None: nothing is remembered, and what was is forgotten.
    ///
    /// [`SignatureSet::connection_filters`]: crate::signatures::SignatureSet
    pub fn set_connection_filters(&mut self, filters: Vec<ConnFilter>) {
        self.keep_connections = !filters.is_empty();
        if filters != self.conn_filters {
            self.conns = HashMap::new();
        }
        self.conn_filters = filters;
    }

    /// Number of processes and interfaces tracked and samples (and connections) held: what
    /// memory grows with.
    pub fn size(&self) -> (usize, usize) {
        (
            self.cpu.len() + self.tx.len(),
            self.cpu.values().map(VecDeque::len).sum::<usize>()
                + self.tx.values().map(VecDeque::len).sum::<usize>()
                + self.conns.values().map(HashMap::len).sum::<usize>(),
        )
    }

    /// The connections `p` was seen holding (after the last `observe`), with when.
    pub fn connections(&self, p: &Process) -> impl Iterator<Item = (&ConnKey, &SeenConn)> {
        self.conns.get(&key(p)).into_iter().flat_map(|m| m.iter())
    }

    /// Records a snapshot. Forgets processes that are gone.
    pub fn observe(&mut self, snap: &Snapshot) {
        self.ticks_per_second = snap.ticks_per_second;
        let now = snap.uptime_secs;
        let mut next: HashMap<ProcessKey, VecDeque<Sample>> =
            HashMap::with_capacity(snap.processes.len());
        for p in snap.processes.iter().filter(|p| !p.kernel_thread) {
            let k = key(p);
            let mut samples = self.cpu.remove(&k).unwrap_or_default();
            // The same snapshot observed twice adds nothing.
            if samples.back().is_none_or(|s| s.uptime_secs < now) {
                // An idle stretch is kept as its two ends: with the ticks unchanged over the
                // last two samples and this one, the middle one goes. Every interval it
                // split was 0 %, and so is the one that replaces them, so no `cpu` match
                // changes (each needs every interval of its window above a `min_percent` >
                // 0), while a host of idle processes keeps two samples per process, not one
                // per scan of the window (20k processes at a 2 s interval: ~100 MB).
                let n = samples.len();
                if n >= 2
                    && samples[n - 1].cpu_ticks == p.cpu_ticks
                    && samples[n - 2].cpu_ticks == p.cpu_ticks
                {
                    samples.pop_back();
                }
                samples.push_back(Sample {
                    uptime_secs: now,
                    cpu_ticks: p.cpu_ticks,
                });
                trim(&mut samples, |s| s.uptime_secs, now - self.keep_secs);
            }
            next.insert(k, samples);
        }
        self.cpu = next;
        let mut next_tx: HashMap<InterfaceKey, VecDeque<TxSample>> =
            HashMap::with_capacity(snap.interfaces.len());
        for i in &snap.interfaces {
            let k = (i.netns, i.name.clone());
            let mut samples = self.tx.remove(&k).unwrap_or_default();
            if samples.back().is_none_or(|s| s.uptime_secs < now) {
                samples.push_back(TxSample {
                    uptime_secs: now,
                    bytes: i.tx_bytes,
                    packets: i.tx_packets,
                });
                trim(&mut samples, |s| s.uptime_secs, now - self.keep_secs);
            }
            next_tx.insert(k, samples);
        }
        self.tx = next_tx;
        if self.keep_connections {
            self.observe_connections(snap);
        }
    }

    fn observe_connections(&mut self, snap: &Snapshot) {
        let now = snap.uptime_secs;
        if now <= self.last_observed {
            return;
        }
        let start = now - self.keep_secs;
        let start_of: HashMap<i32, u64> = snap
            .processes
            .iter()
            .map(|p| (p.pid, p.start_ticks))
            .collect();
        let mut next: HashMap<ProcessKey, HashMap<ConnKey, SeenConn>> = HashMap::new();
        for s in snap
            .sockets
            .iter()
            .filter(|s| s.is_connected() && self.conn_filters.iter().any(|f| f.fits(s)))
        {
            let Some(remote) = s.remote else { continue };
            let k = ConnKey {
                protocol: s.protocol,
                local: s.local,
                remote,
            };
            for pid in &s.owners {
                let Some(&st) = start_of.get(pid) else {
                    continue;
                };
                let pk = (*pid, st);
                let conns = match next.entry(pk) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(self.conns.remove(&pk).unwrap_or_default())
                    }
                };
                let seen = conns.entry(k).or_insert(SeenConn {
                    first_seen: now,
                    last_seen: now,
                    states: 0,
                });
                if seen.last_seen < self.last_observed {
                    seen.first_seen = now;
                }
                seen.last_seen = now;
                seen.states |= state_bit(s.state);
            }
        }
        // Processes without a connection now keep what they had, if they still live.
        for (pk, conns) in self.conns.drain() {
            if start_of.get(&pk.0) == Some(&pk.1) {
                next.entry(pk).or_insert(conns);
            }
        }
        for conns in next.values_mut() {
            conns.retain(|_, c| c.last_seen >= start);
            if conns.len() > MAX_CONNECTIONS {
                // The most recently seen stay (ties at the cut go either way).
                let mut all: Vec<(ConnKey, SeenConn)> = conns.drain().collect();
                all.sort_by(|a, b| b.1.last_seen.total_cmp(&a.1.last_seen));
                all.truncate(MAX_CONNECTIONS);
                conns.extend(all);
            }
        }
        next.retain(|_, c| !c.is_empty());
        self.conns = next;
        self.last_observed = now;
    }

    /// Sent traffic of an interface over (up to) the last `window_secs`; with 0, the latest
    /// interval. `None` with fewer than two samples. A counter that went backwards (the
    /// interface was recreated) counts as nothing sent.
    pub fn tx_window(
        &self,
        netns: u64,
        name: &str,
        now: f64,
        window_secs: f64,
    ) -> Option<TrafficWindow> {
        let samples = self.tx.get(&(netns, name.to_string()))?;
        let last = samples.back()?;
        let first = if window_secs <= 0.0 {
            samples.get(samples.len().checked_sub(2)?)?
        } else {
            samples
                .iter()
                .rev()
                .find(|s| s.uptime_secs <= now - window_secs)
                .or_else(|| samples.front())?
        };
        let dt = last.uptime_secs - first.uptime_secs;
        if dt <= 0.0 {
            return None;
        }
        Some(TrafficWindow {
            covered_secs: dt,
            packets_per_sec: last.packets.saturating_sub(first.packets) as f64 / dt,
            bytes_per_sec: last.bytes.saturating_sub(first.bytes) as f64 / dt,
        })
    }

    /// CPU use of `p` over (up to) the last `window_secs`; `None` with fewer than two samples.
    pub fn cpu_window(&self, p: &Process, now: f64, window_secs: f64) -> Option<CpuWindow> {
        let samples = self.cpu.get(&key(p))?;
        let tps = self.ticks_per_second.max(1);
        let start = samples
            .iter()
            .rposition(|s| s.uptime_secs <= now - window_secs)
            .unwrap_or(0);
        let window: Vec<&Sample> = samples.iter().skip(start).collect();
        if window.len() < 2 {
            return None;
        }
        let mut min = f64::INFINITY;
        let mut pcts = Vec::with_capacity(window.len() - 1);
        for pair in window.windows(2) {
            let pct = pct_between(pair[0], pair[1], tps)?;
            min = min.min(pct);
            pcts.push(pct);
        }
        let n = pcts.len() as f64;
        let avg = pcts.iter().sum::<f64>() / n;
        let variation = (pcts.len() >= 2 && avg > 0.0).then(|| {
            let var = pcts.iter().map(|x| (x - avg).powi(2)).sum::<f64>() / n;
            var.sqrt() / avg
        });
        let first = window[0];
        let last = window[window.len() - 1];
        Some(CpuWindow {
            covered_secs: last.uptime_secs - first.uptime_secs,
            min_percent: min,
            mean_percent: pct_between(first, last, tps)?,
            intervals: window.len() - 1,
            variation,
        })
    }
}

/// Drops samples older than `start`, keeping one at or before it so a window starting there
/// is covered, and never more than [`MAX_SAMPLES`].
fn trim<T>(samples: &mut VecDeque<T>, at: impl Fn(&T) -> f64, start: f64) {
    while samples.len() > 2 && at(&samples[1]) <= start {
        samples.pop_front();
    }
    while samples.len() > MAX_SAMPLES {
        samples.pop_front();
    }
}

fn pct_between(a: &Sample, b: &Sample, tps: u64) -> Option<f64> {
    cpu_percent_of_ticks(
        b.cpu_ticks.saturating_sub(a.cpu_ticks),
        b.uptime_secs - a.uptime_secs,
        tps,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(uptime: f64, procs: &[(i32, u64)]) -> Snapshot {
        Snapshot {
            uptime_secs: uptime,
            ticks_per_second: 100,
            processes: procs
                .iter()
                .map(|&(pid, cpu_ticks)| Process {
                    pid,
                    start_ticks: 1,
                    cpu_ticks,
                    ..Process::default()
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn window_min_and_mean() {
        let mut h = History::new(60);
        // 100% for 10 s, then 50% for 10 s
        h.observe(&snap(0.0, &[(1, 0)]));
        h.observe(&snap(10.0, &[(1, 1000)]));
        h.observe(&snap(20.0, &[(1, 1500)]));
        let p = Process {
            pid: 1,
            start_ticks: 1,
            ..Process::default()
        };
        let w = h.cpu_window(&p, 20.0, 60.0).expect("two intervals");
        assert_eq!(w.intervals, 2);
        assert_eq!(w.min_percent, 50.0);
        assert_eq!(w.mean_percent, 75.0);
        assert_eq!(w.covered_secs, 20.0);
        // the last 10 s only
        let w = h.cpu_window(&p, 20.0, 10.0).expect("one interval");
        assert_eq!((w.intervals, w.min_percent), (1, 50.0));
    }

    #[test]
    fn an_idle_stretch_is_kept_as_its_two_ends_and_no_window_changes_its_answer() {
        let p = Process {
            pid: 1,
            start_ticks: 1,
            ..Process::default()
        };
        // Idle for 10 scans at 2 s: two samples, not ten.
        let mut h = History::new(600);
        for i in 0..10u64 {
            h.observe(&snap(i as f64 * 2.0, &[(1, 500)]));
        }
        assert_eq!(h.size(), (1, 2));
        let w = h.cpu_window(&p, 18.0, 600.0).expect("one interval");
        assert_eq!((w.min_percent, w.covered_secs), (0.0, 18.0));
        // Then busy at 100 % for 10 scans: every busy sample is kept.
        for i in 10..20u64 {
            h.observe(&snap(i as f64 * 2.0, &[(1, 500 + (i - 9) * 200)]));
        }
        assert_eq!(h.size(), (1, 12));
        // A window reaching into the idle stretch has a 0 % interval, as it had before; one
        // inside the busy part sees only 100 %.
        for (window, min) in [(30.0, 0.0), (21.0, 0.0), (20.0, 100.0), (18.0, 100.0)] {
            let w = h.cpu_window(&p, 38.0, window).expect("a window");
            assert_eq!(w.min_percent, min, "window {window} s");
        }
    }

    #[test]
    fn a_new_window_keeps_the_samples_and_trims_on_the_next_scan() {
        let mut h = History::new(600);
        for i in 0..20u64 {
            h.observe(&snap(i as f64 * 15.0, &[(1, i * 1500)]));
        }
        assert_eq!(h.size(), (1, 20));
        h.set_keep_secs(60);
        assert_eq!(h.size(), (1, 20), "nothing is lost by the change itself");
        let p = Process {
            pid: 1,
            start_ticks: 1,
            ..Process::default()
        };
        assert!(h
            .cpu_window(&p, 285.0, 285.0)
            .is_some_and(|w| w.covered_secs == 285.0));
        h.observe(&snap(300.0, &[(1, 30_000)]));
        // 60 s at 15 s intervals: 4 intervals and the one sample at the window's start
        assert_eq!(h.size(), (1, 5));
    }

    #[test]
    fn bounded_by_window_and_exits() {
        let mut h = History::new(30);
        for i in 0..1000u64 {
            h.observe(&snap(i as f64 * 15.0, &[(1, i * 10), (2, i)]));
        }
        // 30 s window at 15 s interval: at most 4 samples each
        let (procs, samples) = h.size();
        assert_eq!(procs, 2);
        assert!(samples <= 8, "{samples} samples held");
        h.observe(&snap(1e6, &[(2, 5000)]));
        assert_eq!(h.size().0, 1, "exited process forgotten");
    }
}
