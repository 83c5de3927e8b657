#!/usr/bin/python3
"""event-srv over real gRPC against a real PostgreSQL.

Publish (single, batch, idempotent), ordering within a topic, the
wildcard matching table, every start position, the replay/live seam under
concurrent publishing, consumer groups (split, redelivery after a missing
ack, resume), kill -9 under load then restart, two replicas on one
database, Query, retention, and bad input for every field.

Needs PLATFORM_TEST_DATABASE (scripts/test sets it from scripts/pg), else
it says so and exits 0. Every topic and group has a random part, so the
tests can run again and again against the same database.
"""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import event_harness as eh  # noqa: E402
from event_harness import uniq, event_server, client_of, new_client  # noqa
from harness import Server, rpc_error, wait_for  # noqa: E402

C = grpc.StatusCode
P = eh.pb()


def metered_event_server(name):
    """event-srv with its metrics served, for the tests that wait on its
    count of open Subscribe streams."""
    mport = harness.free_port()
    srv = event_server(name=name, extra_args=[
        '--metrics-listen', '127.0.0.1:%d' % mport])
    srv.mport = mport
    return srv


class EventCase(harness.ServiceCase):
    """One event-srv per class, stopped with SIGTERM at the end: exit 0
    and no sanitizer report."""

    STREAM_ITEM = 'event'

    start_server = True

    @classmethod
    def setUpClass(cls):
        if cls.start_server:
            cls.srv = metered_event_server(cls.__name__)
            cls.addClassCleanup(cls.srv.kill)
            cls.c = client_of(cls.srv)

    @classmethod
    def tearDownClass(cls):
        if cls.start_server:
            cls.srv.stop_clean()

    def setUp(self):
        self._subs = []
        self.t = uniq(self.id().rsplit('.', 1)[-1][5:][:16]
                      .replace('_', '-'))

    def tearDown(self):
        for w in self._subs:
            w.close()

    def sub(self, subjects, client=None, **kw):
        w = (client or self.c).subscribe(subjects, **kw)
        self._subs.append(w)
        return w

    def events(self, w, n, timeout=harness.TIMEOUT):
        out = []
        for _ in range(n):
            m = w.next(timeout)
            self.assertFalse(m.caught_up, 'a second caught_up')
            out.append(m.event)
        return out

    def wait_subscribers(self, n, srv=None):
        """Waits until the server holds exactly n Subscribe streams
        (group members count once they joined): the condition a test
        means by "both joined", rather than a pause."""
        srv = srv or self.srv
        wait_for(lambda: harness.metric(srv.mport, 'event_subscribers') == n,
                 what='%d subscribers on %s' % (n, srv.name))

    def assertQuiet(self, w, wait=0.3):
        """Nothing more arrives for a moment (not a timing assertion: a
        message that did arrive fails)."""
        try:
            m = w.next(wait)
        except AssertionError:
            return
        self.fail('unexpected message: %r' % (m,))


# ---------------------------------------------------------------- startup

class StartupTest(EventCase):
    start_server = False

    def test_database_required(self):
        port = harness.free_port()
        r = harness.run_binary(['--listen', '127.0.0.1:%d' % port],
                               binary=eh.EVENT_BIN)
        self.assertEqual(r.sanitizer_findings(), [], r.stderr)
        self.assertEqual(r.code, 2, r.stderr)
        self.assertIn('--database', r.stderr)

    def test_bad_retention_interval(self):
        r = harness.run_binary(
            ['--listen', '127.0.0.1:%d' % harness.free_port(),
             '--retention-interval-ms', '5'], binary=eh.EVENT_BIN,
            env={'PLATFORM_DATABASE': eh.DATABASE})
        self.assertEqual(r.code, 2, r.stderr)
        self.assertIn('--retention-interval-ms', r.stderr)

    def test_registers_with_discovery(self):
        disc = Server(discovery='self', name='discovery-for-event')
        self.addCleanup(disc.kill)
        srv = event_server(name='event-registered', discovery=disc.address)
        self.addCleanup(srv.kill)
        dc = disc.discovery_client()

        def listed():
            return any(n.address == srv.address
                       for s in dc.get('event').services for n in s.nodes)
        wait_for(listed, what='event-srv in discovery')
        srv.stop_clean()
        disc.stop_clean()

    def test_sigterm_with_open_subscriptions(self):
        srv = event_server(name='event-sigterm')
        self.addCleanup(srv.kill)
        c = client_of(srv)
        t = 's.' + self.t
        w = self.sub([t], client=c)
        g = self.sub([t], client=c, group=uniq('g'))
        self.assertEqual(self.until_caught_up(w), [])
        c.publish(t, b'x')
        self.assertEqual(self.events(w, 1)[0].data, b'x')
        srv.stop_clean(keep_channel=True)
        for r in (w, g):
            err = r.end()
            if err is not None:
                self.assertIn(err.code(), (C.UNAVAILABLE, C.CANCELLED))


