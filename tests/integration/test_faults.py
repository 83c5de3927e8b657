#!/usr/bin/python3
"""The whole fleet under load while its servers fail one after another.

discovery-srv, config-srv, event-srv and a ring of three kv-srv nodes
(replicas 2) on the test PostgreSQL, the guard off. Client threads write
all the time: config Update, event Publish, kv Put to the ring. A config
Watch and an event Subscribe follow the writes and, like a real client,
resume from the last revision / sequence they saw whenever their stream
ends. Meanwhile, one after another: kill -9 of config-srv, of event-srv,
of one kv node (each restarted on the same port, with the same identity),
a PostgreSQL stop and start, and kill -9 of discovery-srv.

Afterwards every acknowledged write is there (the final value of every
config path and kv key, every acknowledged event once and in order), the
watchers saw every acknowledged write exactly once and in order, and every
server that was not killed is the same process as at its start: it came
through the database outage without a restart.

Only acknowledged writes are the contract: a write that failed with
UNAVAILABLE or DEADLINE_EXCEEDED may or may not have happened, and is
retried until it is acknowledged (events with an idempotency key, so a
retry never stores a second event). Every wait is for a condition (acks
that grew after a restart, a ring that sees its members), each bounded.

Needs PLATFORM_TEST_DATABASE and PLATFORM_TEST_PG_CTL (scripts/test sets
both), else it says so and passes.
"""

import collections
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import config_harness as ch  # noqa: E402
import event_harness as eh  # noqa: E402
import kv_harness as kh  # noqa: E402
from harness import wait_for  # noqa: E402

C = grpc.StatusCode
RETRIABLE = (C.UNAVAILABLE, C.DEADLINE_EXCEEDED)

WRITERS = 2             # client threads per kind of write
WRITE_TIMEOUT = 5.0     # deadline of one attempt, seconds
WRITE_BOUND = 60.0      # one write not acknowledged by then fails the test
BACKOFF = 0.05          # between attempts of a client, seconds
PROGRESS = 20           # acks of every kind that show the load flows
PHASE = 60.0            # bound of one wait between faults, seconds
CONFIG_PATHS = 3        # paths per config writer

# Channels that try a restarted server again soon: gRPC's default
# reconnect backoff (1 s, growing to 2 min) would stretch every phase.
CHANNEL_OPTIONS = harness.CHANNEL_OPTIONS + [
    ('grpc.initial_reconnect_backoff_ms', 100),
    ('grpc.min_reconnect_backoff_ms', 100),
    ('grpc.max_reconnect_backoff_ms', 500),
]

REG_TTL = ['--register-ttl', '3']


def channel(address):
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


