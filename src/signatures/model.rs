//! Compiled signature types: what the detection engine evaluates.

use crate::inventory::Protocol;
use serde::Serialize;
use std::net::SocketAddr;

/// Categories and severities are the documents' words (`aupwatch-proto`), so a value means
/// the same thing and serializes one way in signatures, findings, events and status.
pub use aupwatch_proto::{Category, Severity};

/// What a signature is tried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Process,
    Interface,
    /// The host as a whole (`Snapshot.host`): one finding per signature at most.
    Host,
}

/// An active check a signature asks for on what it matched (`probe = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// Ask the matched process's TCP listeners whether they are open proxies (HTTP CONNECT,
    /// SOCKS5, SOCKS4 to the probe's canary, without credentials, in their network
    /// namespace).
    Proxy,
    /// Ask the matched process's TCP listeners (an MTA's SMTP ports) whether they relay mail
    /// for strangers: EHLO, MAIL FROM, RCPT TO a domain they do not serve, never DATA.
    SmtpRelay,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 2] = [ProbeKind::Proxy, ProbeKind::SmtpRelay];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Proxy => "proxy",
            ProbeKind::SmtpRelay => "smtp-relay",
        }
    }

    pub fn parse(s: &str) -> Option<ProbeKind> {
        ProbeKind::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Signature {
    pub id: String,
    pub category: Category,
    pub severity: Severity,
    pub description: String,
    pub aup: String,
    pub references: Vec<String>,
    pub subject: Subject,
    pub matcher: Match,
    /// The active check to run on what it matched, if any.
    pub probe: Option<ProbeKind>,
    /// `file:line` where the signature is defined.
    pub source: String,
}

#[derive(Debug, Clone)]
pub enum Match {
    All(Vec<Match>),
    Any(Vec<Match>),
    Not(Box<Match>),
    Pred(Predicate),
}

impl Match {
    /// Calls `f` on every predicate in the expression, mutably.
    pub(crate) fn visit_mut(&mut self, f: &mut impl FnMut(&mut Predicate)) {
        match self {
            Match::All(v) | Match::Any(v) => v.iter_mut().for_each(|m| m.visit_mut(f)),
            Match::Not(m) => m.visit_mut(f),
            Match::Pred(p) => f(p),
        }
    }

    /// Calls `f` on every predicate in the expression.
    pub fn visit(&self, f: &mut impl FnMut(&Predicate)) {
        match self {
            Match::All(v) | Match::Any(v) => v.iter().for_each(|m| m.visit(f)),
            Match::Not(m) => m.visit(f),
            Match::Pred(p) => f(p),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Predicate {
    /// `index` is its place among the set's name predicates ([`SignatureSet::names`]).
    Name {
        globs: GlobList,
        index: usize,
    },
    Exe(GlobList),
    /// `index` is its place in [`SignatureSet::cmdlines`], which tries every command-line
    /// regex of the set in one pass.
    Cmdline {
        re: CmdlineRegex,
        index: usize,
    },
    Sha256(Vec<String>),
    User(Vec<String>),
    Listen(SocketFilter),
    /// At least `min` connected sockets that fit; with `for_secs`, distinct connections
    /// seen over that window of history.
    Remote {
        /// Its `local_ports` are always any: `remote` names only the remote port.
        conn: ConnFilter,
        min: u32,
        for_secs: u64,
        /// Only connections open, in every scan, for at least this long (0: any).
        min_age_secs: u64,
    },
    /// At least `min` distinct remote addresses (or ports) over the connected sockets that
    /// fit; with `for_secs`, over the connections seen in that window of history.
    Peers {
        min: u32,
        count: PeerCount,
        conn: ConnFilter,
        for_secs: u64,
    },
    Cpu {
        min_percent: f64,
        for_secs: u64,
        /// Steadiness: the samples' standard deviation over their mean must not exceed this.
        max_variation: Option<f64>,
    },
    /// Scheduling policy names (`other`, `batch`, `idle`, `fifo`, `rr`, `deadline`).
    Policy(Vec<String>),
    /// Nice value at least `min`.
    Nice {
        min: i64,
    },
    /// At least `min` threads.
    Threads {
        min: u32,
    },
    /// The executable was deleted after start or is a memfd (`true`), or is not (`false`).
    ExeDeleted(bool),
    /// The executable contains at least `min` of `strings` (lowercased; ASCII case ignored).
    ExeStrings {
        strings: Vec<String>,
        min: u32,
    },
    /// `comm` names neither the executable nor `argv[0]` (`true`), or one of them (`false`).
    CommMismatch(bool),
    /// Holds a UDP socket bound to, or connected to, a multicast group.
    Multicast,
    Interface(GlobList),
    /// At least `min` multicast groups joined on the interface, beyond the ones every
    /// interface joins (all-hosts 224.0.0.1, ff01::1, ff02::1 and solicited-node ff02::1:ffXX:XXXX).
    MulticastGroups {
        min: u32,
    },
    /// Sent traffic of an interface: at least `min_pps` packets per second with an average
    /// packet below `max_avg_packet_bytes`, averaged over `for_secs` (0: the latest interval).
    Traffic {
        min_pps: f64,
        max_avg_packet_bytes: f64,
        for_secs: u64,
    },
    /// `/etc/ld.so.preload` has entries, or the agent runs with `LD_PRELOAD`.
    Preload,
    /// At least `min` processes hidden from the `/proc` listing.
    HiddenProcesses {
        min: u32,
    },
    /// Something is mounted on a `/proc/<pid>` directory.
    ProcMounts,
    /// The kernel counts at least `min` more tasks than the listed processes have threads.
    UnlistedTasks {
        min: u32,
    },
    /// At least `min_mib` MiB reserved in huge pages (all page sizes together).
    HugePages {
        min_mib: u64,
    },
    /// The `msr` module is loaded; with `allow_writes`, its parameter is one of them.
    Msr {
        allow_writes: Vec<String>,
    },
}

impl Predicate {
    /// The key this predicate is written with in TOML.
    pub fn key(&self) -> &'static str {
        match self {
            Predicate::Name { .. } => "name",
            Predicate::Exe(_) => "exe",
            Predicate::Cmdline { .. } => "cmdline",
            Predicate::Sha256(_) => "sha256",
            Predicate::User(_) => "user",
            Predicate::Listen(_) => "listen",
            Predicate::Remote { .. } => "remote",
            Predicate::Peers { .. } => "peers",
            Predicate::Cpu { .. } => "cpu",
            Predicate::Policy(_) => "policy",
            Predicate::Nice { .. } => "nice",
            Predicate::Threads { .. } => "threads",
            Predicate::ExeDeleted(_) => "exe_deleted",
            Predicate::ExeStrings { .. } => "exe_strings",
            Predicate::CommMismatch(_) => "comm_mismatch",
            Predicate::Multicast => "multicast",
            Predicate::Interface(_) => "interface",
            Predicate::MulticastGroups { .. } => "multicast_groups",
            Predicate::Traffic { .. } => "traffic",
            Predicate::Preload => "preload",
            Predicate::HiddenProcesses { .. } => "hidden_processes",
            Predicate::ProcMounts => "proc_mounts",
            Predicate::UnlistedTasks { .. } => "unlisted_tasks",
            Predicate::HugePages { .. } => "hugepages",
            Predicate::Msr { .. } => "msr",
        }
    }

    /// What decides this predicate: the one list of which predicates are static (decided by
    /// a process's names, executable, command line and user, which the detection cache
    /// fingerprints), which judge what a process does, and which are about interfaces or
    /// the host. No wildcard: a new predicate must be placed here.
    pub fn decided_by(&self) -> DecidedBy {
        match self {
            Predicate::Name { .. }
            | Predicate::Exe(_)
            | Predicate::Cmdline { .. }
            | Predicate::Sha256(_)
            | Predicate::User(_)
            | Predicate::ExeDeleted(_)
            | Predicate::ExeStrings { .. }
            | Predicate::CommMismatch(_) => DecidedBy::ProcessFacts,
            Predicate::Listen(_)
            | Predicate::Remote { .. }
            | Predicate::Peers { .. }
            | Predicate::Cpu { .. }
            | Predicate::Policy(_)
            | Predicate::Nice { .. }
            | Predicate::Threads { .. }
            | Predicate::Multicast => DecidedBy::ProcessActivity,
            Predicate::Interface(_)
            | Predicate::Traffic { .. }
            | Predicate::MulticastGroups { .. } => DecidedBy::Interface,
            Predicate::Preload
            | Predicate::HiddenProcesses { .. }
            | Predicate::ProcMounts
            | Predicate::UnlistedTasks { .. }
            | Predicate::HugePages { .. }
            | Predicate::Msr { .. } => DecidedBy::Host,
        }
    }

    /// Static: decided by what the detection cache fingerprints of a process (its names,
    /// executable, command line, user and executable facts), so the same until they change.
    pub fn is_static(&self) -> bool {
        self.decided_by() == DecidedBy::ProcessFacts
    }

    pub fn subject(&self) -> Subject {
        match self.decided_by() {
            DecidedBy::ProcessFacts | DecidedBy::ProcessActivity => Subject::Process,
            DecidedBy::Interface => Subject::Interface,
            DecidedBy::Host => Subject::Host,
        }
    }
}

/// What decides a predicate ([`Predicate::decided_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// A process's unchanging facts: names, executable (and its hash, strings, whether
    /// deleted), command line, user. Static: the detection cache keeps their results.
    ProcessFacts,
    /// What a process does: sockets, connections, CPU, scheduling, threads.
    ProcessActivity,
    /// An interface: its name, traffic, multicast groups.
    Interface,
    /// The host as a whole.
    Host,
}

/// A `cmdline` regex: its text, compiled on first use. Matching goes through the set's one
/// combined `RegexSet`; the regex alone is needed only for a match's evidence (or when the
/// combined set did not build), so most are never compiled twice — loading compiles each
/// once to check it and keeps only the text.
#[derive(Debug, Clone)]
pub struct CmdlineRegex {
    pattern: String,
    /// Shared by clones: the set's list of regexes and the predicate compile it once.
    compiled: std::sync::Arc<std::sync::OnceLock<Option<regex::Regex>>>,
}

impl CmdlineRegex {
    /// Compile options of every `cmdline` regex (loading checks with the same).
    pub(crate) fn builder(pattern: &str) -> regex::RegexBuilder {
        let mut b = regex::RegexBuilder::new(pattern);
        b.size_limit(REGEX_SIZE_LIMIT);
        b
    }

    /// A regex that `builder` has already compiled once.
    pub(crate) fn checked(pattern: String) -> CmdlineRegex {
        CmdlineRegex {
            pattern,
            compiled: std::sync::Arc::new(std::sync::OnceLock::new()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The compiled regex (`None` only if it no longer compiles, which loading rules out).
    pub fn regex(&self) -> Option<&regex::Regex> {
        self.compiled
            .get_or_init(|| Self::builder(&self.pattern).build().ok())
            .as_ref()
    }
}

/// The size limit of one compiled `cmdline` regex.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Globs plus the patterns they came from (for evidence and listing). The compiled set is
/// built when first used: `name` lists are matched through the signature set's one combined
/// glob set and, most of the time, never need their own.
#[derive(Debug, Clone)]
pub struct GlobList {
    pub patterns: Vec<String>,
    ignore_case: bool,
    literal_separator: bool,
    set: std::sync::OnceLock<globset::GlobSet>,
}

impl GlobList {
    /// The glob of `pattern` with this kind of list's options.
    pub(crate) fn glob(
        pattern: &str,
        ignore_case: bool,
        literal_separator: bool,
    ) -> Result<globset::Glob, globset::Error> {
        globset::GlobBuilder::new(pattern)
            .case_insensitive(ignore_case)
            .literal_separator(literal_separator)
            .build()
    }

    /// A list of patterns that [`GlobList::glob`] accepted; `set`, when already built.
    pub(crate) fn new(
        patterns: Vec<String>,
        ignore_case: bool,
        literal_separator: bool,
        set: Option<globset::GlobSet>,
    ) -> GlobList {
        let cell = std::sync::OnceLock::new();
        if let Some(set) = set {
            let _ = cell.set(set);
        }
        GlobList {
            patterns,
            ignore_case,
            literal_separator,
            set: cell,
        }
    }

    fn set(&self) -> &globset::GlobSet {
        self.set.get_or_init(|| {
            let mut b = globset::GlobSetBuilder::new();
            for p in &self.patterns {
                if let Ok(g) = Self::glob(p, self.ignore_case, self.literal_separator) {
                    b.add(g);
                }
            }
            b.build().unwrap_or_else(|_| globset::GlobSet::empty())
        })
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.set().is_match(s)
    }

    /// Like `is_match`, for a candidate prepared once and tried against many lists.
    pub fn is_match_candidate(&self, c: &globset::Candidate) -> bool {
        self.set().is_match_candidate(c)
    }
}

/// Inclusive port ranges; empty means any port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet(pub Vec<(u16, u16)>);

impl PortSet {
    pub fn contains(&self, port: u16) -> bool {
        self.0.is_empty() || self.0.iter().any(|&(lo, hi)| lo <= port && port <= hi)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolFilter {
    #[default]
    Any,
    Only(Protocol),
}

impl ProtocolFilter {
    pub fn allows(self, p: Protocol) -> bool {
        match self {
            ProtocolFilter::Any => true,
            ProtocolFilter::Only(only) => only == p,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindFilter {
    #[default]
    Any,
    Public,
    Loopback,
}

/// Socket states a `remote` or `peers` predicate counts; empty: ESTABLISHED, SYN_SENT and
/// SYN_RECV (every connected state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateFilter(pub Vec<crate::inventory::SocketState>);

impl StateFilter {
    pub fn allows(&self, s: crate::inventory::SocketState) -> bool {
        self.0.is_empty() || self.0.contains(&s)
    }
}

/// What `peers` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerCount {
    /// Distinct remote IP addresses.
    #[default]
    Addresses,
    /// Distinct remote ports (on any address).
    Ports,
}

/// The connections a `remote` or `peers` predicate counts: the one connection filter, used
/// by detection on the sockets of a scan and on the connections of its history, and by the
/// history to choose which connections to remember.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnFilter {
    pub protocol: ProtocolFilter,
    pub local_ports: PortSet,
    pub remote_ports: PortSet,
    pub states: StateFilter,
}

impl ConnFilter {
    /// Whether a connection with these ends fits (its state aside).
    pub fn fits_ends(&self, protocol: Protocol, local: SocketAddr, remote: SocketAddr) -> bool {
        self.protocol.allows(protocol)
            && self.local_ports.contains(local.port())
            && self.remote_ports.contains(remote.port())
    }

    /// Whether a connection remembered by the history fits: the ends fit, and it was seen
    /// (`was`) in one of the states counted.
    pub fn fits_seen(
        &self,
        protocol: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
        was: impl Fn(crate::inventory::SocketState) -> bool,
    ) -> bool {
        (self.states.0.is_empty() || self.states.0.iter().any(|&s| was(s)))
            && self.fits_ends(protocol, local, remote)
    }

    /// Whether socket `s` fits: a remote end, the ends fit, and its state is one counted.
    pub fn fits(&self, s: &crate::inventory::Socket) -> bool {
        self.states.allows(s.state)
            && s.remote
                .is_some_and(|r| self.fits_ends(s.protocol, s.local, r))
    }
}

/// Which sockets a `listen` or `remote` predicate looks at.
#[derive(Debug, Clone, Default)]
pub struct SocketFilter {
    pub ports: PortSet,
    pub protocol: ProtocolFilter,
    pub bind: BindFilter,
}

/// A loaded, validated set.
#[derive(Debug, Clone)]
pub struct SignatureSet {
    pub signatures: Vec<Signature>,
    /// SHA-256 over the sources it was loaded from (names and contents): the set's version.
    pub digest: String,
    /// Every `name` glob of the set with the name predicate it belongs to, in predicate
    /// order: what [`SignatureSet::names`] compiles, on first use.
    name_globs: Vec<(String, usize)>,
    /// The combined name globs, compiled when first needed (see [`NameGlobs`]).
    names: std::sync::OnceLock<Option<NameGlobs>>,
    /// How many name predicates the set has.
    pub name_predicates: usize,
    /// Every `cmdline` regex of the set, in predicate `index` order (each compiled on first
    /// use, shared with its predicate).
    cmdline_regexes: Vec<CmdlineRegex>,
    /// Those regexes in one `RegexSet`, compiled when first needed.
    cmdlines: std::sync::OnceLock<Option<regex::RegexSet>>,
    /// Some signature needs executable hashes.
    pub needs_exe_hash: bool,
    /// Every `exe_strings` string of the set (lowercased, no repeats): what the inventory
    /// searches executables for.
    pub exe_strings: Vec<String>,
    /// Some signature counts connections over a window (`remote` / `peers` with `for`):
    /// the history remembers connections.
    pub needs_connection_history: bool,
    /// What those windowed predicates look at: the history remembers only connections that
    /// fit one of these.
    pub connection_filters: Vec<ConnFilter>,
    /// The longest `cpu.for` or `traffic.for` of any signature, in seconds: how much history
    /// to keep.
    pub longest_window_secs: u64,
}

impl SignatureSet {
    pub(super) fn new(
        mut signatures: Vec<Signature>,
        sources: &[(String, String)],
    ) -> SignatureSet {
        let mut patterns = Vec::new();
        let mut name_globs = Vec::new();
        let mut name_predicates = 0;
        for s in &mut signatures {
            s.matcher.visit_mut(&mut |p| match p {
                Predicate::Cmdline { re, index } => {
                    *index = patterns.len();
                    patterns.push(re.clone());
                }
                Predicate::Name { globs, index } => {
                    *index = name_predicates;
                    for pat in &globs.patterns {
                        name_globs.push((pat.clone(), name_predicates));
                    }
                    name_predicates += 1;
                }
                Predicate::Exe(_)
                | Predicate::Sha256(_)
                | Predicate::User(_)
                | Predicate::Listen(_)
                | Predicate::Remote { .. }
                | Predicate::Peers { .. }
                | Predicate::Cpu { .. }
                | Predicate::Policy(_)
                | Predicate::Nice { .. }
                | Predicate::Threads { .. }
                | Predicate::ExeDeleted(_)
                | Predicate::ExeStrings { .. }
                | Predicate::CommMismatch(_)
                | Predicate::Multicast
                | Predicate::Interface(_)
                | Predicate::MulticastGroups { .. }
                | Predicate::Traffic { .. }
                | Predicate::Preload
                | Predicate::HiddenProcesses { .. }
                | Predicate::ProcMounts
                | Predicate::UnlistedTasks { .. }
                | Predicate::HugePages { .. }
                | Predicate::Msr { .. } => {}
            });
        }
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (name, text) in sources {
            let base = name.rsplit('/').next().unwrap_or(name);
            h.update(base.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let mut needs_exe_hash = false;
        let mut needs_connection_history = false;
        let mut connection_filters: Vec<ConnFilter> = Vec::new();
        let mut exe_strings: Vec<String> = Vec::new();
        let mut longest = 0;
        for s in &signatures {
            s.matcher.visit(&mut |p| match p {
                Predicate::Sha256(_) => needs_exe_hash = true,
                Predicate::ExeStrings { strings, .. } => {
                    for x in strings {
                        if !exe_strings.contains(x) {
                            exe_strings.push(x.clone());
                        }
                    }
                }
                Predicate::Cpu { for_secs, .. } | Predicate::Traffic { for_secs, .. } => {
                    longest = longest.max(*for_secs)
                }
                Predicate::Remote {
                    conn,
                    for_secs,
                    min_age_secs,
                    ..
                } => {
                    longest = longest.max(*for_secs).max(*min_age_secs);
                    if *for_secs > 0 || *min_age_secs > 0 {
                        needs_connection_history = true;
                        connection_filters.push(conn.clone());
                    }
                }
                Predicate::Peers { conn, for_secs, .. } => {
                    longest = longest.max(*for_secs);
                    if *for_secs > 0 {
                        needs_connection_history = true;
                        connection_filters.push(conn.clone());
                    }
                }
                Predicate::Name { .. }
                | Predicate::Exe(_)
                | Predicate::Cmdline { .. }
                | Predicate::User(_)
                | Predicate::Listen(_)
                | Predicate::Policy(_)
                | Predicate::Nice { .. }
                | Predicate::Threads { .. }
                | Predicate::ExeDeleted(_)
                | Predicate::CommMismatch(_)
                | Predicate::Multicast
                | Predicate::Interface(_)
                | Predicate::MulticastGroups { .. }
                | Predicate::Preload
                | Predicate::HiddenProcesses { .. }
                | Predicate::ProcMounts
                | Predicate::UnlistedTasks { .. }
                | Predicate::HugePages { .. }
                | Predicate::Msr { .. } => {}
            });
        }
        SignatureSet {
            signatures,
            name_globs,
            names: std::sync::OnceLock::new(),
            name_predicates,
            cmdline_regexes: patterns,
            cmdlines: std::sync::OnceLock::new(),
            digest,
            needs_exe_hash,
            exe_strings,
            needs_connection_history,
            connection_filters,
            longest_window_secs: longest,
        }
    }

    /// Every `name` glob of the set in one matcher, for one pass per process name, and which
    /// name predicate each glob belongs to; compiled on first use (a set that is only listed
    /// or checked never compiles it). `None` when it does not build: detection then tries
    /// each list on its own.
    pub fn names(&self) -> Option<&NameGlobs> {
        self.names
            .get_or_init(|| NameGlobs::build(&self.name_globs))
            .as_ref()
    }

    /// The set's `cmdline` regexes; predicate `index` is the place here.
    pub fn cmdline_regexes(&self) -> &[CmdlineRegex] {
        &self.cmdline_regexes
    }

    /// Every `cmdline` regex of the set in one `RegexSet`, for one pass per process;
    /// predicate `index` is the regex's place here. Compiled on first use; `None` when it
    /// does not build (detection then tries the regexes one by one).
    pub fn cmdlines(&self) -> Option<&regex::RegexSet> {
        self.cmdlines
            .get_or_init(|| {
                // Each pattern is within the per-regex limit alone; together they may need
                // more.
                regex::RegexSetBuilder::new(self.cmdline_regexes.iter().map(|r| r.as_str()))
                    .size_limit(self.cmdline_regexes.len().max(1) * REGEX_SIZE_LIMIT)
                    .build()
                    .ok()
            })
            .as_ref()
    }

    /// The first 12 hex digits of the digest: short enough to show.
    pub fn version(&self) -> &str {
        &self.digest[..12.min(self.digest.len())]
    }
}

/// Every `name` glob of a set, combined for one pass per name. `name` globs ignore case;
/// globset compiles a case-insensitive glob into a regex (its literal, prefix and suffix
/// strategies are case-sensitive only), which made compiling the bundled set's names the
/// largest part of start-up. So, for a name that is ASCII, the globs that are ASCII and
/// have no `[…]` class are matched case-sensitively, lowercased, against the lowercased
/// name — the same answer, since on ASCII text ignoring case is ASCII lowercasing, and `*`,
/// `?`, `{a,b}` and `\x` mean the same on both sides — and most of them become hash
/// look-ups and prefix or suffix tests. The other globs stay case-insensitive in the same
/// set. A name that is not ASCII (Unicode case folding: the Kelvin sign is a `k`) goes
/// through every glob case-insensitive, a second set compiled only when such a name is
/// first seen.
#[derive(Debug, Clone)]
pub struct NameGlobs {
    ascii: globset::GlobSet,
    unicode: std::sync::OnceLock<Option<globset::GlobSet>>,
    patterns: Vec<String>,
    /// The name predicate (its index) of each glob, the same order in both sets.
    pub owner: Vec<usize>,
}

impl NameGlobs {
    fn build(globs: &[(String, usize)]) -> Option<NameGlobs> {
        let mut b = globset::GlobSetBuilder::new();
        for (pat, _) in globs {
            let g = if pat.is_ascii() && !pat.contains('[') {
                GlobList::glob(&pat.to_ascii_lowercase(), false, false)
            } else {
                GlobList::glob(pat, true, false)
            };
            b.add(g.ok()?);
        }
        Some(NameGlobs {
            ascii: b.build().ok()?,
            unicode: std::sync::OnceLock::new(),
            patterns: globs.iter().map(|(p, _)| p.clone()).collect(),
            owner: globs.iter().map(|&(_, o)| o).collect(),
        })
    }

    /// Appends to `into` the index of every glob matching `name` (`None`: the
    /// case-insensitive set needed for a name that is not ASCII did not build).
    pub fn matches_into(&self, name: &str, into: &mut Vec<usize>) -> Option<()> {
        if name.is_ascii() {
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                let lower = name.to_ascii_lowercase();
                self.ascii.matches_into(lower.as_str(), into);
            } else {
                self.ascii.matches_into(name, into);
            }
            return Some(());
        }
        let unicode = self.unicode.get_or_init(|| {
            let mut b = globset::GlobSetBuilder::new();
            for p in &self.patterns {
                b.add(GlobList::glob(p, true, false).ok()?);
            }
            b.build().ok()
        });
        unicode.as_ref()?.matches_into(name, into);
        Some(())
    }
}
