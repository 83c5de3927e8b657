#!/usr/bin/python3
"""kv-srv over real gRPC: one node, a ring of three, and Redis.

The same functional tests (every RPC, compare-and-set races, TTL expiry,
counters, paging, Watch from the current state, bad input for every
field) run against one kv-srv, against a ring of three kv-srv nodes
registered with a real discovery-srv (each call to a node that does not
own the key), against two kv-srv in front of a real redis-server started
by the test, and against kv-srv in front of a real three-master Redis
Cluster (which also has a slot moved under it). Redis restarting under
kv-srv gives UNAVAILABLE, ends Watch streams, and is recovered from. The ring also loses a node to kill -9 and gains one, with
every key still readable; one node evicts under its memory limit.
"""

import os
import signal
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import kv_harness as kh  # noqa: E402
from harness import rpc_error, wait_for  # noqa: E402
from kv_harness import Ring, metered, metric  # noqa: E402

C = grpc.StatusCode
P = kh.pb()
PUT = P.EVENT_TYPE_PUT
DELETE = P.EVENT_TYPE_DELETE
EXPIRED = P.EVENT_TYPE_EXPIRED
SYNCED = P.EVENT_TYPE_SYNCED


class Functional:
    """What every kv-srv answers the same way, whichever backend or node:
    self.c (a client), self.clients (one per node to spread calls)."""

    def setUp(self):
        self.t = kh.uniq('t').replace('-', '_')
        self._watches = []

    def tearDown(self):
        for w in self._watches:
            w.close()

    def other(self, i):
        """The client of the i-th call, round robin over the nodes."""
        return self.clients[i % len(self.clients)]

    # -- reads and writes

    def test_put_get_and_versions(self):
        e1 = self.c.put(self.t, 'a', b'1')
        self.assertEqual((e1.key, e1.value, e1.expires_unix_ms),
                         ('a', b'1', 0))
        for i, c in enumerate(self.clients):
            got = c.get(self.t, 'a')
            self.assertEqual((got.value, got.version), (b'1', e1.version))
        e2 = self.other(1).put(self.t, 'a', b'2')
        self.assertGreater(e2.version, e1.version)
        self.assertEqual(self.other(2).get(self.t, 'a').value, b'2')
        self.assertCode(rpc_error(self.c.get, self.t, 'missing'),
                        C.NOT_FOUND)
        # An empty value is a value.
        self.c.put(self.t, 'empty', b'')
        self.assertEqual(self.other(1).get(self.t, 'empty').value, b'')
        # Tables are apart.
        self.assertCode(rpc_error(self.c.get, self.t + 'x', 'a'),
                        C.NOT_FOUND)

    def test_if_absent_and_compare_and_set(self):
        e = self.c.put(self.t, 'k', b'v', if_absent=True)
        self.assertCode(rpc_error(self.other(1).put, self.t, 'k', b'w',
                                  if_absent=True), C.ALREADY_EXISTS)
        self.assertCode(rpc_error(self.other(2).put, self.t, 'k', b'w',
                                  expected_version=e.version + 1),
                        C.FAILED_PRECONDITION, 'expected_version')
        e2 = self.other(1).put(self.t, 'k', b'w', expected_version=e.version)
        self.assertEqual(self.c.get(self.t, 'k').value, b'w')
        self.assertCode(rpc_error(self.c.put, self.t, 'nothere', b'x',
                                  expected_version=5),
                        C.FAILED_PRECONDITION)
        self.assertGreater(e2.version, e.version)

    def test_cas_race_exactly_one_wins(self):
        base = self.c.put(self.t, 'race', b'0')
        results, lock = [], threading.Lock()

        def contend(i):
            c = self.other(i)
            try:
                c.put(self.t, 'race', b'%d' % i,
                      expected_version=base.version)
                r = 'ok'
            except grpc.RpcError as err:
                r = err.code()
            with lock:
                results.append((i, r))
        ts = [threading.Thread(target=contend, args=(i,)) for i in range(20)]
        for th in ts:
            th.start()
        for th in ts:
            th.join(60)
        wins = [i for i, r in results if r == 'ok']
        self.assertEqual(len(wins), 1, results)
        self.assertEqual({r for _, r in results if r != 'ok'},
                         {C.FAILED_PRECONDITION})
        self.assertEqual(self.c.get(self.t, 'race').value,
                         b'%d' % wins[0])

    def test_create_race_exactly_one_wins(self):
        results, lock = [], threading.Lock()

        def create(i):
            try:
                self.other(i).put(self.t, 'once', b'%d' % i, if_absent=True)
                r = 'ok'
            except grpc.RpcError as err:
                r = err.code()
            with lock:
                results.append(r)
        ts = [threading.Thread(target=create, args=(i,)) for i in range(20)]
        for th in ts:
            th.start()
        for th in ts:
            th.join(60)
        self.assertEqual(results.count('ok'), 1, results)
        self.assertEqual(results.count(C.ALREADY_EXISTS), 19, results)

    def test_delete(self):
        e = self.c.put(self.t, 'd', b'x')
        self.assertCode(rpc_error(self.c.delete, self.t, 'd',
                                  expected_version=e.version + 1),
                        C.FAILED_PRECONDITION)
        r = self.other(1).delete(self.t, 'd', expected_version=e.version)
        self.assertTrue(r.deleted)
        self.assertGreater(r.version, e.version)
        for c in self.clients:
            self.assertCode(rpc_error(c.get, self.t, 'd'), C.NOT_FOUND)
        self.assertFalse(self.c.delete(self.t, 'd').deleted)
        # Made again, the key's version is still larger.
        e2 = self.other(2).put(self.t, 'd', b'y', if_absent=True)
        self.assertGreater(e2.version, r.version)

    def test_ttl_expiry(self):
        e = self.c.put(self.t, 'short', b'x', ttl_ms=300)
        self.assertGreater(e.expires_unix_ms, 0)
        self.c.put(self.t, 'long', b'y', ttl_ms=600000)
        wait_for(lambda: rpc_error(self.other(1).get, self.t,
                                   'short').code() == C.NOT_FOUND,
                 what='the entry to expire')
        self.assertEqual(self.c.get(self.t, 'long').value, b'y')
        # Expired is absent: if_absent takes it again.
        self.other(2).put(self.t, 'short', b'z', if_absent=True)

    def test_increment(self):
        r = self.c.incr(self.t, 'n', 5)
        self.assertEqual((r.value, r.entry.value), (5, b'5'))
        self.assertEqual(self.other(1).incr(self.t, 'n', -7).value, -2)

        def bump(i):
            c = self.other(i)
            for _ in range(25):
                c.incr(self.t, 'n', 1)
        ts = [threading.Thread(target=bump, args=(i,)) for i in range(8)]
        for th in ts:
            th.start()
        for th in ts:
            th.join(60)
        self.assertEqual(self.c.get(self.t, 'n').value, b'198')
        self.c.put(self.t, 'text', b'abc')
        self.assertCode(rpc_error(self.c.incr, self.t, 'text', 1),
                        C.FAILED_PRECONDITION)
        self.c.put(self.t, 'big', b'9223372036854775807')
        self.assertCode(rpc_error(self.c.incr, self.t, 'big', 1),
                        C.FAILED_PRECONDITION)
        self.assertEqual(self.c.get(self.t, 'big').value,
                         b'9223372036854775807')

    def test_get_many_put_many(self):
        items = [P.PutItem(key='m%02d' % i, value=b'%d' % i)
                 for i in range(30)]
        r = self.c.call('PutMany', table=self.t, items=items)
        self.assertEqual([e.key for e in r.entries],
                         ['m%02d' % i for i in range(30)])
        g = self.other(1).call('GetMany', table=self.t,
                               keys=['m05', 'nope', 'm29'])
        self.assertEqual([(e.key, e.value) for e in g.entries],
                         [('m05', b'5'), ('m29', b'29')])
        self.assertEqual(list(g.missing), ['nope'])
        # One bad item: nothing is set.
        bad = [P.PutItem(key='ok1', value=b'1'),
               P.PutItem(key='', value=b'2')]
        self.assertCode(rpc_error(self.c.call, 'PutMany', table=self.t,
                                  items=bad), C.INVALID_ARGUMENT,
                        'items[1].key')
        self.assertCode(rpc_error(self.c.get, self.t, 'ok1'), C.NOT_FOUND)

    def test_list_paged_by_prefix(self):
        keys = ['p/%03d' % i for i in range(57)]
        for i, k in enumerate(keys):
            self.other(i).put(self.t, k, k.encode())
        self.c.put(self.t, 'q/other', b'x')
        got = self.other(1).list_all(self.t, 'p/', page_size=10)
        self.assertEqual([e.key for e in got], keys)
        self.assertEqual([e.value for e in got[:2]], [b'p/000', b'p/001'])
        r = self.c.call('List', table=self.t, prefix='p/', page_size=5,
                        keys_only=True)
        self.assertEqual([(e.key, e.value) for e in r.entries],
                         [(k, b'') for k in keys[:5]])
        self.assertTrue(r.next_page_token)
        everything = self.c.list_all(self.t)
        self.assertEqual(len(everything), 58)

    # -- Watch

    def watch(self, client, prefix=''):
        w = client.watch(self.t, prefix)
        self._watches.append(w)
        return w

    def until_synced(self, w):
        out = {}
        for _ in range(100000):
            m = w.next()
            if m.type == SYNCED:
                return out
            self.assertEqual(m.type, PUT)
            out[m.entry.key] = m.entry.value
        self.fail('no SYNCED')

    def next_change(self, w, key):
        """The next event about key (others under the prefix skipped)."""
        for _ in range(10000):
            m = w.next()
            if m.entry.key == key:
                return m
        self.fail('no event about %s' % key)

    def test_watch_from_current_state(self):
        for i in range(10):
            self.other(i).put(self.t, 'w/%d' % i, b'%d' % i)
        self.c.put(self.t, 'x/outside', b'-')
        w = self.watch(self.other(1), 'w/')
        self.assertEqual(self.until_synced(w),
                         {'w/%d' % i: b'%d' % i for i in range(10)})
        e = self.other(2).put(self.t, 'w/new', b'n')
        m = self.next_change(w, 'w/new')
        self.assertEqual((m.type, m.entry.value, m.entry.version),
                         (PUT, b'n', e.version))
        self.c.delete(self.t, 'w/3')
        self.assertEqual(self.next_change(w, 'w/3').type, DELETE)
        self.c.put(self.t, 'w/ttl', b't', ttl_ms=200)
        self.assertEqual(self.next_change(w, 'w/ttl').type, PUT)
        self.assertEqual(self.next_change(w, 'w/ttl').type, EXPIRED)
        self.c.put(self.t, 'x/outside', b'again')
        self.c.put(self.t, 'w/last', b'l')
        self.assertEqual(w.next().entry.key, 'w/last')

    # -- bad input

    def test_bad_input(self):
        c, t = self.c, self.t
        cases = [
            ('Get', dict(table='', key='k'), 'table'),
            ('Get', dict(table='a b', key='k'), 'table'),
            ('Get', dict(table='x' * 129, key='k'), 'table'),
            ('Get', dict(table=t, key=''), 'key'),
            ('Get', dict(table=t, key='k' * 1025), 'key'),
            ('Put', dict(table=t, key='k', value=b'x' * (1024 * 1024 + 1)),
             'value'),
            ('Put', dict(table=t, key='k', ttl_ms=-1), 'ttl_ms'),
            ('Put', dict(table=t, key='k', ttl_ms=2592000001), 'ttl_ms'),
            ('Put', dict(table=t, key='k', expected_version=-1),
             'expected_version'),
            ('Put', dict(table=t, key='k', if_absent=True,
                         expected_version=3), 'if_absent'),
            ('Delete', dict(table=t, key=''), 'key'),
            ('Delete', dict(table=t, key='k', expected_version=-2),
             'expected_version'),
            ('Increment', dict(table=t, key='k', ttl_ms=-5), 'ttl_ms'),
            ('GetMany', dict(table=t, keys=['a', '']), 'keys[1]'),
            ('GetMany', dict(table=t, keys=['k'] * 1001), 'keys'),
            ('PutMany', dict(table=t), 'items'),
            ('List', dict(table=t, page_size=-1), 'page_size'),
            ('List', dict(table=t, page_token='garbage'), 'page_token'),
            ('List', dict(table=t, prefix='p' * 1025), 'prefix'),
        ]
        for method, fields, field in cases:
            with self.subTest(method=method, field=field):
                self.assertCode(rpc_error(c.call, method, **fields),
                                C.INVALID_ARGUMENT, field)
        # A key that is not UTF-8, on the wire.
        raw = harness.ld_field(1, t.encode()) + harness.ld_field(
            2, b'\xff\xfe')
        self.assertCode(rpc_error(c.raw, 'Get', raw), C.INVALID_ARGUMENT,
                        'key')
        self.assertCode(rpc_error(c.raw, 'Put', b'\xff\xff\xff'),
                        C.INVALID_ARGUMENT)
        err = c.watch('', '').end()
        self.assertCode(err, C.INVALID_ARGUMENT, 'table')
        # Nothing was written by any of it.
        self.assertEqual(c.list_all(t), [])


