//! Byte bounds of a verdict. A finding carries host strings (names, command line, paths,
//! evidence, probe answers) and lists (sockets, evidence, related pids) an attacker can make
//! long; every document the agent writes (event log, syslog, status, collector reports) is
//! built from findings, so bounding the finding once, where it is made, bounds them all.
//!
//! [`finding`] keeps a finding whole when its terminal-safe JSON fits
//! [`MAX_FINDING_BYTES`]; else it cuts host strings and lists in steps until it fits. A cut
//! string ends in `…[N bytes]` (its whole length); a cut command line also records the
//! whole one's length and SHA-256 in `cmdline_truncated`; a cut list leaves an evidence
//! entry `truncated` saying what was left out. The signature ids of the matches are kept
//! while there is any room.
//!
//! Pure: no I/O, no clock.

use aupwatch_proto as proto;
use aupwatch_proto::bounds::MAX_FINDING_BYTES;
use sha2::{Digest, Sha256};

/// One step of cutting: the longest host string kept, in bytes, and the longest list.
#[derive(Debug, Clone, Copy)]
struct Step {
    text: usize,
    items: usize,
}

const STEPS: [Step; 5] = [
    Step {
        text: 1024,
        items: 32,
    },
    Step {
        text: 256,
        items: 8,
    },
    Step { text: 64, items: 4 },
    Step { text: 16, items: 2 },
    Step { text: 0, items: 1 },
];

/// Bounds `f` to [`MAX_FINDING_BYTES`] of terminal-safe JSON (see the module doc).
pub fn finding(f: &mut proto::Finding) {
    bound_to(f, MAX_FINDING_BYTES);
}

fn bound_to(f: &mut proto::Finding, max: usize) {
    if crate::report::json_len(f) <= max {
        return;
    }
    for step in STEPS {
        let mut cut = f.clone();
        shrink(&mut cut, step);
        if crate::report::json_len(&cut) <= max {
            *f = cut;
            return;
        }
    }
    // Pathological (thousands of matches): only as many matches as fit, evidence emptied.
    let mut cut = f.clone();
    shrink(&mut cut, STEPS[STEPS.len() - 1]);
    let total = cut.matches.len();
    for m in &mut cut.matches {
        m.evidence.clear();
        m.sockets.clear();
        m.related_pids.clear();
        m.description.clear();
        m.aup.clear();
    }
    while cut.matches.len() > 1 && crate::report::json_len(&cut) > max.saturating_sub(128) {
        let keep = cut.matches.len() / 2;
        cut.matches.truncate(keep);
    }
    let listed = cut.matches.len();
    if let Some(first) = cut.matches.first_mut() {
        first.evidence.push(proto::Evidence {
            predicate: "truncated".into(),
            value: format!("{total} matches, {listed} listed"),
        });
    }
    *f = cut;
}

fn shrink(f: &mut proto::Finding, step: Step) {
    match &mut f.subject {
        proto::Subject::Process(p) => {
            cut(&mut p.comm, step.text);
            cut_opt(&mut p.user, step.text);
            cut_opt(&mut p.exe, step.text);
            cut_opt(&mut p.container, step.text);
            cut_cmdline(p, step.text * 2, step.items * 4);
        }
        proto::Subject::Interface(i) => cut(&mut i.name, step.text),
        proto::Subject::Host => {}
    }
    if let Some(r) = &mut f.raised {
        cut(r, step.text);
    }
    for m in &mut f.matches {
        cut(&mut m.description, step.text.max(64));
        cut(&mut m.aup, step.text.max(64));
        let mut notes = Vec::new();
        if m.sockets.len() > step.items {
            notes.push(format!(
                "{} sockets, {} listed",
                m.sockets.len(),
                step.items
            ));
            m.sockets.truncate(step.items);
        }
        if m.related_pids.len() > step.items * 4 {
            notes.push(format!(
                "{} related pids, {} listed",
                m.related_pids.len(),
                step.items * 4
            ));
            m.related_pids.truncate(step.items * 4);
        }
        if m.evidence.len() > step.items {
            notes.push(format!(
                "{} evidence entries, {} listed",
                m.evidence.len(),
                step.items
            ));
            m.evidence.truncate(step.items);
        }
        for e in &mut m.evidence {
            cut(&mut e.predicate, step.text.max(32));
            cut(&mut e.value, step.text);
        }
        if let Some(p) = &mut m.probe {
            cut(&mut p.evidence, step.text);
        }
        if !notes.is_empty() {
            m.evidence.push(proto::Evidence {
                predicate: "truncated".into(),
                value: notes.join("; "),
            });
        }
    }
}

/// Cuts `s` to at most `max` bytes (at a character boundary) followed by `…[N bytes]`.
pub(crate) fn cut(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let whole = s.len();
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(&format!("…[{whole} bytes]"));
}

fn cut_opt(s: &mut Option<String>, max: usize) {
    if let Some(s) = s {
        cut(s, max);
    }
}

