#!/usr/bin/python3
"""Turns bench/run's raw results into the markdown section of README.md.

  report.py RESULTS_DIR [--readme bench/README.md]
  report.py RESULTS_DIR --partial


RESULTS_DIR holds, per target T and round R: T.R.h2load (h2load's
summary), T.R.lat (h2load --log-file: start us, HTTP status, elapsed us per
request), T.R.server_cpu ("ticks clk_tck wall0 wall1 busy_ticks
db_ticks": the server's CPU, the machine's, and PostgreSQL's for the
config-srv targets, redis-server's for kv-srv's Redis backend),
T.R.client_cpu (bash `time`: "user sys" seconds), and `meta` (key=value
lines). The redis-server targets (redis_*) have T.R.rb, redis-benchmark's
output (its throughput, and its latency distribution: the points of its
"Latency by percentile distribution" and "Cumulative distribution of
latencies", which are the histogram used here), instead of .h2load and
.lat. kv_redis_* may be missing when meta's kv_redis_skip says why.

Without --readme the section is printed. With it, the text between the
markers below is replaced (the markers are appended if missing). Any
failed, errored or timed-out request, or a non-200 status, makes this
exit 1 without touching the README: such numbers are not results.

--partial is for a run of only some targets (bench/run's BENCH_TARGETS):
it prints each target's req/s and CPU and the ratios of those measured
(config Update / etcd Put, per round and of the medians), never a README.
"""
import collections
import glob
import os
import re
import sys

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"

TARGETS = [
    ("discovery", "discovery-srv", "/platform.discovery.v1.Discovery/GetService",
     "GetService of a service with 3 nodes (in-memory read)"),
    ("echo", "echo-server (baseline)", "/bench.Echo/Echo",
     "minimal gRPC C-core echo of the same request bytes"),
    ("etcd_range", "etcd", "/etcdserverpb.KV/Range",
     "Range of one key (default: linearizable)"),
    ("config_read", "config-srv", "/platform.config.v1.Config/Read",
     "Read of a small JSON document (cached)"),
    ("config_update", "config-srv", "/platform.config.v1.Config/Update",
     "Update, expected_version 0: a new durable version per call"),
    ("etcd_put", "etcd", "/etcdserverpb.KV/Put",
     "Put of one key (durable: in etcd's fsynced WAL before the answer)"),
]

# kv-srv's targets, loaded by the same h2load command.
KV_TARGETS = [
    ("kv_get", "kv-srv (embedded)", "/platform.kv.v1.KV/Get",
     "Get of a key put beforehand, 100-byte value (in memory, one node)"),
    ("kv_put", "kv-srv (embedded)", "/platform.kv.v1.KV/Put",
     "Put of a 100-byte value to one key (in memory, not durable)"),
    ("kv_redis_get", "kv-srv (Redis backend)", "/platform.kv.v1.KV/Get",
     "the same Get, kv-srv in front of the run's redis-server"),
    ("kv_redis_put", "kv-srv (Redis backend)", "/platform.kv.v1.KV/Put",
     "the same Put, kv-srv in front of the run's redis-server"),
]

# redis-server loaded by redis-benchmark (not h2load): RESP, not gRPC.
REDIS_TARGETS = [
    ("redis_get", "redis-server", "GET", 1),
    ("redis_set", "redis-server", "SET", 1),
    ("redis_get_pipe", "redis-server", "GET", 0),
    ("redis_set_pipe", "redis-server", "SET", 0),
]

ALL_KEYS = [t[0] for t in TARGETS + KV_TARGETS + REDIS_TARGETS]


def read_meta(d):
    meta = {}
    with open(os.path.join(d, "meta")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    return meta


def parse_h2load(path):
    text = open(path).read()
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    if not m:
        raise ValueError("%s: no 'finished in' line" % path)
    r = {"secs": float(m.group(1)), "rps": float(m.group(2))}
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, "
                  r"(\d+) succeeded, (\d+) failed, (\d+) errored, "
                  r"(\d+) timeout", text)
    if not m:
        raise ValueError("%s: no 'requests:' line" % path)
    (r["total"], _, r["done"], r["succeeded"], r["failed"], r["errored"],
     r["timeout"]) = map(int, m.groups())
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, "
                  r"(\d+) 5xx", text)
    r["non2xx"] = sum(map(int, m.groups()[1:])) if m else 0
    return r


