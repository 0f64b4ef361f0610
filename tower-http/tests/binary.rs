//! The `tower` binary as a user runs it: configuration errors, SIGTERM with a request in
//! flight, and a restart on the same file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn tower() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tower"));
    for var in [
        "PORT",
        "TOWER_BIND",
        "TOWER_STORE_URL",
        "TOWER_NATS_URL",
        "NATS_SERVER",
        "TOWER_METRICS_URL",
        "REDIS_SERVER",
        "RUST_LOG",
        "TOWER_ADMIN_TOKENS",
        "TOWER_ADMIN_TOKENS_FILE",
        "TOWER_ALLOW_UNAUTHENTICATED",
        "TOWER_LOG_FORMAT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Starts the binary on port 0 and reads its address from the log line.
fn start(db: &std::path::Path) -> (Child, SocketAddr) {
    start_with(tower().env("TOWER_STORE_URL", format!("sqlite://{}", db.display())))
}

fn start_with(cmd: &mut Command) -> (Child, SocketAddr) {
    let mut child = cmd
        .env("PORT", "0")
        .env("TOWER_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tower");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("tower exited before listening:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().parse().expect("address");
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn request(addr: SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn configuration_errors_name_the_variable_and_exit_2() {
    for (var, value) in [
        ("PORT", "not-a-port"),
        ("TOWER_BIND", "everywhere"),
        ("TOWER_STORE_URL", "mysql://root:pw@db/x"),
    ] {
        let out = tower().env(var, value).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert!(stderr.contains(var), "{var} named in: {stderr}");
        assert!(!stderr.contains("pw@"), "the password is not printed: {stderr}");
    }
    // A PostgreSQL that is not there: a clear error naming where, never the password.
    let out = tower()
        .env("TOWER_STORE_URL", "postgres://tower:secret@127.0.0.1:1/tower?connect_timeout=2")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to PostgreSQL at 127.0.0.1:1/tower"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
    let out = tower().arg("--help").output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("TOWER_STORE_URL")
    );
}

/// On an address other machines reach, the binary refuses to serve without admin tokens, and
/// says which settings fix it; with tokens from a file it serves, asks for them, and never
/// prints a secret.
#[test]
fn other_machines_are_served_only_with_admin_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let out = tower().env("TOWER_BIND", "0.0.0.0").env("TOWER_STORE_URL", &db).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("TOWER_ADMIN_TOKENS") && stderr.contains("TOWER_ALLOW_UNAUTHENTICATED=1"),
        "{stderr}"
    );
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# operators\nops:ops-secret-0123456789abcdef\n").unwrap();
    let mut cmd = tower();
    cmd.env("TOWER_BIND", "0.0.0.0")
        .env("TOWER_STORE_URL", &db)
        .env("TOWER_ADMIN_TOKENS_FILE", &tokens);
    let mut child = cmd
        .env("PORT", "0")
        .env("TOWER_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tower");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let port: u16 = loop {
        let line = lines.next().expect("tower exited before listening").unwrap();
        log.push_str(&line);
        log.push('\n');
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().rsplit(':').next().unwrap().parse().expect("port");
        }
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let refused =
        request(addr, "GET /api/apps HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("www-authenticate: bearer"), "{refused}");
    let ok = request(
        addr,
        "GET /api/apps HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ops-secret-0123456789abcdef\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    sigterm(&child);
    for line in lines.map_while(Result::ok) {
        log.push_str(&line);
        log.push('\n');
    }
    child.wait().unwrap();
    assert!(log.contains("\"ops\""), "the token's name is in the config line: {log}");
    assert!(!log.contains("ops-secret"), "the secret never is: {log}");
}

/// Secrets in every URL form Tower is configured with (userinfo with `/`, `?` or `#`, and
/// `?password=` parameters) never reach its output: the start-up line, the connection errors,
/// at debug level.
#[test]
fn no_url_form_prints_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let cases: [(&str, String); 6] = [
        (
            "TOWER_STORE_URL",
            "postgres://tower:pg/s3cret@127.0.0.1:1/tower?connect_timeout=1".into(),
        ),
        ("TOWER_STORE_URL", "postgres://tower:pg#s3cret@127.0.0.1:1/tower".into()),
        (
            "TOWER_STORE_URL",
            "postgres://127.0.0.1:1/tower?password=s3cret&connect_timeout=1".into(),
        ),
        ("TOWER_METRICS_URL", "redis://:r3d?s3cret@127.0.0.1:1/0".into()),
        ("TOWER_METRICS_URL", "redis://127.0.0.1:1/0?password=s3cret".into()),
        ("TOWER_NATS_URL", "nats://u:n4ts/s3cret@127.0.0.1:1".into()),
    ];
    for (var, url) in cases {
        let mut cmd = tower();
        if var != "TOWER_STORE_URL" {
            cmd.env("TOWER_STORE_URL", &db);
        }
        let out = cmd.env(var, &url).env("TOWER_LOG", "debug").env("PORT", "0").output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{var}={url}: nothing listens there: {all}");
        assert!(!all.contains("s3cret"), "{var}={url} printed its secret:\n{all}");
    }
}

/// `TOWER_LOG_FORMAT=json`: every line the binary logs is one JSON object with its level and
/// message; the request lines at debug level carry their fields.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tower()
        .env("TOWER_STORE_URL", format!("sqlite://{}", dir.path().join("t.db").display()))
        .env("TOWER_LOG_FORMAT", "json")
        .env("TOWER_LOG", "info,flagtower_http=debug")
        .env("PORT", "0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let port: u16 = loop {
        let line = lines.next().expect("tower exited before listening").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let message = v["fields"]["message"].as_str().unwrap_or_default().to_owned();
        seen.push(v);
        if let Some(rest) = message.split("listening on http://").nth(1) {
            break rest.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    let res = request(
        ([127, 0, 0, 1], port).into(),
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let request_line = loop {
        let line = lines.next().expect("the request line").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["fields"]["message"] == "request" {
            break v;
        }
    };
    assert_eq!(request_line["level"], "DEBUG");
    assert_eq!(request_line["fields"]["path"], "/healthz");
    assert_eq!(request_line["fields"]["status"], 200);
    assert!(seen.iter().all(|v| v["level"].is_string() && v["timestamp"].is_string()));
    sigterm(&child);
    child.wait().unwrap();
}

#[test]
fn an_unusable_database_path_is_a_clear_error() {
    let out = tower()
        .env("TOWER_STORE_URL", "sqlite:///nonexistent-dir/x/tower.db")
        .env("PORT", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("/nonexistent-dir/x/tower.db"), "{stderr}");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tower.db");
    let (child, addr) = start(&db);

    // Send the headers and half the body, then SIGTERM, then the rest.
    let body = r#"{"title": "in flight"}"#;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
    s.write_all(&body.as_bytes()[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(&body.as_bytes()[5..]).unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&reply).contains("}}") {
        let n = s.read(&mut buf).expect("a response to the in-flight request");
        assert!(n > 0, "connection closed without a response: {}", String::from_utf8_lossy(&reply));
        reply.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    drop(s);

    let mut child = child;
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status}");

    let (mut child, addr) = start(&db);
    let apps =
        request(addr, "GET /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert!(apps.contains("\"title\":\"in flight\""), "{apps}");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_libpq_variables_alone_select_postgresql() {
    use flagtower_testkit::TestDatabase;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(db) = rt.block_on(TestDatabase::create()) else {
        return;
    };
    // The seed's sample configuration: PG* variables, no URL.
    let opts = flagtower_adapters::postgres::PostgresOptions::from_url(db.url()).unwrap();
    let target = opts.target(); // "host:port/db (user u)"
    let (hostport, rest) = target.split_once('/').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let dbname = rest.split(' ').next().unwrap();
    let user = rest.rsplit_once("user ").unwrap().1.trim_end_matches(')');
    let (mut child, addr) = start_with(
        tower()
            .env("PGHOST", host)
            .env("PGPORT", port)
            .env("PGDATABASE", dbname)
            .env("PGUSER", user),
    );
    let body = r#"{"title": "pg!"}"#;
    let created = request(
        addr,
        &format!(
            "POST /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    // It is in PostgreSQL.
    let store = rt.block_on(flagtower_adapters::postgres::PostgresStore::open(&opts)).unwrap();
    let apps = rt.block_on(flagtower_core::Store::list_apps(&store)).unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].title.as_str(), "pg!");
}

/// A private nats-server with JetStream and a token, killed on drop; `None` when there is no
/// nats-server binary (the tests package's harness says so loudly and fails under
/// `TOWER_REQUIRE_SERVICES=1`; here the binary-level checks just skip).
/// The process, its port, and its store directory (kept until the server is gone).
struct Nats(Child, u16, tempfile::TempDir, String, String);

impl Nats {
    fn start(token: &str) -> Option<Self> {
        let binary = std::env::var("TOWER_TEST_NATS_SERVER").ok().or_else(|| {
            ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
                .into_iter()
                .find(|p| std::path::Path::new(p).is_file())
                .map(str::to_owned)
        });
        let Some(binary) = binary else {
            assert!(
                std::env::var("TOWER_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "nats-server not found"
            );
            eprintln!("!!!!! SKIPPED: nats-server not found");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let child = Self::spawn(&binary, port, token, dir.path());
        Some(Self(child, port, dir, binary, token.to_owned()))
    }

    fn spawn(binary: &str, port: u16, token: &str, dir: &std::path::Path) -> Child {
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "--auth", token, "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn restart(&mut self) {
        self.stop();
        self.0 = Self::spawn(&self.3, self.1, &self.4, self.2.path());
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn nats_from_the_seeds_variables_and_a_wrong_token_refused_at_start() {
    let Some(nats) = Nats::start("myToken") else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", nats.1);
    // A wrong token: a clear error at start, exit 1, the token never printed.
    let out = tower()
        .env("TOWER_STORE_URL", format!("sqlite://{}", dir.path().join("t.db").display()))
        .env("NATS_SERVER", &url)
        .env("SDK_KEY", "notTheToken")
        .env("PORT", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(!stderr.contains("notTheToken"), "{stderr}");
    // The seed's variables, right token: Tower starts and serves.
    let (mut child, addr) = start_with(
        tower()
            .env("TOWER_STORE_URL", format!("sqlite://{}", dir.path().join("t.db").display()))
            .env("NATS_SERVER", &url)
            .env("SDK_KEY", "myToken"),
    );
    let health =
        request(addr, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.contains("\"publisher\":\"ok\""),
        "{health}"
    );
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_change_committed_before_a_sigkill_is_published_after_the_restart() {
    let Some(mut nats) = Nats::start("tok") else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let url = format!("nats://127.0.0.1:{}", nats.1);
    let tower_cmd = || {
        let mut cmd = tower();
        cmd.env("TOWER_STORE_URL", format!("sqlite://{}", db.display()))
            .env("TOWER_NATS_URL", &url)
            .env("TOWER_NATS_TOKEN", "tok");
        cmd
    };
    let (mut child, addr) = start_with(&mut tower_cmd());
    let post = |path: &str, body: &str| {
        request(
            addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    assert!(post("/api/apps", r#"{"title": "a"}"#).starts_with("HTTP/1.1 201"));
    assert!(post("/api/apps/1/flags", r#"{"title": "f"}"#).starts_with("HTTP/1.1 201"));
    // NATS goes away; a change commits but cannot be published; Tower is killed outright.
    nats.stop();
    let toggled = request(
        addr,
        "PATCH /api/flags/1/toggle HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
    );
    assert!(toggled.starts_with("HTTP/1.1 200"), "{toggled}");
    child.kill().unwrap();
    child.wait().unwrap();
    // The outbox, read beside the running Tower with a plain connection (a `SqliteStore` would
    // refuse a file another Tower holds).
    let pending = || -> i64 {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row("SELECT count(DISTINCT app_id) FROM outbox", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(pending(), 1, "the toggle waits in the outbox");
    // NATS and Tower come back: the outbox drains, which happens only on JetStream's ack.
    nats.restart();
    let (mut child, _) = start_with(&mut tower_cmd());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if pending() == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the committed change was never published");
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_redis_without_time_series_is_refused_at_start_with_what_to_run() {
    use flagtower_testkit::RedisServer;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(plain) = rt.block_on(RedisServer::start_plain()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut child = tower()
        .env("TOWER_STORE_URL", format!("sqlite://{}", dir.path().join("t.db").display()))
        .env(
            "REDIS_SERVER",
            format!(r#"{{"socket":{{"host":"127.0.0.1","port":{}}}}}"#, plain.port),
        )
        .env("PORT", "0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A Tower that wrongly starts would never exit: give it 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("tower started on a Redis without time-series support");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has no time-series module")
            && stderr.contains(&format!("127.0.0.1:{}", plain.port)),
        "{stderr}"
    );
    assert!(
        stderr.contains("Redis 8") && stderr.contains("redistimeseries.so"),
        "says what to run instead: {stderr}"
    );
}
