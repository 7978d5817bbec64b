use super::*;

const HEAD: &str = r#"[[signature]]
id = "mining.test"
category = "mining"
severity = "high"
description = "test"
aup = "unused CPU"
"#;

fn load(text: &str) -> Result<SignatureSet, LoadErrors> {
    load_sources(&[("t.toml".to_string(), text.to_string())])
}

/// Loads `HEAD` + `rest` and returns the single error, as "line: message".
fn one_error(rest: &str) -> String {
    let errs = match load(&format!("{HEAD}{rest}")) {
        Ok(_) => panic!("expected an error for {rest:?}"),
        Err(LoadErrors(e)) => e,
    };
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!(e.file, "t.toml");
    format!("{}: {}", e.line.unwrap_or(0), e.message)
}

#[test]
fn a_valid_signature_compiles() {
    let set = load(&format!(
        "{HEAD}match = {{ all = [ {{ name = [\"xmrig*\"] }}, {{ listen = {{ port = [3333, \"6660-6669\"], protocol = \"tcp\", bind = \"public\" }} }}, {{ cpu = {{ min_percent = 80, for = \"1h30m\" }} }} ] }}\n"
    ))
    .expect("valid");
    assert_eq!(set.signatures.len(), 1);
    let s = &set.signatures[0];
    assert_eq!(
        (s.id.as_str(), s.category, s.severity),
        ("mining.test", Category::Mining, Severity::High)
    );
    assert_eq!(s.source, "t.toml:1");
    assert_eq!(set.longest_window_secs, 5400);
    assert!(!set.needs_exe_hash);
}

#[test]
fn every_invalid_input_names_its_line_and_problem() {
    // (rest of the signature after HEAD, expected "line: message" prefix)
    let cases: &[(&str, &str)] = &[
        ("match = { nmae = [\"x\"] }\n", "7: unknown variant `nmae`"),
        (
            "match = { name = [\"x\"], cmdline = \"y\" }\n",
            "7: the match has keys `cmdline`, `name`, but a match expression has exactly one",
        ),
        (
            "match = { all = [ { name = [\"x\"], cmdline = \"y\" } ] }\n",
            "7: a match expression is a table with exactly one key",
        ),
        ("match = { cmdline = '(?=x)' }\n", "7: bad cmdline regex"),
        ("match = { cmdline = '' }\n", "7: empty cmdline regex"),
        (
            "match = { name = [] }\n",
            "7: `glob list` needs at least one value",
        ),
        ("match = { name = [\"[x\"] }\n", "7: bad glob `[x`"),
        (
            "match = { listen = { port = [70000] } }\n",
            "7: port 70000 is impossible",
        ),
        (
            "match = { listen = { port = [\"9-3\"] } }\n",
            "7: port \"9-3\" is impossible",
        ),
        (
            "match = { listen = { protocol = \"sctp\" } }\n",
            "7: unknown protocol `sctp`",
        ),
        (
            "match = { listen = { bind = \"lan\" } }\n",
            "7: unknown bind `lan`",
        ),
        (
            "match = { listen = { prot = \"tcp\" } }\n",
            "7: unknown field `prot`",
        ),
        (
            "match = { remote = { port = [6667], min = 0 } }\n",
            "7: min 0 is impossible",
        ),
        (
            "match = { peers = { min = -3 } }\n",
            "7: min -3 is impossible",
        ),
        (
            "match = { cpu = { min_percent = 0, for = \"1m\" } }\n",
            "7: cpu.min_percent 0 is impossible",
        ),
        (
            "match = { cpu = { min_percent = 90, for = \"25h\" } }\n",
            "7: cpu.for must be above 0 and at most 24h",
        ),
        (
            "match = { cpu = { min_percent = 90, for = \"ten minutes\" } }\n",
            "7: cpu.for `ten minutes` is not a duration",
        ),
        (
            "match = { sha256 = [\"abc\"] }\n",
            "7: `abc` is not a SHA-256",
        ),
        (
            "match = { interface = [\"wg*\"] }\n",
            "7: `interface` does not fit",
        ),
        (
            "match = { not = { name = [\"x\"] } }\n",
            "7: the match must contain a predicate that has to hold",
        ),
        (
            "match = { any = [] }\n",
            "7: `all` / `any` needs at least one expression",
        ),
        (
            "bogus = 1\nmatch = { name = [\"x\"] }\n",
            "7: unknown field `bogus`",
        ),
        ("\n", "1: missing field `match`"),
        (
            "subject = \"socket\"\nmatch = { name = [\"x\"] }\n",
            "7: unknown subject `socket`",
        ),
        (
            "probe = \"socks\"\nmatch = { name = [\"x\"] }\n",
            "7: unknown probe `socks` (one of: proxy, smtp-relay)",
        ),
        (
            "probe = 1\nmatch = { name = [\"x\"] }\n",
            "7: invalid type: integer `1`, expected a string",
        ),
        (
            "subject = \"interface\"\nprobe = \"proxy\"\nmatch = { interface = [\"x\"] }\n",
            "8: `probe` checks a process's listening sockets: it needs `subject = \"process\"`",
        ),
        (
            "match = { preload = {} }\n",
            "7: `preload` does not fit: it is a host predicate (set subject = \"host\")",
        ),
        (
            "subject = \"host\"\nmatch = { name = [\"x\"] }\n",
            "8: `name` does not fit: a host signature can use only",
        ),
        (
            "subject = \"host\"\nmatch = { hidden_processes = { min = 0 } }\n",
            "8: min 0 is impossible",
        ),
        (
            "subject = \"host\"\nmatch = { hidden_processes = {} }\n",
            "8: missing field `min`",
        ),
        (
            "subject = \"host\"\nmatch = { hugepages = { min_mib = 0 } }\n",
            "8: hugepages.min_mib 0 is impossible",
        ),
        (
            "subject = \"host\"\nmatch = { msr = { allow_writes = [\"yes\"] } }\n",
            "8: unknown msr.allow_writes `yes`",
        ),
        (
            "subject = \"host\"\nmatch = { proc_mounts = { any = 1 } }\n",
            "8: unknown field `any`",
        ),
    ];
    for (rest, want) in cases {
        let got = one_error(rest);
        assert!(
            got.starts_with(want),
            "for {rest:?}\n want prefix {want:?}\n got        {got:?}"
        );
    }
}

