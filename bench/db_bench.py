#!/usr/bin/python3
"""db_bench: db-srv's Read by id and Create beside the same SQL issued
directly through libpq (pgbench), on one private PostgreSQL, in one run.

The floor is what a PostgREST-style server would run for the same call,
without any server in between: `SELECT doc FROM sql_docs WHERE id = $1`
and `INSERT INTO sql_docs (id, doc) VALUES (md5(random()::text),
$1::jsonb)`, prepared, parameters bound, one statement per transaction,
from C (pgbench), with as many requests in flight as db-srv gets. db-srv
is loaded by h2load (C, nghttp2) with gRPC-framed request bodies: the
same document, the same id. Both load generators run on this machine,
as do PostgreSQL and db-srv. See bench/README.md (db-srv).

usage: bench/db_bench.py [--write-readme]
  env: BENCH_BUILD_DIR (./build-release), BENCH_SECONDS=5,
       BENCH_WARMUP=1, BENCH_ROUNDS=3, BENCH_INFLIGHT=16 (requests in
       flight: h2load 2 connections x 8 streams; pgbench 16 clients),
       BENCH_PG_USER=postgres (who runs PostgreSQL when we are root),
       BENCH_KEEP=1 (keep the work dir with every log)
"""

import glob
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.abspath(os.environ.get('BENCH_BUILD_DIR') or
                        os.path.join(ROOT, 'build-release'))
os.environ.setdefault('PLATFORM_BUILD_DIR', BUILD)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
import harness  # noqa: E402
import db_harness as dh  # noqa: E402
sys.path.insert(0, HERE)
import report as report_md  # noqa: E402

SECONDS = float(os.environ.get('BENCH_SECONDS', '5'))
WARMUP = float(os.environ.get('BENCH_WARMUP', '1'))
ROUNDS = int(os.environ.get('BENCH_ROUNDS', '3'))
INFLIGHT = int(os.environ.get('BENCH_INFLIGHT', '16'))
KEEP = os.environ.get('BENCH_KEEP') == '1'
DOC = {'order': 12345, 'customer': 'c-778', 'amount': '99.95',
       'currency': 'EUR', 'items': [{'sku': 'a-1', 'qty': 2}], 'ok': True}
DOC_TEXT = json.dumps(DOC, separators=(',', ':'))
READ_ID = 'read-1'
DB, COLL = 'bench', 'docs'
PROCS = []


def log(msg):
    sys.stderr.write('[db_bench] %s\n' % msg)


def stop_all():
    for p in reversed(PROCS):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM if not getattr(p, 'pg', False)
                          else signal.SIGINT)     # postgres: fast shutdown
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    PROCS.clear()


def start(args, env=None, out=None, pg=False):
    p = subprocess.Popen(args, stdout=out or subprocess.DEVNULL,
                         stderr=subprocess.STDOUT if out else
                         subprocess.DEVNULL, env=env, cwd='/')
    p.pg = pg
    PROCS.append(p)
    return p


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float('nan')


# ------------------------------------------------------------ PostgreSQL

def pg_bin():
    dirs = sorted(glob.glob('/usr/lib/postgresql/*/bin'),
                  key=lambda d: [int(x) for x in re.findall(r'\d+', d)])
    for d in reversed(dirs):
        if os.path.exists(os.path.join(d, 'initdb')):
            return d
    raise SystemExit('initdb not found (Debian: postgresql)')


def as_pg_user():
    """The command prefix that runs PostgreSQL: it refuses root."""
    if os.geteuid() != 0:
        return []
    user = os.environ.get('BENCH_PG_USER', 'postgres')
    uid = int(subprocess.check_output(['id', '-u', user]))
    gid = int(subprocess.check_output(['id', '-g', user]))
    if uid == 0:
        raise SystemExit('BENCH_PG_USER must not be root')
    return ['setpriv', '--reuid=%d' % uid, '--regid=%d' % gid,
            '--init-groups', '--'], uid, gid


