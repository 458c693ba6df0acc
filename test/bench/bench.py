#!/usr/bin/python3
"""lockext benchmark suite.

Starts throwaway PostgreSQL clusters and redis-servers on loopback (as an
unprivileged user), runs every scenario with pgbench (and a small Python
client for the peer comparison) BENCH_REPEATS times, and prints medians and
ratios against the baseline measured in the same run.  Writes a CSV and a
PNG chart under test/bench/results/.  Run it through test/bench/run.sh
(`make bench`), which installs what it needs first.
"""
import csv
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PGBIN = "/usr/lib/postgresql/15/bin"
USER = os.environ.get("BENCH_USER", "lockext_test")
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
RESULTS = os.path.join(ROOT, "test", "bench", "results")

# (figure, target ratio or value, comparison) checked at the end
TARGETS = []


def as_user(cmd, **kw):
    return subprocess.run(["runuser", "-u", USER, "--"] + cmd, **kw)


def free_port(start):
    port = start
    while True:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                port += 1


class Servers:
    """Throwaway clusters and redis-servers; all stopped on exit."""

    def __init__(self):
        self.work = tempfile.mkdtemp(prefix="lockext-bench.")
        os.chmod(self.work, 0o755)
        shutil.chown(self.work, USER)
        self.clusters = {}
        self.redis = {}
        self.next_port = 57000

    def port(self):
        p = free_port(self.next_port)
        while os.path.exists(f"{self.work}/.s.PGSQL.{p}"):
            p = free_port(p + 1)
        self.next_port = p + 1
        return p

    def cluster(self, name, conf=""):
        port = self.port()
        data = f"{self.work}/pg_{name}"
        as_user([f"{PGBIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
                check=True, stdout=subprocess.DEVNULL)
        with open(f"{data}/postgresql.conf", "a") as f:
            f.write(f"""
listen_addresses = ''
unix_socket_directories = '{self.work}'
port = {port}
max_connections = 40
max_locks_per_transaction = 512
shared_buffers = 128MB
cluster_name = '{name}'
shared_preload_libraries = 'lockext'
{conf}
""")
        as_user([f"{PGBIN}/pg_ctl", "-D", data, "-l", f"{self.work}/{name}.log", "-w", "start"],
                check=True, stdout=subprocess.DEVNULL)
        self.clusters[name] = port
        return port

    def certs(self):
        """A CA and a server certificate for 127.0.0.1, made with openssl."""
        d = f"{self.work}/certs"
        os.mkdir(d)
        def run(*args):
            subprocess.run(["openssl"] + list(args), check=True, capture_output=True)
        for name in ("ca", "server"):
            run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-out", f"{d}/{name}.key")
        run("req", "-x509", "-new", "-key", f"{d}/ca.key", "-subj", "/CN=bench CA",
            "-days", "2", "-out", f"{d}/ca.crt")
        run("req", "-new", "-key", f"{d}/server.key", "-subj", "/CN=bench",
            "-out", f"{d}/server.csr")
        with open(f"{d}/server.ext", "w") as f:
            f.write("subjectAltName = IP:127.0.0.1\n")
        run("x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.crt", "-CAkey",
            f"{d}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/server.ext",
            "-out", f"{d}/server.crt")
        for f in os.listdir(d):
            shutil.chown(f"{d}/{f}", USER)
        return d

    def redis_server(self, name, tls_port=None):
        """A redis-server; with tls_port, also listening for TLS there."""
        port = free_port(self.next_port)
        self.next_port = port + 1
        tls = []
        if tls_port:
            d = f"{self.work}/certs"
            tls = ["--tls-port", str(tls_port), "--tls-cert-file", f"{d}/server.crt",
                   "--tls-key-file", f"{d}/server.key", "--tls-ca-cert-file", f"{d}/ca.crt",
                   "--tls-auth-clients", "no"]
        proc = subprocess.Popen(
            ["runuser", "-u", USER, "--", "redis-server", "--bind", "127.0.0.1",
             "--port", str(port), "--save", "", "--appendonly", "no",
             "--unixsocket", f"{self.work}/redis_{name}.sock", "--unixsocketperm", "700",
             "--dir", self.work, "--logfile", f"{self.work}/redis_{name}.log"] + tls)
        for _ in range(100):
            if self.redis_cli(port, "PING") == "PONG":
                break
            time.sleep(0.05)
        self.redis[name] = (port, proc)
        return port

    def redis_pid(self, port):
        return int(re.search(r"process_id:(\d+)", self.redis_cli(port, "INFO", "server")).group(1))

    @staticmethod
    def redis_cli(port, *args):
        r = subprocess.run(["redis-cli", "-p", str(port)] + list(args),
                           capture_output=True, text=True)
        return r.stdout.strip()

    def psql(self, port, sql, options=""):
        r = as_user([f"{PGBIN}/psql", "-h", self.work, "-p", str(port), "-U", "postgres",
                     "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, "postgres"],
                    capture_output=True, text=True, env=dict(os.environ, PGOPTIONS=options))
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        return r.stdout.strip()

    def pgbench(self, port, script, clients, seconds, options="", log_prefix=None):
        path = f"{self.work}/script_{abs(hash(script))}.sql"
        with open(path, "w") as f:
            f.write(script)
        shutil.chown(path, USER)
        cmd = [f"{PGBIN}/pgbench", "-h", self.work, "-p", str(port), "-U", "postgres",
               "-n", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds),
               "-f", path]
        if log_prefix:
            cmd += ["-l", "--log-prefix", log_prefix]
        cmd.append("postgres")
        r = as_user(cmd, capture_output=True, text=True, cwd=self.work,
                    env=dict(os.environ, PGOPTIONS=options))
        m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", r.stdout)
        if not m:
            raise RuntimeError(f"pgbench failed: {r.stdout}\n{r.stderr}")
        processed = int(re.search(r"number of transactions actually processed: (\d+)",
                                  r.stdout).group(1))
        return float(m.group(1)), processed

    def stop(self):
        for name in self.clusters:
            as_user([f"{PGBIN}/pg_ctl", "-D", f"{self.work}/pg_{name}", "-m", "fast", "stop"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port, proc in self.redis.values():
            self.redis_cli(port, "SHUTDOWN", "NOSAVE")
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.work, ignore_errors=True)


def cpu_busy_seconds():
    """CPU time the whole machine spent busy so far (all cores)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def process_cpu_exact(pid):
    """CPU time of one process in seconds, to the nanosecond (schedstat):
    clock ticks are too coarse for a process that is busy 1 % of the time."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def process_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


UNCONTENDED = """\\set id random(1, 100000)
BEGIN;
{lock}
UPDATE acc SET bal = bal + 1 WHERE id = :id;
COMMIT;
"""

HOT = """BEGIN;
{lock}
UPDATE acc SET bal = bal + 1 WHERE id = 1;
COMMIT;
"""


def median_row(rows, scenario, variant, unit, values):
    for i, v in enumerate(values):
        rows.append({"scenario": scenario, "variant": variant, "repeat": i + 1,
                     "value": round(v, 3), "unit": unit})
    return statistics.median(values)


def main():
    srv = Servers()
    rows = []
    summary = []        # (figure, value, target text, met)
    try:
        srv.certs()
        one_tls = free_port(56000)
        one = srv.redis_server("one", tls_port=one_tls)
        nodes_tls = f"rediss://127.0.0.1:{one_tls}?sslrootcert={srv.work}/certs/ca.crt"
        quorum = [srv.redis_server(f"q{i}") for i in range(3)]
        nodes_one = f"redis://127.0.0.1:{one}"
        nodes_q = ",".join(f"redis://127.0.0.1:{p}" for p in quorum)
        only = os.environ.get("BENCH_ONLY")
        if only == "keeper":
            # the keeper's figure alone (BENCH_ONLY=keeper), for tuning it
            b = srv.cluster("beta", f"lockext.redis_nodes = '{nodes_one}'\n"
                            "max_locks_per_transaction = 4096")
            srv.psql(b, "CREATE EXTENSION lockext")
            keeper_scenario(srv, b, rows, summary)
        elif only == "memory":
            # the per-lock memory figures alone (BENCH_ONLY=memory)
            a = srv.cluster("alpha")
            srv.psql(a, "CREATE EXTENSION lockext")
            memory_scenario(srv, a, one, nodes_one, rows, summary)
        elif only == "multi":
            # the multi-key figures alone (BENCH_ONLY=multi)
            a = srv.cluster("alpha")
            srv.psql(a, "CREATE EXTENSION lockext; CREATE TABLE acc (id int PRIMARY KEY, bal bigint);"
                     "INSERT INTO acc SELECT g, 0 FROM generate_series(1, 100000) g;")
            multi_key_scenario(srv, a, one, nodes_one, rows, summary)
        else:
            all_scenarios(srv, one, quorum, nodes_one, nodes_q, nodes_tls, rows, summary,
                          only == "uncontended")
    finally:
        srv.stop()
    report(rows, summary)


def all_scenarios(srv, one, quorum, nodes_one, nodes_q, nodes_tls, rows, summary,
                  uncontended_only=False):
    a = srv.cluster("alpha")
    b = srv.cluster("beta", f"lockext.redis_nodes = '{nodes_one}'\n"
                    "max_locks_per_transaction = 4096")
    for port in (a, b):
        srv.psql(port, "CREATE EXTENSION lockext; CREATE TABLE acc (id int PRIMARY KEY, bal bigint);"
                 "INSERT INTO acc SELECT g, 0 FROM generate_series(1, 100000) g;")
        srv.psql(port, "VACUUM ANALYZE acc")

    # 1. uncontended, 4 clients, random keys
    variants = [
        ("no lock", "", ""),
        ("pg_advisory_xact_lock", "SELECT pg_advisory_xact_lock(:id);", ""),
        ("dlock advisory", "SELECT dlock_acquire('acc:' || :id);", "-c lockext.backend=advisory"),
        ("dlock redis (1 node)", "SELECT dlock_acquire('acc:' || :id);",
         f"-c lockext.redis_nodes={nodes_one}"),
        ("dlock quorum (3 nodes)", "SELECT dlock_acquire('acc:' || :id);",
         f"-c lockext.redis_nodes={nodes_q}"),
    ]
    variants.insert(4, ("dlock redis (1 node, unix socket)", "SELECT dlock_acquire('acc:' || :id);",
                        f"-c lockext.redis_nodes=unix://{srv.work}/redis_one.sock"))
    # the same redis-server, over TLS (verify-full): what TLS costs a lock
    variants.insert(5, ("dlock redis (1 node, TLS)", "SELECT dlock_acquire('acc:' || :id);",
                        f"-c lockext.redis_nodes={nodes_tls}"))
    # where the CPU goes: the whole machine's, and the redis-servers'
    redis_pids = {"one": [srv.redis_pid(one)], "quorum": [srv.redis_pid(p) for p in quorum]}
    tps = {v[0]: [] for v in variants}
    machine_us = {v[0]: [] for v in variants}
    redis_us = {"dlock redis (1 node)": [], "dlock redis (1 node, TLS)": [],
                "dlock quorum (3 nodes)": []}
    for _ in range(REPEATS):
        for name, lock, opts in variants:        # interleaved: same conditions
            # the same table and WAL state for every run: no run pays for
            # an earlier one's dead rows or checkpoint
            srv.psql(a, "VACUUM acc")
            srv.psql(a, "CHECKPOINT")
            pids = redis_pids["quorum" if "quorum" in name else "one"]
            busy0 = cpu_busy_seconds()
            red0 = sum(process_cpu_seconds(p) for p in pids)
            t, processed = srv.pgbench(a, UNCONTENDED.format(lock=lock), 4, SECONDS, opts)
            tps[name].append(t)
            machine_us[name].append((cpu_busy_seconds() - busy0) * 1e6 / processed)
            if name in redis_us:
                redis_us[name].append((sum(process_cpu_seconds(p) for p in pids) - red0)
                                      * 1e6 / processed)
    med = {name: median_row(rows, "uncontended", name, "tps", tps[name]) for name in tps}
    for name in tps:
        median_row(rows, "uncontended, machine CPU per transaction", name, "us", machine_us[name])
    for name in redis_us:
        median_row(rows, "uncontended, redis-server CPU per transaction", name, "us",
                   redis_us[name])
    base = med["pg_advisory_xact_lock"]
    for name, target in (("dlock advisory", 0.95), ("dlock redis (1 node)", 0.80),
                         ("dlock quorum (3 nodes)", 0.60)):
        summary.append((f"uncontended: {name} / pg_advisory_xact_lock", med[name] / base,
                        f">= {target}", med[name] / base >= target))
    summary.append(("uncontended: quorum(3) cost / single node",
                    med["dlock redis (1 node)"] / med["dlock quorum (3 nodes)"], "< 2",
                    med["dlock redis (1 node)"] / med["dlock quorum (3 nodes)"] < 2))
    # TLS against plain TCP to the same redis-server, this run
    plain, tls = "dlock redis (1 node)", "dlock redis (1 node, TLS)"
    summary.append(("uncontended: redis over TLS / over plain TCP", med[tls] / med[plain],
                    "(report)", None))
    cost = (statistics.median(machine_us[tls]) - statistics.median(machine_us[plain]))
    median_row(rows, "uncontended, TLS cost per lock", "machine CPU, TLS minus plain TCP", "us",
               [cost])
    summary.append(("uncontended: TLS cost per lock, machine CPU (us)", cost, "(report)", None))
    if uncontended_only:
        return

    # 2. Redis commands per uncontended transaction (what clients sent)
    srv.redis_cli(one, "CONFIG", "RESETSTAT")
    _, processed = srv.pgbench(a, UNCONTENDED.format(lock="SELECT dlock_acquire('acc:' || :id);"),
                               4, 2, f"-c lockext.redis_nodes={nodes_one}")
    stats = srv.redis_cli(one, "INFO", "commandstats")
    sent = sum(int(c) for cmd, c in re.findall(r"cmdstat_(\w+):calls=(\d+)", stats)
               if cmd in ("evalsha", "eval", "blpop", "auth", "select"))
    per_tx = sent / processed
    median_row(rows, "redis commands", "per uncontended transaction", "commands", [per_tx])
    summary.append(("Redis commands per uncontended transaction", per_tx, "<= 2", per_tx <= 2.05))

    # 3. one hot key, 8 clients, one instance
    hot = {"pg_advisory_xact_lock": [], "dlock redis": []}
    for _ in range(REPEATS):
        hot["pg_advisory_xact_lock"].append(
            srv.pgbench(a, HOT.format(lock="SELECT pg_advisory_xact_lock(42);"), 8, SECONDS)[0])
        hot["dlock redis"].append(
            srv.pgbench(a, HOT.format(lock="SELECT dlock_acquire('hot');"), 8, SECONDS,
                        f"-c lockext.redis_nodes={nodes_one}")[0])
    hm = {k: median_row(rows, "hot key, one instance, 8 clients", k, "tps", v) for k, v in hot.items()}
    r = hm["dlock redis"] / hm["pg_advisory_xact_lock"]
    summary.append(("hot key, one instance: dlock redis / advisory", r, ">= 0.50", r >= 0.5))

    # 4. one hot key across two instances sharing Redis: throughput and
    #    handoff (holder's last statement before COMMIT -> next grant)
    handoff_p50, handoff_p99, cross_tps = [], [], []
    script = """BEGIN;
SELECT dlock_acquire('xhot', 30);
SELECT extract(epoch FROM clock_timestamp()) AS g \\gset
UPDATE acc SET bal = bal + 1 WHERE id = 1;
INSERT INTO hlog VALUES (:g, extract(epoch FROM clock_timestamp()));
COMMIT;
"""
    for port in (a, b):
        srv.psql(port, "CREATE TABLE IF NOT EXISTS hlog (granted float8, released float8)")
    for _ in range(REPEATS):
        for port in (a, b):
            srv.psql(port, "TRUNCATE hlog")
        opts = f"-c lockext.redis_nodes={nodes_one} -c synchronous_commit=off"
        res = {}
        threads = [threading.Thread(target=lambda p=p: res.__setitem__(p, srv.pgbench(p, script, 4, SECONDS, opts)))
                   for p in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cross_tps.append(sum(v[0] for v in res.values()))
        log = []
        for port in (a, b):
            for line in srv.psql(port, "SELECT granted, released FROM hlog").splitlines():
                g, rl = line.split("|")
                log.append((float(g), float(rl)))
        log.sort()
        gaps = [(log[i][0] - log[i - 1][1]) * 1000 for i in range(1, len(log))]
        overlaps = sum(1 for g in gaps if g < 0)
        if overlaps:
            print(f"WARNING: {overlaps} overlapping holds across instances")
        gaps.sort()
        handoff_p50.append(gaps[len(gaps) // 2])
        handoff_p99.append(gaps[int(len(gaps) * 0.99)])
    median_row(rows, "hot key, two instances", "throughput", "tps", cross_tps)
    p50 = median_row(rows, "hot key, two instances", "handoff p50", "ms", handoff_p50)
    p99 = median_row(rows, "hot key, two instances", "handoff p99", "ms", handoff_p99)
    summary.append(("cross-instance handoff p50 (ms)", p50, "< 2", p50 < 2))
    summary.append(("cross-instance handoff p99 (ms)", p99, "< 20", p99 < 20))

    # 5. fairness: 8 contenders on one key for 2x the run time
    fair = []
    for rep in range(REPEATS):
        prefix = f"fair{rep}"
        srv.pgbench(a, HOT.format(lock="SELECT dlock_acquire('fair', 60);"), 8, 2 * SECONDS,
                    f"-c lockext.redis_nodes={nodes_one}", log_prefix=prefix)
        counts = {}
        for fn in os.listdir(srv.work):
            if fn.startswith(prefix + "."):
                with open(os.path.join(srv.work, fn)) as f:
                    for line in f:
                        client = line.split()[0]
                        counts[client] = counts.get(client, 0) + 1
        fair.append(min(counts.values()) / max(counts.values()))
    fm = median_row(rows, "fairness, 8 contenders", "min/max acquisitions", "ratio", fair)
    summary.append(("fairness min/max", fm, ">= 0.5", fm >= 0.5))

    # 6. the peer users pick today: redis-py Lock around a psycopg2
    #    transaction vs the same client calling dlock_acquire
    peer = run_peer(srv, a, one)
    pm = {k: median_row(rows, "peer, one Python client", k, "tps", v) for k, v in peer.items()}
    # the same with contention: 4 clients on 4 keys (redis-py's Lock
    # polls with its default sleep; dlock waiters queue and are woken)
    hot = run_peer(srv, a, one, clients=4, keys=4, variants=[PEER_VARIANTS[0], PEER_VARIANTS[2]])
    hm = {k: median_row(rows, "peer, 4 Python clients on 4 keys", k, "tps", v) for k, v in hot.items()}
    # each side in its fastest correct form for a one-UPDATE transaction
    r = (pm["dlock_acquire and UPDATE, one implicit transaction"]
         / pm["redis-py Lock around an autocommit UPDATE"])
    summary.append(("in-database dlock vs redis-py Lock, same client", r, ">= 1.5", r >= 1.5))
    peer_base = pm["redis-py Lock around the transaction"]
    for variant in ("dlock_acquire in the transaction", "dlock_acquire, a statement of its own"):
        summary.append((f"  BEGIN/COMMIT: {variant} / redis-py", pm[variant] / peer_base, "-", None))
    summary.append(("  4 clients on 4 keys: dlock_acquire in the transaction / redis-py",
                    hm["dlock_acquire in the transaction"] / hm["redis-py Lock around the transaction"],
                    "-", None))

    # 7. memory: 10,000 session locks held in one session
    memory_scenario(srv, a, one, nodes_one, rows, summary)

    # 8. the lease keeper's CPU for 10,000 held leases (beta: its own
    #    lockext.redis_nodes, which is what the keeper renews)
    keeper_scenario(srv, b, rows, summary)

    # 9. many keys at once, and transfers between two accounts
    multi_key_scenario(srv, a, one, nodes_one, rows, summary)


def memory_scenario(srv, a, one, nodes_one, rows, summary):
    for name, opts in (("advisory", "-c lockext.backend=advisory"),
                       ("redis", f"-c lockext.redis_nodes={nodes_one}")):
        backend_bytes, redis_bytes, kept = hold_many(srv, a, one, opts, 10000)
        median_row(rows, "memory, 10000 session locks", f"backend bytes per lock ({name})",
                   "bytes", [backend_bytes])
        median_row(rows, "memory, 10000 session locks",
                   f"backend bytes kept after dlock_release_all ({name})", "bytes", [kept])
        if name == "redis":
            summary.append(("backend bytes per Redis hold", backend_bytes, "<= 600",
                            backend_bytes <= 600))
        if name == "redis":
            median_row(rows, "memory, 10000 session locks", "Redis bytes per held lock",
                       "bytes", [redis_bytes])


def keeper_scenario(srv, port, rows, summary):
    for n, lease in ((10000, 3), (100000, 30), (100000, 3)):
        # a 30 s lease is renewed every 10 s: 20 s see two rounds
        pct, renewals, taking = keeper_cpu(srv, port, n, max(2 * SECONDS, 2 * lease / 3 + 1), lease)
        scenario = f"keeper, {n} held leases of {lease} s"
        median_row(rows, scenario, "keeper CPU", "% of one core", [pct])
        # while one statement takes them: each new hold is one change to read
        median_row(rows, scenario, "keeper CPU while they are taken", "% of one core", [taking])
        median_row(rows, scenario, "renewals", "renewals", [renewals])
        summary.append((f"keeper CPU for {n:,} held leases of {lease} s (% of one core)", pct,
                        "< 1" if n == 100000 and lease == 30 else "-",
                        pct < 1 if n == 100000 and lease == 30 else None))


MANY_ALL = """\\set r random(1, 1000000000)
BEGIN;
SELECT count(*) FROM unnest(dlock_acquire_all(ARRAY(SELECT 'mk:' || :r || ':' || g FROM generate_series(1, 1000) g)));
COMMIT;
"""

MANY_SINGLE = """\\set r random(1, 1000000000)
BEGIN;
SELECT count(dlock_acquire('mk:' || :r || ':' || g)) FROM generate_series(1, 1000) g;
COMMIT;
"""

TRANSFER = """\\set from random(1, 100000)
\\set to random(1, 100000)
BEGIN;
{lock}
UPDATE acc SET bal = bal - 1 WHERE id = :from;
UPDATE acc SET bal = bal + 1 WHERE id = :to;
COMMIT;
"""

TRANSFER_PROC = """
CREATE OR REPLACE PROCEDURE transfer(src int, dst int, amount bigint, locked bool DEFAULT true)
LANGUAGE plpgsql AS $$
BEGIN
  IF locked THEN
    PERFORM dlock_acquire_all(ARRAY['acc:' || src, 'acc:' || dst]);
  END IF;
  UPDATE acc SET bal = bal - amount WHERE id = src;
  UPDATE acc SET bal = bal + amount WHERE id = dst;
END $$;
"""


def multi_key_scenario(srv, a, redis_port, nodes_one, rows, summary):
    """dlock_acquire_all: the cost per key of 1,000 keys in one call against
    1,000 single calls, a two-account transfer against one lock and two,
    and the transfer procedure against redis-py Locks (one client)."""
    opts = f"-c lockext.redis_nodes={nodes_one}"
    per_key = {"1000 keys, one dlock_acquire_all": [], "1000 keys, 1000 dlock_acquire calls": []}
    for _ in range(REPEATS):
        for name, script in (("1000 keys, one dlock_acquire_all", MANY_ALL),
                             ("1000 keys, 1000 dlock_acquire calls", MANY_SINGLE)):
            t, _ = srv.pgbench(a, script, 1, SECONDS, opts)
            per_key[name].append(1e6 / (t * 1000))
    pk = {k: median_row(rows, "many keys, redis (1 node), 1 client", k, "us per key", v)
          for k, v in per_key.items()}
    summary.append(("1000 keys in one dlock_acquire_all (us per key)",
                    pk["1000 keys, one dlock_acquire_all"], "<= 5",
                    pk["1000 keys, one dlock_acquire_all"] <= 5))

    variants = [
        ("one lock", "SELECT dlock_acquire('acc:' || :from);"),
        ("two dlock_acquire", "SELECT dlock_acquire('acc:' || :from), dlock_acquire('acc:' || :to);"),
        ("one dlock_acquire_all of two", "SELECT dlock_acquire_all(ARRAY['acc:' || :from, 'acc:' || :to]);"),
    ]
    tps = {v[0]: [] for v in variants}
    for _ in range(REPEATS):
        for name, lock in variants:
            srv.psql(a, "VACUUM acc")
            t, _ = srv.pgbench(a, TRANSFER.format(lock=lock), 4, SECONDS, opts)
            tps[name].append(t)
    tm = {k: median_row(rows, "transfers, redis (1 node), 4 clients", k, "tps", v) for k, v in tps.items()}
    r = tm["one dlock_acquire_all of two"] / tm["one lock"]
    summary.append(("transfer with dlock_acquire_all / a one-lock transaction", r, "~1", None))
    summary.append(("transfer with dlock_acquire_all / two dlock_acquire",
                    tm["one dlock_acquire_all of two"] / tm["two dlock_acquire"], "> 1", None))

    peer = run_transfer_peer(srv, a, redis_port)
    pm = {k: median_row(rows, "transfer procedure, one Python client", k, "tps", v) for k, v in peer.items()}
    r = pm["CALL transfer() with dlock_acquire_all inside"] / pm["redis-py Locks on both accounts around CALL transfer()"]
    summary.append(("transfer(): dlock_acquire_all inside / redis-py Locks", r, ">= 1.2", r >= 1.2))


def run_transfer_peer(srv, port, redis_port):
    """One Python client calling the transfer procedure: with
    dlock_acquire_all inside it, or without locks inside redis-py Locks on
    both accounts (taken in order)."""
    import psycopg2
    import random
    import redis as redislib

    srv.psql(port, TRANSFER_PROC)
    r = redislib.Redis(host="127.0.0.1", port=redis_port)
    conn = psycopg2.connect(host=srv.work, port=port, user="postgres", dbname="postgres",
                            options=f"-c lockext.redis_nodes=redis://127.0.0.1:{redis_port}")
    conn.autocommit = True
    cur = conn.cursor()

    def in_db(src, dst):
        cur.execute("CALL transfer(%s, %s, 1)", (src, dst))

    def redis_py(src, dst):
        first, second = sorted((src, dst))
        with r.lock(f"peer:{first}", timeout=30, blocking_timeout=30):
            with r.lock(f"peer:{second}", timeout=30, blocking_timeout=30):
                cur.execute("CALL transfer(%s, %s, 1, false)", (src, dst))

    variants = [("redis-py Locks on both accounts around CALL transfer()", redis_py),
                ("CALL transfer() with dlock_acquire_all inside", in_db)]
    results = {name: [] for name, _ in variants}
    for _ in range(REPEATS):
        for name, fn in variants:
            n = 0
            end = time.monotonic() + SECONDS
            while time.monotonic() < end:
                src = random.randint(1, 100000)
                dst = random.randint(1, 100000)
                if src == dst:
                    continue
                fn(src, dst)
                n += 1
            results[name].append(n / SECONDS)
    conn.close()
    r.close()
    return results


def psql_session(srv, port, opts):
    """A live psql session (the process) and ask(sql) -> its one-line answer."""
    p = subprocess.Popen(["runuser", "-u", USER, "--", f"{PGBIN}/psql", "-h", srv.work,
                          "-p", str(port), "-U", "postgres", "-X", "-At", "postgres"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PGOPTIONS=opts))

    def ask(sql):
        p.stdin.write(sql + "\n")
        p.stdin.flush()
        return p.stdout.readline().strip()

    return p, ask


def keeper_cpu(srv, port, n, seconds, lease=3):
    """Hold n session locks (lease in s) in one idle session; the keeper's
    CPU (% of one core) while it renews them, and the renewals it made."""
    p, ask = psql_session(srv, port, "")
    keeper = int(ask("SELECT dlock_keeper_pid();"))
    cpu0, t0 = process_cpu_exact(keeper), time.monotonic()
    ask(f"SELECT count(dlock_acquire_session('keep:' || g, 5, {lease})) FROM generate_series(1, {n}) g;")
    # the keeper reads the statement's last changes within a second of its
    # end: that belongs to taking them, not to holding them
    time.sleep(3)
    cpu1, t1 = process_cpu_exact(keeper), time.monotonic()
    taking = 100.0 * (cpu1 - cpu0) / (t1 - t0)
    cpu0, t0 = process_cpu_exact(keeper), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = process_cpu_exact(keeper), time.monotonic()
    renewals = int(ask("SELECT coalesce(sum(renewals), 0) FROM dlock_locks;"))
    ask("SELECT dlock_release_all();")
    p.stdin.close()
    p.wait()
    return 100.0 * (cpu1 - cpu0) / (t1 - t0), renewals, taking


def hold_many(srv, port, redis_port, opts, n):
    """Hold n session locks in one live session; bytes per lock in the
    backend (pg_backend_memory_contexts) and in Redis (used_memory)."""
    def redis_used():
        return int(re.search(r"used_memory:(\d+)",
                             srv.redis_cli(redis_port, "INFO", "memory")).group(1))

    p, ask = psql_session(srv, port, opts)
    mem = "SELECT sum(total_bytes) FROM pg_backend_memory_contexts;"
    ask("SELECT dlock_acquire_session('warm-up');")
    backend0, redis0 = int(ask(mem)), redis_used()
    ask(f"SELECT count(dlock_acquire_session('mem:' || g)) FROM generate_series(1, {n}) g;")
    backend1, redis1 = int(ask(mem)), redis_used()
    ask("SELECT dlock_release_all();")
    backend2 = int(ask(mem))
    p.stdin.close()
    p.wait()
    return (backend1 - backend0) / n, (redis1 - redis0) / n, backend2 - backend0


UPDATE_ONE = "UPDATE acc SET bal = bal + 1 WHERE id = %s"
LOCK_AND_UPDATE = "SELECT dlock_acquire(%s); " + UPDATE_ONE


def rpy_around_tx(cur, conn, r, key):
    with r.lock(f"peer:{key}", timeout=30, blocking_timeout=30):
        cur.execute(UPDATE_ONE, (key,))
        conn.commit()


def rpy_around_autocommit(cur, conn, r, key):
    with r.lock(f"peer:{key}", timeout=30, blocking_timeout=30):
        cur.execute(UPDATE_ONE, (key,))


def dlock_own_statement(cur, conn, r, key):
    cur.execute("SELECT dlock_acquire(%s)", (f"peer:{key}",))
    cur.execute(UPDATE_ONE, (key,))
    conn.commit()


def dlock_with_first_statement(cur, conn, r, key):
    cur.execute(LOCK_AND_UPDATE, (f"peer:{key}", key))
    conn.commit()


def dlock_implicit_tx(cur, conn, r, key):
    # one simple-protocol message: one transaction, one round trip
    cur.execute(LOCK_AND_UPDATE, (f"peer:{key}", key))


# (variant, autocommit, one guarded transaction)
PEER_VARIANTS = [
    ("redis-py Lock around the transaction", False, rpy_around_tx),
    ("dlock_acquire, a statement of its own", False, dlock_own_statement),
    ("dlock_acquire in the transaction", False, dlock_with_first_statement),
    ("redis-py Lock around an autocommit UPDATE", True, rpy_around_autocommit),
    ("dlock_acquire and UPDATE, one implicit transaction", True, dlock_implicit_tx),
]


def run_peer(srv, port, redis_port, clients=1, keys=100000, variants=PEER_VARIANTS):
    """Python clients (threads, one connection each), each variant for
    SECONDS, REPEATS times; transactions per second of all clients."""
    import psycopg2
    import random
    import redis as redislib

    def client(fn, autocommit, end, counts, i):
        r = redislib.Redis(host="127.0.0.1", port=redis_port)
        conn = psycopg2.connect(host=srv.work, port=port, user="postgres", dbname="postgres",
                                options=f"-c lockext.redis_nodes=redis://127.0.0.1:{redis_port}")
        conn.autocommit = autocommit
        cur = conn.cursor()
        while time.monotonic() < end:
            fn(cur, conn, r, random.randint(1, keys))
            counts[i] += 1
        conn.close()
        r.close()

    results = {name: [] for name, _, _ in variants}
    for _ in range(REPEATS):
        for name, autocommit, fn in variants:
            counts = [0] * clients
            end = time.monotonic() + SECONDS
            threads = [threading.Thread(target=client, args=(fn, autocommit, end, counts, i))
                       for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            results[name].append(sum(counts) / SECONDS)
    return results


def report(rows, summary):
    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    csv_path = os.path.join(RESULTS, f"bench-{stamp}.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["scenario", "variant", "repeat", "value", "unit"])
        w.writeheader()
        w.writerows(rows)

    print()
    print(f"medians of {REPEATS} runs of {SECONDS} s each (4 clients unless said), "
          f"{os.cpu_count()} cores")
    groups = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["variant"], row["unit"]), []).append(row["value"])
    width = max(len(f"{s}: {v}") for s, v, _ in groups)
    for (s, v, u), vals in groups.items():
        print(f"  {s + ': ' + v:<{width}}  {statistics.median(vals):12.3f} {u}")
    print()
    print("targets")
    for figure, value, target, met in summary:
        verdict = "" if met is None else "met" if met else "MISSED"
        print(f"  {figure:<58} {value:9.3f}   target {target:<7} {verdict}")

    # chart: uncontended and hot-key throughput medians
    dat = os.path.join(RESULTS, f"bench-{stamp}.dat")
    with open(dat, "w") as f:
        for (s, v, u), vals in groups.items():
            if u == "tps" and not s.startswith("peer"):
                f.write(f"\"{s}\\n{v}\" {statistics.median(vals):.1f}\n")
    png = os.path.join(RESULTS, f"bench-{stamp}.png")
    subprocess.run(["gnuplot", "-e", f"""
set terminal pngcairo size 1400,700 font ',10';
set output '{png}';
set title 'lockext: transactions per second (median of {REPEATS} runs)';
set style data histograms; set style fill solid 0.8; set boxwidth 0.8;
set ylabel 'tps'; set yrange [0:*]; set termoption noenhanced; set xtics rotate by -30 left; set key off; set grid ytics;
plot '{dat}' using 2:xtic(1)
"""], check=False)
    os.remove(dat)
    print()
    print(f"CSV: {csv_path}")
    print(f"chart: {png}")


if __name__ == "__main__":
    sys.exit(main())