class OneServer(Functional):
    """The functional tests against the one kv-srv cls.start() gives."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start()
        cls.addClassCleanup(cls.srv.kill)
        cls.c = kh.client_of(cls.srv)
        cls.clients = [cls.c]

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop_clean()


class SingleNodeTest(OneServer, harness.ServiceCase):
    """One kv-srv, no discovery."""

    @classmethod
    def start(cls):
        return metered('kv-single')

    def test_eviction_under_memory_limit(self):
        srv = metered('kv-small', extra=['--max-memory', '64K'])
        self.addCleanup(srv.kill)
        c = kh.client_of(srv)
        for i in range(200):
            c.put('lru', 'k%03d' % i, b'v' * 1024)
            if i == 150:
                c.get('lru', 'k100')    # recently used: kept longer
        self.assertGreater(metric(srv, 'kv_evictions_total'), 0)
        self.assertLessEqual(metric(srv, 'kv_memory_bytes'), 64 * 1024)
        self.assertCode(rpc_error(c.get, 'lru', 'k000'), C.NOT_FOUND)
        self.assertEqual(c.get('lru', 'k199').value, b'v' * 1024)
        self.assertEqual(c.get('lru', 'k100').value, b'v' * 1024)
        self.assertCode(rpc_error(c.put, 'lru', 'huge',
                                  b'x' * (64 * 1024)),
                        C.RESOURCE_EXHAUSTED)
        srv.stop_clean()

    def test_bad_settings(self):
        for args, flag in ((['--max-memory', 'lots'], '--max-memory'),
                           (['--replicas', '0'], '--replicas'),
                           (['--replicas', '9'], '--replicas'),
                           (['--backend', 'mysql://x:1'], '--backend'),
                           (['--max-value-bytes', '0'],
                            '--max-value-bytes')):
            with self.subTest(flag=flag):
                r = harness.run_binary(args, binary=kh.KV_BIN)
                self.assertEqual(r.code, 2, r.stderr)
                self.assertIn(flag, r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1)


class RingTest(Functional, harness.ServiceCase):
    """Three kv-srv nodes, each key on two: every call goes to a node in
    turn, most of them not the key's owner."""

    @classmethod
    def setUpClass(cls):
        cls.ring = Ring(3)
        cls.addClassCleanup(cls.ring.kill)
        cls.clients = [kh.client_of(s) for s in cls.ring.nodes]
        cls.c = cls.clients[0]

    @classmethod
    def tearDownClass(cls):
        cls.ring.stop()

    def test_calls_reach_the_owner(self):
        for i in range(30):
            self.other(i).put(self.t, 'own%d' % i, b'x')
        self.assertGreater(sum(metric(s, 'kv_forwarded_total')
                               for s in self.ring.nodes), 0)
        held = sum(metric(s, 'kv_keys') for s in self.ring.nodes)
        self.assertGreaterEqual(held, 60)     # every key on two nodes