class Postgres:
    """A private PostgreSQL in work/pg with initdb's defaults (fsync on,
    synchronous_commit on), trust on its own socket and on loopback."""

    def __init__(self, work):
        b = pg_bin()
        self.dir = os.path.join(work, 'pg')
        self.sock = os.path.join(work, 'pgsock')
        os.makedirs(self.sock)
        pre = as_pg_user()
        run_as = []
        if pre:
            run_as, uid, gid = pre
            for d in (work, self.sock):
                os.chown(d, uid, gid)
        self.port = harness.free_port()
        subprocess.run(run_as + [os.path.join(b, 'initdb'), '-D', self.dir,
                                 '-U', 'postgres', '-E', 'UTF8',
                                 '--locale=C', '--auth=trust'],
                       check=True, stdout=subprocess.DEVNULL, cwd='/')
        self.log = open(os.path.join(work, 'postgres.log'), 'w')
        start(run_as + [os.path.join(b, 'postgres'), '-D', self.dir,
                        '-p', str(self.port), '-k', self.sock,
                        '-c', 'listen_addresses=127.0.0.1',
                        '-c', 'max_connections=200'],
              out=self.log, pg=True)
        harness.wait_for(lambda: subprocess.run(
            [os.path.join(b, 'pg_isready'), '-q', '-h', '127.0.0.1', '-p',
             str(self.port)]).returncode == 0, what='postgres')
        self.psql = os.path.join(b, 'psql')
        self.sql('postgres', 'CREATE DATABASE bench')
        self.url = 'postgresql://postgres@127.0.0.1:%d/bench' % self.port

    def sql(self, db, text):
        return subprocess.run(
            [self.psql, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h',
             '127.0.0.1', '-p', str(self.port), '-U', 'postgres', '-d', db,
             '-c', text], check=True, capture_output=True,
            text=True).stdout.strip()


# ---------------------------------------------------------------- db-srv

def frame(msg):
    b = msg.SerializeToString()
    return struct.pack('>BI', 0, len(b)) + b


def metrics_errors(mport):
    """db-srv's own count of calls that ended neither OK nor CANCELLED,
    by method: h2load sees only HTTP 200."""
    text = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport,
                                  timeout=10).read().decode()
    out = {}
    for m in re.finditer(r'platform_rpc_requests_total\{service="[^"]*",'
                         r'method="[^"]*/(\w+)",code="(\w+)"\} (\d+)', text):
        if m.group(2) not in ('OK', 'CANCELLED'):
            out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(3))
    return out