# ---------------------------------------------------------------- publish

class PublishTest(EventCase):

    def test_publish_answer(self):
        t = 'orders.' + self.t
        before = int(time.time() * 1000) - 5000
        r = self.c.publish(t, b'{"a":1}', source='orders-srv',
                           metadata={'tenant': 'x'})
        self.assertEqual(r.offset, 1)
        self.assertGreater(r.sequence, 0)
        self.assertEqual(len(r.id), 36)
        self.assertFalse(r.duplicate)
        self.assertGreater(r.time_unix_ms, before)
        e = self.c.query(subject=t).events
        self.assertEqual(len(e), 1)
        self.assertEqual((e[0].id, e[0].offset, e[0].sequence, e[0].data,
                          e[0].source, dict(e[0].metadata), e[0].type),
                         (r.id, 1, r.sequence, b'{"a":1}', 'orders-srv',
                          {'tenant': 'x'}, 'test.v1'))

    def test_binary_data_and_empty(self):
        t = 'bin.' + self.t
        blob = bytes(range(256)) * 50
        self.c.publish(t, blob)
        self.c.publish(t, b'')
        self.c.publish(t, b'\x00')
        got = [e.data for e in self.c.query_all(
            subject=t, order=P.ORDER_OLDEST_FIRST)]
        self.assertEqual(got, [blob, b'', b'\x00'])

    def test_order_within_topic_concurrent(self):
        t = 'ord.' + self.t
        results, lock = [], threading.Lock()

        def worker(k):
            c = new_client(self.srv.address)
            try:
                for i in range(40):
                    r = c.publish(t, b'%d-%d' % (k, i))
                    with lock:
                        results.append((k, i, r.offset, r.sequence))
            finally:
                c.channel.close()
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for th in ts:
            th.start()
        for th in ts:
            th.join(120)
        self.assertEqual(len(results), 240)
        self.assertEqual(sorted(r[2] for r in results), list(range(1, 241)))
        # Offsets follow sequences, and each publisher's own order holds.
        by_seq = sorted(results, key=lambda r: r[3])
        self.assertEqual([r[2] for r in by_seq], list(range(1, 241)))
        for k in range(6):
            mine = [r for r in by_seq if r[0] == k]
            self.assertEqual([r[1] for r in mine], list(range(40)))
        stored = self.c.query_all(subject=t, order=P.ORDER_OLDEST_FIRST)
        self.assertEqual([e.offset for e in stored], list(range(1, 241)))

    def test_batch(self):
        t1, t2 = 'b1.' + self.t, 'b2.' + self.t
        res = self.c.publish_batch([dict(topic=t1, data=b'1'),
                                    dict(topic=t2, data=b'2'),
                                    dict(topic=t1, data=b'3')])
        self.assertEqual([r.offset for r in res], [1, 1, 2])
        self.assertEqual([r.sequence - res[0].sequence for r in res],
                         [0, 1, 2])
        res = self.c.publish_batch([dict(topic=t1, data=b'%d' % i)
                                    for i in range(1000)])
        self.assertEqual([r.offset for r in res], list(range(3, 1003)))

    def test_idempotent(self):
        t = 'idem.' + self.t
        a = self.c.publish(t, b'first', idempotency_key='k')
        b = self.c.publish(t, b'second', idempotency_key='k')
        self.assertTrue(b.duplicate)
        self.assertEqual((a.id, a.offset, a.sequence),
                         (b.id, b.offset, b.sequence))
        # Another topic has keys of its own.
        other = self.c.publish('idem2.' + self.t, b'x', idempotency_key='k')
        self.assertFalse(other.duplicate)
        # In a batch, against the table and within the batch.
        res = self.c.publish_batch([
            dict(topic=t, data=b'3', idempotency_key='k'),
            dict(topic=t, data=b'4', idempotency_key='n'),
            dict(topic=t, data=b'5', idempotency_key='n'),
            dict(topic=t, data=b'6')])
        self.assertEqual([r.duplicate for r in res],
                         [True, False, True, False])
        self.assertEqual(res[0].id, a.id)
        self.assertEqual(res[1].id, res[2].id)
        got = [e.data for e in self.c.query_all(
            subject=t, order=P.ORDER_OLDEST_FIRST)]
        self.assertEqual(got, [b'first', b'4', b'6'])

    def test_concurrent_retries_one_event(self):
        t = 'idemc.' + self.t
        futs = [self.c.future('Publish', topic=t, type='x', data=b'%d' % i,
                              idempotency_key='same') for i in range(20)]
        ids = {f.result().id for f in futs}
        self.assertEqual(len(ids), 1)
        self.assertEqual(len(self.c.query_all(subject=t)), 1)


# ---------------------------------------------------------------- subjects