#[test]
fn header_fields_are_checked() {
    let sig = |id: &str, cat: &str, sev: &str| {
        format!("[[signature]]\nid = \"{id}\"\ncategory = \"{cat}\"\nseverity = \"{sev}\"\ndescription = \"d\"\naup = \"a\"\nmatch = {{ name = [\"x\"] }}\n")
    };
    let msg = |text: String| -> Vec<String> {
        match load(&text) {
            Ok(_) => vec![],
            Err(LoadErrors(e)) => e.iter().map(|e| e.to_string()).collect(),
        }
    };
    assert_eq!(msg(sig("mining.x", "mining", "high")), Vec::<String>::new());
    assert_eq!(
        msg(sig("irc.x", "mining", "high")),
        vec!["t.toml:2: signature irc.x: id must start with its category: `mining.x`"]
    );
    assert_eq!(
        msg(sig("Mining X", "mining", "high")),
        vec!["t.toml:2: signature Mining X: id `Mining X` must be `<category>.<name>`, name of a-z, 0-9, `_` and `-`"]
    );
    let errs = msg(sig("gaming.x", "gaming", "huge"));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("t.toml:3: signature gaming.x: unknown category `gaming`"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("t.toml:4: signature gaming.x: unknown severity `huge`"),
        "{errs:?}"
    );
}

