//! What the acceptance tests share: finding `terraform` and the `hallpass`
//! binary, a throwaway dev server, and a Terraform working directory whose
//! CLI configuration points `hallpass/hallpass` at the provider under test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The admin token of the dev server under test.
pub const ROOT_TOKEN: &str = "hp_tfAccR00t-Lk3vN8xQw2Yb7Hc5Tz9Pm4Jd6Fg1Su0Rb";
pub const COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
pub const COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// The provider binary Cargo built for these tests.
pub fn provider_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_terraform-provider-hallpass"))
}

/// `terraform` from the PATH, or `None` (after saying so) to skip. Under
/// `CI=true` a missing Terraform fails the test instead.
pub fn terraform() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("terraform"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
        assert!(
            !ci,
            "terraform is not on the PATH: CI=true needs Terraform >= 1.10 for the provider's acceptance tests"
        );
        eprintln!("note: skipping, terraform is not on the PATH (install Terraform >= 1.10 to run this test)");
    }
    found
}

/// The `hallpass` binary of this workspace, built (or found up to date) by
/// Cargo first. A test cannot depend on another package's binary
/// (`CARGO_BIN_EXE_*` names only this package's), so it asks Cargo to build
/// it into the same target directory as the tests.
pub fn hallpass_bin() -> PathBuf {
    // The provider binary is target/<profile dir>/terraform-provider-hallpass;
    // `hallpass` is built with the same profile, to land beside it.
    let profile_dir = provider_bin()
        .parent()
        .map(Path::to_path_buf)
        .expect("the provider binary has a directory");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(name) => name.to_string(),
    };
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--profile",
            &profile,
            "-p",
            "hallpass-cli",
            "--bin",
            "hallpass",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build for the hallpass binary");
    assert!(status.success(), "cargo build -p hallpass-cli failed");
    let bin = profile_dir.join("hallpass");
    assert!(bin.is_file(), "no hallpass binary at {}", bin.display());
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A `hallpass server --dev` on a free port; killed when dropped.
pub struct HallpassServer {
    child: Child,
    pub addr: String,
    /// The data directory, and the certificate files of an HTTPS server.
    _files: tempfile::TempDir,
}

impl HallpassServer {
    /// A dev server on plain HTTP.
    pub fn start() -> Self {
        let files = tempfile::tempdir().expect("temp dir");
        let mut server = Self::spawn(files, &[], "http");
        let listen = server.listen().to_string();
        server.wait_until(|| http_get(&listen, "/healthz").is_some_and(|(status, _)| status == 200));
        server
    }

    /// A dev server on HTTPS with a certificate for 127.0.0.1 from a CA of
    /// its own; returns the server and the CA certificate's PEM.
    pub fn start_tls() -> (Self, String) {
        let (ca_pem, cert_pem, key_pem) = private_ca_certificate();
        let files = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
        std::fs::write(&cert, cert_pem).expect("write cert.pem");
        std::fs::write(&key, key_pem).expect("write key.pem");
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let mut server = Self::spawn(files, &["--tls-cert", &cert, "--tls-key", &key], "https");
        // The listener is the last thing the server starts: once it takes
        // connections, the server is up.
        let listen = server.listen().to_string();
        server.wait_until(|| TcpStream::connect(&listen).is_ok());
        (server, ca_pem)
    }

    fn spawn(files: tempfile::TempDir, args: &[&str], scheme: &str) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new(hallpass_bin())
            .args([
                "server",
                "--dev",
                "--dev-root-token",
                ROOT_TOKEN,
                "--listen",
                &listen,
                "--data-dir",
            ])
            .arg(files.path().join("data"))
            .args(args)
            .env_remove("HALLPASS_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hallpass server");
        Self {
            child,
            addr: format!("{scheme}://{listen}"),
            _files: files,
        }
    }

    /// The `host:port` the server listens on.
    fn listen(&self) -> &str {
        self.addr.split_once("://").map_or(self.addr.as_str(), |(_, rest)| rest)
    }

    fn wait_until(&mut self, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("hallpass server exited during start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "hallpass server did not become ready within 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GETs `path` (no token) from a plain-HTTP server and parses the JSON
    /// body.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.listen(), path).expect("the server answers");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("a JSON body")
    }
}

