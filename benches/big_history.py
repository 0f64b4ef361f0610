#!/usr/bin/env python3
"""Costs that follow the request, not the history: each route below and a live-feed wake-up,
measured on an almost empty database (1 app, 1 flag, 600 log entries: enough that every route
answers a full page), then again after the same database grew to 10 000 apps, 100 000 flags and
1 000 000 log entries. Prints both and the ratio.

    cargo build --release -p flagtower-http --bin tower
    python3 benches/big_history.py --store sqlite
    python3 benches/big_history.py --store postgres   # TOWER_TEST_POSTGRES_URL or local trust auth

The history is written with SQL, copying the rows Tower itself wrote for the first flag, so it
takes seconds, not the hours a million API calls would. The read model is off
(TOWER_READ_MODEL_BYTES=0): this measures the store. Reads are driven by wrk (8 connections);
the feed wake-up is the time from a toggle's answer to its log entry on /api/stream.
"""
import argparse, http.client, json, os, re, shutil, socket, subprocess, sys, tempfile, time

APPS, FLAGS_PER_APP, LOGS_PER_FLAG = 10_000, 10, 10


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"tower did not listen on {port}")


def call(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"content-type": "application/json"})
    r = c.getresponse(); data = r.read(); c.close()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {data[:200]!r}")
    return json.loads(data) if data else None


class Tower:
    def __init__(self, binary, store_url):
        self.port = free_port()
        env = dict(os.environ, TOWER_STORE_URL=store_url, TOWER_BIND="127.0.0.1",
                   PORT=str(self.port), TOWER_READ_MODEL_BYTES="0", TOWER_RATE_LIMIT="off",
                   RUST_LOG="warn")
        self.proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.terminate(); self.proc.wait(30)


