//! Real daemons from Debian's packages, each in a network namespace of its own that has only
//! loopback, must be found by `aupwatch scan --json` run from the host's namespace, with the
//! right category and the right process: tor → tor, ngircd and an IRC client → irc,
//! squid / danted / microsocks → proxy, openvpn (server, and a client of it) → vpn.
//!
//! Configurations are in tests/common/daemons/; everything a daemon writes goes to the test's
//! temporary directory; every client connects only to 127.0.0.1 inside the namespace.

mod common;

use common::{fill, prerequisites, python3, scan, setup, skip, start_danted, Lab, Spawn};
use std::path::{Path, PathBuf};

const TORRC: &str = include_str!("common/daemons/torrc");
const NGIRCD_CONF: &str = include_str!("common/daemons/ngircd.conf");
const IRC_CLIENT: &str = include_str!("common/daemons/irc_client.py");
const SQUID_CONF: &str = include_str!("common/daemons/squid.conf");
const DANTED_CONF: &str = include_str!("common/daemons/danted.conf");
const OPENVPN_SERVER_CONF: &str = include_str!("common/daemons/openvpn-server.conf");

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn tor_relay_is_reported_as_tor() {
    const T: &str = "tor_relay_is_reported_as_tor";
    let bins = prerequisites(T, &["tor"]);
    let tor = &bins[0];
    let mut lab = Lab::new(T, "tor");
    let dir = lab.dir().join("tor");
    let torrc = lab.write("tor/torrc", &fill(TORRC, &dir));
    // An empty defaults file, so that no system-wide torrc-defaults applies.
    let defaults = lab.write("tor/torrc-defaults", "");
    let (torrc, defaults) = (torrc.to_string_lossy(), defaults.to_string_lossy());
    setup(
        &lab,
        "tor --verify-config",
        tor,
        &[
            "--verify-config",
            "--defaults-torrc",
            &defaults,
            "-f",
            &torrc,
        ],
    );
    let pid = lab.start(
        "tor",
        Spawn::new(tor).args(["--defaults-torrc", &*defaults, "-f", &*torrc]),
    );
    for port in [9050, 9001, 9030] {
        lab.wait_listening("tor", pid, "tcp", port);
    }

    let report = scan(&[]);
    report.expect(
        &lab,
        "tor relay (ORPort 9001, DirPort 9030, SocksPort 9050)",
        pid,
        "tor",
    );
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn ngircd_and_its_client_are_reported_as_irc() {
    const T: &str = "ngircd_and_its_client_are_reported_as_irc";
    let bins = prerequisites(T, &["ngircd"]);
    let Some(python) = python3() else {
        skip(T, "python3 is not installed");
    };
    let ngircd = &bins[0];
    let mut lab = Lab::new(T, "ircd");
    // ngircd drops root for "nobody", which must be able to write its pid file.
    let dir = lab.writable_dir("ngircd");
    let conf = lab.write("ngircd/ngircd.conf", &fill(NGIRCD_CONF, &dir));
    let client = lab.write("irc_client.py", IRC_CLIENT);
    let server = lab.start("ngircd", Spawn::new(ngircd).arg("-n").arg("-f").arg(&conf));
    lab.wait_listening("ngircd", server, "tcp", 6667);
    let user = lab.start(
        "irc-client",
        Spawn::new(&python).arg(&client).args(["6667", "aupwtest"]),
    );
    // Registered (RPL_WELCOME seen) and still connected.
    lab.wait_log("irc-client", "WELCOMED");
    lab.wait_connected("irc-client", user, 6667);

    let report = scan(&[]);
    report.expect(&lab, "ngircd", server, "irc");
    report.expect(&lab, "IRC client connected to ngircd", user, "irc");
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn squid_is_reported_as_proxy() {
    const T: &str = "squid_is_reported_as_proxy";
    let bins = prerequisites(T, &["squid"]);
    let squid = &bins[0];
    let mut lab = Lab::new(T, "squid");
    // squid runs as the "proxy" user: its logs and pid file must be writable for it.
    let dir = lab.writable_dir("squid");
    let conf = lab.write("squid/squid.conf", &fill(SQUID_CONF, &dir));
    let conf = conf.to_string_lossy();
    setup(&lab, "squid -k parse", squid, &["-k", "parse", "-f", &conf]);
    let pid = lab.start("squid", Spawn::new(squid).args(["-N", "-f", &*conf]));
    lab.wait_listening("squid", pid, "tcp", 3128);

    let report = scan(&[]);
    report.expect(&lab, "squid (http_port 3128)", pid, "proxy");
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn danted_is_reported_as_proxy() {
    const T: &str = "danted_is_reported_as_proxy";
    let bins = prerequisites(T, &["danted"]);
    let danted = &bins[0];
    let mut lab = Lab::new(T, "dante");
    let dir = lab.writable_dir("danted");
    let pid = start_danted(&mut lab, danted, &dir, &fill(DANTED_CONF, &dir));

    let report = scan(&[]);
    let finding = report.expect(&lab, "danted (SOCKS on 1080)", pid, "proxy");
    // danted's helper processes (negotiate/request/io children) are its children in the same
    // namespace: whatever the scanner folds into the finding must be among them.
    let tree = common::process_tree(pid);
    for r in finding["related_pids"].as_array().into_iter().flatten() {
        let r = r.as_u64().unwrap_or(0);
        assert!(
            tree.iter().any(|p| u64::from(*p) == r),
            "{T}: related pid {r} is not a descendant of danted {pid} ({tree:?})"
        );
    }
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn microsocks_is_reported_as_proxy() {
    const T: &str = "microsocks_is_reported_as_proxy";
    let bins = prerequisites(T, &["microsocks"]);
    let mut lab = Lab::new(T, "msocks");
    let pid = lab.start(
        "microsocks",
        Spawn::new(&bins[0]).args(["-i", "0.0.0.0", "-p", "1080"]),
    );
    lab.wait_listening("microsocks", pid, "tcp", 1080);

    let report = scan(&[]);
    report.expect(&lab, "microsocks (SOCKS5 on 1080)", pid, "proxy");
}

/// A throwaway PKI in the lab directory: ca.crt, server.crt/key, client.crt/key (P-256).
fn make_pki(lab: &Lab, openssl: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=aupwatch test CA",
    ]);
    setup(lab, "make the test CA", openssl, &ca);
    for (who, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let (key, csr, crt, ext) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.crt"),
            format!("{who}.ext"),
        );
        let subject = format!("/CN=aupwatch test {who}");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        setup(lab, &format!("make the {who} key"), openssl, &req);
        lab.write(
            &ext,
            &format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\nextendedKeyUsage={usage}\n"
            ),
        );
        setup(
            lab,
            &format!("sign the {who} certificate"),
            openssl,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// Starts an OpenVPN server (proto `udp` or `tcp-server`) on port 1194 in a tun device it does
/// not configure; returns (lab, openvpn path, server pid), or None when the test must skip.
///
/// `conf_name` matters: a config file named `server*.conf` is itself a server indicator, so
/// the UDP test names it otherwise and leaves detection to the process and its socket.
fn openvpn_server(test: &str, short: &str, proto: &str, conf_name: &str) -> (Lab, PathBuf, u32) {
    let bins = prerequisites(test, &["openvpn", "openssl"]);
    if !Path::new("/dev/net/tun").exists() {
        skip(
            test,
            "/dev/net/tun does not exist: openvpn cannot open a tun device",
        );
    }
    let (openvpn, openssl) = (bins[0].clone(), &bins[1]);
    let mut lab = Lab::new(test, short);
    make_pki(&lab, openssl);
    let conf = fill(OPENVPN_SERVER_CONF, lab.dir())
        .replace("@DEV@", "tun")
        .replace("@PROTO@", proto);
    let conf = lab.write(conf_name, &conf);
    let pid = lab.start(
        "openvpn-server",
        Spawn::new(&openvpn).arg("--config").arg(&conf),
    );
    let listen_proto = if proto == "udp" { "udp" } else { "tcp" };
    lab.wait_listening("openvpn-server", pid, listen_proto, 1194);
    lab.wait_log("openvpn-server", "Initialization Sequence Completed");
    (lab, openvpn, pid)
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn openvpn_udp_server_is_reported_as_vpn() {
    const T: &str = "openvpn_udp_server_is_reported_as_vpn";
    let (lab, _, server) = openvpn_server(T, "ovpnu", "udp", "tunnel.conf");
    let report = scan(&[]);
    report.expect(&lab, "openvpn server (udp/1194)", server, "vpn");
    // The tun device the server opened, in the lab's namespace.
    report.expect_interface(&lab, "tun0", "vpn");
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn openvpn_tcp_server_and_client_are_reported_as_vpn() {
    const T: &str = "openvpn_tcp_server_and_client_are_reported_as_vpn";
    let (mut lab, openvpn, server) = openvpn_server(T, "ovpnt", "tcp-server", "server.conf");
    let d = lab.dir().to_path_buf();
    let client = lab.start(
        "openvpn-client",
        Spawn::new(&openvpn)
            .args(["--client", "--dev", "tun", "--proto", "tcp-client"])
            .args(["--remote", "127.0.0.1", "1194", "--nobind"])
            .arg("--ca")
            .arg(d.join("ca.crt"))
            .arg("--cert")
            .arg(d.join("client.crt"))
            .arg("--key")
            .arg(d.join("client.key"))
            .args(["--remote-cert-tls", "server", "--disable-dco"])
            // Leave the client's tun device unconfigured too.
            .args(["--ifconfig-noexec", "--route-noexec", "--verb", "3"]),
    );
    // A real tunnel: the TLS handshake and the pushed options went through.
    lab.wait_log("openvpn-client", "Initialization Sequence Completed");
    lab.wait_connected("openvpn-client", client, 1194);

    let report = scan(&[]);
    report.expect(&lab, "openvpn server (tcp/1194)", server, "vpn");
    report.expect(
        &lab,
        "openvpn client connected to 127.0.0.1:1194",
        client,
        "vpn",
    );
}
