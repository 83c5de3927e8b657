#!/usr/bin/python3
"""router_bench: what routing through router-srv costs a client and what
it buys it, in one run on one machine.

1. The client-side cost of the node choice per call (bench/route_cost.c):
   today's round robin beside the balancer with breakers and stats,
   round robin and P2C+EWMA, for 3, 10 and 50 nodes; no network.
2. Calls by name from libplatform's client (tests/router_client.c, one
   caller, one call at a time) to three probe-srv nodes, all healthy:
   calls a second with router-srv's views (P2C) and without (round
   robin).
3. The same fleet with one node answering 20 ms late: p50 and p99 of the
   calls with router-srv (P2C over its weights, the slow node degraded)
   and without (round robin: every third call waits).

Prints the tables; with --readme writes them between the bench:router
markers of bench/README.md.

usage: bench/router_bench.py [--readme]
  env: BENCH_BUILD (default build-release), PLATFORM_DATABASE (default:
       scripts/pg start, and its url), BENCH_CALLS=5000,
       BENCH_SLOW_MS=20
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, os.environ.get('BENCH_BUILD', 'build-release'))
os.environ.setdefault('PLATFORM_BUILD_DIR', BUILD)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
import harness  # noqa: E402
from harness import Server, wait_for  # noqa: E402

CALLS = int(os.environ.get('BENCH_CALLS', '5000'))
SLOW_MS = int(os.environ.get('BENCH_SLOW_MS', '20'))


def database():
    if os.environ.get('PLATFORM_DATABASE'):
        return os.environ['PLATFORM_DATABASE']
    pg = os.path.join(ROOT, 'scripts', 'pg')
    subprocess.run([pg, 'start'], check=True, stdout=subprocess.DEVNULL)
    return subprocess.run([pg, 'url'], check=True, capture_output=True,
                          text=True).stdout.strip()


def route_cost():
    out = subprocess.run([os.path.join(BUILD, 'bench', 'route-cost')],
                         check=True, capture_output=True, text=True).stdout
    return out.strip()


def run():
    os.environ['PLATFORM_TEST_DATABASE'] = database()
    import router_harness as rh
    rh.DATABASE = os.environ['PLATFORM_TEST_DATABASE']
    d = Server(discovery='self', name='bench-discovery')
    r = rh.router_server(d.address, name='bench-router')
    probes = [rh.probe_server(d.address, 'b%d' % i) for i in range(3)]
    rc = rh.RouterClient(r.get_channel())
    wait_for(lambda: len(rc.call('Select', service='probe').view.nodes)
             == 3, what='probe nodes in router-srv')
    routed = rh.Client(d.address)
    plain = rh.Client(d.address, router=False)
    wait_for(lambda: routed.views() > 0, what='a view')
    rows = {}
    try:
        for c in (routed, plain):
            c.calls(500)                     # warm: channels, EWMAs
        for name, c in (('router-srv (P2C)', routed),
                        ('round robin', plain)):
            res = c.calls(CALLS)
            rows[('healthy', name)] = res
        probes[1].probe.behave(delay_ms=SLOW_MS)
        # Let router-srv see the slow node from the reports (a second of
        # calls, then its decisions), as a fleet would in a while.
        wait_for(lambda: routed.calls(200) and any(
            n.state == rh.pb().NODE_STATE_DEGRADED for n in rc.call(
                'Select', service='probe').view.nodes),
            timeout=120, what='the slow node degraded')
        for name, c in (('router-srv (P2C)', routed),
                        ('round robin', plain)):
            rows[('slow', name)] = c.calls(CALLS)
    finally:
        for c in (routed, plain):
            c.close()
        for p in probes:
            p.stop()
        r.stop()
        d.stop()
    return rows


def tables(cost, rows):
    out = ['Client-side cost of the node choice, per call (pick and '
           'outcome, no network):', '', cost, '',
           'Calls by name, one caller, %d calls each, three probe-srv '
           'nodes:' % CALLS, '',
           '| fleet | routing | calls/s | p50 us | p99 us | share of '
           'the slow node |', '|---|---|---|---|---|---|']
    for (fleet, name), res in rows.items():
        n = sum(res['nodes'].values()) or 1
        slow = res['nodes'].get('b1', 0) / n if fleet == 'slow' else None
        out.append('| %s | %s | %.0f | %d | %d | %s |' % (
            'all healthy' if fleet == 'healthy' else
            'b1 %d ms late' % SLOW_MS, name, CALLS / (res['us'] / 1e6),
            res['p50_us'], res['p99_us'],
            '-' if slow is None else '%.1f%%' % (100 * slow)))
    return '\n'.join(out)


def main():
    cost = route_cost()
    rows = run()
    text = tables(cost, rows)
    print(text)
    if '--readme' in sys.argv:
        path = os.path.join(HERE, 'README.md')
        s = open(path).read()
        a, b = '<!-- bench:router -->', '<!-- /bench:router -->'
        i, j = s.index(a) + len(a), s.index(b)
        open(path, 'w').write(s[:i] + '\n' + text + '\n' + s[j:])


if __name__ == '__main__':
    main()
