//! Rates from two snapshots. Pure functions: the caller hands in both inventories.

use super::model::{Interface, Process, Snapshot};

/// CPU use of `cur` between two samples, in percent of one core (200 = two full cores).
/// `None` when the two records are not the same process (pid reused) or no time passed.
pub fn cpu_percent(
    prev: &Process,
    cur: &Process,
    elapsed_secs: f64,
    ticks_per_second: u64,
) -> Option<f64> {
    if prev.pid != cur.pid || prev.start_ticks != cur.start_ticks {
        return None;
    }
    cpu_percent_of_ticks(
        cur.cpu_ticks.saturating_sub(prev.cpu_ticks),
        elapsed_secs,
        ticks_per_second,
    )
}

/// `ticks` of CPU time over `elapsed_secs`, in percent of one core; `None` when no time passed.
pub fn cpu_percent_of_ticks(ticks: u64, elapsed_secs: f64, ticks_per_second: u64) -> Option<f64> {
    (elapsed_secs > 0.0)
        .then(|| ticks as f64 / ticks_per_second.max(1) as f64 / elapsed_secs * 100.0)
}

/// Bytes and packets per second of one interface between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceRate {
    pub netns: u64,
    pub name: String,
    pub tx_bytes_per_sec: f64,
    pub tx_packets_per_sec: f64,
    pub rx_bytes_per_sec: f64,
    pub rx_packets_per_sec: f64,
}

impl InterfaceRate {
    /// Rates of every interface present in both snapshots.
    pub fn between(prev: &Snapshot, cur: &Snapshot) -> Vec<InterfaceRate> {
        let dt = cur.uptime_secs - prev.uptime_secs;
        if dt <= 0.0 {
            return Vec::new();
        }
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / dt;
        cur.interfaces
            .iter()
            .filter_map(|c| {
                let p: &Interface = prev
                    .interfaces
                    .iter()
                    .find(|p| p.netns == c.netns && p.name == c.name)?;
                Some(InterfaceRate {
                    netns: c.netns,
                    name: c.name.clone(),
                    tx_bytes_per_sec: rate(p.tx_bytes, c.tx_bytes),
                    tx_packets_per_sec: rate(p.tx_packets, c.tx_packets),
                    rx_bytes_per_sec: rate(p.rx_bytes, c.rx_bytes),
                    rx_packets_per_sec: rate(p.rx_packets, c.rx_packets),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_at(cpu_ticks: u64, start_ticks: u64) -> Process {
        Process {
            pid: 7,
            start_ticks,
            cpu_ticks,
            ..Process::default()
        }
    }

    #[test]
    fn cpu_percent_of_one_core() {
        let a = proc_at(100, 5);
        let b = proc_at(300, 5);
        assert_eq!(cpu_percent(&a, &b, 2.0, 100), Some(100.0));
        // pid reuse: a different start time is a different process
        assert_eq!(cpu_percent(&a, &proc_at(300, 6), 2.0, 100), None);
        assert_eq!(cpu_percent(&a, &b, 0.0, 100), None);
    }

    #[test]
    fn interface_rates() {
        let iface = |tx_bytes, tx_packets| Interface {
            netns: 1,
            name: "lo".into(),
            rx_bytes: 0,
            rx_packets: 0,
            tx_bytes,
            tx_packets,
            multicast_groups: Vec::new(),
        };
        let a = Snapshot {
            uptime_secs: 10.0,
            interfaces: vec![iface(1000, 10)],
            ..Snapshot::default()
        };
        let b = Snapshot {
            uptime_secs: 12.0,
            interfaces: vec![iface(3000, 30)],
            ..Snapshot::default()
        };
        let r = InterfaceRate::between(&a, &b);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].tx_bytes_per_sec, 1000.0);
        assert_eq!(r[0].tx_packets_per_sec, 10.0);
    }
}