class WildcardTest(EventCase):

    TOPICS = ['a', 'a.b', 'a.c', 'a.b.c', 'a.b.d', 'a.x.c', 'b.b']
    TABLE = [
        ('a', ['a']),
        ('a.*', ['a.b', 'a.c']),
        ('a.>', ['a.b', 'a.c', 'a.b.c', 'a.b.d', 'a.x.c']),
        ('a.*.c', ['a.b.c', 'a.x.c']),
        ('a.b.*', ['a.b.c', 'a.b.d']),
        ('*.b', ['a.b', 'b.b']),
        ('*', ['a']),
        ('a.b', ['a.b']),
        ('a.b.>', ['a.b.c', 'a.b.d']),
        ('*.*.*', ['a.b.c', 'a.b.d', 'a.x.c']),
    ]

    def test_table(self):
        root = self.t
        names = {t: root + '.' + t for t in self.TOPICS}
        for t in self.TOPICS:
            self.c.publish(names[t], t.encode())
        for pattern, want in self.TABLE:
            with self.subTest(pattern=pattern):
                subject = root + '.' + pattern
                w = self.sub([subject], start=P.START_EARLIEST)
                got = [e.data.decode() for e in self.until_caught_up(w)]
                self.assertEqual(got, want)
                q = self.c.query_all(subject=subject,
                                     order=P.ORDER_OLDEST_FIRST)
                self.assertEqual([e.data.decode() for e in q], want)
                w.close()
        # Live delivery matches the same way.
        w = self.sub([root + '.a.*', root + '.*.b'])
        self.until_caught_up(w)
        for t in self.TOPICS:
            self.c.publish(names[t], t.encode())
        self.assertEqual([e.data.decode() for e in self.events(w, 3)],
                         ['a.b', 'a.c', 'b.b'])
        self.assertQuiet(w)


# ---------------------------------------------------------------- starts

class StartTest(EventCase):

    def setUp(self):
        super().setUp()
        self.topic = 'st.' + self.t
        self.pub = [self.c.publish(self.topic, b'%d' % i) for i in range(5)]

    def offsets(self, w):
        return [e.offset for e in self.until_caught_up(w)]

    def test_latest(self):
        w = self.sub([self.topic])
        self.assertEqual(self.offsets(w), [])
        self.c.publish(self.topic, b'new')
        self.assertEqual(self.events(w, 1)[0].offset, 6)

    def test_earliest(self):
        w = self.sub([self.topic], start=P.START_EARLIEST)
        self.assertEqual(self.offsets(w), [1, 2, 3, 4, 5])

    def test_offset(self):
        w = self.sub([self.topic], start=P.START_OFFSET, start_offset=3)
        self.assertEqual(self.offsets(w), [3, 4, 5])
        w = self.sub([self.topic], start=P.START_OFFSET, start_offset=99)
        self.assertEqual(self.offsets(w), [])
        self.c.publish(self.topic, b'6')
        self.assertQuiet(w)

    def test_time(self):
        w = self.sub([self.topic], start=P.START_TIME,
                     start_time_unix_ms=self.pub[2].time_unix_ms)
        got = self.offsets(w)
        self.assertEqual(got[-3:], [3, 4, 5])
        self.assertTrue(set(got) <= {1, 2, 3, 4, 5})
        w = self.sub([self.topic], start=P.START_TIME,
                     start_time_unix_ms=self.pub[4].time_unix_ms + 60000)
        self.assertEqual(self.offsets(w), [])

    def test_sequence(self):
        w = self.sub([self.topic], start=P.START_SEQUENCE,
                     start_sequence=self.pub[1].sequence)
        self.assertEqual(self.offsets(w), [2, 3, 4, 5])


# ---------------------------------------------------------------- the seam

class SeamTest(EventCase):
    """Subscribers start while publishers run: each sees every event of
    its topic after its start exactly once, in order."""

    def run_seam(self, batch):
        t = 'seam.' + self.t
        stop = threading.Event()
        seqs, lock = [], threading.Lock()

        def publisher(k):
            c = new_client(self.srv.address)
            try:
                i = 0
                while not stop.is_set():
                    i += 1
                    if batch:
                        rs = c.publish_batch([dict(topic=t, data=b'%d' % j)
                                              for j in range(7)])
                    else:
                        rs = [c.publish(t, b'%d-%d' % (k, i))]
                    with lock:
                        seqs.extend(r.sequence for r in rs)
            finally:
                c.channel.close()
        ts = [threading.Thread(target=publisher, args=(k,)) for k in range(3)]
        for th in ts:
            th.start()
        subs = []
        try:
            wait_for(lambda: len(seqs) > 50, what='first events')
            for start in (P.START_EARLIEST, P.START_LATEST):
                for _ in range(3):
                    subs.append((start, self.sub([t], start=start)))
                    time.sleep(0.05)
            wait_for(lambda: len(seqs) > 600, timeout=120,
                     what='events while subscribed')
        finally:
            stop.set()
            for th in ts:
                th.join(60)
        published = sorted(seqs)
        for start, w in subs:
            got, caught = [], False
            while len(got) == 0 or got[-1] < published[-1]:
                m = w.next()
                if m.caught_up:
                    self.assertFalse(caught, 'two caught_up markers')
                    caught = True
                    continue
                got.append(m.event.sequence)
            # A replay still running when the publishers stopped holds
            # every event: the marker comes after them.
            while not caught:
                m = w.next()
                self.assertTrue(m.caught_up, 'an event after the last one')
                caught = True
            self.assertEqual(got, sorted(set(got)), 'out of order or twice')
            first = got[0] if start == P.START_LATEST else published[0]
            want = [s for s in published if s >= first]
            self.assertEqual(got, want, 'a gap at the seam')

    def test_single_publishes(self):
        self.run_seam(False)

    def test_batch_publishes(self):
        self.run_seam(True)


