//! The shared words: categories, severities, socket vocabulary and probe verdicts. The
//! agent's signatures, detection and inventory use these same types, so a value means the
//! same thing everywhere and serializes one way.

use serde::{Deserialize, Serialize};

/// Declares a closed enum of names with `ALL`, `as_str`, `parse` and `Display`, so the
/// wire name and the printed name cannot drift apart.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $rename:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[serde(rename_all = $rename)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name on the wire and on screen.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value named `s` (as [`Self::as_str`] gives it).
            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// Categories of AUP abuse. A signature's id starts with its category.
    Category, "kebab-case" {
        Mining = "mining",
        ComputeDonation = "compute-donation",
        Irc = "irc",
        Tor = "tor",
        Vpn = "vpn",
        Proxy = "proxy",
        Torrent = "torrent",
        FileServing = "file-serving",
        Scanner = "scanner",
        Dos = "dos",
        Mail = "mail",
        Multicast = "multicast",
        TrafficShape = "traffic-shape",
        Evasion = "evasion",
    }
}

named_enum! {
    /// How bad a finding is, lowest first (the order compares).
    Severity, "lowercase" {
        Info = "info",
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

named_enum! {
    /// A socket's transport.
    Protocol, "lowercase" {
        Tcp = "tcp",
        Udp = "udp",
    }
}

named_enum! {
    /// Socket state. UDP sockets are `unconnected` (bound, no peer) or `established`.
    SocketState, "snake_case" {
        Listen = "listen",
        Established = "established",
        SynSent = "syn_sent",
        SynRecv = "syn_recv",
        FinWait1 = "fin_wait1",
        FinWait2 = "fin_wait2",
        TimeWait = "time_wait",
        Close = "close",
        CloseWait = "close_wait",
        LastAck = "last_ack",
        Closing = "closing",
        Unconnected = "unconnected",
    }
}

named_enum! {
    /// What an active probe concluded about one listening socket.
    ProbeVerdict, "snake_case" {
        /// Serves without credentials (it connected to the probe's destination for us).
        Open = "open",
        /// Wants credentials.
        Authenticated = "authenticated",
        /// Refuses this client (an address ACL).
        Restricted = "restricted",
        /// Speaks the protocol, but its answer cannot tell.
        Inconclusive = "inconclusive",
        /// Answered, but not as a proxy.
        NotProxy = "not_proxy",
        /// Accepted nothing, or said nothing recognisable in time.
        NoAnswer = "no_answer",
        /// Not asked (namespace not enterable, time budget spent, probes off).
        NotProbed = "not_probed",
    }
}

impl ProbeVerdict {
    /// How much the verdict says about abuse: of several sockets, a finding shows the
    /// weightiest.
    pub fn weight(self) -> u8 {
        match self {
            ProbeVerdict::Open => 6,
            ProbeVerdict::Authenticated => 5,
            ProbeVerdict::Restricted => 4,
            ProbeVerdict::Inconclusive => 3,
            ProbeVerdict::NotProxy => 2,
            ProbeVerdict::NoAnswer => 1,
            ProbeVerdict::NotProbed => 0,
        }
    }
}

named_enum! {
    /// The protocol that answered a probe: a proxy protocol, or SMTP (the open-relay probe).
    ProxyProtocol, "lowercase" {
        Http = "http",
        Socks4 = "socks4",
        Socks5 = "socks5",
        Smtp = "smtp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_the_printed_names() {
        for c in Category::ALL {
            let json = serde_json::to_string(c).expect("serialize");
            assert_eq!(json, format!("\"{c}\""));
            assert_eq!(Category::parse(c.as_str()), Some(*c));
        }
        for s in SocketState::ALL {
            assert_eq!(
                serde_json::to_string(s).expect("serialize"),
                format!("\"{s}\"")
            );
        }
        for v in ProbeVerdict::ALL {
            assert_eq!(
                serde_json::from_str::<ProbeVerdict>(&format!("\"{v}\"")).ok(),
                Some(*v)
            );
        }
    }

    #[test]
    fn severities_order_lowest_first() {
        assert!(Severity::Info < Severity::Low && Severity::High < Severity::Critical);
        assert_eq!(Severity::parse("medium"), Some(Severity::Medium));
        assert_eq!(Severity::parse("Medium"), None);
    }
}
