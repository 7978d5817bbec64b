//! The one scan engine: inventory → history → detection (cached) → proxy probes, used by
//! `aupwatch scan` and by the agent alike, so the two cannot drift apart.
//!
//! A [`Scanner`] owns the long-lived state of scanning: the signature set, the [`Inventory`]
//! (with its steady-state cache), the detection [`History`], the detection [`Cache`] and
//! the [`Prober`] (with its result cache). One [`Scanner::scan`] takes an inventory, feeds
//! the history, judges, probes the candidates and folds the results back; the caller hands
//! the snapshot back with [`Scanner::recycle`] when done with it.

use crate::detect::{self, Cache, Finding, History};
use crate::inventory::{self, Inventory, InventoryError, Snapshot};
use crate::probe::{self, Prober};
use crate::signatures::SignatureSet;
use crate::usage::{now_unix_ms, Cost, Spent};
use std::path::PathBuf;
use std::time::Duration;

/// How to scan.
#[derive(Debug, Clone)]
pub struct Options {
    /// The procfs mount to read.
    pub proc_root: PathBuf,
    /// Which listeners to ask whether they are open proxies.
    pub probes: detect::probe::ProbeMode,
    /// When not empty, only listeners in these network namespaces (by inode) are probed
    /// (`scan --probe-netns`, for tests that must not touch the host's own listeners).
    pub probe_only_netns: Vec<u64>,
    /// The time between two scans (`scan --sample`, the agent's interval): sizes the
    /// history (see [`history_secs`]).
    pub interval: Duration,
    /// The network-namespace helper's socket ([`crate::netns_helper`]), for the sockets of
    /// namespaces this process cannot enter; used when the file exists.
    pub netns_helper: Option<PathBuf>,
}

/// How many seconds of history to keep: the longest window a signature looks back over,
/// and at least four scan intervals. The one place this is decided.
pub fn history_secs(set: &SignatureSet, interval: Duration) -> u64 {
    set.longest_window_secs
        .max(interval.as_secs_f64().ceil() as u64 * 4)
}

/// One scan's result.
#[derive(Debug)]
pub struct Scan {
    /// The inventory judged (give it back with [`Scanner::recycle`]).
    pub snapshot: Snapshot,
    /// Per-signature findings, sorted, probe results applied.
    pub findings: Vec<Finding>,
    pub stats: Stats,
}

/// What one scan cost and saw.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Inventory, detection and probes together.
    pub spent: Spent,
    /// Detection alone.
    pub detect: Spent,
    /// Listening sockets the proxy probe was asked about (most answered from its cache).
    pub probe_candidates: usize,
    /// Network namespaces of the processes seen.
    pub namespaces: usize,
}

pub struct Scanner {
    set: SignatureSet,
    opts: Options,
    inventory: Inventory,
    history: History,
    /// What detection keeps for processes that did not change (resets itself when the set
    /// changes).
    cache: Cache,
    /// Open-proxy probes and their cached results; `None` without probes.
    prober: Option<Prober>,
}

impl Scanner {
    pub fn new(set: SignatureSet, opts: Options) -> Scanner {
        let mut history = History::new(history_secs(&set, opts.interval));
        history.set_connection_filters(set.connection_filters.clone());
        Scanner {
            inventory: inventory_for(&opts, &set),
            prober: prober_for(&opts),
            history,
            cache: Cache::new(),
            set,
            opts,
        }
    }

    /// Switches to another set and options (an agent's reload). CPU history, the
    /// inventory's cache and the probe cache outlive it: only the history's window and
    /// connection filters change, and only switching executable hashing or probes (or the
    /// network-namespace helper's socket) builds a new inventory or prober.
    pub fn reconfigure(&mut self, set: SignatureSet, opts: Options) {
        self.history
            .set_keep_secs(history_secs(&set, opts.interval));
        self.history
            .set_connection_filters(set.connection_filters.clone());
        let inv = self.inventory.options();
        if inv.hash_exes != set.needs_exe_hash
            || inv.exe_strings != set.exe_strings
            || inv.proc_root != opts.proc_root
            || inv.netns_helper != opts.netns_helper
        {
            self.inventory = inventory_for(&opts, &set);
        }
        let probing = opts.probes != detect::probe::ProbeMode::Off;
        if self.prober.is_some() != probing
            || self.opts.proc_root != opts.proc_root
            || self.opts.netns_helper != opts.netns_helper
        {
            self.prober = prober_for(&opts);
        }
        self.set = set;
        self.opts = opts;
    }