# ---------------------------------------------------------------- groups

class GroupTest(EventCase):

    def group_sub(self, g, subjects, client=None, **kw):
        kw.setdefault('start', P.START_EARLIEST)
        return self.sub(subjects, client=client, group=g, **kw)

    def test_split_and_ack(self):
        t, g = 'grp.' + self.t, uniq('g')
        self.wait_subscribers(0)        # earlier tests' streams are gone
        a = self.group_sub(g, [t])
        b = self.group_sub(g, [t])
        self.wait_subscribers(2)        # both joined before the events
        pub = self.c.publish_batch([dict(topic=t, data=b'%d' % i)
                                    for i in range(40)])
        want = {r.sequence for r in pub}
        got = {a: [], b: []}
        while len(got[a]) + len(got[b]) < 40:
            for w in (a, b):
                try:
                    m = w.next(0.2)
                except AssertionError:
                    continue
                self.assertEqual(m.delivery_count, 1)
                got[w].append(m.event.sequence)
                self.assertEqual(self.c.ack(g, [m.event.sequence]), 1)
        self.assertTrue(got[a] and got[b], 'one subscriber got nothing')
        self.assertEqual(sorted(got[a] + got[b]), sorted(want))
        self.assertEqual(self.c.ack(g, [min(want)]), 0)     # acked before

        def committed():
            gs = [x for x in self.c.call('ListGroups',
                                         page_size=1000).groups
                  if x.name == g]
            return gs and gs[0].committed_sequence >= max(want) and \
                gs[0].pending == 0
        wait_for(committed, what='committed position at the last event')

    def test_redelivery_after_missing_ack(self):
        t, g = 'redel.' + self.t, uniq('g')
        self.wait_subscribers(0)
        w = self.group_sub(g, [t], ack_wait_ms=300)
        self.wait_subscribers(1)
        r = self.c.publish(t, b'x')
        m1 = w.next()
        self.assertEqual((m1.event.sequence, m1.delivery_count),
                         (r.sequence, 1))
        m2 = w.next()       # no ack: again after the ack wait
        self.assertEqual((m2.event.sequence, m2.delivery_count),
                         (r.sequence, 2))
        self.assertEqual(self.c.ack(g, [r.sequence]), 1)
        self.assertQuiet(w, 0.8)

    def test_resume_after_subscriber_restart(self):
        t, g = 'resume.' + self.t, uniq('g')
        pub = self.c.publish_batch([dict(topic=t, data=b'%d' % i)
                                    for i in range(10)])
        w = self.group_sub(g, [t], max_in_flight=4)
        first = [w.next().event.sequence for _ in range(4)]
        self.assertEqual(first, [r.sequence for r in pub[:4]])
        self.c.ack(g, first[:2])
        w.close()
        # The unacked two come back at once (the subscriber left), then
        # the rest; never the acked ones.
        w2 = self.group_sub(g, [t], start=P.START_LATEST)
        got = []
        while len(got) < 8:
            m = w2.next()
            got.append(m.event.sequence)
            self.c.ack(g, [m.event.sequence])
        self.assertEqual(sorted(got), [r.sequence for r in pub[2:]])
        self.assertQuiet(w2)

    def test_max_in_flight(self):
        t, g = 'mif.' + self.t, uniq('g')
        self.c.publish_batch([dict(topic=t, data=b'%d' % i)
                              for i in range(10)])
        w = self.group_sub(g, [t], max_in_flight=3)
        got = [w.next().event.sequence for _ in range(3)]
        self.assertQuiet(w, 0.5)
        self.c.ack(g, got)
        self.assertEqual(len([w.next() for _ in range(3)]), 3)

    def test_group_settings_fixed(self):
        t, g = 'fix.' + self.t, uniq('g')
        self.group_sub(g, [t, t + '.*'], ack_wait_ms=1000)
        err = self.group_sub(g, [t]).end()
        self.assertCode(err, C.FAILED_PRECONDITION, 'subjects')
        err = self.group_sub(g, [t + '.*', t], ack_wait_ms=2000).end()
        self.assertCode(err, C.FAILED_PRECONDITION, 'ack_wait_ms')
        w = self.group_sub(g, [t + '.*', t])     # order does not matter
        self.c.publish(t, b'x')
        self.assertEqual(w.next().event.data, b'x')

    def test_delete_group(self):
        t, g = 'del.' + self.t, uniq('g')
        self.wait_subscribers(0)
        w = self.group_sub(g, [t])
        self.wait_subscribers(1)        # the group exists
        self.c.call('DeleteGroup', group=g)
        self.assertCode(w.end(), C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.call, 'DeleteGroup', group=g),
                        C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.ack, g, [1]), C.NOT_FOUND)

    def test_list_groups_paged(self):
        t = 'list.' + self.t
        names = sorted(uniq('lg') for _ in range(5))
        self.wait_subscribers(0)
        for n in names:
            w = self.group_sub(n, [t])
            self.wait_subscribers(1)    # the group exists
            w.close()
            self.wait_subscribers(0)
        seen, token = [], ''
        while True:
            r = self.c.call('ListGroups', page_size=2, page_token=token)
            self.assertLessEqual(len(r.groups), 2)
            seen += [x.name for x in r.groups]
            token = r.next_page_token
            if not token:
                break
        self.assertEqual([n for n in seen if n in names], names)
        self.assertEqual(seen, sorted(seen))


