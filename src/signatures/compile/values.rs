//! Checks of single values (globs, regexes, hashes, ports, protocols, binds, windows,
//! states, counts): each reports its own error with its line and gives the compiled value.

use super::raw::RawPort;
use super::{Check, Ctx, MAX_CPU_WINDOW_SECS};
use crate::inventory::Protocol;
use crate::signatures::model::{
    BindFilter, CmdlineRegex, GlobList, PortSet, ProtocolFilter, StateFilter,
};
use toml::Spanned;

impl Ctx<'_> {
    pub(super) fn non_empty<T>(&mut self, items: &[T], what: &str, at: usize) -> Option<()> {
        if items.is_empty() {
            self.error(at, format!("`{what}` needs at least one value"));
            return None;
        }
        Some(())
    }

    /// Checks every glob of `pats`; with `build_set`, compiles them into the list's set
    /// (`name` lists leave it empty: the signature set's combined glob set matches them).
    pub(super) fn globs(
        &mut self,
        pats: &[Spanned<String>],
        ignore_case: bool,
        path: bool,
        build_set: bool,
        at: usize,
    ) -> Option<GlobList> {
        self.non_empty(pats, "glob list", at)?;
        let mut builder = globset::GlobSetBuilder::new();
        let mut ok = true;
        for p in pats {
            if p.get_ref().is_empty() {
                self.error(p.span().start, "empty glob".into());
                ok = false;
                continue;
            }
            match GlobList::glob(p.get_ref(), ignore_case, path) {
                Ok(g) => {
                    builder.add(g);
                }
                Err(e) => {
                    self.error(
                        p.span().start,
                        format!("bad glob `{}`: {}", p.get_ref(), e.kind()),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let patterns: Vec<String> = pats.iter().map(|p| p.get_ref().clone()).collect();
        if !build_set || self.check == Check::Bundled {
            return Some(GlobList::new(patterns, ignore_case, path, None));
        }
        match builder.build() {
            Ok(set) => Some(GlobList::new(patterns, ignore_case, path, Some(set))),
            Err(e) => {
                self.error(at, format!("bad glob list: {e}"));
                None
            }
        }
    }

    pub(super) fn regex(&mut self, re: &Spanned<String>) -> Option<CmdlineRegex> {
        if re.get_ref().is_empty() {
            self.error(
                re.span().start,
                "empty cmdline regex would match every process".into(),
            );
            return None;
        }
        if self.check == Check::Bundled {
            return Some(CmdlineRegex::checked(re.get_ref().clone()));
        }
        match CmdlineRegex::builder(re.get_ref()).build() {
            // Checked; compiled again only when needed (see CmdlineRegex).
            Ok(_) => Some(CmdlineRegex::checked(re.get_ref().clone())),
            Err(e) => {
                let msg = e
                    .to_string()
                    .lines()
                    .map(str::trim_end)
                    .collect::<Vec<_>>()
                    .join(" | ");
                self.error(re.span().start, format!("bad cmdline regex: {msg}"));
                None
            }
        }
    }

    pub(super) fn hashes(&mut self, hashes: &[Spanned<String>], at: usize) -> Option<Vec<String>> {
        self.non_empty(hashes, "sha256", at)?;
        let mut out = Vec::new();
        let mut ok = true;
        for h in hashes {
            let s = h.get_ref();
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(s.to_ascii_lowercase());
            } else {
                self.error(
                    h.span().start,
                    format!("`{s}` is not a SHA-256 (64 hex digits)"),
                );
                ok = false;
            }
        }
        ok.then_some(out)
    }

    pub(super) fn strings(
        &mut self,
        items: &[Spanned<String>],
        what: &str,
        at: usize,
    ) -> Option<Vec<String>> {
        self.non_empty(items, what, at)?;
        let mut ok = true;
        for s in items {
            if s.get_ref().is_empty() {
                self.error(s.span().start, format!("empty {what}"));
                ok = false;
            }
        }
        ok.then(|| items.iter().map(|s| s.get_ref().clone()).collect())
    }

    pub(super) fn ports(&mut self, ports: &[Spanned<RawPort>]) -> Option<PortSet> {
        let mut out = Vec::new();
        let mut ok = true;
        for p in ports {
            let range = match p.get_ref() {
                RawPort::Number(n) => port(*n).map(|n| (n, n)),
                RawPort::Range(s) => s.split_once('-').and_then(|(lo, hi)| {
                    let lo = port(lo.trim().parse().ok()?)?;
                    let hi = port(hi.trim().parse().ok()?)?;
                    (lo <= hi).then_some((lo, hi))
                }),
            };
            match range {
                Some(r) => out.push(r),
                None => {
                    let shown = match p.get_ref() {
                        RawPort::Number(n) => n.to_string(),
                        RawPort::Range(s) => format!("\"{s}\""),
                    };
                    self.error(
                        p.span().start,
                        format!("port {shown} is impossible: a port is 0-65535, a range \"lo-hi\" with lo <= hi"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(PortSet(out))
    }

    pub(super) fn protocol(&mut self, p: Option<&Spanned<String>>) -> Option<ProtocolFilter> {
        match p.map(|p| (p.get_ref().as_str(), p.span())) {
            None | Some(("any", _)) => Some(ProtocolFilter::Any),
            Some(("tcp", _)) => Some(ProtocolFilter::Only(Protocol::Tcp)),
            Some(("udp", _)) => Some(ProtocolFilter::Only(Protocol::Udp)),
            Some((other, span)) => {
                self.error(
                    span.start,
                    format!("unknown protocol `{other}` (tcp, udp or any)"),
                );
                None
            }
        }
    }

    pub(super) fn bind(&mut self, b: Option<&Spanned<String>>) -> Option<BindFilter> {
        match b.map(|b| (b.get_ref().as_str(), b.span())) {
            None | Some(("any", _)) => Some(BindFilter::Any),
            Some(("public", _)) => Some(BindFilter::Public),
            Some(("loopback", _)) => Some(BindFilter::Loopback),
            Some((other, span)) => {
                self.error(
                    span.start,
                    format!("unknown bind `{other}` (public, loopback or any)"),
                );
                None
            }
        }
    }

    /// An optional `for` window (0 when absent): a duration of at most 24h.
    pub(super) fn window(&mut self, what: &str, d: Option<&Spanned<String>>) -> Option<u64> {
        let Some(d) = d else { return Some(0) };
        match parse_duration(d.get_ref()) {
            Some(s) if s <= MAX_CPU_WINDOW_SECS => Some(s),
            _ => {
                self.error(
                    d.span().start,
                    format!(
                        "{what} `{}` is not a duration of at most 24h (like \"30s\", \"10m\", \"1h30m\")",
                        d.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn states(&mut self, states: &[Spanned<String>]) -> Option<StateFilter> {
        use crate::inventory::SocketState as S;
        let mut out = Vec::new();
        let mut ok = true;
        for s in states {
            match s.get_ref().as_str() {
                "established" => out.push(S::Established),
                "syn_sent" => out.push(S::SynSent),
                "syn_recv" => out.push(S::SynRecv),
                other => {
                    self.error(
                        s.span().start,
                        format!("unknown connection state `{other}` (established, syn_sent or syn_recv)"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(StateFilter(out))
    }

    pub(super) fn count(&mut self, n: &Spanned<i64>) -> Option<u32> {
        match u32::try_from(*n.get_ref()) {
            Ok(v) if v >= 1 => Some(v),
            _ => {
                self.error(
                    n.span().start,
                    format!("min {} is impossible: must be 1 or more", n.get_ref()),
                );
                None
            }
        }
    }
}

fn port(n: i64) -> Option<u16> {
    u16::try_from(n).ok()
}

/// `"90s"`, `"10m"`, `"2h"`, `"1h30m"` → seconds.
pub(crate) fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}