impl Drop for HallpassServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate it signed for 127.0.0.1: (CA PEM, server
/// certificate PEM, server key PEM).
fn private_ca_certificate() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Hallpass test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server params");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

impl HallpassServer {
    /// A call with the root token to a plain-HTTP server, past the
    /// provider: (status, body).
    pub fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, String) {
        self.call_as(ROOT_TOKEN, method, path, body)
    }

    /// A call with `token` to a plain-HTTP server: (status, body).
    pub fn call_as(&self, token: &str, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, String) {
        let host = self.listen();
        let body = body.map(ToString::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = TcpStream::connect(host).expect("connect to the server");
        stream.write_all(request.as_bytes()).expect("send the request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read the answer");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, body.to_string())
    }
}

/// A minimal HTTP/1.1 GET, so that the expected values do not come through
/// the provider's own client.
fn http_get(host: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(host).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A Terraform working directory with `main.tf`, its own CLI configuration
/// (the dev override), home and log file.
pub struct Workspace {
    terraform: PathBuf,
    dir: tempfile::TempDir,
}

/// What a Terraform command did.
pub struct Run {
    pub success: bool,
    /// The exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stderr with every run of whitespace made one space: Terraform wraps
    /// diagnostic text to the terminal's width.
    pub fn stderr_words(&self) -> String {
        self.stderr.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    pub fn assert_success(&self, what: &str) {
        assert!(self.success, "{what} failed:\n{}\n{}", self.stdout, self.stderr);
    }
}

impl Workspace {
    pub fn new(terraform: &Path, main_tf: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let provider_dir = provider_bin()
            .parent()
            .map(Path::to_path_buf)
            .expect("the provider binary has a directory");
        let cli_config = format!(
            "provider_installation {{\n  dev_overrides {{\n    \"registry.terraform.io/hallpass/hallpass\" = {:?}\n  }}\n  direct {{}}\n}}\n",
            provider_dir.display().to_string()
        );
        std::fs::write(dir.path().join("terraformrc"), cli_config).expect("write the CLI configuration");
        std::fs::write(dir.path().join("main.tf"), main_tf).expect("write main.tf");
        std::fs::create_dir(dir.path().join("home")).expect("create home");
        Self {
            terraform: terraform.to_path_buf(),
            dir,
        }
    }

    /// Runs `terraform ARGS` in the directory with `env` on top of a clean
    /// Terraform environment; Terraform's debug log goes to `tf.log`.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let root = self.dir.path();
        let output: Output = Command::new(&self.terraform)
            .args(args)
            .current_dir(root)
            .env("TF_CLI_CONFIG_FILE", root.join("terraformrc"))
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("HOME", root.join("home"))
            .env("TF_DATA_DIR", root.join(".terraform"))
            .env("TF_LOG", "debug")
            .env("TF_LOG_PATH", root.join("tf.log"))
            .env_remove("HALLPASS_ADDR")
            .env_remove("HALLPASS_TOKEN")
            .env_remove("TF_DISABLE_PLUGIN_TLS")
            .env_remove("TF_CLI_ARGS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run terraform");
        Run {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Writes a file into the working directory.
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write a file in the workspace");
    }

    /// A file of the working directory (`terraform.tfstate`), or "".
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Terraform's debug log of every command run so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tf.log")).unwrap_or_default()
    }
}

/// The provider binary started without Terraform's environment.
pub fn run_provider_by_hand() -> Output {
    Command::new(provider_bin())
        .env_remove(COOKIE_KEY)
        .stdin(Stdio::null())
        .output()
        .expect("run the provider")
}

/// The first line `child` writes to stdout (the handshake), within 10 s.
pub fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a handshake line within 10 s");
    line.trim_end().to_string()
}