class RingChangeTest(harness.ServiceCase):
    """kill -9 of one node of three (replicas 2): every key still
    readable; a node joining: keys moved to it, none lost."""

    def test_kill_and_join(self):
        ring = Ring(3)
        self.addCleanup(ring.kill)
        t = kh.uniq('chg').replace('-', '_')
        c = kh.client_of(ring.nodes[0])
        want = {}
        for i in range(100):
            want['k%03d' % i] = c.put(t, 'k%03d' % i, b'%d' % i).version

        def all_readable(nodes):
            for s in nodes:
                cl = kh.client_of(s)
                for k, v in want.items():
                    e = cl.get(t, k)
                    self.assertEqual((e.value, e.version),
                                     (k[1:].lstrip('0').encode() or b'0',
                                      v), k)
        victim = ring.nodes[1]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        survivors = ring.live()
        all_readable(survivors)         # at once, by the next owner
        ring.wait_members()             # discovery let it expire
        all_readable(survivors)
        joined = ring.add()
        ring.wait_members()
        wait_for(lambda: metric(joined, 'kv_keys') > 0,
                 what='keys moved to the new node')
        all_readable(ring.live())
        # Writes keep their order across the changes.
        e = kh.client_of(joined).put(t, 'k000', b'new')
        self.assertGreater(e.version, want['k000'])
        ring.stop()

    def test_restart_under_the_same_id(self):
        """kill -9 and a restart at once, on the same port: the node is
        back (empty) before discovery could expire it, and the others
        fill it again from their copies (its registration says it is a
        new run)."""
        ring = Ring(3)
        self.addCleanup(ring.kill)
        t = kh.uniq('rst').replace('-', '_')
        c = kh.client_of(ring.nodes[0])
        want = {'k%03d' % i: c.put(t, 'k%03d' % i, b'%d' % i).version
                for i in range(100)}
        victim = ring.nodes[1]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        back = metered(victim.name, ring.disc.address, extra=[
            '--register-ttl', '3', '--replicas', str(ring.replicas)],
            port=victim.port)
        ring.nodes[1] = back
        self.addCleanup(back.kill)
        wait_for(lambda: metric(back, 'kv_keys') > 0,
                 what='the restarted node to be filled again')

        def all_readable():
            for s in ring.live():
                cl = kh.client_of(s)
                for k, v in want.items():
                    if cl.get(t, k).version != v:
                        return False
            return True
        wait_for(all_readable, what='every key readable through every node')
        ring.stop()