def h2load(work, name, port, method, body):
    """One h2load run; req/s, per-request latencies (ms), succeeded."""
    conns = 2 if INFLIGHT >= 2 else 1
    streams = max(1, INFLIGHT // conns)
    bf = os.path.join(work, name + '.bin')
    lf = os.path.join(work, name + '.lat')
    with open(bf, 'wb') as f:
        f.write(body)
    r = subprocess.run(
        ['h2load', '-c', str(conns), '-m', str(streams), '-t', '1',
         '-D', '%g' % SECONDS, '--warm-up-time', '%g' % WARMUP,
         '-H', 'content-type: application/grpc', '-H', 'te: trailers',
         '-d', bf, '--log-file', lf,
         'http://127.0.0.1:%d/platform.db.v1.DB/%s' % (port, method)],
        capture_output=True, text=True, check=True)
    rps = float(re.search(r'finished in [\d.]+\w*, ([\d.]+) req/s',
                          r.stdout).group(1))
    ok = int(re.search(r'(\d+) succeeded', r.stdout).group(1))
    lat = []
    with open(lf) as f:
        for ln in f:
            p = ln.split()
            if len(p) >= 3 and p[1] == '200':
                lat.append(int(p[2]) / 1000.0)
    return rps, lat, ok


# ---------------------------------------------------------------- pgbench

def pgbench(work, pg, name, script, var, value, seconds, log=True):
    """One pgbench run of script with :var = value; tps, latencies
    (ms)."""
    sf = os.path.join(work, name + '.sql')
    with open(sf, 'w') as f:
        f.write(script + '\n')
    prefix = os.path.join(work, 'pgb-' + name)
    for old in glob.glob(prefix + '.*'):
        os.unlink(old)
    args = ['pgbench', '-n', '-M', 'prepared', '-c', str(INFLIGHT),
            '-j', str(min(INFLIGHT, os.cpu_count() or 1)),
            '-T', str(max(1, int(round(seconds)))), '-f', sf,
            '-D', '%s=%s' % (var, value), '-h', '127.0.0.1', '-p',
            str(pg.port), '-U', 'postgres']
    if log:
        args += ['-l', '--log-prefix', prefix]
    r = subprocess.run(args + ['bench'], capture_output=True, text=True,
                       check=True, cwd=work)
    tps = float(re.search(r'tps = ([\d.]+) \(without initial',
                          r.stdout).group(1))
    lat = []
    for lf in glob.glob(prefix + '.*'):
        with open(lf) as f:
            for ln in f:
                p = ln.split()
                if len(p) >= 3:
                    lat.append(int(p[2]) / 1000.0)
    return tps, lat


SQL_READ = 'SELECT doc FROM sql_docs WHERE id = :id;'
SQL_CREATE = ('INSERT INTO sql_docs (id, doc) '
              'VALUES (md5(random()::text), :doc::jsonb);')


# ------------------------------------------------------------------ main

def main():
    write = '--write-readme' in sys.argv[1:]
    binary = os.path.join(BUILD, 'services', 'db', 'db-srv')
    for tool in ('h2load', 'pgbench'):
        if shutil.which(tool) is None:
            raise SystemExit('%s not found (Debian: nghttp2-client, '
                             'postgresql-client)' % tool)
    if not os.path.exists(binary):
        raise SystemExit('missing %s: meson setup build-release '
                         '--buildtype=release && ninja -C build-release'
                         % binary)
    work = tempfile.mkdtemp(prefix='db-bench-')
    load0 = os.getloadavg()
    res = {k: {'rps': [], 'lat': []} for k in
           ('read', 'sql_read', 'create', 'sql_create')}
    try:
        pg = Postgres(work)
        pg.sql('bench', 'CREATE TABLE sql_docs (id text PRIMARY KEY, '
               'doc jsonb NOT NULL)')
        pg.sql('bench', "INSERT INTO sql_docs VALUES ('%s', '%s')"
               % (READ_ID, DOC_TEXT))
        port, mport = harness.free_port(), harness.free_port()
        start([binary, '--listen', '127.0.0.1:%d' % port,
               '--metrics-listen', '127.0.0.1:%d' % mport,
               '--log-level', 'warn'],
              env=dict(os.environ, PLATFORM_DATABASE=pg.url,
                       PLATFORM_INSECURE_NO_AUTH='1'),
              out=open(os.path.join(work, 'db-srv.log'), 'w'))
        harness.wait_for(lambda: harness.port_listening(port),
                         what='db-srv')
        c = dh.new_client('127.0.0.1:%d' % port)
        c.call('CreateDatabase', name=DB)
        c.call('CreateCollection', database=DB, name=COLL)
        c.create(DB, COLL, DOC, id=READ_ID)
        P = dh.pb()
        read = frame(P.ReadRequest(database=DB, collection=COLL,
                                   id=READ_ID))
        create = frame(P.CreateRequest(database=DB, collection=COLL,
                                       json=DOC_TEXT))
        # The bodies h2load sends, proven through a real gRPC client.
        assert json.loads(c.req('Read', P.ReadRequest.FromString(
            read[5:])).document.json) == DOC
        pgbench(work, pg, 'warm', SQL_READ, 'id', READ_ID, WARMUP, False)
        for rnd in range(ROUNDS):
            order = ['read', 'sql_read', 'create', 'sql_create']
            if rnd % 2:
                order = ['sql_read', 'read', 'sql_create', 'create']
            for t in order:
                log('round %d/%d: %s' % (rnd + 1, ROUNDS, t))
                if t == 'read':
                    rps, lat, _ = h2load(work, t, port, 'Read', read)
                elif t == 'create':
                    n0 = c.call('Count', database=DB,
                                collection=COLL).count
                    rps, lat, ok = h2load(work, t, port, 'Create', create)
                    added = c.call('Count', database=DB,
                                   collection=COLL).count - n0
                    # Every Create h2load saw succeed is stored (more may
                    # be: calls cut when its time ran out).
                    if added < ok:
                        raise SystemExit('Create: %d succeeded, %d stored'
                                         % (ok, added))
                elif t == 'sql_read':
                    rps, lat = pgbench(work, pg, t, SQL_READ, 'id',
                                       READ_ID, SECONDS)
                else:
                    rps, lat = pgbench(work, pg, t, SQL_CREATE, 'doc',
                                       DOC_TEXT, SECONDS)
                res[t]['rps'].append(rps)
                res[t]['lat'].extend(lat)
        errors = metrics_errors(mport)
        settings = pg.sql('bench', "SELECT string_agg(name || '=' || "
                          "setting, ', ' ORDER BY name) FROM pg_settings "
                          "WHERE name IN ('fsync', 'synchronous_commit')")
        version = pg.sql('bench', 'SHOW server_version')
    finally:
        stop_all()
        if KEEP:
            log('work dir kept: %s' % work)
        else:
            shutil.rmtree(work, True)
    table = report(res, errors, settings, version, load0, os.getloadavg())
    print(table)
    if write:
        b, e = '<!-- bench:db:begin -->', '<!-- bench:db:end -->'
        report_md.write_readme(os.path.join(HERE, 'README.md'),
                               '%s\n\n%s\n%s\n' % (b, table, e), b, e)
        log('wrote the table into bench/README.md')


def report(res, errors, settings, version, load0, load1):
    med = {k: sorted(v['rps'])[len(v['rps']) // 2] for k, v in res.items()}
    out = ['Measured %s on %d CPU(s), load average %.1f before and %.1f '
           'after (other work on the machine: noisy); PostgreSQL %s (%s); '
           '%d rounds of %gs per target, %d requests in flight; req/s the '
           'median round, latencies over every request.' % (
               time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
               os.cpu_count(), load0[0], load1[0], version, settings,
               ROUNDS, SECONDS, INFLIGHT),
           '',
           '| Target | req/s | vs plain SQL | p50 | p90 | p99 | max |',
           '|---|---:|---:|---:|---:|---:|---:|']
    rows = (('db-srv Read by id (gRPC)', 'read', 'sql_read'),
            ('plain SQL SELECT by id (pgbench)', 'sql_read', None),
            ('db-srv Create (gRPC, committed)', 'create', 'sql_create'),
            ('plain SQL INSERT of a JSONB document (pgbench)', 'sql_create',
             None))
    for name, k, floor in rows:
        lat = res[k]['lat']
        out.append('| %s | %.0f | %s | %s |' % (
            name, med[k], '%.0f%%' % (100.0 * med[k] / med[floor])
            if floor else '-', ' | '.join('%.2f ms' % pct(lat, q)
                                          for q in (0.5, 0.9, 0.99, 1.0))))
    out.append('')
    out.append('Req/s of every round: ' + '; '.join(
        '%s %s' % (k, ' '.join('%.0f' % x for x in res[k]['rps']))
        for k in res) + '. db-srv calls that ended neither OK nor '
        'CANCELLED: %s.' % (json.dumps(errors, sort_keys=True)
                            if errors else 'none'))
    return '\n'.join(out)


if __name__ == '__main__':
    try:
        main()
    finally:
        stop_all()