/// Keeps at most `max_bytes` of the arguments and `max_args` of them; when anything goes,
/// `cmdline_truncated` describes the whole (unless reading already cut it, in which case
/// it describes the whole already).
fn cut_cmdline(p: &mut proto::Process, max_bytes: usize, max_args: usize) {
    let total: usize = p.cmdline.iter().map(|a| a.len()).sum();
    if total <= max_bytes && p.cmdline.len() <= max_args {
        return;
    }
    if p.cmdline_truncated.is_none() {
        let mut h = Sha256::new();
        let mut bytes = 0u64;
        for a in &p.cmdline {
            h.update(a.as_bytes());
            h.update([0]);
            bytes += a.len() as u64 + 1;
        }
        p.cmdline_truncated = Some(proto::Truncated {
            bytes,
            sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        });
    }
    let mut left = max_bytes;
    let mut kept = 0;
    for a in &mut p.cmdline {
        if kept == max_args || (left == 0 && kept > 0) {
            break;
        }
        let len = a.len();
        cut(a, left);
        left = left.saturating_sub(len);
        kept += 1;
    }
    p.cmdline.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process_finding(cmdline: Vec<String>, evidence: usize, sockets: usize) -> proto::Finding {
        let socket = proto::Socket {
            protocol: proto::Protocol::Tcp,
            local: "127.0.0.1:1".parse().expect("addr"),
            remote: None,
            state: proto::SocketState::Listen,
            netns: 1,
            inode: 1,
        };
        proto::Finding {
            category: proto::Category::Mining,
            severity: proto::Severity::High,
            subject: proto::Subject::Process(proto::Process {
                pid: 1,
                ppid: 0,
                start_ticks: 1,
                uid: 0,
                user: None,
                comm: "xmrig".into(),
                exe: Some("/x".into()),
                exe_deleted: false,
                cmdline,
                netns: 1,
                container: None,
                cmdline_truncated: None,
            }),
            matches: vec![proto::Match {
                signature: "mining.xmrig".into(),
                severity: proto::Severity::High,
                description: "d".into(),
                aup: "a".into(),
                related_pids: vec![],
                sockets: vec![socket; sockets],
                evidence: vec![
                    proto::Evidence {
                        predicate: "cmdline".into(),
                        value: "\u{1b}".repeat(4000),
                    };
                    evidence
                ],
                probe: None,
            }],
            raised: None,
        }
    }

    #[test]
    fn a_small_finding_is_kept_whole() {
        let mut f = process_finding(vec!["xmrig".into(), "-o".into()], 1, 1);
        f.matches[0].evidence[0].value = "pool".into();
        let before = f.clone();
        finding(&mut f);
        assert_eq!(f, before);
    }

    #[test]
    fn escape_bytes_are_cut_to_the_bound_and_say_so() {
        let args = vec!["\u{1b}".repeat(4000), "\u{9b}".repeat(2000)];
        let mut f = process_finding(args.clone(), 40, 5000);
        finding(&mut f);
        assert!(crate::report::json_len(&f) <= MAX_FINDING_BYTES);
        let Some(p) = f.process() else {
            panic!("process subject")
        };
        let t = p.cmdline_truncated.as_ref().expect("cut is recorded");
        assert_eq!(t.bytes, (4000 + 1 + 4000 + 1) as u64);
        let mut h = Sha256::new();
        for a in &args {
            h.update(a.as_bytes());
            h.update([0]);
        }
        let want: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(t.sha256, want);
        assert!(p.cmdline[0].ends_with("…[4000 bytes]"), "{:?}", p.cmdline);
        let m = &f.matches[0];
        assert_eq!(m.signature, "mining.xmrig");
        let note = m.evidence.last().expect("note");
        assert_eq!(note.predicate, "truncated");
        assert!(note.value.contains("5000 sockets"), "{}", note.value);
        assert!(note.value.contains("40 evidence entries"), "{}", note.value);
    }

    #[test]
    fn thousands_of_matches_keep_ids_within_the_bound() {
        let mut f = process_finding(vec!["x".into()], 1, 0);
        let m = f.matches[0].clone();
        f.matches = (0..5000)
            .map(|i| proto::Match {
                signature: format!("mining.sig{i}"),
                ..m.clone()
            })
            .collect();
        finding(&mut f);
        assert!(crate::report::json_len(&f) <= MAX_FINDING_BYTES);
        assert_eq!(f.matches[0].signature, "mining.sig0");
        assert!(f.matches[0]
            .evidence
            .iter()
            .any(|e| e.value.starts_with("5000 matches")));
    }

    #[test]
    fn cut_keeps_characters_whole() {
        let mut s = "ééé".to_string();
        cut(&mut s, 3);
        assert_eq!(s, "é…[6 bytes]");
        let mut s = "abc".to_string();
        cut(&mut s, 3);
        assert_eq!(s, "abc");
    }
}