class Load:
    """Client threads and what they were acknowledged. Every thread runs
    until stop(); a write begun is retried until acknowledged even then,
    so that what is stored is exactly what was acknowledged."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []
        self.errors = []
        self.acks = collections.Counter()
        self.retries = collections.Counter()

    def spawn(self, name, fn, *args):
        """A thread running fn(*args); stop() waits for it."""
        self.threads.append(self.thread(name, fn, *args))

    def thread(self, name, fn, *args):
        """A started thread running fn(*args), its failure recorded."""
        def run():
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - reported by check
                with self.lock:
                    self.errors.append('%s: %r' % (name, e))
        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        return t

    def write(self, kind, call):
        """One write: call() until it is acknowledged; its answer."""
        deadline = time.monotonic() + WRITE_BOUND
        while True:
            try:
                r = call()
            except grpc.RpcError as e:
                if e.code() not in RETRIABLE:
                    raise AssertionError('%s write failed with %s: %s'
                                         % (kind, e.code(), e.details()))
                with self.lock:
                    self.retries[kind] += 1
                if time.monotonic() >= deadline:
                    raise AssertionError(
                        '%s write not acknowledged within %.0fs (last: '
                        '%s %s)' % (kind, WRITE_BOUND, e.code(),
                                    e.details()))
                time.sleep(BACKOFF)
                continue
            with self.lock:
                self.acks[kind] += 1
            return r

    def count(self, table, kind):
        with self.lock:
            return table[kind]

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(WRITE_BOUND + 10)
            if t.is_alive():
                raise AssertionError('%s did not stop' % t.name)


class Follower:
    """A stream that a client opens again from the last item it saw
    whenever it ends: open(last) makes the call, item(msg) returns the
    (position, payload) of a message or None for a marker."""

    def __init__(self, load, name, open_call, item, first):
        self.load = load
        self.name = name
        self.open_call = open_call
        self.item = item
        self.last = first
        self.seen = []          # (position, payload) in arrival order
        self.ends = collections.Counter()   # how streams ended, by code
        self.lock = threading.Lock()
        self.call = None
        self.done = False
        self.thread = load.thread(name, self.run)

    def run(self):
        while True:
            with self.lock:
                if self.done:
                    return
                call = self.call = self.open_call(self.last)
            try:
                for m in call:
                    it = self.item(m)
                    if it is not None:
                        with self.lock:
                            self.seen.append(it)
                            self.last = it[0]
                code = C.OK
            except grpc.RpcError as e:
                code = e.code()
            with self.lock:
                if self.done:
                    return
                self.ends[code] += 1
            if code not in (C.OK, C.UNAVAILABLE):
                raise AssertionError('%s ended with %s: %s'
                                     % (self.name, code, call.details()))
            time.sleep(BACKOFF)

    def positions(self):
        with self.lock:
            return [p for p, _ in self.seen]

    def close(self):
        with self.lock:
            self.done = True
            if self.call is not None:
                self.call.cancel()
        self.thread.join(PHASE)
        if self.thread.is_alive():
            raise AssertionError('%s did not stop' % self.name)


@unittest.skipUnless(ch.DATABASE and ch.PG_CTL,
                     'needs PLATFORM_TEST_DATABASE and PLATFORM_TEST_PG_CTL')
class FaultTest(unittest.TestCase):

    def setUp(self):
        self.t0 = time.monotonic()
        self.ring = kh.Ring(3)
        self.addCleanup(self.ring.kill)
        self.disc = self.ring.disc
        self.config = ch.config_server(discovery=self.disc.address,
                                       extra_args=REG_TTL)
        self.addCleanup(self.config.kill)
        self.event = eh.event_server(discovery=self.disc.address,
                                     extra_args=REG_TTL)
        self.addCleanup(self.event.kill)
        self.servers = [self.disc, self.config, self.event] + \
            self.ring.nodes
        self.pids = {s.name: s.proc.pid for s in self.servers}
        self.load = Load()
        self.addCleanup(self.stop_load)
        self.channels = []
        # What reads the kv writes back: a client per node.
        self.kv_readers = [self.client(kh.KVClient, s.address)
                           for s in self.ring.nodes]
        self.ns = ch.uniq_ns('faults')
        self.topic = 'faults.' + eh.uniq('t')
        self.table = kh.uniq('faults').replace('-', '_')
        self.config_acks = collections.defaultdict(list)  # path: [(rev, json)]
        self.event_acks = {}        # idempotency key: (sequence, id)
        self.kv_acks = {}           # key: (value, version)

    def stop_load(self):
        self.load.stopping.set()
        for f in getattr(self, 'followers', ()):
            with f.lock:
                f.done = True
                if f.call is not None:
                    f.call.cancel()
        for c in self.channels:
            c.close()

    def client(self, make, address):
        c = channel(address)
        self.channels.append(c)
        return make(c)

    # -- the load

    def config_writer(self, i):
        c = self.client(ch.ConfigClient, self.config.address)
        for n in range(10 ** 9):
            if self.load.stopping.is_set():
                return
            path = 'w%d/p%d' % (i, n % CONFIG_PATHS)
            doc = ch.dumps({'w': i, 'n': n})
            v = self.load.write('config', lambda: c.update(
                self.ns, path, doc, timeout=WRITE_TIMEOUT).value)
            with self.load.lock:
                # The document as the server wrote it back (canonical).
                self.config_acks[path].append((v.revision, v.json))

    def event_writer(self, i):
        c = self.client(eh.EventClient, self.event.address)
        for n in range(10 ** 9):
            if self.load.stopping.is_set():
                return
            key = 'w%d-%d' % (i, n)
            r = self.load.write('event', lambda: c.publish(
                self.topic, data=key.encode(), idempotency_key=key,
                timeout=WRITE_TIMEOUT))
            with self.load.lock:
                self.event_acks[key] = (r.sequence, r.id)

    def kv_writer(self, i):
        nodes = [self.client(kh.KVClient, s.address)
                 for s in self.ring.nodes]
        turn = [i]

        def put(key, value):
            # Each attempt to the next node: one that is down costs one
            # attempt, as with a client that skips a failed node.
            turn[0] += 1
            return nodes[turn[0] % len(nodes)].call(
                'Put', timeout=WRITE_TIMEOUT, table=self.table, key=key,
                value=value).entry
        for n in range(10 ** 9):
            if self.load.stopping.is_set():
                return
            # A key of its own per write: a key lost by the ring cannot
            # hide behind a later write of the same key.
            key = 'w%d-k%d' % (i, n)
            value = b'%d' % n
            e = self.load.write('kv', lambda: put(key, value))
            with self.load.lock:
                self.kv_acks[key] = (value, e.version)

    def start_followers(self):
        cc = self.client(ch.ConfigClient, self.config.address)
        ec = self.client(eh.EventClient, self.event.address)
        # The config watch starts after a revision of this namespace, so
        # it replays every write of the test.
        first = cc.put(self.ns, 'start', {'start': True}).revision
        EP = eh.pb()

        def open_config(last):
            return cc._m['Watch'](cc.pb.WatchRequest(
                namespaces=[self.ns], after_revision=last))

        def config_item(m):
            if m.caught_up:
                return None
            return (m.value.revision, (m.value.path, m.value.json))

        def open_event(last):
            if last == 0:
                req = EP.SubscribeRequest(subjects=[self.topic],
                                          start=EP.START_EARLIEST)
            else:
                req = EP.SubscribeRequest(subjects=[self.topic],
                                          start=EP.START_SEQUENCE,
                                          start_sequence=last + 1)
            return ec._m['Subscribe'](req)

        def event_item(m):
            if m.caught_up:
                return None
            return (m.event.sequence, m.event.id)

        self.cfollow = Follower(self.load, 'config-watch', open_config,
                                config_item, first)
        self.efollow = Follower(self.load, 'event-subscribe', open_event,
                                event_item, 0)
        self.followers = [self.cfollow, self.efollow]

    # -- waiting

    def check_load(self):
        with self.load.lock:
            errors = list(self.load.errors)
        if errors:
            self.fail('client threads failed:\n' + '\n'.join(errors))

    def progress(self, what, kinds=('config', 'event', 'kv')):
        """Waits until every kind of write was acknowledged PROGRESS more
        times than now."""
        base = {k: self.load.count(self.load.acks, k) for k in kinds}

        def grown():
            self.check_load()
            return all(self.load.count(self.load.acks, k) >=
                       base[k] + PROGRESS for k in kinds)
        try:
            wait_for(grown, timeout=PHASE, what=what)
        except AssertionError as e:
            self.check_load()
            raise AssertionError('%s; acks %s, retries %s'
                                 % (e, dict(self.load.acks),
                                    dict(self.load.retries))) from None

    def phase(self, what):
        """A line on stderr per phase, for whoever reads a failure."""
        sys.stderr.write('faults: %5.1fs %s (acks %s, retries %s)\n'
                         % (time.monotonic() - self.t0, what,
                            dict(self.load.acks), dict(self.load.retries)))

    def kill9_and_restart(self, srv):
        srv.kill()
        self.assertEqual(srv.returncode, -9, '%s was not killed' % srv.name)
        srv.check_sanitizers()
        srv.start()
        srv.wait_serving(30)
        self.pids[srv.name] = srv.proc.pid

    def registered(self):
        """discovery lists config-srv, event-srv and the three kv nodes."""
        dc = self.disc.discovery_client()
        want = {'config': 1, 'event': 1, 'kv': 3}
        for name, n in want.items():
            got = dc.get(name, timeout=2).services
            nodes = sum(len(s.nodes) for s in got)
            if nodes != n:
                return False
        return True

    # -- the test

    def test_faults_under_load(self):
        load = self.load
        self.start_followers()
        for i in range(WRITERS):
            load.spawn('config-%d' % i, self.config_writer, i)
            load.spawn('event-%d' % i, self.event_writer, i)
            load.spawn('kv-%d' % i, self.kv_writer, i)
        self.progress('the first writes')

        self.phase('kill -9 config-srv')
        self.kill9_and_restart(self.config)
        self.progress('writes after config-srv restarted')

        self.phase('kill -9 event-srv')
        self.kill9_and_restart(self.event)
        self.progress('writes after event-srv restarted')

        victim = self.ring.nodes[1]
        self.phase('kill -9 %s' % victim.name)
        self.kill9_and_restart(victim)
        self.ring.wait_members(timeout=PHASE)
        self.progress('writes after %s restarted' % victim.name)
        # It came back empty: what it owns must reach it from the others
        # (every kv write before the kill, readable through every node).
        self.wait_kv('the kv writes before the kill readable after %s '
                     'restarted' % victim.name)

        # PostgreSQL away: the durable writes fail (the outage is seen),
        # then flow again with no server restarted.
        self.phase('PostgreSQL stop')
        ch.pg_ctl('stop')
        try:
            base = {k: load.count(load.retries, k)
                    for k in ('config', 'event')}
            wait_for(lambda: all(load.count(load.retries, k) > base[k]
                                 for k in base), timeout=PHASE,
                     what='config and event writes failing while '
                     'PostgreSQL is stopped')
        finally:
            ch.pg_ctl('start')
        self.progress('writes after PostgreSQL came back')

        self.phase('kill -9 discovery-srv')
        self.kill9_and_restart(self.disc)
        wait_for(self.registered, timeout=PHASE,
                 what='every server registered again with discovery-srv')
        self.ring.wait_members(timeout=PHASE)
        self.progress('writes after discovery-srv restarted')

        self.phase('stopping the load')
        load.stop()
        self.phase('checking')
        self.check_load()
        self.assertGreater(sum(load.retries.values()), 0,
                           'no write ever failed: the faults did not bite')
        self.check_followers()
        self.phase('followers checked')
        self.check_config()
        self.check_events()
        self.check_kv()
        self.phase('data checked')
        self.check_servers()
        self.phase('servers stopped')

    # -- afterwards

    def check_followers(self):
        """Both watchers reach the last acknowledged write."""
        last_rev = max(r for acks in self.config_acks.values()
                       for r, _ in acks)
        last_seq = max(s for s, _ in self.event_acks.values())
        wait_for(lambda: self.cfollow.positions()[-1:] >= [last_rev],
                 timeout=PHASE, what='the config watch to see revision %d'
                 % last_rev)
        wait_for(lambda: self.efollow.positions()[-1:] >= [last_seq],
                 timeout=PHASE, what='the subscriber to see sequence %d'
                 % last_seq)
        for f in self.followers:
            f.close()
        self.check_load()
        for f in self.followers:
            pos = f.positions()
            dup = [b for a, b in zip(pos, pos[1:]) if b <= a]
            self.assertEqual(dup, [], '%s saw these out of order or twice '
                             '(stream ends: %s)' % (f.name, dict(f.ends)))
            self.assertGreater(sum(f.ends.values()), 0,
                               '%s never had to resume' % f.name)

    def check_config(self):
        c = self.client(ch.ConfigClient, self.config.address)
        seen = dict(self.cfollow.seen)       # revision: (path, json)
        last_seen = {}
        for rev, (path, doc) in self.cfollow.seen:
            last_seen[path] = doc
        for path, acks in sorted(self.config_acks.items()):
            rev, doc = acks[-1]
            v = c.read(self.ns, path).value
            # A retry whose first attempt was stored too may have made a
            # later version of the same document: never an older one.
            self.assertEqual(v.json, doc, 'config %s: not the last '
                             'acknowledged write' % path)
            self.assertGreaterEqual(v.revision, rev, 'config %s: older '
                                    'than the last acknowledged write'
                                    % path)
            stored = {h.revision: h.json
                      for h in c.history_all(self.ns, path,
                                             page_size=1000)[0]}
            lost = [(r, d) for r, d in acks if stored.get(r) != d]
            self.assertEqual(lost, [], 'config %s: acknowledged versions '
                             'missing from History' % path)
            missed = [(r, d) for r, d in acks if seen.get(r) != (path, d)]
            self.assertEqual(missed, [], 'config %s: acknowledged writes '
                             'the watch never saw' % path)
            self.assertEqual(last_seen.get(path), doc,
                             'config %s: the watch ended on another value'
                             % path)

    def check_events(self):
        c = self.client(eh.EventClient, self.event.address)
        stored = [(e.sequence, e.id, e.idempotency_key)
                  for e in c.query_all(subject=self.topic, page_size=1000,
                                       order=eh.pb().ORDER_OLDEST_FIRST)]
        acked = sorted((s, i, k) for k, (s, i) in self.event_acks.items())
        # Every write begun was retried until acknowledged, with its own
        # idempotency key: the stored events are exactly the acked ones.
        self.assertEqual(stored, acked, 'stored events differ from the '
                         'acknowledged ones')
        self.assertEqual(self.efollow.seen, [(s, i) for s, i, _ in acked],
                         'the subscriber did not see every acknowledged '
                         'event exactly once, in order')

    def kv_wrong(self, acks):
        """The acknowledged kv writes (key: (value, version)) that some
        node does not answer as acknowledged: 'node key: got, acked'."""
        keys = sorted(acks)
        wrong = []
        for s, c in zip(self.ring.nodes, self.kv_readers):
            got = {}
            for at in range(0, len(keys), 500):
                r = c.call('GetMany', table=self.table,
                           keys=keys[at:at + 500])
                got.update((e.key, (e.value, e.version))
                           for e in r.entries)
            # The acknowledged value at the acknowledged version, or at a
            # later one (an attempt that failed to answer but was stored).
            wrong += ['%s %s: %s, acknowledged %s'
                      % (s.name, k, got.get(k, 'missing'), acks[k])
                      for k in keys
                      if got.get(k, (None, 0))[0] != acks[k][0] or
                      got[k][1] < acks[k][1]]
        return wrong

    def wait_kv(self, what):
        """Waits until every kv write acknowledged so far reads back the
        same through every node."""
        with self.load.lock:
            acks = dict(self.kv_acks)
        last = []

        def right():
            last[:] = self.kv_wrong(acks)
            return not last
        try:
            wait_for(right, timeout=PHASE, what=what)
        except AssertionError as e:
            raise AssertionError('%s: %d wrong answers (node, key) for %d '
                                 'acknowledged kv writes, such as\n%s'
                                 % (e, len(last), len(acks),
                                    '\n'.join(last[:10]))) from None

    def check_kv(self):
        wrong = self.kv_wrong(self.kv_acks)
        if wrong:
            self.fail('%d wrong answers (node, key) for %d acknowledged '
                      'kv writes, such as\n%s'
                      % (len(wrong), len(self.kv_acks),
                         '\n'.join(wrong[:10])))

    def check_servers(self):
        for s in self.servers:
            self.assertTrue(s.running(), '%s exited:\n%s'
                            % (s.name, s.stderr()[-4000:]))
            self.assertEqual(s.proc.pid, self.pids[s.name],
                             '%s was restarted' % s.name)
            self.assertEqual(s.health_check('').status, 1,
                             '%s not SERVING' % s.name)
        # The clients' idle connections would only slow the drains down.
        for c in self.channels:
            c.close()
        for s in [self.config, self.event] + self.ring.nodes + [self.disc]:
            s.stop_clean()
            self.phase('%s stopped' % s.name)


if __name__ == '__main__':
    harness.run_tests()