def wrk(port, path, seconds):
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency",
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    def ms(tag):
        m = re.search(rf"^\s+{tag}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if "Non-2xx" in out:
        raise SystemExit(f"errors from {path}:\n{out}")
    return rps, ms("50%"), ms("99%")


def feed_wakeup(port, flag, n=50):
    """Toggle → the toggle's log entry on /api/stream, n times; the median and p90 in ms."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    f = s.makefile("rb")
    def next_event():
        name = None
        while True:
            line = f.readline().decode().rstrip("\r\n")
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name:
                data = line[5:].strip()
                if re.fullmatch(r"[0-9a-fA-F]+", data):  # a chunk-size line, not data
                    continue
                return name, data
    while next_event()[0] != "hello":
        pass
    conn = http.client.HTTPConnection("127.0.0.1", port)
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("PATCH", f"/api/flags/{flag}/toggle", headers={"content-type": "application/json"})
        r = conn.getresponse(); r.read()
        while True:
            name, data = next_event()
            if name == "log" and json.loads(data).get("flag_id") == flag:
                break
        took.append((time.perf_counter() - t0) * 1000)
    s.close(); conn.close()
    took.sort()
    return took[len(took) // 2], took[int(len(took) * 0.9)]


def settle(port):
    """Waits for the start-up work (every ruleset republished, every flag's metrics series
    prepared) to finish: until the store's ruleset reads stop growing. Returns the
    seconds it took."""
    started, last = time.time(), None
    while True:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/metrics"); text = c.getresponse().read().decode(); c.close()
        now = sum(float(m) for m in re.findall(
            r'^tower_store_operation_duration_seconds_count\{op="ruleset"\} (\S+)$', text, re.M))
        if now == last:
            return time.time() - started
        last = now
        time.sleep(1)


def measure(port, app, flag, seconds):
    out = {}
    for label, path in [("GET /api/flags/:id", f"/api/flags/{flag}"),
                        ("GET /api/logs", "/api/logs"),
                        ("GET /api/logs/:appId", f"/api/logs/{app}"),
                        ("GET /api/logs?limit=50", "/api/logs?limit=50")]:
        out[label] = wrk(port, path, seconds)
    out["feed wake-up (toggle → event)"] = feed_wakeup(port, flag)
    return out


def grow_sqlite(path):
    import sqlite3
    db = sqlite3.connect(path)
    cols = [r[1] for r in db.execute("PRAGMA table_info(flags)") if r[1] != "id"]
    series = lambda n: f"(WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {n}) SELECT n FROM g)"
    db.execute("BEGIN")
    db.execute(f"INSERT INTO apps (title, title_key, created_at, updated_at) "
               f"SELECT 'app-' || n, 'app-' || n, created_at, updated_at FROM {series(APPS - 1)}, "
               f"(SELECT created_at, updated_at FROM apps WHERE id = 1)")
    sel = ", ".join({"app_id": "a.id", "title": "'flag-' || k.n", "title_key": "'flag-' || k.n"}.get(c, "f." + c) for c in cols)
    db.execute(f"INSERT INTO flags ({', '.join(cols)}) SELECT {sel} FROM {series(FLAGS_PER_APP)} k, apps a, flags f "
               f"WHERE f.id = 1 AND NOT (a.id = 1 AND k.n = 1) ORDER BY k.n, a.id")
    lcols = [r[1] for r in db.execute("PRAGMA table_info(logs)") if r[1] != "id"]
    lsel = ", ".join({"flag_id": "f.id", "app_id": "f.app_id", "flag_title": "f.title"}.get(c, "l." + c) for c in lcols)
    db.execute(f"INSERT INTO logs ({', '.join(lcols)}) SELECT {lsel} FROM {series(LOGS_PER_FLAG)} k, flags f, "
               f"(SELECT * FROM logs WHERE id = 2) l ORDER BY k.n, f.id")
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("apps", "flags", "logs")]
    db.close()
    return counts


def psql(url, sql):
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", url, "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def grow_postgres(url):
    cols = psql(url, "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns "
                     "WHERE table_name = 'flags' AND column_name <> 'id'").split(",")
    lcols = psql(url, "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns "
                      "WHERE table_name = 'logs' AND column_name <> 'id'").split(",")
    sel = ", ".join({"app_id": "a.id", "title": "'flag-' || k", "title_key": "'flag-' || k"}.get(c, "f." + c) for c in cols)
    lsel = ", ".join({"flag_id": "f.id", "app_id": "f.app_id", "flag_title": "f.title"}.get(c, "l." + c) for c in lcols)
    psql(url, f"""
      BEGIN;
      INSERT INTO apps (title, title_key, created_at, updated_at)
        SELECT 'app-' || g, 'app-' || g, now(), now() FROM generate_series(1, {APPS - 1}) g;
      INSERT INTO flags ({', '.join(cols)}) SELECT {sel} FROM generate_series(1, {FLAGS_PER_APP}) k, apps a, flags f
        WHERE f.id = 1 AND NOT (a.id = 1 AND k = 1) ORDER BY k, a.id;
      INSERT INTO logs ({', '.join(lcols)}) SELECT {lsel} FROM generate_series(1, {LOGS_PER_FLAG}) k, flags f,
        (SELECT * FROM logs WHERE id = 2) l ORDER BY k, f.id;
      COMMIT;
      ANALYZE;""")
    return [int(psql(url, f"SELECT count(*) FROM {t}")) for t in ("apps", "flags", "logs")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--tower", default="target/release/tower")
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    admin = None
    if a.store == "sqlite":
        url = f"sqlite://{tmp}/big.db"
        grow = lambda: grow_sqlite(f"{tmp}/big.db")
    else:
        admin = os.environ.get("TOWER_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        name = f"tower_big_{os.getpid()}"
        psql(admin, f"CREATE DATABASE {name}")
        url = re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", admin, count=1) if admin.count("/") > 2 else admin + "/" + name
        grow = lambda: grow_postgres(url)
    try:
        t = Tower(a.tower, url)
        app = call(t.port, "POST", "/api/apps", {"title": "template"})["payload"]["id"]
        flag = call(t.port, "POST", f"/api/apps/{app}/flags",
                    {"title": "template", "rollout_percentage": 50, "is_active": True})["payload"]["id"]
        # 600 entries: every route answers a full page (100 entries of a flag, 500 of a log)
        # on both databases, so the two runs differ only in the history around it.
        for _ in range(599):
            call(t.port, "PATCH", f"/api/flags/{flag}/toggle")
        print(f"{a.store}: measuring on an empty database", file=sys.stderr)
        settle(t.port)
        empty = measure(t.port, app, flag, a.seconds)
        t.stop()
        started = time.time()
        counts = grow()
        print(f"{a.store}: grew to {counts[0]} apps, {counts[1]} flags, {counts[2]} log entries "
              f"in {time.time() - started:.0f} s", file=sys.stderr)
        t = Tower(a.tower, url)
        print(f"{a.store}: start-up work done in {settle(t.port):.0f} s", file=sys.stderr)
        big = measure(t.port, app, flag, a.seconds)
        t.stop()
    finally:
        if admin:
            psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"| {a.store} | empty: req/s, p50, p99 | {counts[0]} apps, {counts[1]} flags, {counts[2]} logs | p50 ratio |")
    print("|---|---|---|---:|")
    for k in empty:
        e, b = empty[k], big[k]
        if len(e) == 3:
            print(f"| {k} | {e[0]:.0f}/s, {e[1]:.2f} ms, {e[2]:.2f} ms | {b[0]:.0f}/s, {b[1]:.2f} ms, {b[2]:.2f} ms | {b[1] / e[1]:.2f}× |")
        else:
            print(f"| {k} | p50 {e[0]:.2f} ms, p90 {e[1]:.2f} ms | p50 {b[0]:.2f} ms, p90 {b[1]:.2f} ms | {b[0] / e[0]:.2f}× |")


if __name__ == "__main__":
    main()
