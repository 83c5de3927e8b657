#!/usr/bin/python3
"""monitor_bench: what probing costs monitor-srv, in one run on one
machine.

BENCH_NODES (100) nodes are registered in a discovery-srv, every one
pointing at a real server answering grpc.health.v1 (a second
discovery-srv, the "target"), and monitor-srv probes each every
BENCH_INTERVAL_MS (1000). Over BENCH_SECONDS (10) the bench reads, from
/proc, the CPU time monitor-srv used and, as its anchor measured in the
same run, the CPU time the target used answering the same probes (the
other half of every probe); and monitor-srv's probes per second (its
monitor_probes_total) and resident memory. The same with no node
registered (the fleet alone: the discovery-srv and monitor-srv itself;
the target registers with itself) gives monitor-srv's idle cost. Prints a table; with --readme
writes it between the bench:monitor markers of bench/README.md.

usage: bench/monitor_bench.py [--readme]
  env: MONITOR_BIN (default build-release/services/monitor/monitor-srv),
       DISCOVERY_BIN (default build-release/services/discovery/
       discovery-srv), PLATFORM_DATABASE (default: scripts/pg start, and
       its url), BENCH_NODES=100, BENCH_INTERVAL_MS=1000, BENCH_SECONDS=10
"""

import os
import subprocess
import sys
import time
import urllib.request

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
import harness  # noqa: E402
sys.path.insert(0, HERE)
from benchlib import start, stop_all  # noqa: E402
from sync_bench import database  # noqa: E402

NODES = int(os.environ.get('BENCH_NODES', '100'))
INTERVAL_MS = int(os.environ.get('BENCH_INTERVAL_MS', '1000'))
SECONDS = float(os.environ.get('BENCH_SECONDS', '10'))
TICK = os.sysconf('SC_CLK_TCK')


def cpu_seconds(pid):
    """User and system CPU seconds of a process so far."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid):
    with open('/proc/%d/statm' % pid) as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def probes(mport):
    """Every probe monitor-srv made so far, by its metrics."""
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport,
                                timeout=10) as r:
        text = r.read().decode()
    return sum(float(ln.rsplit(' ', 1)[1]) for ln in text.splitlines()
               if ln.startswith('monitor_probes_total{'))


def window(mon, target, mport):
    """CPU of monitor-srv and of the target, probes/s, over SECONDS."""
    m0, t0, p0, w0 = (cpu_seconds(mon.pid), cpu_seconds(target.pid),
                      probes(mport), time.monotonic())
    time.sleep(SECONDS)         # a measuring window, not a wait for a state
    m1, t1, p1, w1 = (cpu_seconds(mon.pid), cpu_seconds(target.pid),
                      probes(mport), time.monotonic())
    span = w1 - w0
    return dict(mon_cpu=(m1 - m0) / span * 100,
                target_cpu=(t1 - t0) / span * 100,
                rate=(p1 - p0) / span, rss=rss_mib(mon.pid))


def main():
    build = os.path.join(ROOT, 'build-release', 'services')
    mbin = os.environ.get('MONITOR_BIN') or os.path.join(
        build, 'monitor', 'monitor-srv')
    dbin = os.environ.get('DISCOVERY_BIN') or os.path.join(
        build, 'discovery', 'discovery-srv')
    for b in (mbin, dbin):
        if not os.path.exists(b):
            raise SystemExit('need %s (meson setup build-release '
                             '--buildtype=release && ninja -C '
                             'build-release)' % b)
    db, pg_started = database()
    env = dict(os.environ, PLATFORM_DATABASE=db,
               PLATFORM_INSECURE_NO_AUTH='1')
    try:
        dp, tp, mp, mport = (harness.free_port() for _ in range(4))
        disc = '127.0.0.1:%d' % dp
        target = '127.0.0.1:%d' % tp
        start([dbin, '--listen', disc, '--log-level', 'warn'], env=env)
        tgt = start([dbin, '--listen', target, '--log-level', 'warn'],
                    env=env)
        mon = start([mbin, '--listen', '127.0.0.1:%d' % mp, '--discovery',
                     disc, '--log-level', 'warn', '--metrics-listen',
                     '127.0.0.1:%d' % mport, '--probe-interval-ms',
                     str(INTERVAL_MS), '--probe-timeout-ms',
                     str(min(INTERVAL_MS, 1000))], env=env)
        for p in (dp, tp, mp, mport):
            harness.wait_for(lambda: harness.port_listening(p),
                             what='port %d' % p)
        idle = window(mon, tgt, mport)
        d = harness.protos().discovery
        ch = grpc.insecure_channel(disc)
        harness.DiscoveryClient(ch).register(d.Service(
            name='bench-nodes', nodes=[d.Node(id='bench-%d' % i,
                                              address=target)
                                       for i in range(NODES)]),
            ttl_seconds=3600)
        want = NODES * 1000.0 / INTERVAL_MS
        # Every node probed at its own time within the first interval:
        # wait for the rate to be reached before measuring.
        harness.wait_for(lambda: window_rate(mport) >= 0.8 * want,
                         timeout=60, what='the probes at their rate')
        busy = window(mon, tgt, mport)
        ch.close()
    finally:
        stop_all()
        if pg_started:
            subprocess.run([os.path.join(ROOT, 'scripts', 'pg'), 'stop'],
                           stdout=subprocess.DEVNULL)
    table = report(idle, busy)
    print(table)
    if '--readme' in sys.argv[1:]:
        readme = os.path.join(HERE, 'README.md')
        text = open(readme).read()
        b, e = '<!-- bench:monitor:begin -->', '<!-- bench:monitor:end -->'
        text = text[:text.index(b) + len(b)] + '\n\n' + table + '\n\n' + \
            text[text.index(e):]
        open(readme, 'w').write(text)


def window_rate(mport):
    """Probes per second over one second."""
    p0, w0 = probes(mport), time.monotonic()
    time.sleep(1.0)             # the measuring window of the rate
    return (probes(mport) - p0) / (time.monotonic() - w0)


def report(idle, busy):
    rev = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short',
                          'HEAD'], capture_output=True,
                         text=True).stdout.strip()
    out = ['Measured %s on %d CPU(s), load average %.1f at the end (a busy '
           'machine: rerun with `bench/monitor_bench.py`); monitor-srv %s '
           '(release build); %d nodes probed every %d ms, %gs windows. CPU '
           'is %% of one core.' % (
               time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
               os.cpu_count(), os.getloadavg()[0], rev, NODES, INTERVAL_MS,
               SECONDS),
           '',
           '| Nodes | probes/s | monitor-srv CPU | per 1000 probes | '
           'target CPU (anchor: answering them) | monitor-srv RSS |',
           '|---:|---:|---:|---:|---:|---:|']
    for n, m in (('the fleet alone (2)', idle), (NODES + 2, busy)):
        # CPU-seconds per 1000 probes: cores busy / probes per second.
        per = '%.3f CPU-s' % (m['mon_cpu'] / 100 / m['rate'] * 1000) \
            if m['rate'] > 0 else '-'
        out.append('| %s | %.0f | %.1f%% | %s | %.1f%% | %.1f MiB |' % (
            n, m['rate'], m['mon_cpu'], per, m['target_cpu'], m['rss']))
    return '\n'.join(out)


if __name__ == '__main__':
    main()