@unittest.skipUnless(os.path.exists(kh.REDIS_BIN), 'no redis-server')
class RedisTest(Functional, harness.ServiceCase):
    """Two kv-srv fronts to one real redis-server: calls alternate between
    them, so each sees what the other wrote (they keep no state)."""

    @classmethod
    def setUpClass(cls):
        cls.redis = kh.RedisServer()
        cls.addClassCleanup(cls.redis.stop)
        backend = ['--backend', 'redis://' + cls.redis.address]
        cls.fronts = [metered('kv-redis-%d' % i, extra=backend)
                      for i in range(2)]
        for f in cls.fronts:
            cls.addClassCleanup(f.kill)
        cls.clients = [kh.client_of(f) for f in cls.fronts]
        cls.c = cls.clients[0]

    @classmethod
    def tearDownClass(cls):
        for f in cls.fronts:
            f.stop_clean()

    def test_no_ring_call(self):
        self.assertCode(rpc_error(self.c.call, 'Replicate'),
                        C.FAILED_PRECONDITION, 'redis')


@unittest.skipUnless(os.path.exists(kh.REDIS_BIN), 'no redis-server')
class RedisClusterTest(OneServer, harness.ServiceCase):
    """kv-srv in front of a Redis Cluster of three masters, given one of
    them: each table's calls go to the master of its slot."""

    @classmethod
    def start(cls):
        cls.cluster = kh.RedisCluster(3)
        cls.addClassCleanup(cls.cluster.stop)
        return metered('kv-redis-cluster', extra=[
            '--backend', 'redis://' + cls.cluster.address])

    def test_tables_spread_over_the_masters(self):
        redirects = metric(self.srv, 'kv_redis_redirects_total')
        for i in range(30):
            self.c.put('%s_%d' % (self.t, i), 'k', b'v')
        for node in self.cluster.nodes:
            self.assertGreater(int(node.command('DBSIZE')[1:]), 0,
                               node.address)
        for i in range(30):
            self.assertEqual(self.c.get('%s_%d' % (self.t, i), 'k').value,
                             b'v')
        # Sent to the right master from the start: none redirected.
        self.assertEqual(metric(self.srv, 'kv_redis_redirects_total'),
                         redirects)

    def test_resharding_is_followed(self):
        for i in range(20):
            self.c.put(self.t, 'k%d' % i, b'%d' % i)
        index = 'kv:{%s}:i' % self.t
        src = self.cluster.owner(index)
        dst = next(x for x in self.cluster.nodes if x is not src)
        self.cluster.move_slot_of(index, dst)
        # MOVED: kv-srv asks the new master, and keeps asking it.
        for i in range(20):
            self.assertEqual(self.c.get(self.t, 'k%d' % i).value,
                             b'%d' % i)
        self.assertGreater(metric(self.srv, 'kv_redis_redirects_total'), 0)
        e = self.c.put(self.t, 'k0', b'moved', expected_version=self.c.get(
            self.t, 'k0').version)
        self.assertEqual(self.c.get(self.t, 'k0').version, e.version)
        self.assertEqual([x.key for x in self.c.list_all(self.t)],
                         sorted('k%d' % i for i in range(20)))