#[test]
fn all_errors_of_all_files_are_reported() {
    let good = format!("{HEAD}match = {{ name = [\"x\"] }}\n");
    let bad_regex = "[[signature]]\nid = \"irc.a\"\ncategory = \"irc\"\nseverity = \"low\"\ndescription = \"d\"\naup = \"a\"\nmatch = { cmdline = '(' }\n\n[[signature]]\nid = \"irc.b\"\ncategory = \"irc\"\nseverity = \"low\"\ndescription = \"d\"\naup = \"a\"\nmatch = { listen = { port = [-1] } }\n";
    let syntax = "[[signature]]\nid = \"tor.a\n";
    let err = load_sources(&[
        ("a.toml".into(), good.clone()),
        ("b.toml".into(), bad_regex.into()),
        ("c.toml".into(), syntax.into()),
        ("d.toml".into(), good),
        ("e.toml".into(), "title = \"x\"\n".into()),
    ])
    .expect_err("invalid");
    let lines: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(
        lines[0].starts_with("b.toml:7: signature irc.a: bad cmdline regex"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("b.toml:15: signature irc.b: port -1 is impossible"),
        "{lines:#?}"
    );
    assert!(lines[2].starts_with("c.toml:2: TOML syntax"), "{lines:#?}");
    assert!(
        lines[3].starts_with("e.toml:1: unknown top-level key `title`"),
        "{lines:#?}"
    );
    assert_eq!(
        lines[4],
        "d.toml:1: signature mining.test: duplicate id, first defined at a.toml:1"
    );
}

#[test]
fn durations() {
    use super::compile::parse_duration;
    assert_eq!(parse_duration("30s"), Some(30));
    assert_eq!(parse_duration("10m"), Some(600));
    assert_eq!(parse_duration("1h30m"), Some(5400));
    assert_eq!(parse_duration("2d"), Some(172800));
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("m"), None);
    assert_eq!(parse_duration(""), None);
}

#[test]
fn globs_follow_the_documented_rules() {
    let set = load(&format!(
        "{HEAD}match = {{ any = [ {{ name = [\"XMRig*\"] }}, {{ exe = [\"/tmp/*\"] }} ] }}\n"
    ))
    .expect("valid");
    let Match::Any(items) = &set.signatures[0].matcher else {
        panic!("any")
    };
    let (Match::Pred(Predicate::Name { globs: name, .. }), Match::Pred(Predicate::Exe(exe))) =
        (&items[0], &items[1])
    else {
        panic!("preds")
    };
    assert!(name.is_match("xmrig-notls"), "names ignore case");
    assert!(!name.is_match("myxmrig"));
    assert!(exe.is_match("/tmp/x"));
    assert!(
        !exe.is_match("/tmp/a/x"),
        "`*` does not cross `/` in exe globs"
    );
}

#[test]
fn local_signatures_add_to_and_replace_shipped_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = dir.path().join("shipped");
    let local = dir.path().join("local");
    std::fs::create_dir_all(&shipped).expect("mkdir");
    std::fs::create_dir_all(&local).expect("mkdir");
    let sig = |id: &str, sev: &str| {
        format!("[[signature]]\nid = \"{id}\"\ncategory = \"irc\"\nseverity = \"{sev}\"\ndescription = \"d\"\naup = \"a\"\nmatch = {{ name = [\"x\"] }}\n\n")
    };
    std::fs::write(
        shipped.join("irc.toml"),
        sig("irc.a", "high") + &sig("irc.b", "high"),
    )
    .expect("write");
    // a missing or empty local directory adds nothing
    let got = load_layered(Some(&shipped), Some(&dir.path().join("none"))).expect("valid");
    assert_eq!(got.set.signatures.len(), 2);
    let got = load_layered(Some(&shipped), Some(&local)).expect("valid");
    assert_eq!(got.set.signatures.len(), 2);
    assert!(got.overridden.is_empty());
    std::fs::write(
        local.join("mine.toml"),
        sig("irc.b", "low") + &sig("irc.c", "low"),
    )
    .expect("write");
    let layered = load_layered(Some(&shipped), Some(&local)).expect("valid");
    assert_eq!(
        layered.overridden,
        vec!["irc.b".to_string()],
        "said out loud"
    );
    let got: Vec<(&str, Severity)> = layered
        .set
        .signatures
        .iter()
        .map(|s| (s.id.as_str(), s.severity))
        .collect();
    assert_eq!(
        got,
        vec![
            ("irc.a", Severity::High),
            ("irc.b", Severity::Low),
            ("irc.c", Severity::Low)
        ]
    );
    // errors of both layers are reported together
    std::fs::write(local.join("bad.toml"), "[[signature]]\nid = 1\n").expect("write");
    std::fs::write(shipped.join("bad.toml"), "x = 1\n").expect("write");
    let Err(DirError::Invalid(LoadErrors(errs))) = load_layered(Some(&shipped), Some(&local))
    else {
        panic!("expected errors")
    };
    assert_eq!(errs.len(), 2, "{errs:?}");
    // the bundled packs are the default shipped layer
    let got = load_layered(None, None).expect("bundled packs load");
    assert!(got.overridden.is_empty());
    assert_eq!(
        got.set.signatures.len(),
        load_bundled().expect("bundled").signatures.len()
    );
}

