//! Report: every side effect towards the outside — syslog, the JSON event log, the status
//! socket, sd_notify — and the agent's own log lines. Nothing here decides anything.

pub mod collector;
pub mod eventlog;
pub mod notify;
pub mod sink;
pub mod sinks;
pub mod spool;
pub mod status;
pub mod syslog;

/// Makes host-supplied text safe for a terminal or a log line: control characters (C0,
/// DEL, C1: escape sequences, newlines) and format characters (Unicode category Cf: bidi
/// overrides and isolates, zero-width characters, the soft hyphen, tags …) become visible
/// escapes (`\n`, `\u{1b}`, `\u{202e}`). The one escaping function of every path that
/// reaches a terminal or a log: tables, `--explain`, status, signature and config output,
/// error messages, syslog.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`printable`] line by line: text of several lines (a list of errors) keeps its line
/// breaks, everything else in it is escaped.
pub fn printable_lines(s: &str) -> String {
    s.split('\n').map(printable).collect::<Vec<_>>().join("\n")
}

/// A character [`printable`] escapes: a control (`Cc`) or a format (`Cf`) character.
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control() || is_format(c)
}

/// Unicode general category Cf (format), as ranges of code points (Unicode 16.0; the unit
/// test checks every code point against the `unicode-general-category` crate).
const FORMAT: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),   // soft hyphen
    (0x0600, 0x0605),   // Arabic number signs
    (0x061C, 0x061C),   // Arabic letter mark
    (0x06DD, 0x06DD),   // Arabic end of ayah
    (0x070F, 0x070F),   // Syriac abbreviation mark
    (0x0890, 0x0891),   // Arabic pound and piastre marks above
    (0x08E2, 0x08E2),   // Arabic disputed end of ayah
    (0x180E, 0x180E),   // Mongolian vowel separator
    (0x200B, 0x200F),   // zero width space, (non-)joiner, LRM, RLM
    (0x202A, 0x202E),   // bidi embeddings and overrides
    (0x2060, 0x2064),   // word joiner, invisible operators
    (0x2066, 0x206F),   // bidi isolates, deprecated format characters
    (0xFEFF, 0xFEFF),   // zero width no-break space (BOM)
    (0xFFF9, 0xFFFB),   // interlinear annotation
    (0x110BD, 0x110BD), // Kaithi number sign
    (0x110CD, 0x110CD), // Kaithi number sign above
    (0x13430, 0x1343F), // Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3), // shorthand format controls
    (0x1D173, 0x1D17A), // musical symbol beam and slur controls
    (0xE0001, 0xE0001), // language tag
    (0xE0020, 0xE007F), // tag characters
];

/// True for a character of Unicode general category Cf.
fn is_format(c: char) -> bool {
    let c = c as u32;
    // Everything below the soft hyphen is ASCII or C1: the common case, decided at once.
    if c < 0xAD {
        return false;
    }
    FORMAT
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Writes `value` as pretty-printed JSON (`serde_json::to_writer_pretty`'s layout) in which
/// the characters [`printable`] escapes and JSON leaves raw (DEL, C1 controls, Unicode format
/// characters) are `\uXXXX` escapes too: the same data, safe on a terminal.
pub fn write_json_pretty<W, T>(writer: W, value: &T) -> serde_json::Result<()>
where
    W: std::io::Write,
    T: serde::Serialize + ?Sized,
{
    let formatter = TerminalJson(serde_json::ser::PrettyFormatter::new());
    value.serialize(&mut serde_json::Serializer::with_formatter(
        writer, formatter,
    ))
}

/// [`write_json_pretty`] on one line (`serde_json::to_writer`'s layout): the event log's
/// lines, and the measure of a document's size ([`json_len`]).
pub fn write_json<W, T>(writer: W, value: &T) -> serde_json::Result<()>
where
    W: std::io::Write,
    T: serde::Serialize + ?Sized,
{
    let formatter = TerminalJson(serde_json::ser::CompactFormatter);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        writer, formatter,
    ))
}

/// [`write_json`] into a new vector.
pub fn to_json_vec<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    write_json(&mut out, value)?;
    Ok(out)
}

