//! The TOML shapes of a signature and of each predicate, as serde reads them (spanned, for
//! errors with lines); `compile.rs` checks them and builds the compiled types.

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignature {
    pub(super) id: Spanned<String>,
    pub(super) category: Spanned<String>,
    pub(super) severity: Spanned<String>,
    pub(super) description: Spanned<String>,
    pub(super) aup: Spanned<String>,
    #[serde(default)]
    pub(super) references: Vec<String>,
    #[serde(default)]
    pub(super) subject: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) probe: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub(super) matcher: Spanned<RawMatch>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawMatch {
    All(Vec<Spanned<RawMatch>>),
    Any(Vec<Spanned<RawMatch>>),
    Not(Box<Spanned<RawMatch>>),
    Name(Vec<Spanned<String>>),
    Exe(Vec<Spanned<String>>),
    Cmdline(Spanned<String>),
    Sha256(Vec<Spanned<String>>),
    User(Vec<Spanned<String>>),
    Listen(RawListen),
    Remote(RawRemote),
    Peers(RawPeers),
    Cpu(RawCpu),
    Policy(Vec<Spanned<String>>),
    Nice(RawNice),
    Threads(RawMin),
    ExeDeleted(bool),
    ExeStrings(RawExeStrings),
    CommMismatch(bool),
    Multicast(RawEmpty),
    Interface(Vec<Spanned<String>>),
    MulticastGroups(RawMin),
    Traffic(RawTraffic),
    Preload(RawEmpty),
    HiddenProcesses(RawMin),
    ProcMounts(RawEmpty),
    UnlistedTasks(RawMin),
    Hugepages(RawHugePages),
    Msr(RawMsr),
}

/// A predicate written as `{}`: no keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmpty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMin {
    pub(super) min: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHugePages {
    pub(super) min_mib: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMsr {
    #[serde(default)]
    pub(super) allow_writes: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNice {
    pub(super) min: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExeStrings {
    pub(super) strings: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) min: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTraffic {
    pub(super) min_pps: Spanned<f64>,
    pub(super) max_avg_packet_bytes: Spanned<f64>,
    #[serde(default, rename = "for")]
    pub(super) duration: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    #[serde(default)]
    pub(super) port: Vec<Spanned<RawPort>>,
    #[serde(default)]
    pub(super) protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) bind: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    #[serde(default)]
    pub(super) port: Vec<Spanned<RawPort>>,
    #[serde(default)]
    pub(super) protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) min: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) state: Vec<Spanned<String>>,
    #[serde(default, rename = "for")]
    pub(super) duration: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) min_age: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeers {
    pub(super) min: Spanned<i64>,
    #[serde(default)]
    pub(super) local_port: Vec<Spanned<RawPort>>,
    #[serde(default)]
    pub(super) remote_port: Vec<Spanned<RawPort>>,
    #[serde(default)]
    pub(super) protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) count: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) state: Vec<Spanned<String>>,
    #[serde(default, rename = "for")]
    pub(super) duration: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCpu {
    pub(super) min_percent: Spanned<f64>,
    #[serde(rename = "for")]
    pub(super) duration: Spanned<String>,
    #[serde(default)]
    pub(super) max_variation: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawPort {
    Number(i64),
    Range(String),
}