def parse_rb(path):
    """redis-benchmark's output: req/s, requests, mean (us) and its
    latency distribution as a histogram (upper bound in us -> count)."""
    text = open(path).read()
    m = re.findall(r"throughput summary: ([\d.]+) requests per second", text)
    if not m:
        raise ValueError("%s: no throughput summary" % path)
    r = {"rps": float(m[-1])}
    m = re.search(r"latency summary \(msec\):\s+avg\s+min\s+p50\s+p95\s+p99"
                  r"\s+max\s+([\d.]+)\s+([\d.]+)", text)
    if not m:
        raise ValueError("%s: no latency summary" % path)
    r["mean"] = float(m.group(1)) * 1000.0
    # Both distributions are points of one cumulative count: together
    # they bound every request's latency from above.
    cum = {}
    for v, c in re.findall(r"^\s*[\d.]+% <= ([\d.]+) milliseconds "
                           r"\(cumulative count (\d+)\)", text, re.M):
        us = int(round(float(v) * 1000.0))
        cum[us] = max(cum.get(us, 0), int(c))
    hist = collections.Counter()
    prev = 0
    for us in sorted(cum):
        c = max(prev, cum[us])
        if c > prev:
            hist[us] += c - prev
        prev = c
    r["requests"] = prev
    r["hist"] = hist
    # Pipelined, redis-benchmark completes whole pipelines: up to -c x -P
    # more than the -n its distribution counts.
    m = re.search(r"(\d+) requests completed in", text)
    c = re.search(r"(\d+) parallel clients", text)
    if not m or not c or not (prev <= int(m.group(1)) <= prev +
                              int(c.group(1)) * 1000):
        raise ValueError("%s: %s requests completed, %d in its latency "
                         "distribution" % (path, m and m.group(1), prev))
    return r


def read_latencies(paths):
    """A histogram (microseconds -> count) and the non-200 count."""
    hist = collections.Counter()
    bad = 0
    for p in paths:
        with open(p) as f:
            for line in f:
                cols = line.split("\t")
                if len(cols) < 3:
                    continue
                if cols[1] != "200":
                    bad += 1
                    continue
                hist[int(cols[2])] += 1
    return hist, bad


def percentiles(hist, qs):
    n = sum(hist.values())
    keys = sorted(hist)
    out = {}
    want = sorted(qs)
    acc = 0
    i = 0
    for k in keys:
        acc += hist[k]
        while i < len(want) and acc >= want[i] * n:
            out[want[i]] = k
            i += 1
    for q in want[i:]:
        out[q] = keys[-1]
    mean = sum(k * c for k, c in hist.items()) / n
    return n, mean, out


def ms(us):
    return "%.2f ms" % (us / 1000.0)


def cpu_of(d, key):
    """Per-run averages, in cores: server (with its database), database,
    client, everything else."""
    scpu, dcpu, ccpu, ocpu = [], [], [], []
    for p in sorted(glob.glob(os.path.join(d, key + ".*.server_cpu"))):
        f = open(p).read().split()
        ticks, hz, w0, w1, busy = f[:5]
        db_ticks = int(f[5]) if len(f) > 5 else 0
        wall = float(w1) - float(w0)
        # The server's CPU includes its database's (PostgreSQL does
        # much of config-srv's work, redis-server of the Redis backend's).
        db = db_ticks / float(hz)
        server = int(ticks) / float(hz) + db
        dcpu.append(db / wall)
        user, sys_ = open(p[:-len("server_cpu")] +
                          "client_cpu").read().split()[:2]
        client = float(user) + float(sys_)
        scpu.append(server / wall)
        ccpu.append(client / wall)
        # Everything else the machine ran meanwhile (other servers
        # idling, probes, and any unrelated work).
        ocpu.append(max(0.0, int(busy) / float(hz) - server - client)
                    / wall)
    avg = lambda xs: sum(xs) / len(xs)
    return {"server_cpu": avg(scpu), "db_cpu": avg(dcpu),
            "client_cpu": avg(ccpu), "other_cpu": avg(ocpu)}