# ---------------------------------------------------------------- query

class QueryTest(EventCase):

    def test_filters_and_paging(self):
        root = self.t
        evs = []
        for i in range(12):
            evs.append(self.c.publish(
                '%s.%s' % (root, 'x' if i % 2 else 'y'), b'%d' % i,
                type='t%d' % (i % 3), source='s%d' % (i % 4),
                metadata={'i': str(i), 'odd': str(i % 2)}))
        seq = [e.sequence for e in evs]
        q = self.c.query_all
        self.assertEqual([e.sequence for e in q(subject=root + '.>')],
                         seq[::-1])
        self.assertEqual([e.sequence for e in q(subject=root + '.>',
                                                order=P.ORDER_OLDEST_FIRST,
                                                page_size=5)], seq)
        self.assertEqual([e.sequence for e in q(subject=root + '.x',
                                                type='t0')],
                         [seq[i] for i in (9, 3)])
        self.assertEqual([e.sequence for e in q(subject=root + '.*',
                                                source='s1')],
                         [seq[i] for i in (9, 5, 1)])
        self.assertEqual([e.sequence for e in q(
            subject=root + '.>', metadata={'odd': '1', 'i': '7'})],
            [seq[7]])
        t0, t1 = evs[3].time_unix_ms, evs[8].time_unix_ms
        got = [e.sequence for e in q(subject=root + '.>',
                                     start_time_unix_ms=t0,
                                     end_time_unix_ms=t1 + 1,
                                     order=P.ORDER_OLDEST_FIRST)]
        self.assertTrue(set(seq[3:9]) <= set(got))
        self.assertTrue(all(evs[0].sequence <= s <= seq[-1] for s in got))
        r = self.c.query(subject=root + '.>', page_size=5)
        self.assertEqual(len(r.events), 5)
        self.assertTrue(r.next_page_token)

    def test_sql_metacharacters(self):
        t = 'meta.' + self.t
        nasty = "'; DROP TABLE events; --\\%_\""
        self.c.publish(t, nasty.encode(), type=nasty, source=nasty,
                       metadata={'k': nasty})
        e = self.c.query(subject=t, type=nasty, source=nasty,
                         metadata={'k': nasty}).events
        self.assertEqual(len(e), 1)
        self.assertEqual((e[0].type, e[0].data.decode()), (nasty, nasty))


# ---------------------------------------------------------------- retention

class RetentionTest(EventCase):

    def test_max_count(self):
        t = 'ret.' + self.t
        self.c.publish_batch([dict(topic=t + '.a', data=b'%d' % i)
                              for i in range(10)])
        self.c.publish_batch([dict(topic=t + '.b', data=b'%d' % i)
                              for i in range(3)])
        self.c.call('SetRetention', retention=P.Retention(
            subject=t + '.*', max_count=4))
        self.assertIn(t + '.*', [r.subject for r in self.c.call(
            'ListRetention').retentions])

        def kept():
            a = [e.offset for e in self.c.query_all(
                subject=t + '.a', order=P.ORDER_OLDEST_FIRST)]
            return a == [7, 8, 9, 10] and a
        wait_for(kept, what='retention to keep the last 4')
        self.assertEqual(len(self.c.query_all(subject=t + '.b')), 3)
        # New events keep their offsets; the old ones stay gone.
        self.assertEqual(self.c.publish(t + '.a', b'n').offset, 11)
        w = self.sub([t + '.a'], start=P.START_EARLIEST)
        wait_for(lambda: len(self.c.query_all(subject=t + '.a')) == 4,
                 what='retention after a new event')
        self.assertTrue(all(e.offset >= 7 for e in self.until_caught_up(w)))
        self.c.call('SetRetention', retention=P.Retention(subject=t + '.*'))
        self.assertNotIn(t + '.*', [r.subject for r in self.c.call(
            'ListRetention').retentions])

    def test_max_age(self):
        t = 'age.' + self.t
        self.c.publish_batch([dict(topic=t, data=b'%d' % i)
                              for i in range(5)])
        self.c.call('SetRetention', retention=P.Retention(
            subject=t, max_age_ms=500))
        wait_for(lambda: self.c.query_all(subject=t) == [],
                 what='old events deleted')
        self.c.call('SetRetention', retention=P.Retention(subject=t))


