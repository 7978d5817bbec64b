//! Terminal escaping of host-supplied text (hostnames, labels, command lines): every
//! character that could move the cursor, change colours or reorder text is shown as a
//! `\u{…}` escape instead.
//!
//! Must never: drop a character silently (an operator must see that something was there).

/// `s` with C0/C1 controls, DEL, Unicode format characters (Cf: bidi overrides and
/// isolates, zero-width joiners, …), line/paragraph separators escaped; a backslash is
/// doubled so an escape in the input cannot pass for one of ours.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if needs_escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    if c.is_control() {
        return true; // C0, DEL, C1
    }
    matches!(
        c as u32,
        0x00AD            // soft hyphen
        | 0x061C          // Arabic letter mark
        | 0x180E          // Mongolian vowel separator
        | 0x200B..=0x200F // zero-width space/joiners, LRM, RLM
        | 0x2028..=0x202E // line/paragraph separators, LRE..RLO
        | 0x2060..=0x206F // word joiner, invisible operators, LRI..PDI, deprecated formats
        | 0xFEFF          // BOM / zero-width no-break space
        | 0xFFF9..=0xFFFB // interlinear annotation
        | 0x110BD | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0001 | 0xE0020..=0xE007F // tags
    )
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn controls_c1_and_bidi_are_escaped() {
        assert_eq!(printable("a\x1b[31mb\nc"), "a\\u{1b}[31mb\\u{a}c");
        assert_eq!(printable("x\u{9b}2J"), "x\\u{9b}2J");
        assert_eq!(printable("abc\u{202e}gpj.exe"), "abc\\u{202e}gpj.exe");
        assert_eq!(printable("a\u{2066}b\u{2069}"), "a\\u{2066}b\\u{2069}");
        assert_eq!(printable("zero\u{200b}width"), "zero\\u{200b}width");
        assert_eq!(printable("\\u{1b}"), "\\\\u{1b}");
    }

    #[test]
    fn ordinary_text_is_kept() {
        assert_eq!(printable("vm-1042.example.net"), "vm-1042.example.net");
        assert_eq!(printable("héllo wörld 日本"), "héllo wörld 日本");
    }
}