def median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def summarize_rb(d, key):
    rounds = sorted(glob.glob(os.path.join(d, key + ".*.rb")))
    if not rounds:
        return None
    runs = [parse_rb(p) for p in rounds]
    hist = collections.Counter()
    for r in runs:
        hist.update(r["hist"])
    n, _, pct = percentiles(hist, [0.5, 0.9, 0.99])
    rps = [r["rps"] for r in runs]
    row = {
        "per_round": {int(p.rsplit(".", 2)[-2]): r["rps"]
                      for p, r in zip(rounds, runs)},
        "rps": median(rps), "rps_min": min(rps), "rps_max": max(rps),
        "rounds": len(rps), "requests": n,
        # redis-benchmark's own mean of each run, weighted by requests.
        "mean": sum(r["mean"] * r["requests"] for r in runs) / n,
        "p50": pct[0.5], "p90": pct[0.9], "p99": pct[0.99],
        "max": max(hist), "cut": 0,
    }
    row.update(cpu_of(d, key))
    return row


def summarize(d, partial=False):
    meta = read_meta(d)
    rows = {}
    problems = []
    for key, _, _, _ in REDIS_TARGETS:
        row = summarize_rb(d, key)
        if row is None and not partial:
            raise SystemExit("report: no results for %s in %s" % (key, d))
        if row is not None:
            rows[key] = row
    for key, _, _, _ in TARGETS + KV_TARGETS:
        rounds = sorted(glob.glob(os.path.join(d, key + ".*.h2load")))
        if not rounds and (partial or (key.startswith("kv_redis_") and
                                       meta.get("kv_redis_skip"))):
            continue
        if not rounds:
            raise SystemExit("report: no results for %s in %s" % (key, d))
        runs = [parse_h2load(p) for p in rounds]
        for p, r in zip(rounds, runs):
            if r["failed"] or r["errored"] or r["timeout"] or r["non2xx"]:
                problems.append("%s: %d failed, %d errored, %d timeout, "
                                "%d non-2xx" % (os.path.basename(p),
                                r["failed"], r["errored"], r["timeout"],
                                r["non2xx"]))
        hist, bad = read_latencies(
            sorted(glob.glob(os.path.join(d, key + ".*.lat"))))
        if bad:
            problems.append("%s: %d requests without HTTP 200 in the "
                            "latency log" % (key, bad))
        n, mean, pct = percentiles(hist, [0.5, 0.9, 0.99])
        # Calls h2load left in flight when it stopped, which the server
        # saw cancelled (bench/run's check_errors allowed them).
        cut = sum(int(open(p).read().split()[0]) for p in
                  glob.glob(os.path.join(d, key + ".*.cut")))
        rps = [r["rps"] for r in runs]
        rows[key] = {
            "per_round": {int(p.rsplit(".", 2)[-2]): r["rps"]
                          for p, r in zip(rounds, runs)},
            "rps": median(rps), "rps_min": min(rps),
            "rps_max": max(rps), "rounds": len(rps), "requests": n,
            "mean": mean, "p50": pct[0.5], "p90": pct[0.9], "p99": pct[0.99],
            "max": max(hist), "cut": cut,
        }
        rows[key].update(cpu_of(d, key))
    return meta, rows, problems