    pub fn set(&self) -> &SignatureSet {
        &self.set
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Takes a first inventory for the history only (CPU use is sampled against it).
    pub fn prime(&mut self) -> Result<(), InventoryError> {
        let first = self.inventory.take()?;
        self.history.observe(&first);
        self.inventory.recycle(first);
        Ok(())
    }

    /// One scan. With `only_pid`, only that process's findings are kept (and probed).
    pub fn scan(&mut self, only_pid: Option<i32>) -> Result<Scan, InventoryError> {
        let cost = Cost::start();
        let snapshot = self.inventory.take()?;
        self.history.observe(&snapshot);
        let judging = Cost::start();
        let mut findings = detect::run_cached(&snapshot, &self.history, &self.set, &mut self.cache);
        let detect = judging.stop();
        if let Some(pid) = only_pid {
            findings.retain(|f| f.process.as_ref().is_some_and(|p| p.pid == pid));
        }
        let mut probe_candidates = 0;
        if let Some(prober) = self.prober.as_mut() {
            // Bounded by the prober's budget (3 s); a namespace it cannot enter is a result
            // that says so, never an error of the scan.
            let mut targets =
                detect::probe::candidates(&findings, &snapshot, &self.set, self.opts.probes);
            if !self.opts.probe_only_netns.is_empty() {
                targets.retain(|t| self.opts.probe_only_netns.contains(&t.netns));
            }
            probe_candidates = targets.len();
            if !targets.is_empty() {
                let results = prober.run(&targets, now_unix_ms());
                detect::probe::apply(&mut findings, &snapshot, &self.set, &results);
            }
        }
        let namespaces = snapshot
            .processes
            .iter()
            .map(|p| p.netns)
            .collect::<std::collections::BTreeSet<u64>>()
            .len();
        Ok(Scan {
            snapshot,
            findings,
            stats: Stats {
                spent: cost.stop(),
                detect,
                probe_candidates,
                namespaces,
            },
        })
    }

    /// Takes a finished snapshot back, so the next one reuses its strings and vectors.
    pub fn recycle(&mut self, snapshot: Snapshot) {
        self.inventory.recycle(snapshot);
    }
}

/// The inventory for a set: reading executables only when a signature needs it.
fn inventory_for(opts: &Options, set: &SignatureSet) -> Inventory {
    Inventory::new(inventory::Options {
        proc_root: opts.proc_root.clone(),
        hash_exes: set.needs_exe_hash,
        exe_strings: set.exe_strings.clone(),
        netns_helper: opts.netns_helper.clone(),
        ..inventory::Options::default()
    })
}

fn prober_for(opts: &Options) -> Option<Prober> {
    (opts.probes != detect::probe::ProbeMode::Off).then(|| {
        Prober::new(probe::Options {
            proc_root: opts.proc_root.clone(),
            netns_helper: opts.netns_helper.clone(),
            ..probe::Options::default()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_covers_the_longest_window_and_four_intervals() {
        let mut set = crate::signatures::load_bundled().expect("bundled set");
        set.longest_window_secs = 300;
        assert_eq!(history_secs(&set, Duration::from_secs(15)), 300);
        assert_eq!(history_secs(&set, Duration::from_secs(120)), 480);
        assert_eq!(history_secs(&set, Duration::from_millis(1500)), 300);
        set.longest_window_secs = 0;
        assert_eq!(history_secs(&set, Duration::from_millis(1500)), 8);
        assert_eq!(history_secs(&set, Duration::ZERO), 0);
    }
}
