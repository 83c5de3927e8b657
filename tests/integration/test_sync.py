#!/usr/bin/python3
"""sync-srv over real gRPC against a real PostgreSQL.

Leases (Grant, KeepAlive, TimeToLive, Revoke, expiry), locks (try-lock,
the same lease again, mutual exclusion of 20 contenders over many rounds
on two replicas checked by a history checker, FIFO order, expiry handing
the lock on with a larger token, kill -9 of sync-srv, shared locks and
semaphores), elections (Campaign, Proclaim, Resign, Leader, Observe
seeing every leader in order) and bad input for every field.

Needs PLATFORM_TEST_DATABASE (scripts/test sets it from scripts/pg), else
it says so and exits 0. No test asserts a time: each waits for a
condition.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import sync_harness as sh  # noqa: E402
from sync_harness import uniq, sync_server, client_of  # noqa: E402
from harness import rpc_error, wait_for  # noqa: E402

C = grpc.StatusCode
P = sh.pb()
EXCL = P.LOCK_MODE_EXCLUSIVE
SHARED = P.LOCK_MODE_SHARED
SEM = P.LOCK_MODE_SEMAPHORE


def metered(name):
    mport = harness.free_port()
    srv = sync_server(name=name, extra_args=[
        '--metrics-listen', '127.0.0.1:%d' % mport])
    srv.mport = mport
    return srv


def waiters(srv):
    return harness.metric(srv.mport, 'sync_waiters')


class SyncCase(harness.ServiceCase):
    """Two sync-srv replicas on one database per class, stopped with
    SIGTERM at the end: exit 0 and no sanitizer report."""

    @classmethod
    def setUpClass(cls):
        cls.srv = metered(cls.__name__ + '-a')
        cls.addClassCleanup(cls.srv.kill)
        cls.srv2 = metered(cls.__name__ + '-b')
        cls.addClassCleanup(cls.srv2.kill)
        cls.c = client_of(cls.srv)
        cls.c2 = client_of(cls.srv2)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop_clean()
        cls.srv2.stop_clean()

    def setUp(self):
        self.n = uniq(self.id().rsplit('.', 1)[-1][5:][:16])

    def bg(self, fn, *a, **kw):
        """fn on a thread; returns a dict with 'result' or 'error'."""
        out = {}

        def run():
            try:
                out['result'] = fn(*a, **kw)
            except Exception as e:  # noqa: BLE001 - checked by the test
                out['error'] = e
        t = threading.Thread(target=run, daemon=True)
        t.start()
        out['thread'] = t
        return out


class LeaseTest(SyncCase):
    def test_grant_ttl_revoke(self):
        lease = self.c.grant(5000)
        self.assertGreater(lease, 0)
        r = self.c.call('TimeToLive', lease_id=lease)
        self.assertEqual(r.ttl_ms, 5000)
        self.assertTrue(0 < r.remaining_ms <= 5000)
        # The other replica sees the same lease.
        self.assertEqual(self.c2.call('TimeToLive', lease_id=lease).ttl_ms,
                         5000)
        self.c.call('Revoke', lease_id=lease)
        self.assertCode(rpc_error(self.c.call, 'TimeToLive',
                                  lease_id=lease), C.NOT_FOUND, 'lease_id')
        self.assertCode(rpc_error(self.c.call, 'Revoke', lease_id=lease),
                        C.NOT_FOUND, 'lease_id')

    def test_keepalive_renews(self):
        lease = self.c.grant(1000)
        ka = self.c.keepalive()
        try:
            # Renew each time the lease is about to lapse: it outlives
            # its TTL many times over.
            for _ in range(5):
                wait_for(lambda: self.c.call(
                    'TimeToLive', lease_id=lease).remaining_ms < 600,
                    what='the lease running down')
                ka.send(lease)
                r = ka.next()
                self.assertEqual((r.lease_id, r.ttl_ms), (lease, 1000))
            self.c.call('Revoke', lease_id=lease)
            ka.send(lease)
            self.assertEqual(ka.next().ttl_ms, 0)
        finally:
            ka.close()

    def test_lease_lapses(self):
        lease = self.c.grant(200)
        wait_for(lambda: rpc_error(self.c.call, 'TimeToLive',
                                   lease_id=lease).code() == C.NOT_FOUND,
                 what='the lease to lapse')
        ka = self.c.keepalive()
        try:
            ka.send(lease)
            self.assertEqual(ka.next().ttl_ms, 0)   # not brought back
        finally:
            ka.close()
        self.assertCode(rpc_error(self.c.lock, self.n, lease, try_lock=True),
                        C.NOT_FOUND, 'lease_id')


class LockTest(SyncCase):
    def test_try_lock_and_tokens(self):
        a, b = self.c.grant(), self.c.grant()
        t1 = self.c.lock(self.n, a, try_lock=True)
        self.assertEqual(self.c.lock(self.n, a, try_lock=True), t1)
        self.assertCode(rpc_error(self.c2.lock, self.n, b, try_lock=True),
                        C.FAILED_PRECONDITION)
        self.assertCode(rpc_error(self.c.unlock, self.n, b), C.NOT_FOUND,
                        'name')
        self.c.unlock(self.n, a)
        t2 = self.c2.lock(self.n, b, try_lock=True)
        self.assertGreater(t2, t1)
        self.c2.unlock(self.n, b)
        t3 = self.c.lock(self.n, a)
        self.assertGreater(t3, t2)
        # Revoking the lease releases what it holds.
        self.c.call('Revoke', lease_id=a)
        self.assertGreater(self.c.lock(self.n, b, try_lock=True), t3)

    def test_wait_until_deadline(self):
        a, b = self.c.grant(), self.c.grant()
        self.c.lock(self.n, a)
        self.assertCode(rpc_error(self.c.lock, self.n, b, timeout=1.0),
                        C.DEADLINE_EXCEEDED)
        # The one that gave up left the queue: the next one is served.
        self.c.unlock(self.n, a)
        self.assertGreater(self.c.lock(self.n, b, try_lock=True), 0)

    def test_mutual_exclusion_history(self):
        """20 contenders on two replicas, 15 rounds each: every holder's
        token and times are recorded, then no two holds overlapped and
        tokens only grew in the order the lock was held."""
        contenders, rounds = 20, 15
        history, lock = [], threading.Lock()
        inside = [0]
        errors = []

        def contender(i):
            c = self.c if i % 2 == 0 else self.c2
            lease = c.grant(30000)
            for _ in range(rounds):
                token = c.lock(self.n, lease, timeout=120)
                t0 = time.monotonic()
                with lock:
                    inside[0] += 1
                    if inside[0] != 1:
                        errors.append('two holders at once')
                # The critical section: a little work with the lock held.
                sum(range(2000))
                with lock:
                    inside[0] -= 1
                t1 = time.monotonic()
                c.unlock(self.n, lease)
                with lock:
                    history.append((t0, t1, token, i))
            c.call('Revoke', lease_id=lease)

        ts = [self.bg(contender, i) for i in range(contenders)]
        for t in ts:
            t['thread'].join(300)
            self.assertNotIn('error', t, t.get('error'))
        self.assertEqual(errors, [])
        self.assertEqual(len(history), contenders * rounds)
        history.sort()
        for prev, cur in zip(history, history[1:]):
            self.assertLess(prev[1], cur[0], 'holds overlapped: %r %r'
                            % (prev, cur))
            self.assertLess(prev[2], cur[2], 'token did not grow: %r %r'
                            % (prev, cur))
        self.assertEqual(len({h[2] for h in history}), len(history))

    def test_refusals_in_a_batch_are_their_own(self):
        """Calls committed together (the batcher groups concurrent Lock
        and Unlock calls into one transaction) each get their own
        answer: a busy try, an Unlock of nothing and a dead lease are
        refused while the grants and releases beside them commit."""
        held = self.n + '.held'
        owner = self.c.grant(30000)
        self.c.lock(held, owner)
        dead = self.c.grant()
        self.c.call('Revoke', lease_id=dead)
        errors = []

        def worker(i):
            c = self.c if i % 2 == 0 else self.c2
            mine = '%s.%d' % (self.n, i)
            lease = c.grant(30000)
            last = 0
            for _ in range(8):
                e = rpc_error(c.lock, held, lease, try_lock=True)
                if e is None or e.code() != C.FAILED_PRECONDITION:
                    errors.append('try of a held lock: %r' % (e,))
                token = c.lock(mine, lease)
                if token <= last:
                    errors.append('token %d after %d' % (token, last))
                last = token
                e = rpc_error(c.unlock, held, lease)
                if e is None or e.code() != C.NOT_FOUND:
                    errors.append('unlock of another\'s lock: %r' % (e,))
                e = rpc_error(c.lock, mine + '.x', dead)
                if e is None or e.code() != C.NOT_FOUND:
                    errors.append('lock with a revoked lease: %r' % (e,))
                c.unlock(mine, lease)
            c.call('Revoke', lease_id=lease)

        ts = [self.bg(worker, i) for i in range(16)]
        for t in ts:
            t['thread'].join(300)
            self.assertNotIn('error', t, t.get('error'))
        self.assertEqual(errors, [])
        # The first holder kept its lock throughout.
        self.assertEqual(self.c.lock(held, owner, try_lock=True),
                         self.c.lock(held, owner, try_lock=True))
        self.c.unlock(held, owner)

    def test_fifo(self):
        holder = self.c.grant()
        first = self.c.lock(self.n, holder)
        order, lk = [], threading.Lock()
        leases = [self.c.grant() for _ in range(5)]
        calls = []
        for k, lease in enumerate(leases):
            c = self.c if k % 2 == 0 else self.c2

            def take(c=c, lease=lease, k=k):
                t = c.lock(self.n, lease, timeout=60)
                with lk:
                    order.append((k, t))
                return t
            calls.append(self.bg(take))
            # The next one queues only once this one is in the queue.
            base = sum(1 for x in calls[:-1] if 'result' not in x)
            wait_for(lambda: waiters(self.srv) + waiters(self.srv2)
                     >= base + 1, what='contender %d queued' % k)
        self.c.unlock(self.n, holder)
        for k, lease in enumerate(leases):
            wait_for(lambda: len(order) == k + 1,
                     what='contender %d granted' % k)
            self.assertEqual(order[-1][0], k)
            (self.c if k % 2 == 0 else self.c2).unlock(self.n, lease)
        tokens = [first] + [t for _, t in order]
        self.assertEqual(tokens, sorted(set(tokens)))

    def test_expiry_hands_on(self):
        dying, waiting = self.c.grant(500), self.c.grant(30000)
        t1 = self.c.lock(self.n, dying)
        got = self.bg(self.c2.lock, self.n, waiting, timeout=60)
        got['thread'].join(60)
        self.assertNotIn('error', got, got.get('error'))
        self.assertGreater(got['result'], t1)
        # The old holder lost it: its lease is gone.
        self.assertCode(rpc_error(self.c.unlock, self.n, dying),
                        C.NOT_FOUND)

    def test_shared_and_semaphore(self):
        r1, r2, w = self.c.grant(), self.c.grant(), self.c.grant()
        self.c.lock(self.n, r1, mode=SHARED)
        self.c2.lock(self.n, r2, mode=SHARED)
        self.assertCode(rpc_error(self.c.lock, self.n, w, try_lock=True),
                        C.FAILED_PRECONDITION)
        wr = self.bg(self.c.lock, self.n, w, timeout=60)
        wait_for(lambda: waiters(self.srv) >= 1, what='writer queued')
        # A reader does not overtake the queued writer.
        r3 = self.c.grant()
        self.assertCode(rpc_error(self.c.lock, self.n, r3, mode=SHARED,
                                  try_lock=True), C.FAILED_PRECONDITION)
        self.c.unlock(self.n, r1)
        self.c2.unlock(self.n, r2)
        wr['thread'].join(60)
        self.assertIn('result', wr, wr.get('error'))

        sem = self.n + '-sem'
        ls = [self.c.grant() for _ in range(4)]
        toks = [self.c.lock(sem, x, mode=SEM, limit=3, try_lock=True)
                for x in ls[:3]]
        self.assertEqual(toks, sorted(set(toks)))
        self.assertCode(rpc_error(self.c.lock, sem, ls[3], mode=SEM,
                                  limit=3, try_lock=True),
                        C.FAILED_PRECONDITION)
        self.assertCode(rpc_error(self.c.lock, sem, ls[3], mode=SEM,
                                  limit=5, try_lock=True),
                        C.FAILED_PRECONDITION, 'limit')
        self.c.unlock(sem, ls[0])
        self.assertGreater(self.c.lock(sem, ls[3], mode=SEM, limit=3,
                                       try_lock=True), toks[-1])


CHILD = '''
import sys, time
sys.path.insert(0, %r)
import grpc
import sync_harness as sh
c = sh.SyncClient(grpc.insecure_channel(%r))
lease = c.grant(1000)
print(c.lock(%r, lease), flush=True)
ka = c.keepalive()
while True:
    ka.send(lease)
    ka.next()
    time.sleep(0.2)
'''


class ClientKillTest(harness.ServiceCase):
    def test_kill_9_of_the_holder(self):
        import subprocess
        name = uniq('client')
        srv = sync_server(name='sync-client-kill')
        try:
            c = client_of(srv)
            child = subprocess.Popen(
                [sys.executable, '-c', CHILD % (
                    os.path.dirname(os.path.abspath(__file__)),
                    srv.address, name)],
                stdout=subprocess.PIPE, env=harness.child_env())
            try:
                t = int(child.stdout.readline())
                other = c.grant(30000)
                # Its heartbeats keep the lock.
                ttl = c.call('TimeToLive', lease_id=other)
                self.assertGreater(ttl.remaining_ms, 0)
                self.assertCode(rpc_error(c.lock, name, other,
                                          try_lock=True),
                                C.FAILED_PRECONDITION)
            finally:
                child.kill()
                child.wait(10)
                child.stdout.close()
            self.assertGreater(c.lock(name, other, timeout=60), t)
            srv.stop_clean()
        finally:
            srv.kill()


class RestartTest(harness.ServiceCase):
    def test_kill_9_keeps_locks(self):
        name = uniq('restart')
        srv = metered('sync-kill')
        try:
            c = client_of(srv)
            a, b = c.grant(60000), c.grant(60000)
            t = c.lock(name, a)
            waiting = self.bg(c.lock, name, b, timeout=60)
            wait_for(lambda: waiters(srv) >= 1,
                     what='the second lease queued')
            srv.kill()
            waiting['thread'].join(60)
            self.assertIn('error', waiting)
            srv.start()
            srv.wait_serving()
            c = client_of(srv)
            self.assertCode(rpc_error(c.lock, name, b, try_lock=True),
                            C.FAILED_PRECONDITION)
            self.assertEqual(c.lock(name, a, try_lock=True), t)
            c.unlock(name, a)
            self.assertGreater(c.lock(name, b), t)
            srv.stop_clean()
        finally:
            srv.kill()

    def test_waiter_of_a_dead_replica_blocks_no_one(self):
        """A call waiting on a replica killed with -9 leaves a row in the
        queue whose lease lives on; once no replica tries it any more it
        leaves the queue and the next waiter gets the lock."""
        name = uniq('deadq')
        dying, other = metered('sync-dying'), sync_server(name='sync-other')
        try:
            cd, co = client_of(dying), client_of(other)
            a, b, c = co.grant(60000), co.grant(60000), co.grant(60000)
            t = co.lock(name, a)
            lost = self.bg(cd.lock, name, b, timeout=60)
            wait_for(lambda: waiters(dying) >= 1, what='b queued')
            dying.kill()
            lost['thread'].join(60)
            got = self.bg(co.lock, name, c, timeout=60)
            co.unlock(name, a)
            got['thread'].join(60)
            self.assertIn('result', got, got.get('error'))
            self.assertGreater(got['result'], t)
            other.stop_clean()
        finally:
            dying.kill()
            other.kill()

    def bg(self, fn, *a, **kw):
        out = {}

        def run():
            try:
                out['result'] = fn(*a, **kw)
            except Exception as e:  # noqa: BLE001
                out['error'] = e
        t = threading.Thread(target=run)
        t.start()
        out['thread'] = t
        t.join(0.01)
        return out


class ElectionTest(SyncCase):
    def test_campaign_observe_in_order(self):
        w = self.c2.observe(self.n)
        try:
            self.assertFalse(w.next().HasField('leader'))
            terms = []
            for k in range(5):
                lease = self.c.grant()
                r = self.c.call('Campaign', election=self.n, lease_id=lease,
                                value=b'node-%d' % k)
                self.assertEqual(r.leader.value, b'node-%d' % k)
                terms.append(r.leader.token)
                ld = self.c2.call('Leader', election=self.n).leader
                self.assertEqual((ld.lease_id, ld.token),
                                 (lease, r.leader.token))
                self.c.call('Proclaim', election=self.n, lease_id=lease,
                            token=r.leader.token, value=b'busy-%d' % k)
                self.c.call('Resign', election=self.n, lease_id=lease)
            self.assertEqual(terms, sorted(set(terms)))
            seen = []
            while len(seen) < 2 * len(terms):
                m = w.next()
                if m.HasField('leader'):
                    seen.append((m.leader.token, m.leader.value))
            want = []
            for k, t in enumerate(terms):
                want += [(t, b'node-%d' % k), (t, b'busy-%d' % k)]
            self.assertEqual(seen, want)
            self.assertFalse(self.c.call('Leader',
                                         election=self.n).HasField('leader'))
        finally:
            w.close()

    def test_failover_and_stale_proclaim(self):
        a, b = self.c.grant(500), self.c.grant(30000)
        ra = self.c.call('Campaign', election=self.n, lease_id=a, value=b'a')
        w = self.c.observe(self.n)
        try:
            self.assertEqual(w.next().leader.token, ra.leader.token)
            got = self.bg(self.c2.call, 'Campaign', election=self.n,
                          lease_id=b, value=b'b', timeout=60)
            got['thread'].join(60)
            rb = got['result'].leader
            self.assertGreater(rb.token, ra.leader.token)
            for _ in range(10):
                m = w.next()
                if m.HasField('leader') and m.leader.token == rb.token:
                    break
            else:
                self.fail('the new leader was not observed')
            self.assertCode(rpc_error(self.c.call, 'Proclaim',
                                      election=self.n, lease_id=a,
                                      token=ra.leader.token, value=b'x'),
                            C.FAILED_PRECONDITION, 'token')
        finally:
            w.close()


class PlatformEventsTest(harness.ServiceCase):
    """lock acquired/released/expired and leader changed reach a real
    event-srv (through a real discovery-srv)."""

    @classmethod
    def setUpClass(cls):
        import event_harness as eh
        cls.disc = harness.Server(name='discovery-srv')
        cls.addClassCleanup(cls.disc.stop_clean)
        cls.event = eh.event_server(discovery=cls.disc.address)
        cls.addClassCleanup(cls.event.stop_clean)
        cls.srv = sync_server(name='sync-events',
                              discovery=cls.disc.address)
        cls.addClassCleanup(cls.srv.stop_clean)
        cls.c = client_of(cls.srv)
        cls.ev = eh.client_of(cls.event)

    def events(self, topic, name, n):
        import json
        evs = wait_for(lambda: (lambda e: e if len(e) >= n else None)(
            self.ev.query_all(subject=topic, order=1,
                              metadata={'name': name})),
            timeout=30, what='%d %s events' % (n, topic))
        return [json.loads(e.data.decode()) for e in evs]

    def test_lock_and_leader_events(self):
        name = uniq('pev')
        a, b = self.c.grant(), self.c.grant(300)
        t1 = self.c.lock(name, a)
        self.c.unlock(name, a)
        t2 = self.c.lock(name, b)
        acq = self.events('platform.sync.lock.acquired', name, 2)
        self.assertEqual([(e['lease_id'], e['token']) for e in acq],
                         [(a, t1), (b, t2)])
        rel = self.events('platform.sync.lock.released', name, 1)
        self.assertEqual((rel[0]['name'], rel[0]['token']), (name, t1))
        exp = self.events('platform.sync.lock.expired', name, 1)
        self.assertEqual((exp[0]['lease_id'], exp[0]['token']), (b, t2))
        r = self.c.call('Campaign', election=name, lease_id=a, value=b'x')
        self.c.call('Resign', election=name, lease_id=a)
        ch = self.events('platform.sync.leader.changed', name, 2)
        self.assertEqual([(e['change'], e['token']) for e in ch],
                         [('acquired', r.leader.token),
                          ('released', r.leader.token)])


class BadInputTest(SyncCase):
    def bad(self, method, field, **kw):
        self.assertCode(rpc_error(self.c.call, method, **kw),
                        C.INVALID_ARGUMENT, field)

    def test_every_field(self):
        lease = self.c.grant()
        n = self.n
        for ttl in (0, -1, 99, 86400001):
            self.bad('Grant', 'ttl_ms', ttl_ms=ttl)
        for m in ('Revoke', 'TimeToLive'):
            self.bad(m, 'lease_id', lease_id=0)
            self.bad(m, 'lease_id', lease_id=-5)
        for name in ('', 'a\nb', 'x' * 257, '\x7f'):
            self.bad('Lock', 'name', name=name, lease_id=lease)
            self.bad('Unlock', 'name', name=name, lease_id=lease)
            for m in ('Campaign', 'Resign'):
                self.bad(m, 'election', election=name, lease_id=lease)
            self.bad('Proclaim', 'election', election=name, lease_id=lease,
                     token=1)
            self.bad('Leader', 'election', election=name)
        self.bad('Lock', 'lease_id', name=n, lease_id=0)
        self.bad('Unlock', 'lease_id', name=n, lease_id=-1)
        self.bad('Lock', 'mode', name=n, lease_id=lease, mode=7)
        self.bad('Lock', 'limit', name=n, lease_id=lease, limit=2)
        self.bad('Lock', 'limit', name=n, lease_id=lease, mode=SEM, limit=0)
        self.bad('Lock', 'limit', name=n, lease_id=lease, mode=SEM,
                 limit=10001)
        self.bad('Campaign', 'lease_id', election=n, lease_id=0)
        self.bad('Campaign', 'value', election=n, lease_id=lease,
                 value=b'v' * 65537)
        self.bad('Proclaim', 'token', election=n, lease_id=lease, token=0)
        self.bad('Proclaim', 'lease_id', election=n, lease_id=0, token=1)
        self.bad('Proclaim', 'value', election=n, lease_id=lease, token=1,
                 value=b'v' * 65537)
        self.bad('Resign', 'lease_id', election=n, lease_id=0)
        # Observe and KeepAlive end their streams the same way.
        self.assertCode(self.c.observe('').end(), C.INVALID_ARGUMENT,
                        'election')
        ka = self.c.keepalive()
        ka.send(0)
        self.assertCode(rpc_error(ka.next), C.INVALID_ARGUMENT, 'lease_id')
        ka.close()
        # SQL metacharacters are names like any other; bytes that are not
        # a protobuf message are refused.
        odd = "x'; DROP TABLE sync_leases; --"
        t = self.c.lock(odd + n, lease, try_lock=True)
        self.assertGreater(t, 0)
        self.c.unlock(odd + n, lease)
        self.assertCode(rpc_error(self.c.raw, 'Lock', b'\xff\xff\xff'),
                        C.INVALID_ARGUMENT)
        # A name that is not UTF-8 (sent as raw bytes: a client library
        # would refuse to).
        raw = harness.ld_field(1, b'\xc3(') + harness.varint_field(2, lease)
        self.assertCode(rpc_error(self.c.raw, 'Lock', raw),
                        C.INVALID_ARGUMENT, 'name')
        # Nothing bad input did left a trace: the lease holds nothing.
        self.assertEqual(self.c.lock(n, lease, try_lock=True),
                         self.c.lock(n, lease, try_lock=True))


if __name__ == '__main__':
    if not sh.DATABASE:
        print('test_sync: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it from scripts/pg)')
        sys.exit(0)
    if not os.path.exists(sh.SYNC_BIN):
        sys.stderr.write('missing %s\n' % sh.SYNC_BIN)
        sys.exit(1)
    harness.run_tests()
