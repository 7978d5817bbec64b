//! The local sinks (syslog, the event log) on a thread of their own, so a stalled syslog
//! daemon (a datagram socket nobody reads blocks its sender) or a hung state directory never
//! stalls the agent loop. The loop hands each scan's events over through a bounded queue and
//! never waits; events that find the queue full are counted as dropped for both sinks,
//! with the reason as their last error. The counters live here, apart from the sinks, so
//! they count since the agent started and survive a reload that rebuilds a sink.
//!
//! Must never: block the caller, drop an event without counting it.

use super::eventlog::EventLog;
use super::sink::Counters;
use super::syslog::Syslog;
use super::{log, Level};
use aupwatch_proto::Event;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Batches of events waiting for the sink thread before new ones are dropped.
const QUEUE: usize = 256;

enum Msg {
    Events(Vec<Event>),
    Syslog(Option<Syslog>),
    EventLog(Option<EventLog>),
}

/// Both sinks' counters.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub syslog: Counters,
    pub eventlog: Counters,
}

pub struct Sinks {
    tx: Option<SyncSender<Msg>>,
    tally: Arc<Mutex<Tally>>,
    done: Arc<Mutex<bool>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sinks {
    pub fn start() -> std::io::Result<Sinks> {
        let (tx, rx) = sync_channel(QUEUE);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let done = Arc::new(Mutex::new(false));
        {
            let tally = tally.clone();
            let done = done.clone();
            std::thread::Builder::new()
                .name("sinks".into())
                .spawn(move || {
                    run(&rx, &tally);
                    *lock(&done) = true;
                })?;
        }
        Ok(Sinks {
            tx: Some(tx),
            tally,
            done,
        })
    }

    pub fn tally(&self) -> Tally {
        lock(&self.tally).clone()
    }

    /// Replaces the syslog sink (`None`: off); `retarget` forgets the old target's error.
    pub fn set_syslog(&self, s: Option<Syslog>, retarget: bool) {
        if retarget {
            lock(&self.tally).syslog.retarget();
        }
        self.send(Msg::Syslog(s), 0);
    }

    /// Replaces the event log (`None`: off).
    pub fn set_eventlog(&self, l: Option<EventLog>, retarget: bool) {
        if retarget {
            lock(&self.tally).eventlog.retarget();
        }
        self.send(Msg::EventLog(l), 0);
    }

    /// Hands one scan's events over; never blocks.
    pub fn emit(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let n = events.len() as u64;
        self.send(Msg::Events(events), n);
    }

    fn send(&self, msg: Msg, events: u64) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let mut guard = lock(&self.tally);
                let t = &mut *guard;
                let why =
                    "the sink thread is stuck (a stalled syslog or event log): events dropped";
                for c in [&mut t.syslog, &mut t.eventlog] {
                    c.errors += events;
                    c.dropped += events;
                    c.last_error = Some(why.to_string());
                }
            }
        }
    }

    /// Lets the thread write what is queued, waiting at most `deadline`.
    pub fn stop(mut self, deadline: Duration) {
        self.tx = None;
        let until = Instant::now() + deadline;
        while !*lock(&self.done) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn run(rx: &Receiver<Msg>, tally: &Mutex<Tally>) {
    let mut syslog: Option<Syslog> = None;
    let mut eventlog: Option<EventLog> = None;
    // Events the event log failed to take since it last took one.
    let mut eventlog_lost = 0u64;
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Syslog(s) => syslog = s,
            Msg::EventLog(l) => eventlog = l,
            Msg::Events(events) => {
                for event in &events {
                    if let Some(s) = syslog.as_mut() {
                        let result = s.send(event);
                        if let (Err(e), true) = (&result, lock(tally).syslog.record(result.clone()))
                        {
                            log(
                                Level::Warning,
                                &format!("{e} (counting further failures in status)"),
                            );
                        }
                    }
                    if let Some(l) = eventlog.as_mut() {
                        let result = l.append(event).map_err(|e| e.to_string());
                        if result.is_err() {
                            eventlog_lost += 1;
                        } else if eventlog_lost > 0 {
                            log(
                                Level::Warning,
                                &format!(
                                    "event log {}: writing again; {eventlog_lost} event(s) could not be written and were dropped",
                                    l.path().display()
                                ),
                            );
                            eventlog_lost = 0;
                        }
                        if let (Err(e), true) =
                            (&result, lock(tally).eventlog.record(result.clone()))
                        {
                            log(
                                Level::Warning,
                                &format!(
                                    "event log {}: {e} (the event is dropped; counting further failures in status)",
                                    l.path().display()
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}