#[test]
fn layered_directories_and_files_others_can_write_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = dir.path().join("shipped");
    let local = dir.path().join("local");
    for d in [&shipped, &local] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let sig = "[[signature]]\nid = \"irc.a\"\ncategory = \"irc\"\nseverity = \"low\"\ndescription = \"d\"\naup = \"a\"\nmatch = { name = [\"x\"] }\n";
    std::fs::write(shipped.join("irc.toml"), sig).expect("write");
    std::fs::write(local.join("irc.toml"), sig).expect("write");
    for f in [shipped.join("irc.toml"), local.join("irc.toml")] {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    assert!(load_layered(Some(&shipped), Some(&local)).is_ok());
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    mode(&local.join("irc.toml"), 0o666);
    mode(&shipped, 0o775);
    let Err(DirError::Invalid(LoadErrors(errs))) = load_layered(Some(&shipped), Some(&local))
    else {
        panic!("a world-writable file and a group-writable directory must be refused")
    };
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            format!(
                "{}: refused: mode 0775 lets group or others write it (chmod go-w)",
                shipped.display()
            ),
            format!(
                "{}: refused: mode 0666 lets group or others write it (chmod go-w)",
                local.join("irc.toml").display()
            ),
        ]
    );
}

#[test]
fn traffic_values_are_checked() {
    let sig = |m: &str| {
        format!("[[signature]]\nid = \"traffic-shape.t\"\ncategory = \"traffic-shape\"\nseverity = \"low\"\ndescription = \"d\"\naup = \"a\"\nsubject = \"interface\"\nmatch = {m}\n")
    };
    assert!(load(&sig(
        "{ traffic = { min_pps = 1000, max_avg_packet_bytes = 125, for = \"30s\" } }"
    ))
    .is_ok());
    for (m, want) in [
        (
            "{ traffic = { min_pps = 0, max_avg_packet_bytes = 125 } }",
            "traffic.min_pps 0 is impossible",
        ),
        (
            "{ traffic = { min_pps = 10, max_avg_packet_bytes = 0 } }",
            "traffic.max_avg_packet_bytes 0 is impossible",
        ),
        (
            "{ traffic = { min_pps = 10, max_avg_packet_bytes = 100, for = \"2 days\" } }",
            "traffic.for `2 days` is not a duration",
        ),
        (
            "{ traffic = { min_pps = 10 } }",
            "missing field `max_avg_packet_bytes`",
        ),
    ] {
        let Err(LoadErrors(e)) = load(&sig(m)) else {
            panic!("{m} should fail")
        };
        assert!(e[0].message.starts_with(want), "{m}: {:?}", e[0].message);
    }
    // a process signature cannot use traffic
    let Err(LoadErrors(e)) = load(&format!(
        "{HEAD}match = {{ traffic = {{ min_pps = 1, max_avg_packet_bytes = 1 }} }}\n"
    )) else {
        panic!("should fail")
    };
    assert!(
        e[0].message.contains("cannot use `interface`, `traffic`"),
        "{e:?}"
    );
}