/// The length in bytes of `value` as [`write_json`] writes it, without keeping the text.
pub fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match write_json(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// A serde_json formatter (pretty or compact) escaping what [`needs_escape`] says in
/// strings.
struct TerminalJson<F>(F);

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(fn $name<W: ?Sized + std::io::Write>(&mut self, writer: &mut W $(, $arg: $ty)*) -> std::io::Result<()> {
            self.0.$name(writer $(, $arg)*)
        })*
    };
}

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for TerminalJson<F> {
    delegate!(
        begin_array(),
        end_array(),
        begin_array_value(first: bool),
        end_array_value(),
        begin_object(),
        end_object(),
        begin_object_key(first: bool),
        begin_object_value(),
        end_object_value(),
    );

    /// The unescaped runs of a string (serde_json has escaped `"`, `\\` and C0 already).
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if needs_escape(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
}

/// One line of the agent's own log on stderr. Under systemd (`$JOURNAL_STREAM` set) the
/// line carries a `<N>` priority prefix the journal understands.
pub fn log(level: Level, message: &str) {
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let (prefix, word) = match level {
        Level::Error => ("<3>", "error"),
        Level::Warning => ("<4>", "warning"),
        Level::Info => ("<6>", "info"),
    };
    if journal {
        stderr_line(&format!("{prefix}{}", printable(message)));
    } else {
        stderr_line(&format!("aupwatch: {word}: {}", printable(message)));
    }
}

/// Writes `line` and a line break to stderr in one write. A closed or broken stderr is
/// ignored: unlike `eprintln!`, this never panics (`aupwatch scan 2>&1 | head -1`).
pub fn stderr_line(line: &str) {
    use std::io::Write;
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_escapes_c0_controls_and_del() {
        assert_eq!(printable("a\x1b[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(printable("\0\t\r\x07\x7f"), "\\u{0}\\t\\r\\u{7}\\u{7f}");
    }

    #[test]
    fn printable_escapes_c1_controls() {
        // CSI (U+009B) starts an escape sequence on terminals that honour 8-bit controls.
        assert_eq!(printable("a\u{9b}31mb"), "a\\u{9b}31mb");
        assert_eq!(printable("\u{80}\u{85}\u{9f}"), "\\u{80}\\u{85}\\u{9f}");
    }

    #[test]
    fn printable_escapes_bidi_overrides_and_isolates() {
        // "miner" shown as "renim" by a right-to-left override, and every embedding,
        // override and isolate.
        assert_eq!(printable("x\u{202e}renim"), "x\\u{202e}renim");
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}') {
            assert_eq!(printable(&c.to_string()), format!("\\u{{{:x}}}", c as u32));
        }
    }

    #[test]
    fn printable_escapes_zero_width_and_other_format_characters() {
        for (text, shown) in [
            ("x\u{200b}y", "x\\u{200b}y"), // zero width space
            ("x\u{200d}y", "x\\u{200d}y"), // zero width joiner
            ("x\u{2060}y", "x\\u{2060}y"), // word joiner
            ("\u{feff}x", "\\u{feff}x"),   // byte order mark
            ("so\u{ad}ft", "so\\u{ad}ft"), // soft hyphen
            ("\u{e0041}", "\\u{e0041}"),   // tag latin capital A
            ("\u{1343f}", "\\u{1343f}"),   // Unicode 15's Egyptian format controls
        ] {
            assert_eq!(printable(text), shown);
        }
    }

    #[test]
    fn printable_keeps_printable_text() {
        assert_eq!(printable("héllo wörld"), "héllo wörld");
        assert_eq!(
            printable("日本語 עברית العربية 🦀"),
            "日本語 עברית العربية 🦀"
        );
        assert_eq!(printable("a\\b \"c\" \u{a0}"), "a\\b \"c\" \u{a0}");
    }

    #[test]
    fn printable_lines_keeps_line_breaks_only() {
        assert_eq!(
            super::printable_lines("a\u{202e}b\nc\rd"),
            "a\\u{202e}b\nc\\rd"
        );
    }

    #[test]
    fn json_escapes_what_printable_escapes_and_keeps_the_data() {
        let value = serde_json::json!({
            "comm": "gpj\u{202e}xcod\u{1b}[2J\u{7f}\u{9b}",
            "tag": "\u{e0041}",
            "plain": ["héllo \"wörld\"", 1, null],
        });
        let mut out = Vec::new();
        super::write_json_pretty(&mut out, &value).expect("write");
        let text = String::from_utf8(out).expect("UTF-8");
        assert!(
            text.contains(r#""gpj\u202excod\u001b[2J\u007f\u009b""#),
            "{text}"
        );
        assert!(text.contains(r#""\udb40\udc41""#), "{text}");
        assert!(text.contains(r#""héllo \"wörld\"""#), "{text}");
        assert!(!text.chars().any(|c| c != '\n' && super::needs_escape(c)));
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, value);
        // The same layout as serde_json's own pretty printer.
        let plain = serde_json::json!({"a": [1, {"b": "c"}], "d": {}});
        let mut out = Vec::new();
        super::write_json_pretty(&mut out, &plain).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            serde_json::to_string_pretty(&plain).expect("pretty")
        );
    }

    /// The Cf table against the `unicode-general-category` crate, every code point.
    #[test]
    fn format_table_is_unicode_category_cf() {
        use unicode_general_category::{get_general_category, GeneralCategory};
        for windows in super::FORMAT.windows(2) {
            assert!(windows[0].1 < windows[1].0, "sorted, disjoint: {windows:?}");
        }
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(
                super::is_format(c),
                get_general_category(c) == GeneralCategory::Format,
                "U+{:04X}",
                c as u32
            );
        }
    }
}
