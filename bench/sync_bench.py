#!/usr/bin/python3
"""sync_bench: sync-srv's locks and elections beside etcd's, in one run
on one machine.

Two numbers for each: uncontended Lock+Unlock round trips per second
(one lease, one name per client, every Lock answered at once), and
election failover time: a leader's lease lapses (it was never renewed)
and a waiting candidate's election is seen by an Observe stream. The
same Python load generator (python3-grpcio) drives sync-srv's
platform.sync.v1 and etcd's v3lock / v3election / Lease gRPC API the
same way; etcd's messages are written by hand below (a few fields each,
no .proto files needed). Prints a table; with --readme writes it between
the bench:sync markers of bench/README.md.

usage: bench/sync_bench.py [--readme]
  env: SYNC_BIN (default build-release/services/sync/sync-srv),
       PLATFORM_DATABASE (default: scripts/pg start, and its url),
       BENCH_SECONDS=5, BENCH_CLIENTS=8, BENCH_MORE_CLIENTS=32,
       BENCH_FAILOVERS=5,
       BENCH_TTL_MS=2000 (etcd takes whole seconds, at least 2)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
import harness  # noqa: E402
sys.path.insert(0, HERE)
from benchlib import pct, start, stop_all  # noqa: E402
import sync_harness as sh  # noqa: E402

SECONDS = float(os.environ.get('BENCH_SECONDS', '5'))
CLIENTS = int(os.environ.get('BENCH_CLIENTS', '8'))
MORE_CLIENTS = int(os.environ.get('BENCH_MORE_CLIENTS', '32'))
FAILOVERS = int(os.environ.get('BENCH_FAILOVERS', '5'))
TTL_MS = int(os.environ.get('BENCH_TTL_MS', '2000'))
CALL_S = 30.0


# ------------------------------------------------- protobuf, by hand

def _varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def enc(*fields):
    """(number, value) pairs: an int is a varint, bytes are
    length-delimited (a nested message is enc()'s bytes)."""
    out = b''
    for num, v in fields:
        if isinstance(v, int):
            out += _varint(num << 3) + _varint(v)
        else:
            out += _varint(num << 3 | 2) + _varint(len(v)) + v
    return out


def dec(buf):
    """{number: [value, ...]}: varints as int, the rest as bytes."""
    f, i = {}, 0

    def varint():
        nonlocal i
        n = s = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7f) << s
            s += 7
            if not b & 0x80:
                return n
    while i < len(buf):
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            v = varint()
        elif wt == 2:
            n = varint()
            v, i = bytes(buf[i:i + n]), i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            v, i = buf[i:i + 4], i + 4
        f.setdefault(num, []).append(v)
    return f