# ---------------------------------------------------------------- input

class ValidationTest(EventCase):

    def nothing_written(self, topic):
        self.assertEqual(self.c.query_all(subject=topic), [])

    def test_publish_fields(self):
        t = 'val.' + self.t
        cases = [
            (dict(topic=''), 'topic'),
            (dict(topic='a..b'), 'topic'),
            (dict(topic='a.*'), 'topic'),
            (dict(topic='a.>'), 'topic'),
            (dict(topic='a b'), 'topic'),
            (dict(topic='x' * 256), 'topic'),
            (dict(topic='.a'), 'topic'),
            (dict(topic=t, type=''), 'type'),
            (dict(topic=t, type='x' * 257), 'type'),
            (dict(topic=t, type='a\nb'), 'type'),
            (dict(topic=t, source='\x01'), 'source'),
            (dict(topic=t, idempotency_key='k' * 129), 'idempotency_key'),
            (dict(topic=t, data=b'x' * ((1 << 20) + 1)), 'data'),
            (dict(topic=t, metadata={'': 'x'}), 'metadata'),
            (dict(topic=t, metadata={'a b': 'x'}), 'metadata'),
            (dict(topic=t, metadata={'k': 'v' * 1025}), 'metadata'),
            (dict(topic=t, metadata={'k%d' % i: 'v' for i in range(65)}),
             'metadata'),
        ]
        for kw, field in cases:
            with self.subTest(field=field, kw=str(kw)[:60]):
                kw = dict({'type': 'ok'}, **kw)
                err = rpc_error(self.c.call, 'Publish', **kw)
                self.assertCode(err, C.INVALID_ARGUMENT, field)
                err = rpc_error(self.c.call, 'PublishBatch', events=[
                    P.PublishRequest(topic=t, type='ok'),
                    P.PublishRequest(**kw)])
                self.assertCode(err, C.INVALID_ARGUMENT,
                                'events[1].' + field)
        self.nothing_written(t)
        err = rpc_error(self.c.call, 'PublishBatch', events=[])
        self.assertCode(err, C.INVALID_ARGUMENT, 'events')
        err = rpc_error(self.c.call, 'PublishBatch', events=[
            P.PublishRequest(topic=t, type='x')] * 1001)
        self.assertCode(err, C.INVALID_ARGUMENT, 'events')
        self.nothing_written(t)

    def test_invalid_utf8_on_the_wire(self):
        t = 'utf.' + self.t
        payload = harness.ld_field(1, t.encode()) + \
            harness.ld_field(2, b'\xff\xfe')
        err = rpc_error(self.c.raw, 'Publish', payload)
        self.assertCode(err, C.INVALID_ARGUMENT, 'type')
        self.nothing_written(t)

    def test_subscribe_fields(self):
        t = 'vs.' + self.t
        cases = [
            (dict(subjects=[]), 'subjects'),
            (dict(subjects=['a.>.b']), 'subjects[0]'),
            (dict(subjects=['a', 'a*']), 'subjects[1]'),
            (dict(subjects=['a'] * 101), 'subjects'),
            (dict(subjects=[t], start=9), 'start'),
            (dict(subjects=['a.*'], start=P.START_OFFSET, start_offset=1),
             'subjects'),
            (dict(subjects=[t], start=P.START_OFFSET), 'start_offset'),
            (dict(subjects=[t], start_offset=3), 'start_offset'),
            (dict(subjects=[t], start=P.START_TIME), 'start_time_unix_ms'),
            (dict(subjects=[t], start=P.START_SEQUENCE), 'start_sequence'),
            (dict(subjects=[t], start_sequence=-1), 'start_sequence'),
            (dict(subjects=[t], group='a b'), 'group'),
            (dict(subjects=[t], group='x' * 129), 'group'),
            (dict(subjects=[t], ack_wait_ms=1000), 'ack_wait_ms'),
            (dict(subjects=[t], group='g', ack_wait_ms=5), 'ack_wait_ms'),
            (dict(subjects=[t], group='g', max_in_flight=-1),
             'max_in_flight'),
            (dict(subjects=[t], group='g', max_in_flight=10001),
             'max_in_flight'),
            (dict(subjects=[t], max_in_flight=5), 'max_in_flight'),
        ]
        for kw, field in cases:
            with self.subTest(field=field):
                subjects = kw.pop('subjects')
                w = self.c.subscribe(subjects, **kw)
                self.assertCode(w.end(), C.INVALID_ARGUMENT, field)

    def test_other_methods(self):
        c = self.c
        for method, kw, field in [
                ('Ack', dict(group='', sequences=[1]), 'group'),
                ('Ack', dict(group='g', sequences=[]), 'sequences'),
                ('Ack', dict(group='g', sequences=[0]), 'sequences[0]'),
                ('Ack', dict(group='g', sequences=[1] * 10001), 'sequences'),
                ('Query', dict(subject='a..b'), 'subject'),
                ('Query', dict(type='\x02'), 'type'),
                ('Query', dict(source='x' * 300), 'source'),
                ('Query', dict(start_time_unix_ms=-1), 'start_time_unix_ms'),
                ('Query', dict(start_time_unix_ms=5, end_time_unix_ms=5),
                 'end_time_unix_ms'),
                ('Query', dict(metadata={'a b': 'c'}), 'metadata'),
                ('Query', dict(order=7), 'order'),
                ('Query', dict(page_size=-1), 'page_size'),
                ('Query', dict(page_token='bogus'), 'page_token'),
                ('ListGroups', dict(page_token='zz'), 'page_token'),
                ('ListGroups', dict(page_size=-5), 'page_size'),
                ('DeleteGroup', dict(group=''), 'group'),
                ('SetRetention', dict(), 'retention'),
                ('SetRetention', dict(retention=P.Retention(subject='')),
                 'retention.subject'),
                ('SetRetention', dict(retention=P.Retention(
                    subject='a', max_age_ms=-1)), 'retention.max_age_ms'),
                ('SetRetention', dict(retention=P.Retention(
                    subject='a', max_count=-1)), 'retention.max_count')]:
            with self.subTest(method=method, field=field):
                err = rpc_error(c.call, method, **kw)
                self.assertCode(err, C.INVALID_ARGUMENT, field)
        # A Query page token does not work for ListGroups and back.
        tok = c.query(page_size=1).next_page_token
        if tok:
            self.assertCode(rpc_error(c.call, 'ListGroups', page_token=tok),
                            C.INVALID_ARGUMENT, 'page_token')

    def test_still_serving(self):
        self.assertEqual(self.srv.health_check('').status, 1)


