//! `kybern serve` runs with the allocator set to return freed memory at once (it restarts itself
//! with the setting), unless the operator set it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

/// A directory removed when dropped.
struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The environment of a `kybern serve` process once it is serving, with `env` set for it.
fn serve_environment(tag: &str, env: &[(&str, &str)]) -> String {
    let dir = Dir(std::env::temp_dir().join(format!("kybern-alloc-{tag}-{}", std::process::id())));
    let policies = dir.0.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--policies")
        .arg(&policies)
        .arg("--cert-dir")
        .arg(dir.0.join("certs"))
        .env_remove("MIMALLOC_PURGE_DELAY")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ca = dir.0.join("certs").join("ca.crt");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ca.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The restarted process is the one serving: it accepts connections on its port.
    let accepts = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        || (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    let environ = std::fs::read(format!("/proc/{}/environ", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    assert!(ca.exists(), "the server did not start");
    assert!(
        accepts,
        "the server does not accept connections on port {port}"
    );
    String::from_utf8_lossy(&environ.unwrap()).replace('\0', "\n")
}

#[test]
fn serve_returns_freed_memory_at_once() {
    let env = serve_environment("default", &[]);
    assert!(env.lines().any(|l| l == "MIMALLOC_PURGE_DELAY=0"), "{env}");
}

#[test]
fn an_operator_setting_is_kept() {
    let env = serve_environment("set", &[("MIMALLOC_PURGE_DELAY", "250")]);
    assert!(
        env.lines().any(|l| l == "MIMALLOC_PURGE_DELAY=250"),
        "{env}"
    );
    assert!(!env.lines().any(|l| l == "MIMALLOC_PURGE_DELAY=0"), "{env}");
}