class Etcd:
    """etcd's Lease, v3lock and v3election services over one channel."""

    def __init__(self, addr):
        self.ch = grpc.insecure_channel(addr)
        u = self.ch.unary_unary
        ident = (lambda b: b)
        self._grant = u('/etcdserverpb.Lease/LeaseGrant', ident, ident)
        self._revoke = u('/etcdserverpb.Lease/LeaseRevoke', ident, ident)
        self._lock = u('/v3lockpb.Lock/Lock', ident, ident)
        self._unlock = u('/v3lockpb.Lock/Unlock', ident, ident)
        self._campaign = u('/v3electionpb.Election/Campaign', ident, ident)
        self._observe = self.ch.unary_stream(
            '/v3electionpb.Election/Observe', ident, ident)

    def grant(self, ttl_ms):
        r = dec(self._grant(enc((1, max(1, ttl_ms // 1000))),
                            timeout=CALL_S))
        return r[2][0]

    def revoke(self, lease):
        self._revoke(enc((1, lease)), timeout=CALL_S)

    def lock_unlock(self, name, lease):
        key = dec(self._lock(enc((1, name.encode()), (2, lease)),
                             timeout=CALL_S))[2][0]
        self._unlock(enc((1, key)), timeout=CALL_S)

    def campaign(self, name, lease, value):
        self._campaign(enc((1, name.encode()), (2, lease), (3, value)),
                       timeout=CALL_S)

    def observe(self, name):
        """Yields each leader's value."""
        for m in self._observe(enc((1, name.encode()))):
            kv = dec(m).get(2)
            yield dec(kv[0]).get(5, [b''])[0] if kv else None


class Sync:
    """sync-srv, the same four things."""

    def __init__(self, addr):
        self.ch = grpc.insecure_channel(addr)
        self.c = sh.SyncClient(self.ch)

    def grant(self, ttl_ms):
        return self.c.grant(ttl_ms)

    def revoke(self, lease):
        self.c.call('Revoke', lease_id=lease)

    def lock_unlock(self, name, lease):
        self.c.lock(name, lease, timeout=CALL_S)
        self.c.unlock(name, lease)

    def campaign(self, name, lease, value):
        self.c.call('Campaign', timeout=CALL_S, election=name,
                    lease_id=lease, value=value)

    def observe(self, name):
        for m in self.c._m['Observe'](sh.pb().ObserveRequest(
                election=name)):
            yield m.leader.value if m.HasField('leader') else None


# ---------------------------------------------------------- measures

def lock_rate(t, clients):
    """Lock+Unlock round trips per second with clients threads, each on
    its own name under its own lease; and every round trip's ms."""
    leases = [t.grant(60000) for _ in range(clients)]
    lat = [[] for _ in range(clients)]
    tag = harness.uniq('bench')
    for i in range(clients):               # warm up every name
        t.lock_unlock('%s-%d' % (tag, i), leases[i])
    end = time.monotonic() + SECONDS

    def run(i):
        name, lease = '%s-%d' % (tag, i), leases[i]
        while time.monotonic() < end:
            t0 = time.monotonic()
            t.lock_unlock(name, lease)
            lat[i].append((time.monotonic() - t0) * 1000)
    ths = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    dt = time.monotonic() - t0
    for lease in leases:
        t.revoke(lease)
    all_ = [x for v in lat for x in v]
    return len(all_) / dt, all_


def failover(t):
    """A leader on a lease of TTL_MS never renewed; a candidate waits on
    a long lease; an Observe stream sees the candidate's value. The ms
    from the lease's lapse (its grant's answer + TTL) to that."""
    name = harness.uniq('bench-el')
    a = t.grant(TTL_MS)
    lapse = time.monotonic() + TTL_MS / 1000.0
    t.campaign(name, a, b'a')
    b = t.grant(60000)
    seen = {}
    ready = threading.Event()

    def observe():
        for v in t.observe(name):
            ready.set()
            if v == b'b':
                seen['t'] = time.monotonic()
                return
    th = threading.Thread(target=observe, daemon=True)
    th.start()
    ready.wait(CALL_S)
    c = threading.Thread(target=t.campaign, args=(name, b, b'b'),
                         daemon=True)
    c.start()
    th.join(CALL_S + TTL_MS / 1000.0)
    c.join(CALL_S)
    t.revoke(b)
    if 't' not in seen:
        raise SystemExit('failover: no new leader observed in %s' % name)
    return (seen['t'] - lapse) * 1000


def measure(t):
    one, lat1 = lock_rate(t, 1)
    many, _ = lock_rate(t, CLIENTS)
    more, _ = lock_rate(t, MORE_CLIENTS)
    fo = [failover(t) for _ in range(FAILOVERS)]
    return {'one': one, 'lat': lat1, 'many': many, 'more': more,
            'failover': fo}


# ------------------------------------------------------------- setup

def database():
    db = os.environ.get('PLATFORM_DATABASE')
    if db:
        return db, False
    pg = os.path.join(ROOT, 'scripts', 'pg')
    started = subprocess.run([pg, 'status'], capture_output=True
                             ).returncode != 0
    subprocess.run([pg, 'start'], check=True, stdout=subprocess.DEVNULL)
    url = subprocess.run([pg, 'url'], check=True, capture_output=True,
                         text=True).stdout.strip()
    return url, started


def main():
    binary = os.environ.get('SYNC_BIN') or os.path.join(
        ROOT, 'build-release', 'services', 'sync', 'sync-srv')
    if not os.path.exists(binary):
        raise SystemExit('need %s (meson setup build-release '
                         '--buildtype=release && ninja -C build-release)'
                         % binary)
    db, pg_started = database()
    work = tempfile.mkdtemp(prefix='sync-bench-')
    try:
        sp, ep, pp = (harness.free_port() for _ in range(3))
        start([binary, '--listen', '127.0.0.1:%d' % sp, '--log-format',
               'json', '--log-level', 'warn'],
              env=dict(os.environ, PLATFORM_DATABASE=db,
                       PLATFORM_INSECURE_NO_AUTH='1'))
        start(['etcd', '--name', 'bench', '--data-dir', work + '/etcd',
               '--listen-client-urls', 'http://127.0.0.1:%d' % ep,
               '--advertise-client-urls', 'http://127.0.0.1:%d' % ep,
               '--listen-peer-urls', 'http://127.0.0.1:%d' % pp,
               '--initial-advertise-peer-urls', 'http://127.0.0.1:%d' % pp,
               '--initial-cluster', 'bench=http://127.0.0.1:%d' % pp,
               '--logger', 'zap', '--log-level', 'error'])
        for p in (sp, ep):
            harness.wait_for(lambda: harness.port_listening(p),
                             what='port %d' % p)
        s, e = Sync('127.0.0.1:%d' % sp), Etcd('127.0.0.1:%d' % ep)
        harness.wait_for(lambda: _ready(e), what='etcd ready')
        rows = [('sync-srv', measure(s)), ('etcd', measure(e))]
    finally:
        stop_all()
        shutil.rmtree(work, True)
        if pg_started:
            subprocess.run([os.path.join(ROOT, 'scripts', 'pg'), 'stop'],
                           stdout=subprocess.DEVNULL)
    table = report(rows)
    print(table)
    if '--readme' in sys.argv[1:]:
        readme = os.path.join(HERE, 'README.md')
        text = open(readme).read()
        b, e = '<!-- bench:sync:begin -->', '<!-- bench:sync:end -->'
        text = text[:text.index(b) + len(b)] + '\n\n' + table + '\n\n' + \
            text[text.index(e):]
        open(readme, 'w').write(text)


def _ready(e):
    try:
        e.revoke(e.grant(2000))
        return True
    except grpc.RpcError:
        return False


def report(rows):
    ver = subprocess.run(['etcd', '--version'], capture_output=True,
                         text=True).stdout.splitlines()[0]
    load = os.getloadavg()[0]
    rev = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short',
                          'HEAD'], capture_output=True,
                         text=True).stdout.strip()
    out = ['Measured %s on %d CPU(s), load average %.1f at the end (a '
           'busy machine: other work ran beside it, so numbers move '
           'between runs; rerun with `bench/sync_bench.py`); sync-srv %s '
           '(release build), %s; %gs per rate, %d and %d clients for the '
           'parallel ones, %d failovers with a %d ms lease.' % (
               time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
               os.cpu_count(), load, rev, ver, SECONDS, CLIENTS,
               MORE_CLIENTS, FAILOVERS, TTL_MS),
           '',
           '| Target | lock+unlock/s, 1 client | p50 | p99 | '
           'lock+unlock/s, %d clients | lock+unlock/s, %d clients | '
           'failover median | min | max |' % (CLIENTS, MORE_CLIENTS),
           '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for name, m in rows:
        fo = m['failover']
        out.append('| %s | %.0f | %.2f ms | %.2f ms | %.0f | %.0f | '
                   '%.0f ms | %.0f ms | %.0f ms |' % (
                       name, m['one'], pct(m['lat'], 0.5),
                       pct(m['lat'], 0.99), m['many'], m['more'],
                       pct(fo, 0.5), min(fo), max(fo)))
    return '\n'.join(out)


if __name__ == '__main__':
    try:
        main()
    finally:
        stop_all()
