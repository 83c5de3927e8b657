#!/usr/bin/python3
"""trace_bench: what tracing costs a discovery GetService call, and
trace-srv's ingest throughput, in one run on one machine.

Cost: four discovery-srv processes side by side, one with tracing off
(no --trace-endpoint), one exporting every trace to trace-srv
(--trace-sample 1), one at 1% (--trace-sample 0.01) and one at 1% with
--trace-tail (every span recorded and sent, marked unsampled, for
trace-srv's tail decision), each loaded in turn by h2load with the same
GetService body, connections, streams and duration, the order rotating
per round; the median req/s of each and its ratio to tracing off.

Ingest: N Python threads (python3-grpcio) send OTLP Exports of 512 spans
each, every span of a new trace id (made before the clock starts, sent
as bytes), to one trace-srv on PostgreSQL; spans/s is what trace-srv
stored (trace_spans_stored_total) over the wall time.

After each target's round the bench waits until that server has sent
every span it buffered, so trace-srv's work on them does not weigh on
the next target (they share the machine); the exporter's own cost stays
in the round it belongs to, and so does trace-srv's, which runs on the
same two cores while it is loaded.

Prints the tables; with --readme writes them between the bench:trace
markers of bench/README.md.

usage: bench/trace_bench.py [--readme]
  env: BENCH_BUILD_DIR (default build-release), PLATFORM_DATABASE
       (default: scripts/pg start, and its url), BENCH_DURATION=5,
       BENCH_ROUNDS=3, BENCH_CONNS=4, BENCH_STREAMS=32,
       BENCH_INGEST_SECONDS=5, BENCH_INGEST_CLIENTS=4
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
BUILD = os.environ.get('BENCH_BUILD_DIR', os.path.join(ROOT, 'build-release'))
os.environ.setdefault('PLATFORM_BUILD_DIR', BUILD)
import harness  # noqa: E402
sys.path.insert(0, HERE)
from benchlib import start, stop_all  # noqa: E402
import trace_harness as th  # noqa: E402

DURATION = int(os.environ.get('BENCH_DURATION', '5'))
ROUNDS = int(os.environ.get('BENCH_ROUNDS', '3'))
CONNS = os.environ.get('BENCH_CONNS', '4')
STREAMS = os.environ.get('BENCH_STREAMS', '32')
INGEST_S = float(os.environ.get('BENCH_INGEST_SECONDS', '5'))
INGEST_CLIENTS = int(os.environ.get('BENCH_INGEST_CLIENTS', '4'))
BATCH = 512
DISC = os.path.join(BUILD, 'services', 'discovery', 'discovery-srv')
TRACE = os.path.join(BUILD, 'services', 'trace', 'trace-srv')
GET = '/platform.discovery.v1.Discovery/GetService'
CONFIGS = [('off', []),
           ('on, 100%', ['--trace-sample', '1']),
           ('on, 1%', ['--trace-sample', '0.01']),
           ('on, 1% + --trace-tail', ['--trace-sample', '0.01',
                                       '--trace-tail'])]


def database():
    if os.environ.get('PLATFORM_DATABASE'):
        return os.environ['PLATFORM_DATABASE']
    subprocess.run([os.path.join(ROOT, 'scripts', 'pg'), 'start'],
                   check=True, stdout=subprocess.DEVNULL)
    return subprocess.run([os.path.join(ROOT, 'scripts', 'pg'), 'url'],
                          check=True, capture_output=True,
                          text=True).stdout.strip()


def serving(addr):
    ch = grpc.insecure_channel(addr)
    try:
        grpc.channel_ready_future(ch).result(timeout=30)
    finally:
        ch.close()


def metric(mport, name):
    return harness.metric(mport, name)


def frame(msg):
    b = msg.SerializeToString()
    return b'\0' + len(b).to_bytes(4, 'big') + b


def h2load(port, body):
    out = subprocess.run(
        ['h2load', '-c', CONNS, '-m', STREAMS, '-t', '1', '-D',
         str(DURATION), '--warm-up-time', '1',
         '-H', 'content-type: application/grpc', '-H', 'te: trailers',
         '-d', body, 'http://127.0.0.1:%d%s' % (port, GET)],
        capture_output=True, text=True, check=True).stdout
    m = re.search(r'finished in [^,]+, ([0-9.]+) req/s', out)
    ok = re.search(r'(\d+) succeeded, (\d+) failed', out)
    if m is None or ok is None or int(ok.group(2)) != 0:
        raise SystemExit('h2load: %s' % out[-600:])
    return float(m.group(1))


def settle(mport):
    """Until the server has sent every span it holds, so trace-srv's
    ingest of one target's spans does not load the next target's round
    (both share the machine)."""
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if metric(mport, 'platform_trace_spans_buffered') == 0:
            time.sleep(1)       # the last batch's commit
            return
        time.sleep(0.2)


def cost(db, work):
    env = dict(os.environ, PLATFORM_INSECURE_NO_AUTH='1',
               PLATFORM_DATABASE=db)
    tport = harness.free_port()
    start([TRACE, '--listen', '127.0.0.1:%d' % tport, '--log-format',
           'json'], env=env)
    serving('127.0.0.1:%d' % tport)
    ports, mports = {}, {}
    for name, extra in CONFIGS:
        port, mports[name] = harness.free_port(), harness.free_port()
        args = [DISC, '--listen', '127.0.0.1:%d' % port, '--log-format',
                'json', '--log-level', 'warn', '--metrics-listen',
                '127.0.0.1:%d' % mports[name]]
        if name != 'off':
            args += ['--trace-endpoint', '127.0.0.1:%d' % tport] + extra
        start(args, env=env)
        ports[name] = port
    P = harness.protos().discovery
    body = os.path.join(work, 'getservice.bin')
    for name, port in ports.items():
        serving('127.0.0.1:%d' % port)
        dc = harness.DiscoveryClient(grpc.insecure_channel(
            '127.0.0.1:%d' % port))
        req = P.RegisterRequest()
        req.service.name = 'bench.target'
        req.service.version = '1.0.0'
        for i in range(3):
            n = req.service.nodes.add()
            n.id = 'n%d' % i
            n.address = '10.0.0.%d:80' % i
        req.ttl_seconds = 3600
        dc.register_req(req)
    with open(body, 'wb') as f:
        f.write(frame(P.GetServiceRequest(name='bench.target')))
    rates = {name: [] for name, _ in CONFIGS}
    names = [n for n, _ in CONFIGS]
    for r in range(ROUNDS):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            rates[name].append(h2load(ports[name], body))
            settle(mports[name])
    stop_all()
    return {n: statistics.median(v) for n, v in rates.items()}


def ingest(db):
    env = dict(os.environ, PLATFORM_INSECURE_NO_AUTH='1',
               PLATFORM_DATABASE=db)
    port, mport = harness.free_port(), harness.free_port()
    start([TRACE, '--listen', '127.0.0.1:%d' % port, '--log-format', 'json',
           '--metrics-listen', '127.0.0.1:%d' % mport], env=env)
    addr = '127.0.0.1:%d' % port
    serving(addr)
    # Enough distinct requests for the run at a generous rate.
    need = int(INGEST_S * 60000 / BATCH) + INGEST_CLIENTS
    now = time.time_ns()
    bodies = []
    for k in range(need):
        spans = []
        for i in range(BATCH):
            tid, sid = os.urandom(16), os.urandom(8)
            spans.append(th.span(tid, sid, 'bench.op', start_ns=now + i,
                                 attrs={'http.route': '/r%d' % (i % 10)}))
        bodies.append(th.request('bench-svc', spans).SerializeToString())
    lock = threading.Lock()
    stop = time.monotonic() + INGEST_S

    def client():
        ch = grpc.insecure_channel(addr)
        call = ch.unary_unary(th.EXPORT)
        while time.monotonic() < stop:
            with lock:
                if not bodies:
                    return
                b = bodies.pop()
            call(b, timeout=60)
        ch.close()
    before = metric(mport, 'trace_spans_stored_total')
    t0 = time.monotonic()
    ts = [threading.Thread(target=client) for _ in range(INGEST_CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    stored = metric(mport, 'trace_spans_stored_total') - before
    if not bodies:
        print('note: ran out of prepared requests; raise the estimate',
              file=sys.stderr)
    stop_all()
    return stored / wall, stored, wall


def report(rates, ing):
    off = rates['off']
    lines = ['| discovery GetService | req/s | vs tracing off |',
             '|---|---:|---:|']
    for name, _ in CONFIGS:
        lines.append('| %s | %.0f | %.1f%% |' % (
            name, rates[name], 100.0 * rates[name] / off))
    lines += ['', '| trace-srv ingest | spans/s | spans | seconds |',
              '|---|---:|---:|---:|',
              '| OTLP Export, %d spans each, %d clients | %.0f | %d | %.1f |'
              % (BATCH, INGEST_CLIENTS, ing[0], ing[1], ing[2])]
    return '\n'.join(lines)


def main():
    readme = '--readme' in sys.argv[1:]
    for b in (DISC, TRACE):
        if not os.path.exists(b):
            raise SystemExit('missing %s (BENCH_BUILD_DIR)' % b)
    db = database()
    work = tempfile.mkdtemp(prefix='trace-bench-')
    try:
        rates = cost(db, work)
        ing = ingest(db)
    finally:
        stop_all()
    text = report(rates, ing)
    text += ('\n\n%d rounds of %ds per target, h2load -c %s -m %s, on %d '
             'cores, load generator included.' % (
                 ROUNDS, DURATION, CONNS, STREAMS, os.cpu_count()))
    print(text)
    if readme:
        p = os.path.join(HERE, 'README.md')
        s = open(p).read()
        block = '<!-- bench:trace -->\n' + text + '\n<!-- /bench:trace -->'
        if '<!-- bench:trace -->' in s:
            s = re.sub(r'<!-- bench:trace -->.*?<!-- /bench:trace -->',
                       lambda _: block, s, flags=re.S)
        else:
            s += '\n## Tracing (bench/trace_bench.py)\n\n' + block + '\n'
        open(p, 'w').write(s)


if __name__ == '__main__':
    main()