#[test]
fn probe_is_optional_and_compiled() {
    let set = load(&format!(
        "{HEAD}probe = \"proxy\"\nmatch = {{ name = [\"x\"] }}\n\n[[signature]]\nid = \"mining.other\"\ncategory = \"mining\"\nseverity = \"low\"\ndescription = \"d\"\naup = \"a\"\nmatch = {{ name = [\"y\"] }}\n"
    ))
    .expect("valid");
    assert_eq!(set.signatures[0].probe, Some(ProbeKind::Proxy));
    assert_eq!(set.signatures[1].probe, None);
}

#[test]
fn bundled_packs_compile_in_full() {
    // Loading the bundled packs compiles no regex or glob set (`Check::Bundled`): this is
    // the check that every one of them compiles, and what `signatures check` runs.
    let full = check_bundled().expect("every bundled regex and glob list compiles");
    let set = load_bundled().expect("bundled");
    assert_eq!(full.digest, set.digest);
    assert_eq!(full.signatures.len(), set.signatures.len());
    for s in &set.signatures {
        s.matcher.visit(&mut |p| {
            if let Predicate::Cmdline { re, .. } = p {
                assert!(re.regex().is_some(), "{}: {}", s.id, re.as_str());
            }
        });
    }
    assert!(set.names().is_some(), "the combined name globs build");
    assert!(
        set.cmdlines().is_some(),
        "the combined cmdline regexes build"
    );
}

#[test]
fn a_local_regex_over_its_size_limit_is_an_error_at_load() {
    // Only a compile finds this (the syntax is fine): files read at run time are compiled.
    let rest = "match = { cmdline = '\\w{1000}\\w{1000}\\w{1000}' }\n";
    assert!(
        one_error(rest).starts_with("7: bad cmdline regex"),
        "{}",
        one_error(rest)
    );
}

/// Every name tried: each glob's own text (wildcards filled in, upper- and mixed-case
/// forms, a Kelvin sign for each `k`, a long s for each `s`), look-alikes, and the names
/// of the processes running on this host.
fn names_to_try(set: &SignatureSet) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in &set.signatures {
        s.matcher.visit(&mut |p| {
            if let Predicate::Name { globs, .. } = p {
                for g in &globs.patterns {
                    let filled = g.replace('*', "Xy").replace('?', "q");
                    for n in [
                        filled.clone(),
                        filled.to_uppercase(),
                        filled
                            .chars()
                            .enumerate()
                            .map(|(i, c)| {
                                if i % 2 == 0 {
                                    c.to_ascii_uppercase()
                                } else {
                                    c
                                }
                            })
                            .collect(),
                        filled.replace('k', "\u{212A}").replace('s', "\u{17F}"),
                        format!("{filled}é"),
                        format!("x{filled}"),
                        filled.chars().skip(1).collect(),
                    ] {
                        names.push(n);
                    }
                }
            }
        });
    }
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) {
            names.push(comm.trim_end().to_string());
        }
    }
    names
}

#[test]
fn combined_name_globs_agree_with_each_list_on_its_own() {
    let set = load_bundled().expect("bundled");
    let combined = set.names().expect("builds");
    let mut lists: Vec<(usize, GlobList)> = Vec::new();
    for s in &set.signatures {
        s.matcher.visit(&mut |p| {
            if let Predicate::Name { globs, index } = p {
                lists.push((*index, globs.clone()));
            }
        });
    }
    let names = names_to_try(&set);
    let mut matched = 0;
    let mut found = Vec::new();
    for n in &names {
        found.clear();
        combined
            .matches_into(n, &mut found)
            .expect("the unicode set builds");
        for (index, globs) in &lists {
            let index = *index;
            let alone = globs.is_match(n);
            let together = found.iter().any(|&g| combined.owner[g] == index);
            assert_eq!(alone, together, "name {n:?}, globs {:?}", globs.patterns);
            matched += usize::from(alone);
        }
    }
    // The names built from the globs match: the comparison is not vacuous.
    assert!(matched > names.len() / 4, "{matched} of {}", names.len());
}