@unittest.skipUnless(os.path.exists(kh.REDIS_BIN), 'no redis-server')
class RedisOutageTest(harness.ServiceCase):
    """Redis goes away and comes back: kv-srv answers UNAVAILABLE
    meanwhile, ends its Watch streams (changes may be missed), and serves
    again without a restart."""

    def test_redis_restart(self):
        redis = kh.RedisServer()
        self.addCleanup(redis.stop)
        srv = metered('kv-redis-outage', extra=[
            '--backend', 'redis://' + redis.address])
        self.addCleanup(srv.kill)
        c = kh.client_of(srv)
        c.put('o', 'k', b'before')
        w = c.watch('o')
        self.assertEqual(w.next().type, PUT)
        self.assertEqual(w.next().type, SYNCED)
        redis.stop()
        self.assertCode(w.end(), C.UNAVAILABLE, 'watch again')
        self.assertCode(rpc_error(c.get, 'o', 'k'), C.UNAVAILABLE)
        redis.start()           # empty: nothing was saved
        wait_for(lambda: c.put('o', 'k', b'after').version > 0,
                 what='kv-srv to reach redis again')
        self.assertEqual(c.get('o', 'k').value, b'after')

        def watch_syncs():              # the change feed is back too
            w2 = c.watch('o')
            try:
                return w2.next().type == PUT and w2.next().type == SYNCED
            finally:
                w2.close()
        wait_for(watch_syncs, what='Watch to work again')
        srv.stop_clean()

    def test_unreachable_at_start(self):
        port = harness.free_port()
        r = harness.run_binary(['--listen', '127.0.0.1:%d' %
                                harness.free_port(), '--backend',
                                'redis://127.0.0.1:%d' % port],
                               binary=kh.KV_BIN)
        self.assertNotEqual(r.code, 0)
        self.assertIn('redis', r.stderr)


if __name__ == '__main__':
    harness.run_tests()