def render(meta, rows):
    disc, echo, etcd = rows["discovery"], rows["echo"], rows["etcd_range"]
    cread, cupd, put = (rows["config_read"], rows["config_update"],
                        rows["etcd_put"])
    pct_echo = 100.0 * disc["rps"] / echo["rps"]
    x_etcd = disc["rps"] / etcd["rps"]
    echo_x_etcd = echo["rps"] / etcd["rps"]
    cread_echo = 100.0 * cread["rps"] / echo["rps"]
    cread_etcd = cread["rps"] / etcd["rps"]
    cupd_put = cupd["rps"] / put["rps"]
    rss_idle = int(meta["rss_idle"]) / 1024.0
    h2threads = int(meta["h2threads"])

    out = [BEGIN, ""]
    out.append("Measured %s on %s CPU(s), %s, %s RAM, Linux %s." % (
        meta["date"], meta["nproc"], meta["cpu"] or "unknown CPU",
        meta["mem"], meta["kernel"]))
    other = max(r["other_cpu"] for r in rows.values())
    if other > 0.15:
        out.append("")
        out.append("Other work was running on the machine (up to %.2f "
                   "cores besides server and h2load, see \"other CPU\"): "
                   "the targets shared the cores with it, so absolute "
                   "numbers are low and noisy; the rotation and the min-max "
                   "ranges show how much." % other)
    out.append("")
    out.append("Load: `h2load -c %s -m %s -t %s -D %s --warm-up-time %s`, "
               "%s round(s), target order rotated each round; req/s is the "
               "median of the rounds (min-max in brackets), latencies are over "
               "every request of every round from h2load's `--log-file`." % (
                   meta["conns"], meta["streams"], meta["h2threads"],
                   meta["duration"], meta["warmup"], meta["rounds"]))
    out.append("")
    out.append("| Target | gRPC method | req/s | mean | p50 | p90 | p99 | "
               "max | server CPU | h2load CPU | other CPU |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, name, path, _ in TARGETS:
        r = rows[key]
        cpu = "%.2f" % r["server_cpu"]
        if key.startswith("config"):
            cpu += " (pg %.2f)" % r["db_cpu"]
        out.append("| %s | `%s` | %.0f (%.0f-%.0f) | %s | %s | %s | %s | %s "
                   "| %s | %.2f | %.2f |" % (
                       name, path, r["rps"], r["rps_min"], r["rps_max"],
                       ms(r["mean"]), ms(r["p50"]), ms(r["p90"]),
                       ms(r["p99"]), ms(r["max"]), cpu,
                       r["client_cpu"], r["other_cpu"]))
    out.append("")
    out.append("CPU columns are in cores, averaged over each h2load run "
               "(warm-up included); config-srv's server CPU includes its "
               "PostgreSQL's (postmaster and backends, in brackets); other "
               "CPU is the machine's busy time minus server and h2load.")
    out.append("")
    out.append("Calls that h2load left in flight when each load ended "
               "(at most %d per load; totals over the rounds), which the "
               "servers saw cancelled: %s; "
               "every other call ended OK by the servers' own count "
               "(metrics and log), not only h2load's." % (
                   int(meta["conns"]) * int(meta["streams"]),
                   ", ".join("%s %s %d" % (name.split()[0],
                                            path.rsplit("/", 1)[1],
                                            rows[k]["cut"])
                             for k, name, path, _ in TARGETS
                             if k != "echo")))
    out.append("")
    out.append("config Update: %s calls answered OK over the run (h2load's, "
               "the probes' and the one writing Read's document), %s "
               "versions in the database afterwards. PostgreSQL: %s, `%s`, data on %s like etcd's. "
               "config-srv's cache held %s path(s) after the run." % (
                   meta.get("update_ok", "?"), meta.get("update_rows", "?"),
                   meta.get("postgres", "?"),
                   meta.get("pg_durability", "?").strip(),
                   meta.get("data_fs", "?"), meta.get("cache_entries", "?")))
    out.append("")
    out.append("| Ratio | Value | Design target |")
    out.append("|---|---:|---|")
    out.append("| discovery GetService / echo | %.1f%% | >= 85%% |" % pct_echo)
    out.append("| config Read (cached) / echo | %.1f%% | >= 85%% |"
               % cread_echo)
    out.append("| echo / etcd Range | %.2fx | >= 3x (the premise) |"
               % echo_x_etcd)
    out.append("| discovery GetService / etcd Range | %.2fx | >= 2.55x "
               "(85%% of 3x) |" % x_etcd)
    out.append("| config Read / etcd Range | %.2fx | >= 2.55x "
               "(85%% of 3x) |" % cread_etcd)
    out.append("| config Update / etcd Put | %.3fx | >= 1x (durable writes "
               ">= etcd Put) |" % cupd_put)
    out.append("")
    def mib(k):
        return "%.1f MiB" % (int(meta[k]) / 1024.0) if meta.get(k) else "-"
    out.append("| Memory | RSS (`ps -o rss`) | of which anonymous | "
               "Design target |")
    out.append("|---|---:|---:|---|")
    out.append("| discovery-srv idle, 2 s after start | %s | %s | RSS < "
               "10 MiB |" % (mib("rss_idle"), mib("anon_idle")))
    out.append("| discovery-srv after the load | %s | %s | |"
               % (mib("rss_loaded"), mib("anon_loaded")))
    out.append("| config-srv idle, 2 s after start | %s | %s | |"
               % (mib("rss_conf_idle"), mib("anon_conf_idle")))
    out.append("| config-srv after the load | %s | %s | |"
               % (mib("rss_conf"), mib("anon_conf")))
    out.append("| echo-server idle, 2 s after start | %s | %s | |"
               % (mib("rss_echo_idle"), mib("anon_echo_idle")))
    out.append("| echo-server after the load | %s | %s | |"
               % (mib("rss_echo"), mib("anon_echo")))
    out.append("| kv-srv idle, 2 s after start | %s | %s | |"
               % (mib("rss_kv_idle"), mib("anon_kv_idle")))
    out.append("| kv-srv after the load | %s | %s | |"
               % (mib("rss_kv"), mib("anon_kv")))
    out.append("| etcd after the load | %s | - | |" % mib("rss_etcd"))
    out.append("| redis-server after the load | %s | - | |"
               % mib("rss_redis"))
    out.append("")
    out.append("Anonymous memory (from `/proc/PID/smaps_rollup`) is the "
               "process's own heap and stacks; the rest of RSS is mapped "
               "code and data of the binary and shared libraries "
               "(libgrpc, OpenSSL, ...).")
    out.append("")

    verdict = []
    verdict.append(
        "discovery-srv's GetService served %.0f req/s, %.1f%% of the "
        "C-core echo baseline (%.0f req/s; target 85%%: %s) and %.2fx "
        "etcd's Range (%.0f req/s)" % (
            disc["rps"], pct_echo, echo["rps"],
            "met" if pct_echo >= 85.0 else "NOT met", x_etcd, etcd["rps"]))
    verdict.append(
        "the echo baseline was %.2fx etcd, so the design's premise of 3x "
        "%s" % (echo_x_etcd, "holds" if echo_x_etcd >= 3.0 else
                "does NOT hold on this machine"))
    verdict.append(
        "config-srv's cached Read served %.0f req/s, %.1f%% of the echo "
        "baseline (target 85%%: %s) and %.2fx etcd's Range" % (
            cread["rps"], cread_echo,
            "met" if cread_echo >= 85.0 else "NOT met", cread_etcd))
    verdict.append(
        "config-srv's durable Update served %.0f req/s, %.3fx etcd's Put "
        "(%.0f req/s; target at least etcd's Put: %s)" % (
            cupd["rps"], cupd_put, put["rps"],
            "met" if cupd_put >= 1.0 else "NOT met"))
    verdict.append(
        "discovery-srv's idle RSS was %.1f MiB (target under 10 MiB: %s; "
        "the bare echo-server idles at %.1f MiB)" % (
            rss_idle, "met" if rss_idle < 10.0 else "NOT met",
            int(meta["rss_echo_idle"]) / 1024.0))
    out.append("**Conclusion:** " + "; ".join(verdict) + ".")
    if cupd_put < 1.0:
        out.append("")
        out.append(
            "config Update is below etcd's Put, %.0f against %.0f req/s "
            "(p50 %s against %s). Updates are group-committed (every Update "
            "that arrives while a batch commits goes into the next "
            "transaction, one WAL flush each), so the limit is no longer "
            "one fsync per write but the work per write: config-srv's "
            "request handling, PostgreSQL's insert of the version and its "
            "two index entries, and the batch's round trips, on the same "
            "2 cores as the load generator (CPU columns above)."
            % (cupd["rps"], put["rps"], ms(cupd["p50"]), ms(put["p50"])))
    if echo["client_cpu"] >= 0.9 * h2threads:
        out.append("")
        out.append("Note: h2load used %.2f of its %d core(s) while loading "
                   "the echo server, so the baseline is at least partly "
                   "client-bound; its req/s is a lower bound of what the "
                   "echo server can do, which flatters the percentage above."
                   % (echo["client_cpu"], h2threads))
    out.append("")
    out.append("Versions: discovery-srv, config-srv and kv-srv %s (%s "
               "build, %s); "
               "gRPC C core %s (libgrpc); %s; %s; %s; client probe "
               "python3-grpcio %s; echo-server with %s poller(s)." % (
                   meta["commit"], meta["buildtype"], meta["cc"],
                   meta["grpc"], meta["h2load"], meta["etcd"],
                   meta.get("postgres", "PostgreSQL ?"),
                   meta["python_grpcio"], meta["echo_threads"]))
    out.append("")
    out.extend(render_kv(meta, rows))
    out.append(END)
    return "\n".join(out) + "\n"


def rb_shape(meta, key):
    """The redis-benchmark command of a redis_* target."""
    conns, streams = int(meta["conns"]), int(meta["streams"])
    pipe = key.endswith("_pipe")
    return "-c %d -P %d" % (conns if pipe else conns * streams,
                            streams if pipe else 1)


def row_line(name, call, r, cpu):
    return ("| %s | %s | %.0f (%.0f-%.0f) | %s | %s | %s | %s | %s | %s | "
            "%.2f | %.2f |" % (name, call, r["rps"], r["rps_min"],
                               r["rps_max"], ms(r["mean"]), ms(r["p50"]),
                               ms(r["p90"]), ms(r["p99"]), ms(r["max"]), cpu,
                               r["client_cpu"], r["other_cpu"]))


def redis_version(meta):
    m = re.search(r"v=(\S+)", meta.get("redis", ""))
    return m.group(1) if m else "?"


def render_kv(meta, rows):
    """The kv-srv section: kv Get and Put beside the same run's echo and
    etcd, kv-srv's Redis backend, and redis-server itself."""
    echo, rng, put = rows["echo"], rows["etcd_range"], rows["etcd_put"]
    kget, kput = rows["kv_get"], rows["kv_put"]
    rget, rset = rows["redis_get"], rows["redis_set"]
    rgetp, rsetp = rows["redis_get_pipe"], rows["redis_set_pipe"]
    skip = meta.get("kv_redis_skip", "")
    conns, streams = int(meta["conns"]), int(meta["streams"])
    out = ["### kv-srv beside Redis and etcd", ""]
    out.append(
        "The same run, the same h2load command for the gRPC targets. "
        "kv-srv: the release build, embedded backend, one node (no "
        "discovery, so no ring peers), guard off, `--metrics-listen` for "
        "the status counts, default logging to a file; Get of a key put "
        "once beforehand, Put of a 100-byte value to one key, every call "
        "a new version. redis-server %s runs in memory only (`--save '' "
        "--appendonly no`), loaded by `redis-benchmark -d 100` (a 100-byte "
        "value; one key, `%s`, which holds 100 bytes before GET is "
        "loaded): `-c %d -P 1` is %d connections with one request each, "
        "`-c %d -P %d` is h2load's shape (%d connections, %d requests in "
        "flight on each); both %d in flight. Its rows are redis-benchmark's "
        "own numbers (RESP, not gRPC; its latency histogram is coarser: "
        "0.1 ms steps below 2 ms), each run a count of requests for about "
        "%s s (from the previous run's rate), no warm-up but a first "
        "calibrating run." % (
            redis_version(meta),
            "key:__rand_int__", conns * streams, conns * streams, conns,
            streams, conns, streams, conns * streams, meta["duration"]))
    out.append("")
    out.append("| Target | call | req/s | mean | p50 | p90 | p99 | max | "
               "server CPU | client CPU | other CPU |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out.append(row_line("echo-server (anchor)", "`/bench.Echo/Echo`", echo,
                        "%.2f" % echo["server_cpu"]))
    out.append(row_line("etcd (anchor)", "`/etcdserverpb.KV/Range`", rng,
                        "%.2f" % rng["server_cpu"]))
    out.append(row_line("etcd (anchor)", "`/etcdserverpb.KV/Put`", put,
                        "%.2f" % put["server_cpu"]))
    for key, name, path, _ in KV_TARGETS:
        if key not in rows:
            out.append("| %s | `%s` | skipped | | | | | | | | |"
                       % (name, path))
            continue
        cpu = "%.2f" % rows[key]["server_cpu"]
        if key.startswith("kv_redis_"):
            cpu += " (redis %.2f)" % rows[key]["db_cpu"]
        out.append(row_line(name, "`%s`" % path, rows[key], cpu))
    for key, name, cmd, _ in REDIS_TARGETS:
        out.append(row_line(name, "%s, `redis-benchmark %s`" % (
            cmd, rb_shape(meta, key)), rows[key],
            "%.2f" % rows[key]["server_cpu"]))
    out.append("")
    out.append(
        "Client CPU is h2load's, or redis-benchmark's for the redis-server "
        "rows. kv-srv's Redis backend's server CPU includes "
        "redis-server's (in brackets).")
    out.append("")
    if skip:
        out.append("kv-srv's Redis backend was not measured: %s. The "
                   "bench starts it against its redis-server on every "
                   "run and loads it once it starts." % skip)
        out.append("")
    cuts = ", ".join("%s %d" % (k, rows[k]["cut"])
                     for k, _, _, _ in KV_TARGETS if k in rows)
    out.append(
        "kv-srv: %s Gets and %s Puts answered OK over the run, %s key(s) "
        "held afterwards; calls h2load left in flight at the end of each "
        "load (seen cancelled, allowed up to %d a load): %s; every other "
        "call ended OK by kv-srv's own metrics and log. redis-server sent "
        "no error reply (`INFO stats`) during any load." % (
            meta.get("kv_get_ok", "?"), meta.get("kv_put_ok", "?"),
            meta.get("kv_keys", "?"), conns * streams, cuts))
    out.append("")
    g_echo = 100.0 * kget["rps"] / echo["rps"]
    g_rng = kget["rps"] / rng["rps"]
    p_put = kput["rps"] / put["rps"]

    def ratio(what, a, b, target, pct=False):
        """A ratio of the medians, and of each round (the two targets ran
        in the same round, minutes apart at most)."""
        ra, rb = rows[a]["per_round"], rows[b]["per_round"]
        k = 100.0 if pct else 1.0
        fmt = "%.1f%%" if pct else "%.2fx"
        per = " ".join((fmt % (k * ra[i] / rb[i])).rstrip("x%")
                       for i in sorted(ra) if i in rb)
        out.append("| %s | %s | %s | %s |" % (
            what, fmt % (k * rows[a]["rps"] / rows[b]["rps"]), per, target))

    out.append("| Ratio | Value (medians) | Per round | Target |")
    out.append("|---|---:|---|---|")
    ratio("kv Get / echo", "kv_get", "echo", ">= 85%", pct=True)
    ratio("kv Get / etcd Range", "kv_get", "etcd_range", ">= 3x")
    ratio("kv Put / etcd Put", "kv_put", "etcd_put",
          ">= 1x (kv's Put is in memory, etcd's durable)")
    if "kv_redis_get" in rows:
        ratio("kv Get (Redis backend) / echo", "kv_redis_get", "echo", "",
              pct=True)
        ratio("kv Get (Redis backend) / redis GET (`%s`)" % rb_shape(
            meta, "redis_get"), "kv_redis_get", "redis_get", "")
    if "kv_redis_put" in rows:
        ratio("kv Put (Redis backend) / etcd Put", "kv_redis_put",
              "etcd_put", "")
    ratio("redis GET (`%s`) / echo" % rb_shape(meta, "redis_get"),
          "redis_get", "echo", "where Redis stands")
    ratio("redis GET (`%s`) / echo" % rb_shape(meta, "redis_get_pipe"),
          "redis_get_pipe", "echo", "")
    ratio("kv Get / redis GET (`%s`)" % rb_shape(meta, "redis_get"),
          "kv_get", "redis_get", "")
    ratio("kv Put / redis SET (`%s`)" % rb_shape(meta, "redis_set"),
          "kv_put", "redis_set", "")
    out.append("")
    v = ["kv-srv's Get served %.0f req/s, %.1f%% of the C-core echo "
         "(%.0f req/s; target 85%%: %s) and %.2fx etcd's Range (%.0f "
         "req/s; target 3x: %s)" % (
             kget["rps"], g_echo, echo["rps"],
             "met" if g_echo >= 85.0 else "NOT met", g_rng, rng["rps"],
             "met" if g_rng >= 3.0 else "NOT met"),
         "its Put %.0f req/s, %.2fx etcd's durable Put (%.0f req/s)"
         % (kput["rps"], p_put, put["rps"]),
         "redis-server itself answered GET at %.0f req/s with %d "
         "connections of one request each (%.2fx the gRPC echo, p50 %s) "
         "and %.0f req/s pipelined %d deep on %d connections (%.2fx the "
         "echo), SET at %.0f and %.0f req/s" % (
             rget["rps"], conns * streams, rget["rps"] / echo["rps"],
             ms(rget["p50"]), rgetp["rps"], streams, conns,
             rgetp["rps"] / echo["rps"], rset["rps"], rsetp["rps"])]
    if "kv_redis_get" in rows and "kv_redis_put" in rows:
        v.append("kv-srv in front of it served Get at %.0f and Put at %.0f "
                 "req/s" % (rows["kv_redis_get"]["rps"],
                            rows["kv_redis_put"]["rps"]))
    else:
        v.append("kv-srv's Redis backend was skipped (it does not start "
                 "yet)")
    out.append("**kv:** " + "; ".join(v) + ".")
    out.append("")
    out.append("Versions: %s; %s." % (meta.get("redis", "?"),
                                       meta.get("redis_benchmark", "?")))
    out.append("")
    return out


