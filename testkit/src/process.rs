//! Programs run as users run them: the `tower` binary, and drivers of real SDKs.

use std::path::Path;

use serde_json::Value;

use crate::http::Client;

/// The `tower` binary, run as a user runs it, on a free port; killed when dropped.
pub struct TowerProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl TowerProcess {
    /// Starts `target/<profile>/tower` (built beside this test) with `env` on a free port, and
    /// waits until it listens.
    pub fn start(env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let exe = std::env::current_exe().expect("test executable");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let binary = dir.join(format!("tower{}", std::env::consts::EXE_SUFFIX));
        assert!(
            binary.is_file(),
            "{} is not built: run the workspace's tests (./scripts/test), which build it",
            binary.display()
        );
        let mut cmd = std::process::Command::new(&binary);
        for var in [
            "TOWER_STORE_URL",
            "TOWER_NATS_URL",
            "NATS_SERVER",
            "TOWER_METRICS_URL",
            "REDIS_SERVER",
            "PGHOST",
            "PGDATABASE",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("PORT", "0").env("TOWER_LOG", "info").stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tower");
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = String::new();
        let base = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("tower exited before listening:\n{seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break format!("http://{}", rest.trim());
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }

    /// A client for it.
    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }
}

impl Drop for TowerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A driver of a real SDK in a child process, speaking one JSON line each way
/// (`tests/tailslide/driver.py`, `tests/ofrep/*_driver.*`).
pub struct Driver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    answers: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Driver {
    /// Runs `program args…`.
    pub fn start(program: &std::ffi::OsStr, args: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program:?}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let answers = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, stdin, answers }
    }

    /// Sends one command; its answer, which must say `ok`.
    pub async fn call(&mut self, cmd: Value) -> Value {
        use tokio::io::AsyncWriteExt;
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await.expect("write to the driver");
        self.stdin.flush().await.expect("flush the driver");
        let line =
            tokio::time::timeout(std::time::Duration::from_secs(30), self.answers.next_line())
                .await
                .unwrap_or_else(|_| panic!("no answer to {cmd} within 30 s"))
                .expect("read the driver")
                .unwrap_or_else(|| panic!("the driver exited on {cmd}"));
        let answer: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(answer["ok"], true, "{cmd} → {answer}");
        answer
    }

    /// Waits for it to exit.
    pub async fn wait(mut self) {
        let _ = self.child.wait().await;
    }
}
