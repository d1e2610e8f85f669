//! A throwaway OpenSSH server for the tests that log in with certificates
//! Hallpass issues: its own sshd on a free port of 127.0.0.1 that trusts one
//! user CA and reads one KRL, and the real `ssh` client pointed at it.
//! Shared by the ssh provider's tests and the end-to-end suite (which
//! includes this file by path).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// sshd by absolute path (it refuses to re-execute itself otherwise).
pub fn sshd_bin() -> PathBuf {
    if let Ok(path) = std::env::var("HALLPASS_TEST_SSHD_BIN")
        && !path.trim().is_empty()
    {
        return PathBuf::from(path);
    }
    let default = PathBuf::from("/usr/sbin/sshd");
    if default.is_file() {
        return default;
    }
    let message =
        "OpenSSH's sshd is needed for this test: run scripts/test (it installs it) or set HALLPASS_TEST_SSHD_BIN";
    eprintln!("{message}");
    std::panic::resume_unwind(Box::new(message))
}

pub fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap()
}

pub fn login_user() -> String {
    let out = run(Command::new("id").arg("-un"));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A throwaway sshd on a free port of 127.0.0.1, killed when dropped.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Sshd {
    /// Trusts the CA line `anchor` and reads its KRL at `krl`. Only
    /// certificates log in: no authorized_keys, no passwords.
    pub fn start(anchor: &str, krl: &Path) -> Self {
        let bin = sshd_bin();
        let dir = tempfile::tempdir().unwrap();
        if nix_is_root() {
            // sshd's privilege separation directory.
            fs::create_dir_all("/run/sshd").unwrap();
        }
        let host_key = dir.path().join("host_key");
        let out = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key));
        assert!(
            out.status.success(),
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(dir.path().join("ca.pub"), format!("{anchor}\n")).unwrap();
        let d = dir.path().to_path_buf();
        let d = d.display();
        let base = format!(
            "HostKey {d}/host_key\nPidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nAuthorizedKeysFile none\nAuthorizedPrincipalsFile none\n\
             TrustedUserCAKeys {d}/ca.pub\nRevokedKeys {krl}\nAllowTcpForwarding yes\nLogLevel VERBOSE\n\
             MaxStartups 100:30:200\n",
            krl = krl.display()
        );
        // OpenSSH >= 9.8 penalises addresses with failed logins, which
        // these tests make on purpose; older ones reject the keyword.
        let probe = dir.path().join("probe_config");
        fs::write(
            &probe,
            format!("{base}ListenAddress 127.0.0.1:22\nPerSourcePenalties no\n"),
        )
        .unwrap();
        let penalties = run(Command::new(&bin).arg("-t").arg("-f").arg(&probe)).status.success();
        for _attempt in 0..5 {
            let port = free_port();
            let mut config = format!("{base}ListenAddress 127.0.0.1:{port}\n");
            if penalties {
                config.push_str("PerSourcePenalties no\n");
            }
            fs::write(dir.path().join("sshd_config"), &config).unwrap();
            let mut child = Command::new(&bin)
                .arg("-D")
                .arg("-f")
                .arg(dir.path().join("sshd_config"))
                .arg("-E")
                .arg(dir.path().join("sshd.log"))
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            if wait_ready(&mut child, port) {
                return Sshd { dir, port, child };
            }
            // Another process took the port first: try another.
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
        panic!("sshd did not start:\n{log}");
    }

    pub fn known_hosts(&self) -> PathBuf {
        let path = self.dir.path().join("known_hosts");
        let host = fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let fields: Vec<&str> = host.split_whitespace().take(2).collect();
        fs::write(&path, format!("[127.0.0.1]:{} {}\n", self.port, fields.join(" "))).unwrap();
        path
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// `ssh -i key -o CertificateFile=cert user@127.0.0.1 args...`.
    pub fn ssh(&self, key: &Path, cert: &Path, user: &str, extra: &[&str], command: &[&str]) -> Output {
        let mut ssh = Command::new("ssh");
        ssh.args(["-F", "/dev/null", "-i"])
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts().display()))
            .args(["-o", "ConnectTimeout=10", "-p", &self.port.to_string()])
            .args(extra)
            .arg(format!("{user}@127.0.0.1"))
            .args(command);
        run(&mut ssh)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether sshd answers on `port` before it exits or 10 s pass.
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if banner(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Whether sshd on `port` sends its `SSH-2.0-` banner: the connection's
/// own sshd process is then up, and done with the test's files.
fn banner(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut first = [0u8; 4];
    stream.read_exact(&mut first).is_ok() && &first == b"SSH-"
}

fn nix_is_root() -> bool {
    login_user() == "root"
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