# The ratios a partial run reports when both sides were measured.
RATIOS = [("config_update", "etcd_put", "config Update / etcd Put"),
          ("config_read", "etcd_range", "config Read / etcd Range"),
          ("discovery", "echo", "discovery GetService / echo"),
          ("kv_get", "echo", "kv Get / echo"),
          ("kv_get", "etcd_range", "kv Get / etcd Range"),
          ("kv_put", "etcd_put", "kv Put / etcd Put"),
          ("kv_redis_get", "echo", "kv Get (Redis backend) / echo"),
          ("kv_redis_put", "etcd_put", "kv Put (Redis backend) / etcd Put"),
          ("kv_get", "redis_get", "kv Get / redis GET"),
          ("kv_put", "redis_set", "kv Put / redis SET")]


def render_partial(rows, meta):
    out = ["| Target | req/s median (min-max) | server CPU (db) | client "
           "CPU | other CPU |", "|---|---:|---:|---:|---:|"]
    named = [(k, n, p) for k, n, p, _ in TARGETS + KV_TARGETS]
    named += [(k, n, "/%s %s" % (c, rb_shape(meta, k)))
              for k, n, c, _ in REDIS_TARGETS]
    for key, name, path in named:
        if key not in rows:
            continue
        r = rows[key]
        out.append("| %s %s | %.0f (%.0f-%.0f) | %.2f (%.2f) | %.2f | "
                   "%.2f |" % (name, path.rsplit("/", 1)[1], r["rps"],
                               r["rps_min"], r["rps_max"], r["server_cpu"],
                               r["db_cpu"], r["client_cpu"],
                               r["other_cpu"]))
    out.append("")
    for a, b, what in RATIOS:
        if a not in rows or b not in rows:
            continue
        ra, rb = rows[a]["per_round"], rows[b]["per_round"]
        per = ["%.2f" % (ra[k] / rb[k]) for k in sorted(ra) if k in rb]
        out.append("%s: %.2fx (medians); per round: %s" % (
            what, rows[a]["rps"] / rows[b]["rps"], " ".join(per)))
    return "\n".join(out) + "\n"


def write_readme(path, section, begin=BEGIN, end=END):
    """Replaces the text from begin to end (section holds both markers),
    or appends section; db_bench.py writes its own markers' section."""
    text = open(path).read() if os.path.exists(path) else ""
    b, e = text.find(begin), text.find(end)
    if b >= 0 and e > b:
        text = text[:b] + section.rstrip("\n") + text[e + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    args = sys.argv[1:]
    readme = None
    partial = "--partial" in args
    if partial:
        args.remove("--partial")
    if "--readme" in args:
        i = args.index("--readme")
        readme = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    meta, rows, problems = summarize(args[0], partial)
    if partial:
        sys.stdout.write(render_partial(rows, meta))
        if meta.get("kv_redis_skip"):
            print("kv_redis_*: skipped: " + meta["kv_redis_skip"])
        if problems:
            print("report: " + "; ".join(problems), file=sys.stderr)
            return 1
        return 0
    section = render(meta, rows)
    sys.stdout.write(section)
    if problems:
        print("report: not writing results: " + "; ".join(problems),
              file=sys.stderr)
        return 1
    if readme:
        write_readme(readme, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