# ---------------------------------------------------------------- slow

class SlowSubscriberTest(EventCase):

    def test_slow_live_subscriber_is_ended(self):
        """A subscriber that stops reading is ended once the runtime's
        queue is full; the server serves on."""
        t = 'slow.' + self.t
        ch = grpc.insecure_channel(self.srv.address,
                                   options=harness.CHANNEL_OPTIONS)
        self.addCleanup(ch.close)
        call = eh.EventClient(ch)._m['Subscribe'](P.SubscribeRequest(subjects=[t]))
        first = next(call)
        self.assertTrue(first.caught_up)
        blob = b'x' * 60000
        # Never read again: 16 MiB of queue fills after ~280 events plus
        # what the transport buffers.
        for _ in range(30):
            self.c.publish_batch([dict(topic=t, data=blob)] * 20)
        def ended():
            try:
                for _ in call:
                    pass
            except grpc.RpcError as e:
                return e
        err = ended()
        self.assertEqual(err.code(), C.RESOURCE_EXHAUSTED, err.details())
        self.assertEqual(self.srv.health_check('').status, 1)


# ---------------------------------------------------------------- replicas

class ReplicaTest(EventCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv2 = metered_event_server('ReplicaTest-2')
        cls.addClassCleanup(cls.srv2.kill)
        cls.c2 = client_of(cls.srv2)

    @classmethod
    def tearDownClass(cls):
        cls.srv2.stop_clean()
        super().tearDownClass()

    def test_publish_on_one_deliver_on_other(self):
        t = 'rep.' + self.t
        w = self.sub([t], client=self.c2)
        self.until_caught_up(w)
        rs = [self.c.publish(t, b'%d' % i) for i in range(20)]
        got = self.events(w, 20)
        self.assertEqual([e.sequence for e in got],
                         [r.sequence for r in rs])

    def test_both_publish_both_see_all(self):
        t = 'rep2.' + self.t
        w1 = self.sub([t], client=self.c)
        w2 = self.sub([t], client=self.c2)
        self.until_caught_up(w1)
        self.until_caught_up(w2)
        rs = []

        def pub(c):
            for i in range(50):
                rs.append(c.publish(t, b'%d' % i).sequence)
        ts = [threading.Thread(target=pub, args=(c,))
              for c in (new_client(self.srv.address),
                        new_client(self.srv2.address))]
        for th in ts:
            th.start()
        for th in ts:
            th.join(60)
        want = sorted(rs)
        for w in (w1, w2):
            self.assertEqual([e.sequence for e in self.events(w, 100)], want)
        offs = [e.offset for e in self.c2.query_all(
            subject=t, order=P.ORDER_OLDEST_FIRST)]
        self.assertEqual(offs, list(range(1, 101)))

    def test_group_across_replicas(self):
        t, g = 'repg.' + self.t, uniq('g')
        self.wait_subscribers(0)
        self.wait_subscribers(0, self.srv2)
        a = self.sub([t], client=self.c, group=g, start=P.START_EARLIEST)
        b = self.sub([t], client=self.c2, group=g, start=P.START_EARLIEST)
        self.wait_subscribers(1)
        self.wait_subscribers(1, self.srv2)
        pub = self.c.publish_batch([dict(topic=t, data=b'%d' % i)
                                    for i in range(30)])
        got = []
        while len(got) < 30:
            for w, c in ((a, self.c), (b, self.c2)):
                try:
                    m = w.next(0.2)
                except AssertionError:
                    continue
                got.append(m.event.sequence)
                c.ack(g, [m.event.sequence])
        self.assertEqual(sorted(got), [r.sequence for r in pub])
        self.assertQuiet(a)
        self.assertQuiet(b)


# ---------------------------------------------------------------- crash

class CrashTest(EventCase):
    """kill -9 while publishers and a group consume: no acknowledged event
    lost, and the group resumes from its committed position."""

    start_server = False

    def test_kill9_under_load(self):
        srv = event_server(name='crash-before')
        self.addCleanup(srv.kill)
        t, g = 'crash.' + self.t, uniq('g')
        c0 = client_of(srv)
        # A short ack wait: the deliveries the killed server held come
        # back after it.
        gw = self.sub([t], client=c0, group=g, start=P.START_EARLIEST,
                      ack_wait_ms=1000)
        time.sleep(0.2)
        ok, lock, killed = [], threading.Lock(), threading.Event()
        unexpected = []
        consumed = set()
        maybe = set()       # an ack in flight at the kill may have landed

        def publisher(k):
            c = new_client(srv.address)
            try:
                for i in range(100000):
                    try:
                        if i % 3 == 0:
                            rs = c.publish_batch([
                                dict(topic=t, data=b'%d-%d-%d' % (k, i, j))
                                for j in range(5)], timeout=10)
                            data = [b'%d-%d-%d' % (k, i, j)
                                    for j in range(5)]
                        else:
                            rs = [c.publish(t, b'%d-%d' % (k, i),
                                            timeout=10)]
                            data = [b'%d-%d' % (k, i)]
                    except grpc.RpcError as e:
                        if not killed.is_set():
                            unexpected.append((e.code(), e.details()))
                        return
                    with lock:
                        ok.extend(zip((r.sequence for r in rs), data))
            finally:
                c.channel.close()

        def consumer():
            try:
                # Acks the first 200, then stops: the rest must come
                # after the restart, pending or never handed out.
                while len(consumed) < 200:
                    m = gw.next(5)
                    maybe.add(m.event.sequence)
                    c0.ack(g, [m.event.sequence])
                    consumed.add(m.event.sequence)
            except Exception:  # noqa: BLE001 - ends with the server
                return
        ts = [threading.Thread(target=publisher, args=(k,))
              for k in range(4)]
        cons = threading.Thread(target=consumer)
        for th in ts + [cons]:
            th.start()
        try:
            wait_for(lambda: len(ok) >= 400 or unexpected, timeout=90,
                     what='events before the kill')
        finally:
            killed.set()
            srv.kill()
            for th in ts + [cons]:
                th.join(60)
        self.assertEqual(srv.returncode, -signal.SIGKILL)
        srv.check_sanitizers()
        self.assertEqual(unexpected, [])
        self.assertEqual(len({s for s, _ in ok}), len(ok))

        srv2 = event_server(name='crash-after')
        self.addCleanup(srv2.kill)
        c = client_of(srv2)
        stored = {e.sequence: e.data for e in c.query_all(
            subject=t, page_size=1000)}
        lost = [(s, d) for s, d in ok if stored.get(s) != d]
        self.assertEqual(lost, [], '%d of %d acknowledged events lost'
                         % (len(lost), len(ok)))
        offs = sorted(e.offset for e in c.query_all(subject=t,
                                                     page_size=1000))
        self.assertEqual(offs, list(range(1, len(offs) + 1)))
        # The group gets everything it had not acknowledged, at least once.
        w = self.sub([t], client=c, group=g)
        rest = set(stored) - consumed - maybe
        self.assertGreater(len(rest), 100)
        got = set()
        while not rest <= got:
            m = w.next(30)
            got.add(m.event.sequence)
            c.ack(g, [m.event.sequence])
        srv2.stop_clean()


if __name__ == '__main__':
    if not eh.DATABASE:
        print('test_event: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it from scripts/pg)')
        sys.exit(0)
    if not os.path.exists(eh.EVENT_BIN):
        sys.stderr.write('missing %s\n' % eh.EVENT_BIN)
        sys.exit(1)
    harness.run_tests()
