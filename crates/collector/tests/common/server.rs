//! The real `aupwatch-collector serve` on 127.0.0.1, for the tests that talk to it over HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_aupwatch-collector");

/// A running collector; killed and reaped on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` with `config`, on `listen` when given (else the config's, port 0 picking a free
/// port); returns once the collector logged the address it listens on.
pub fn start_on(config: &Path, listen: Option<SocketAddr>) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).arg("serve");
    if let Some(l) = listen {
        cmd.arg("--listen").arg(l.to_string());
    }
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start collector");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let line = lines.next().expect("a line").expect("utf8");
    let addr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

pub fn start(config: &Path) -> Server {
    start_on(config, None)
}
