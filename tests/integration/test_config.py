#!/usr/bin/python3
"""config-srv over real gRPC against a real PostgreSQL.

Every RPC (Read, Update, Delete, History, Diff, Rollback, List, Watch);
merged reads down three namespace levels; compare-and-set races between
threads; Watch replay, resume and live delivery with no gap and no
duplicate; two replicas on one database; PostgreSQL stopped and started
under a running config-srv; kill -9 in the middle of a stream of writes;
bad input for every field; SQL metacharacters round-tripping.

Needs PLATFORM_TEST_DATABASE (a conninfo; scripts/test sets it from
scripts/pg), else it says so and exits 0. The outage test also needs
PLATFORM_TEST_PG_CTL (a command taking stop/start), only set for our own
scripts/pg database. Every namespace has a random part, so the tests can
run again and again against the same database.

Run: /usr/bin/python3 tests/integration/test_config.py (meson sets
PLATFORM_BUILD_DIR and PLATFORM_SOURCE_DIR).
"""

import os
import random
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import config_harness as ch  # noqa: E402
from config_harness import (dumps, loads, uniq_ns, uniq_path,  # noqa: E402
                            config_server, client_of, new_client)
from harness import Server, rpc_error, wait_for, ld_field  # noqa: E402

C = grpc.StatusCode
P = ch.pb()
Change = P.Change
ADDED, REMOVED, CHANGED = Change.OP_ADDED, Change.OP_REMOVED, \
    Change.OP_CHANGED
OP_NAMES = {v: k for k, v in Change.Op.items()}


def now_ms():
    return int(time.time() * 1000)


def doc_of(value):
    return loads(value.json)


# ---------------------------------------------------------------- base

class ConfigCase(harness.ServiceCase):
    """One config-srv per class, stopped with SIGTERM at the end: exit 0,
    no sanitizer report, and the database password never in its logs."""

    start_server = True

    @classmethod
    def setUpClass(cls):
        if cls.start_server:
            cls.srv = config_server(name=cls.__name__)
            cls.addClassCleanup(cls.srv.kill)
            cls.c = client_of(cls.srv)

    @classmethod
    def tearDownClass(cls):
        if cls.start_server:
            cls.srv.stop_clean()
            assert_no_password(cls.srv)

    def setUp(self):
        self._watches = []
        self.ns = uniq_ns(self.id().rsplit('.', 1)[-1][5:][:20]
                          .replace('_', '-'))

    def tearDown(self):
        for w in self._watches:
            w.close()

    def watch(self, client=None, **kw):
        w = (client or self.c).watch(**kw)
        self._watches.append(w)
        return w

    def assertDoc(self, value, obj, msg=None):
        self.assertEqual(doc_of(value), obj, msg)

    def assert_serving(self, srv=None):
        srv = srv or self.srv
        self.assertTrue(srv.running(), '%s exited' % srv.name)
        self.assertEqual(srv.health_check('').status, 1)

    # -- watch helpers

    def next_change(self, w, timeout=harness.TIMEOUT):
        m = w.next(timeout)
        self.assertFalse(m.caught_up, 'a second caught_up message')
        return m.value


def assert_no_password(srv):
    pw = ch.database_password()
    if pw and len(pw) >= 6:
        for text in (srv.stderr(), srv.stdout()):
            if pw in text:
                raise AssertionError('%s logged the database password'
                                     % srv.name)


# ---------------------------------------------------------------- startup

class StartupTest(ConfigCase):
    """Settings, discovery registration, SIGTERM with an open Watch."""

    start_server = False

    def test_database_required(self):
        port = harness.free_port()
        r = harness.run_binary(['--listen', '127.0.0.1:%d' % port,
                                '--log-format', 'json'], binary=ch.CONFIG_BIN)
        self.assertEqual(r.sanitizer_findings(), [], r.stderr)
        self.assertEqual(r.code, 2, 'exit %d without --database; stderr %r'
                         % (r.code, r.stderr))
        self.assertIn('database', r.stderr.lower())
        self.assertFalse(harness.port_listening(port))

    def test_bad_conninfo_names_database_not_password(self):
        port = harness.free_port()
        secret = 'S3cr3tPassw0rdXyz'
        for url in ('postgresql://u:%s@127.0.0.1:1/db?no_such_option=1'
                    % secret,
                    'host=127.0.0.1 password=%s no_such_keyword=1' % secret):
            with self.subTest(url=url.replace(secret, '***')):
                r = harness.run_binary(
                    ['--listen', '127.0.0.1:%d' % port, '--log-format',
                     'json'], binary=ch.CONFIG_BIN,
                    env={'PLATFORM_DATABASE': url})
                self.assertEqual(r.sanitizer_findings(), [], r.stderr)
                self.assertNotEqual(r.code, 0, r.stderr)
                self.assertIn('database', r.stderr.lower())
                self.assertNotIn(secret, r.stderr + r.stdout)

    def test_registers_with_discovery(self):
        disc = Server(discovery='self', name='discovery-for-config')
        self.addCleanup(disc.kill)
        srv = config_server(name='config-registered',
                            discovery=disc.address)
        self.addCleanup(srv.kill)
        dc = disc.discovery_client()

        def listed():
            names = [s.name for s in dc.list(page_size=1000).services]
            for n in names:
                for s in dc.get(n).services:
                    for node in s.nodes:
                        if node.address == srv.address:
                            return n
            return None
        name = wait_for(listed, what='config-srv in discovery')
        self.assertTrue(name)
        srv.stop_clean()
        disc.stop_clean()

    def test_sigterm_with_open_watch(self):
        srv = config_server(name='config-sigterm')
        self.addCleanup(srv.kill)
        c = client_of(srv)
        w = self.watch(c, namespaces=[self.ns])
        self.assertEqual(self.until_caught_up(w), [])
        c.put(self.ns, 'a', {'x': 1})
        self.assertEqual(self.next_change(w).path, 'a')
        srv.stop_clean(keep_channel=True)
        err = w.end()
        if err is not None:
            self.assertIn(err.code(), (C.UNAVAILABLE, C.CANCELLED),
                          err.details())
        assert_no_password(srv)


# ---------------------------------------------------------------- RPCs

class ReadWriteTest(ConfigCase):
    """Update, Read (latest, version, selector), CAS, Delete."""

    def test_update_then_read(self):
        doc = {'limits': {'daily': {'max': 5000, 'min': 0}},
               'tiers': [{'name': 'gold'}, {'name': 'silver'}],
               'enabled': True, 'ratio': 0.25, 'none': None}
        before = now_ms()
        v = self.c.put(self.ns, 'payments/limits', doc, author='alice',
                       comment='first')
        after = now_ms()
        self.assertEqual((v.namespace, v.path, v.version, v.deleted),
                         (self.ns, 'payments/limits', 1, False))
        self.assertGreater(v.revision, 0)
        self.assertEqual((v.author, v.comment), ('alice', 'first'))
        if v.json:
            self.assertDoc(v, doc)

        r = self.c.read(self.ns, 'payments/limits').value
        self.assertDoc(r, doc)
        self.assertEqual((r.namespace, r.path, r.version, r.revision,
                          r.deleted, r.author, r.comment),
                         (self.ns, 'payments/limits', 1, v.revision, False,
                          'alice', 'first'))
        self.assertGreaterEqual(r.created_unix_ms, before - 5000)
        self.assertLessEqual(r.created_unix_ms, after + 5000)
        self.assertEqual(r.created_unix_ms, v.created_unix_ms)

        # Other namespaces (parent, child, sibling) do not see it.
        for ns in (self.ns + '/child', uniq_ns('other')):
            with self.subTest(namespace=ns):
                self.assertCode(rpc_error(self.c.read, ns, 'payments/limits'),
                                C.NOT_FOUND)

    def test_versions_and_revisions(self):
        path = 'svc/timeouts'
        vals = []
        for i in range(1, 6):
            vals.append(self.c.put(self.ns, path, {'i': i},
                                   comment='c%d' % i))
        self.assertEqual([v.version for v in vals], [1, 2, 3, 4, 5])
        revs = [v.revision for v in vals]
        self.assertEqual(revs, sorted(set(revs)),
                         'revisions not increasing: %r' % revs)
        # The revision is store-wide: a write to another path comes after.
        other = self.c.put(self.ns, 'svc/other', 1)
        self.assertEqual(other.version, 1)
        self.assertGreater(other.revision, revs[-1])

        latest = self.c.read(self.ns, path).value
        self.assertEqual((latest.version, latest.revision), (5, revs[-1]))
        self.assertDoc(latest, {'i': 5})
        for i in range(1, 6):
            with self.subTest(version=i):
                r = self.c.read(self.ns, path, version=i).value
                self.assertEqual((r.version, r.revision, r.comment),
                                 (i, revs[i - 1], 'c%d' % i))
                self.assertDoc(r, {'i': i})
        for bad in (6, 1000, 2 ** 62):
            with self.subTest(version=bad):
                self.assertCode(rpc_error(self.c.read, self.ns, path,
                                          version=bad), C.NOT_FOUND)

    def test_read_unknown(self):
        self.assertCode(rpc_error(self.c.read, self.ns, 'nothing/here'),
                        C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.read, self.ns, 'nothing/here',
                                  version=1), C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.read, self.ns, 'nothing.a.b'),
                        C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.read, self.ns, 'nothing',
                                  merged=True), C.NOT_FOUND)

    def test_any_json_value(self):
        for i, obj in enumerate([0, -1.5e-7, 12345, 'text', '', True, False,
                                 None, [], {}, [1, 'a', None, {'b': []}],
                                 {'nested': {'deep': [[[{'x': 1}]]]}}]):
            with self.subTest(value=obj):
                path = 'any/v%d' % i
                self.c.put(self.ns, path, obj)
                r = self.c.read(self.ns, path).value
                self.assertEqual(doc_of(r), obj)
                self.assertFalse(r.deleted)
        # Whitespace around and inside is not part of the value.
        self.c.update(self.ns, 'any/ws', ' \n\t{ "a" : [ 1 , 2 ] }\r\n ')
        self.assertDoc(self.c.read(self.ns, 'any/ws').value, {'a': [1, 2]})

    def test_selector(self):
        doc = {'daily': {'max': 5000, 'currency': 'EUR'},
               'tiers': [{'name': 'gold', 'limit': 1}, {'name': 'silver'}],
               'flag': False, 'nothing': None, 'empty': {},
               '10': 'ten'}
        v = self.c.put(self.ns, 'payments/limits', doc)
        v2 = self.c.put(self.ns, 'payments/limits',
                        {'daily': {'max': 7000}})
        cases = {
            'daily': {'max': 7000},
            'daily.max': 7000,
        }
        for sel, want in cases.items():
            with self.subTest(selector=sel, version='latest'):
                r = self.c.read(self.ns, 'payments/limits.' + sel).value
                self.assertEqual(doc_of(r), want)
                self.assertEqual(r.version, v2.version)
        cases = {
            'daily': {'max': 5000, 'currency': 'EUR'},
            'daily.max': 5000,
            'daily.currency': 'EUR',
            'tiers.0': {'name': 'gold', 'limit': 1},
            'tiers.1.name': 'silver',
            'tiers.0.limit': 1,
            'flag': False,
            'nothing': None,
            'empty': {},
            '10': 'ten',
        }
        for sel, want in cases.items():
            with self.subTest(selector=sel, version=1):
                r = self.c.read(self.ns, 'payments/limits.' + sel,
                                version=v.version).value
                self.assertEqual(doc_of(r), want)
                self.assertEqual(r.version, 1)
        for sel in ('daily.min', 'nope', 'tiers.2', 'tiers.99999999999',
                    'tiers.name', 'daily.max.x', 'flag.x', 'nothing.x',
                    'tiers.0.name.x', 'empty.x', 'tiers.-1'):
            with self.subTest(missing=sel):
                self.assertCode(rpc_error(self.c.read, self.ns,
                                          'payments/limits.' + sel,
                                          version=1), C.NOT_FOUND)

    def test_cas(self):
        path = 'cas/p'
        # -1: only when the path does not exist.
        v1 = self.c.put(self.ns, path, {'n': 1}, expected_version=-1)
        self.assertEqual(v1.version, 1)
        e = rpc_error(self.c.put, self.ns, path, {'n': 'x'},
                      expected_version=-1)
        self.assertCode(e, C.FAILED_PRECONDITION)
        # N: only at version N.
        for bad in (2, 3, 100):
            with self.subTest(expected=bad):
                self.assertCode(rpc_error(self.c.put, self.ns, path,
                                          {'n': 'x'}, expected_version=bad),
                                C.FAILED_PRECONDITION)
        v2 = self.c.put(self.ns, path, {'n': 2}, expected_version=1)
        self.assertEqual(v2.version, 2)
        self.assertCode(rpc_error(self.c.put, self.ns, path, {'n': 'x'},
                                  expected_version=1),
                        C.FAILED_PRECONDITION)
        # 0: whatever the version.
        self.assertEqual(self.c.put(self.ns, path, {'n': 3}).version, 3)
        # A failed CAS wrote nothing.
        hist, _ = self.c.history_all(self.ns, path)
        self.assertEqual([h.version for h in hist], [3, 2, 1])
        self.assertDoc(self.c.read(self.ns, path).value, {'n': 3})
        # N > 0 on a path that does not exist.
        self.assertCode(rpc_error(self.c.put, self.ns, 'cas/none', 1,
                                  expected_version=1), C.FAILED_PRECONDITION)
        self.assertCode(rpc_error(self.c.read, self.ns, 'cas/none'),
                        C.NOT_FOUND)

    def test_delete(self):
        path = 'del/p'
        self.c.put(self.ns, path, {'a': 1}, author='u1')
        self.c.put(self.ns, path, {'a': 2}, author='u2')
        # CAS on delete.
        self.assertCode(rpc_error(self.c.delete, self.ns, path,
                                  expected_version=1), C.FAILED_PRECONDITION)
        self.assertCode(rpc_error(self.c.delete, self.ns, path,
                                  expected_version=-1), C.FAILED_PRECONDITION)
        self.assertEqual(self.c.read(self.ns, path).value.version, 2)

        t = self.c.delete(self.ns, path, expected_version=2, author='bob',
                          comment='gone').value
        self.assertEqual((t.version, t.deleted, t.json, t.author, t.comment),
                         (3, True, '', 'bob', 'gone'))
        self.assertCode(rpc_error(self.c.read, self.ns, path), C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.read, self.ns, path + '.a'),
                        C.NOT_FOUND)
        r = self.c.read(self.ns, path, version=3).value
        self.assertEqual((r.version, r.deleted, r.json, r.revision),
                         (3, True, '', t.revision))
        self.assertDoc(self.c.read(self.ns, path, version=2).value, {'a': 2})

        # A deleted (or never written) path has nothing to delete.
        self.assertCode(rpc_error(self.c.delete, self.ns, path), C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.delete, self.ns, 'del/never'),
                        C.NOT_FOUND)

        # Writing again continues the history; -1 allows a deleted path.
        self.assertCode(rpc_error(self.c.put, self.ns, path, 1,
                                  expected_version=2), C.FAILED_PRECONDITION)
        v = self.c.put(self.ns, path, {'a': 4}, expected_version=-1)
        self.assertEqual(v.version, 4)
        self.assertDoc(self.c.read(self.ns, path).value, {'a': 4})

        # Delete with expected 0 deletes whatever the version.
        self.assertEqual(self.c.delete(self.ns, path).value.version, 5)
        hist, _ = self.c.history_all(self.ns, path)
        self.assertEqual([(h.version, h.deleted) for h in hist],
                         [(5, True), (4, False), (3, True), (2, False),
                          (1, False)])

    def test_json_null_is_not_a_tombstone(self):
        self.c.put(self.ns, 'n', None)
        r = self.c.read(self.ns, 'n').value
        self.assertFalse(r.deleted)
        self.assertEqual(loads(r.json), None)
        self.assertNotEqual(r.json, '')

    def test_concurrent_unconditional_writers(self):
        """Writes without CAS from several threads to one path: each is
        answered OK with its own version, and reads back at it."""
        path = 'race/free'
        results, errors, lock = [], [], threading.Lock()

        def writer(t):
            c = new_client(self.srv.address)
            try:
                for i in range(10):
                    obj = {'t': t, 'i': i}
                    try:
                        v = c.put(self.ns, path, obj)
                    except grpc.RpcError as e:
                        with lock:
                            errors.append((e.code(), e.details()))
                        continue
                    with lock:
                        results.append((v.version, v.revision, obj))
            finally:
                c.channel.close()
        threads = [threading.Thread(target=writer, args=(t,))
                   for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(v for v, _, _ in results), list(range(1, 41)))
        self.assertEqual(len({r for _, r, _ in results}), 40)
        for version, rev, obj in results:
            r = self.c.read(self.ns, path, version=version).value
            self.assertEqual((doc_of(r), r.revision), (obj, rev))


class HistoryDiffRollbackTest(ConfigCase):

    def test_history_paged_newest_first(self):
        path = 'h/p'
        written = []
        for i in range(1, 8):
            written.append(self.c.put(self.ns, path, {'i': i},
                                      author='a%d' % i, comment='c%d' % i))
        written.append(self.c.delete(self.ns, path, author='del',
                                     comment='bye').value)
        got, pages = self.c.history_all(self.ns, path, page_size=3)
        self.assertEqual(pages, [3, 3, 2])
        self.assertEqual([h.version for h in got], list(range(8, 0, -1)))
        for h, w in zip(got, reversed(written)):
            self.assertEqual((h.namespace, h.path, h.version, h.revision,
                              h.deleted, h.author, h.comment,
                              h.created_unix_ms),
                             (self.ns, path, w.version, w.revision,
                              w.deleted, w.author, w.comment,
                              w.created_unix_ms))
        self.assertTrue(got[0].deleted)
        self.assertEqual(got[0].json, '')
        for h in got[1:]:
            if h.json:      # History may leave the documents out
                self.assertDoc(h, {'i': h.version})
        # Page sizes that divide evenly and the whole history at once.
        got4, pages4 = self.c.history_all(self.ns, path, page_size=4)
        self.assertEqual([h.version for h in got4], list(range(8, 0, -1)))
        self.assertEqual(pages4[:2], [4, 4])
        self.assertIn(pages4[2:], ([], [0]))
        r = self.c.history(self.ns, path, page_size=1000)
        self.assertEqual(len(r.versions), 8)
        self.assertEqual(r.next_page_token, '')

    def test_history_default_page_size(self):
        path = 'h/many'
        for i in range(55):
            self.c.put(self.ns, path, i)
        r = self.c.history(self.ns, path)
        self.assertEqual(len(r.versions), 50, 'page_size 0 means 50')
        self.assertTrue(r.next_page_token)
        self.assertEqual(r.versions[0].version, 55)
        r2 = self.c.history(self.ns, path, page_token=r.next_page_token)
        self.assertEqual([h.version for h in r2.versions], [5, 4, 3, 2, 1])
        self.assertEqual(r2.next_page_token, '')

    def test_history_stable_under_writes(self):
        """New versions written between pages neither repeat nor skip the
        older ones the next page continues with."""
        path = 'h/moving'
        for i in range(6):
            self.c.put(self.ns, path, i)
        r = self.c.history(self.ns, path, page_size=3)
        self.assertEqual([h.version for h in r.versions], [6, 5, 4])
        self.c.put(self.ns, path, 6)
        r = self.c.history(self.ns, path, page_size=3,
                           page_token=r.next_page_token)
        self.assertEqual([h.version for h in r.versions], [3, 2, 1])

    def changes(self, resp):
        return sorted((OP_NAMES[c.op], c.pointer,
                       loads(c.old_json) if c.old_json else '<none>',
                       loads(c.new_json) if c.new_json else '<none>')
                      for c in resp.changes)

    def test_diff(self):
        path = 'd/p'
        self.c.put(self.ns, path, {'a': 1, 'b': {'c': 2, 'd': [1, 2]},
                                   'e': 'x', 'same': {'k': [1, {'z': 0}]}})
        self.c.put(self.ns, path, {'a': 1, 'b': {'c': 3, 'f': True},
                                   'g': None, 'same': {'k': [1, {'z': 0}]}})
        want = sorted([
            ('OP_CHANGED', 'b.c', 2, 3),
            ('OP_REMOVED', 'b.d', [1, 2], '<none>'),
            ('OP_ADDED', 'b.f', '<none>', True),
            ('OP_REMOVED', 'e', 'x', '<none>'),
            ('OP_ADDED', 'g', '<none>', None),
        ])
        self.assertEqual(self.changes(self.c.diff(self.ns, path,
                                                  from_version=1,
                                                  to_version=2)), want)
        # to_version 0: the latest.
        self.assertEqual(self.changes(self.c.diff(self.ns, path,
                                                  from_version=1)), want)
        # The other way round.
        back = sorted([
            ('OP_CHANGED', 'b.c', 3, 2),
            ('OP_ADDED', 'b.d', '<none>', [1, 2]),
            ('OP_REMOVED', 'b.f', True, '<none>'),
            ('OP_ADDED', 'e', '<none>', 'x'),
            ('OP_REMOVED', 'g', None, '<none>'),
        ])
        self.assertEqual(self.changes(self.c.diff(self.ns, path,
                                                  from_version=2,
                                                  to_version=1)), back)
        # Nothing between a version and itself.
        self.assertEqual(list(self.c.diff(self.ns, path, from_version=1,
                                          to_version=1).changes), [])
        # A change of type at the top: one change of the whole document.
        self.c.put(self.ns, path, 5)
        self.assertEqual(self.changes(self.c.diff(self.ns, path,
                                                  from_version=2,
                                                  to_version=3)),
                         [('OP_CHANGED', '', {'a': 1, 'b': {'c': 3,
                                                            'f': True},
                                              'g': None,
                                              'same': {'k': [1, {'z': 0}]}},
                           5)])
        # A change inside a nested object three levels down.
        self.c.put(self.ns, path, {'x': {'y': {'z': 1, 'w': 2}}})
        self.c.put(self.ns, path, {'x': {'y': {'z': 9, 'w': 2}}})
        self.assertEqual(self.changes(self.c.diff(self.ns, path,
                                                  from_version=4,
                                                  to_version=5)),
                         [('OP_CHANGED', 'x.y.z', 1, 9)])
        # Unknown versions and paths.
        for fr, to in ((1, 99), (99, 1), (99, 0)):
            with self.subTest(frm=fr, to=to):
                self.assertCode(rpc_error(self.c.diff, self.ns, path,
                                          from_version=fr, to_version=to),
                                C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.diff, self.ns, 'd/none',
                                  from_version=1, to_version=2), C.NOT_FOUND)

    def test_rollback(self):
        path = 'r/p'
        docs = [{'v': 1, 'a': 'one'}, {'v': 2}, {'v': 3, 'b': [3]}]
        for d in docs:
            self.c.put(self.ns, path, d)
        r = self.c.rollback(self.ns, path, to_version=1, author='ops',
                            comment='back to 1').value
        self.assertEqual((r.version, r.deleted, r.author, r.comment),
                         (4, False, 'ops', 'back to 1'))
        if r.json:
            self.assertDoc(r, docs[0])
        latest = self.c.read(self.ns, path).value
        self.assertEqual(latest.version, 4)
        self.assertDoc(latest, docs[0])
        self.assertEqual(latest.revision, r.revision)
        # The old versions are untouched.
        for i, d in enumerate(docs, 1):
            self.assertDoc(self.c.read(self.ns, path, version=i).value, d)
        self.assertEqual(list(self.c.diff(self.ns, path, from_version=1,
                                          to_version=4).changes), [])

        # CAS on rollback.
        self.assertCode(rpc_error(self.c.rollback, self.ns, path,
                                  to_version=2, expected_version=3),
                        C.FAILED_PRECONDITION)
        self.assertCode(rpc_error(self.c.rollback, self.ns, path,
                                  to_version=2, expected_version=-1),
                        C.FAILED_PRECONDITION)
        r = self.c.rollback(self.ns, path, to_version=2, expected_version=4)
        self.assertEqual(r.value.version, 5)
        self.assertDoc(self.c.read(self.ns, path).value, docs[1])

        # Unknown version or path.
        self.assertCode(rpc_error(self.c.rollback, self.ns, path,
                                  to_version=99), C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.rollback, self.ns, 'r/none',
                                  to_version=1), C.NOT_FOUND)
        self.assertEqual(self.c.read(self.ns, path).value.version, 5)

        # A deleted path comes back by rollback.
        self.c.delete(self.ns, path)
        r = self.c.rollback(self.ns, path, to_version=3, expected_version=6)
        self.assertEqual(r.value.version, 7)
        self.assertDoc(self.c.read(self.ns, path).value, docs[2])


class ListTest(ConfigCase):

    def names(self, values):
        return [v.path for v in values]

    def test_list_prefix_order_and_tombstones(self):
        paths = ['app/z', 'app/a', 'app/b/d', 'app/a-b', 'app/b/c',
                 'app/a/b', 'app/A', 'app/0', 'other/x', 'apps/y']
        written = {}
        for p in paths:
            written[p] = self.c.put(self.ns, p, {'p': p})
        self.c.put(self.ns, 'app/a', {'p': 'again'})
        self.c.delete(self.ns, 'app/z')
        # A child namespace is not part of this one.
        self.c.put(self.ns + '/child', 'app/child', 1)

        want = sorted(p for p in paths
                      if p.startswith('app/') and p != 'app/z')
        got, _ = self.c.list_all(self.ns, prefix='app/')
        self.assertEqual(self.names(got), want)
        for v in got:
            self.assertEqual(v.namespace, self.ns)
            self.assertEqual(v.json, '', 'List leaves json empty')
            self.assertFalse(v.deleted)
            self.assertEqual(v.version, 2 if v.path == 'app/a' else 1)
            if v.path != 'app/a':
                self.assertEqual(v.revision, written[v.path].revision)

        got, _ = self.c.list_all(self.ns, prefix='app/', include_deleted=True)
        self.assertEqual(self.names(got), sorted(want + ['app/z']))
        z = [v for v in got if v.path == 'app/z'][0]
        self.assertEqual((z.deleted, z.version), (True, 2))

        got, _ = self.c.list_all(self.ns)
        self.assertEqual(self.names(got),
                         sorted(p for p in paths if p != 'app/z'))
        got, _ = self.c.list_all(self.ns, prefix='app/b/')
        self.assertEqual(self.names(got), ['app/b/c', 'app/b/d'])
        got, _ = self.c.list_all(self.ns, prefix='nothing/')
        self.assertEqual(got, [])
        got, _ = self.c.list_all(uniq_ns('empty'))
        self.assertEqual(got, [])

        # Paged: every path once, in order, full pages but the last.
        for size in (1, 2, 3, 7):
            with self.subTest(page_size=size):
                got, pages = self.c.list_all(self.ns, page_size=size,
                                             include_deleted=True)
                self.assertEqual(self.names(got), sorted(paths))
                self.assertTrue(all(n == size for n in pages[:-1]), pages)

    def test_list_default_page_size(self):
        futs = [self.c.future('Update', P.UpdateRequest(
            namespace=self.ns, path='many/%03d' % i, json='1'))
            for i in range(105)]
        for f in futs:
            f.result()
        r = self.c.list(self.ns)
        self.assertEqual(len(r.values), 100, 'page_size 0 means 100')
        self.assertTrue(r.next_page_token)
        r2 = self.c.list(self.ns, page_token=r.next_page_token)
        self.assertEqual(self.names(r2.values),
                         ['many/%03d' % i for i in range(100, 105)])
        self.assertEqual(r2.next_page_token, '')

    def test_list_paging_under_writes(self):
        """Paths written or deleted between pages do not make the next page
        repeat or skip paths that were there all along."""
        for i in range(6):
            self.c.put(self.ns, 'w/%d' % i, i)
        r = self.c.list(self.ns, page_size=3)
        self.assertEqual(self.names(r.values), ['w/0', 'w/1', 'w/2'])
        self.c.put(self.ns, 'w/00', 'new before the cursor')
        r = self.c.list(self.ns, page_size=3, page_token=r.next_page_token)
        self.assertEqual(self.names(r.values), ['w/3', 'w/4', 'w/5'])


class MergeTest(ConfigCase):
    """global <- top <- top/eu (<- top/eu/x): deep merge of objects, the
    most specific winning; sources name each top-level key's namespace."""

    def setUp(self):
        super().setUp()
        self.path = uniq_path('merge')
        self.top = self.ns
        self.eu = self.ns + '/eu'
        self.glob_doc = {
            'timeout': 30, 'retries': 3,
            'db': {'host': 'g-host', 'port': 5432,
                   'pool': {'min': 1, 'max': 10}},
            'features': ['a'], 'only_global': True,
            'conn': 5}
        self.top_doc = {
            'timeout': 20,
            'db': {'host': 'p-host', 'pool': {'max': 50}},
            'features': ['b', 'c'], 'only_top': 1}
        self.eu_doc = {
            'db': {'host': 'eu-host'}, 'region': 'eu',
            'conn': {'connect': 1}}
        self.c.put('global', self.path, self.glob_doc)
        self.c.put(self.top, self.path, self.top_doc)
        self.c.put(self.eu, self.path, self.eu_doc)

    def merged(self, ns, path=None):
        return self.c.read(ns, path or self.path, merged=True)

    def test_three_levels(self):
        r = self.merged(self.eu)
        self.assertEqual(doc_of(r.value), {
            'timeout': 20, 'retries': 3,
            'db': {'host': 'eu-host', 'port': 5432,
                   'pool': {'min': 1, 'max': 50}},
            'features': ['b', 'c'], 'only_global': True, 'only_top': 1,
            'region': 'eu', 'conn': {'connect': 1}})
        self.assertEqual(dict(r.sources), {
            'timeout': self.top, 'retries': 'global', 'db': self.eu,
            'features': self.top, 'only_global': 'global',
            'only_top': self.top, 'region': self.eu, 'conn': self.eu})

    def test_each_level(self):
        r = self.merged(self.top)
        self.assertEqual(doc_of(r.value), {
            'timeout': 20, 'retries': 3,
            'db': {'host': 'p-host', 'port': 5432,
                   'pool': {'min': 1, 'max': 50}},
            'features': ['b', 'c'], 'only_global': True, 'only_top': 1,
            'conn': 5})
        self.assertEqual(dict(r.sources), {
            'timeout': self.top, 'retries': 'global', 'db': self.top,
            'features': self.top, 'only_global': 'global',
            'only_top': self.top, 'conn': 'global'})
        r = self.merged('global')
        self.assertEqual(doc_of(r.value), self.glob_doc)
        self.assertEqual(dict(r.sources),
                         {k: 'global' for k in self.glob_doc})
        # An unmerged read sees one namespace only.
        self.assertDoc(self.c.read(self.eu, self.path).value, self.eu_doc)

    def test_deeper_namespace_without_document(self):
        r = self.merged(self.eu + '/x/y')
        self.assertEqual(doc_of(r.value), doc_of(self.merged(self.eu).value))
        self.assertEqual(dict(r.sources), dict(self.merged(self.eu).sources))
        self.assertCode(rpc_error(self.c.read, self.eu + '/x/y', self.path),
                        C.NOT_FOUND)

    def test_missing_middle_level(self):
        ns = uniq_ns('gap') + '/eu'
        self.c.put(ns, self.path, {'timeout': 1, 'db': {'port': 1}})
        r = self.merged(ns)
        want = dict(self.glob_doc)
        want['timeout'] = 1
        want['db'] = {'host': 'g-host', 'port': 1,
                      'pool': {'min': 1, 'max': 10}}
        self.assertEqual(doc_of(r.value), want)
        self.assertEqual(r.sources['timeout'], ns)
        self.assertEqual(r.sources['retries'], 'global')

    def test_tombstone_level_is_skipped(self):
        self.c.delete(self.eu, self.path)
        r = self.merged(self.eu)
        self.assertEqual(doc_of(r.value), doc_of(self.merged(self.top).value))
        self.assertNotIn(self.eu, dict(r.sources).values())

    def test_scalar_wins_over_object(self):
        ns = self.top + '/scalar'
        self.c.put(ns, self.path, 7)
        self.assertEqual(doc_of(self.merged(ns).value), 7)

    def test_selector_on_merged(self):
        r = self.c.read(self.eu, self.path + '.db.pool', merged=True).value
        self.assertEqual(doc_of(r), {'min': 1, 'max': 50})
        r = self.c.read(self.eu, self.path + '.db.host', merged=True).value
        self.assertEqual(doc_of(r), 'eu-host')
        r = self.c.read(self.eu, self.path + '.features.1',
                        merged=True).value
        self.assertEqual(doc_of(r), 'c')
        self.assertCode(rpc_error(self.c.read, self.eu,
                                  self.path + '.db.nope', merged=True),
                        C.NOT_FOUND)

    def test_nothing_anywhere(self):
        self.assertCode(rpc_error(self.c.read, self.eu, uniq_path('none'),
                                  merged=True), C.NOT_FOUND)

    def test_follows_changes(self):
        self.c.put(self.top, self.path, {'timeout': 99})
        r = self.merged(self.eu)
        self.assertEqual(doc_of(r.value)['timeout'], 99)
        self.assertNotIn('only_top', doc_of(r.value))
        self.assertEqual(doc_of(r.value)['db']['pool'], {'min': 1, 'max': 10})

    def test_version_with_merged(self):
        e = rpc_error(self.c.read, self.eu, self.path, merged=True, version=1)
        self.assertCode(e, C.INVALID_ARGUMENT)
        self.assertRegex(e.details(), 'version|merged')


class CasRaceTest(ConfigCase):
    """Two threads send the same compare-and-set at the same moment:
    exactly one wins, the other gets FAILED_PRECONDITION."""

    ROUNDS = 15

    def race(self, calls):
        """Runs each call on its own thread, released together; returns
        [(ok, result_or_error)]."""
        barrier = threading.Barrier(len(calls))
        out = [None] * len(calls)

        def run(i):
            barrier.wait(30)
            try:
                out[i] = (True, calls[i]())
            except grpc.RpcError as e:
                out[i] = (False, e)
        ts = [threading.Thread(target=run, args=(i,))
              for i in range(len(calls))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertTrue(all(o is not None for o in out), 'a racer hung')
        return out

    def check_one_winner(self, out, label):
        wins = [r for ok, r in out if ok]
        losses = [e for ok, e in out if not ok]
        self.assertEqual(len(wins), 1, '%s: %d winners; errors %r' % (
            label, len(wins), [(e.code(), e.details()) for e in losses]))
        for e in losses:
            self.assertCode(e, C.FAILED_PRECONDITION)
        return wins[0]

    def test_update_update(self):
        clients = [new_client(self.srv.address) for _ in range(2)]
        self.addCleanup(lambda: [c.channel.close() for c in clients])
        path = 'race/uu'
        cur = self.c.put(self.ns, path, {'w': None}).version
        for rnd in range(self.ROUNDS):
            docs = [{'w': i, 'round': rnd} for i in range(2)]
            out = self.race([
                (lambda i=i: clients[i].put(self.ns, path, docs[i],
                                            expected_version=cur))
                for i in range(2)])
            win = self.check_one_winner(out, 'round %d' % rnd)
            self.assertEqual(win.version, cur + 1)
            got = self.c.read(self.ns, path).value
            self.assertEqual(got.version, cur + 1)
            self.assertIn(doc_of(got), docs)
            self.assertEqual(got.revision, win.revision)
            cur += 1
        hist, _ = self.c.history_all(self.ns, path)
        self.assertEqual(len(hist), self.ROUNDS + 1)

    def test_create_create(self):
        clients = [new_client(self.srv.address) for _ in range(2)]
        self.addCleanup(lambda: [c.channel.close() for c in clients])
        for rnd in range(self.ROUNDS):
            path = 'race/cc%d' % rnd
            out = self.race([
                (lambda i=i: clients[i].put(self.ns, path, {'w': i},
                                            expected_version=-1))
                for i in range(2)])
            win = self.check_one_winner(out, 'round %d' % rnd)
            self.assertEqual(win.version, 1)
            hist, _ = self.c.history_all(self.ns, path)
            self.assertEqual([h.version for h in hist], [1])

    def test_update_delete_rollback(self):
        clients = [new_client(self.srv.address) for _ in range(3)]
        self.addCleanup(lambda: [c.channel.close() for c in clients])
        path = 'race/mixed'
        self.c.put(self.ns, path, {'base': True})
        cur = self.c.put(self.ns, path, {'w': None}).version
        deleted = False
        for rnd in range(self.ROUNDS):
            calls = [
                lambda: clients[0].put(self.ns, path, {'r': rnd},
                                       expected_version=cur),
                lambda: clients[2].rollback(self.ns, path, to_version=1,
                                            expected_version=cur).value]
            if not deleted:     # a tombstone has nothing to delete
                calls.append(lambda: clients[1].delete(
                    self.ns, path, expected_version=cur).value)
            out = self.race(calls)
            win = self.check_one_winner(out, 'round %d' % rnd)
            self.assertEqual(win.version, cur + 1)
            deleted = win.deleted
            cur += 1
        hist, _ = self.c.history_all(self.ns, path)
        self.assertEqual([h.version for h in hist],
                         list(range(cur, 0, -1)))


class GroupCommitTest(ConfigCase):
    """Many writes in flight at once share transactions (group commit):
    each still gets its own outcome, checked against the writes committed
    before it, and revisions stay dense and in order."""

    def test_mixed_outcomes_in_flight_together(self):
        P = self.c.pb
        self.c.put(self.ns, 'gc/base', {'v': 1})
        calls = []
        for i in range(60):     # distinct paths: every one succeeds
            calls.append(('Update', P.UpdateRequest(
                namespace=self.ns, path='gc/d%d' % i, json=dumps({'i': i}))))
        for i in range(30):     # racing creators of one path: one wins
            calls.append(('Update', P.UpdateRequest(
                namespace=self.ns, path='gc/create', json=dumps({'w': i}),
                expected_version=-1)))
        for i in range(10):     # unconditional writes to one path
            calls.append(('Update', P.UpdateRequest(
                namespace=self.ns, path='gc/same', json=dumps({'s': i}))))
        calls.append(('Delete', P.DeleteRequest(namespace=self.ns,
                                                path='gc/missing')))
        calls.append(('Rollback', P.RollbackRequest(
            namespace=self.ns, path='gc/base', to_version=9)))
        calls.append(('Rollback', P.RollbackRequest(
            namespace=self.ns, path='gc/base', to_version=1)))
        futures = [self.c.future(m, req) for m, req in calls]
        ok, failed = [], []
        for (method, req), f in zip(calls, futures):
            try:
                ok.append((req.path, f.result().value))
            except grpc.RpcError as e:
                failed.append((req.path, e.code()))
        self.assertEqual(sorted(failed), sorted(
            [('gc/create', C.FAILED_PRECONDITION)] * 29 +
            [('gc/missing', C.NOT_FOUND), ('gc/base', C.NOT_FOUND)]))
        self.assertEqual(len(ok), 60 + 1 + 10 + 1)
        revs = sorted(v.revision for _, v in ok)
        self.assertEqual(len(set(revs)), len(revs))
        # Per path, versions are dense and follow revision order.
        by_path = {}
        for path, v in ok:
            by_path.setdefault(path, []).append((v.revision, v.version))
        for path, vs in by_path.items():
            vs.sort()
            start = 2 if path == 'gc/base' else 1
            self.assertEqual([ver for _, ver in vs],
                             list(range(start, start + len(vs))), path)
        self.assertEqual(doc_of(self.c.read(self.ns, 'gc/base').value),
                         {'v': 1})
        # Everything answered OK is stored as answered.
        for path, v in ok:
            got = self.c.read(self.ns, path, version=v.version).value
            self.assertEqual((got.revision, got.json), (v.revision, v.json))


# ---------------------------------------------------------------- validation

class ValidationTest(ConfigCase):
    """Bad input for every field of every request: INVALID_ARGUMENT naming
    the field, and nothing written."""

    def setUp(self):
        super().setUp()
        self.path = 'base/doc'
        self.base = self.c.put(self.ns, self.path, {'k': 1})

    def snapshot(self):
        vals, _ = self.c.list_all(self.ns, include_deleted=True)
        return [(v.path, v.version, v.revision) for v in vals]

    def reject(self, fn, field, *args, **kw):
        before = self.snapshot()
        e = rpc_error(fn, *args, **kw)
        self.assertCode(e, C.INVALID_ARGUMENT, field)
        self.assertEqual(self.snapshot(), before, 'a rejected call wrote')
        return e

    BAD_NAMESPACES = ['', 'Prod', 'pRod', 'a//b', '/a', 'a/', '/', '-a',
                      '_a', 'a/-b', 'a b', 'a.b', 'a\\b', "a'b", 'a;b',
                      'a%b', 'caf\u00e9', 'a\nb', 'a\x00b', 'a/B',
                      'x' * 129, 'a/' + 'b' * 127]
    BAD_PATHS = ['', '/a', 'a/', '/', 'a//b', 'a b', 'a\tb', 'caf\u00e9',
                 "a'b", 'a;b', 'a%b', 'a\\b', 'a*', 'a\x00b', 'a:b', 'a"b',
                 'p' * 257]
    # Syntax errors in the selector part of a read path.
    BAD_SELECTORS = ['p.', 'p..a', '.a', 'p.a.', '.']

    def test_valid_limits(self):
        """The largest legal names and fields are accepted."""
        u = '-' + ch.RUN
        ns = ('n' * (ch.MAX_NAMESPACE - len(u))) + u
        path = ('P' * (ch.MAX_PATH - len(u))) + u
        ns_deep = '/'.join(['a1'] * 30) + '/' + u[1:]
        self.assertEqual(len(ns), 128)
        self.assertEqual(len(path), 256)
        cases = [
            (ns, 'p', 1),
            (ns_deep, 'p', 1),
            (self.ns + '/0/9-_z', 'A/b_0/-/_/Z-9', 2),
            (self.ns, path, 3),
            (self.ns, '/'.join('s%d' % i for i in range(60)), 4),
        ]
        for namespace, p, val in cases:
            with self.subTest(namespace=namespace[:20], path=p[:20]):
                v = self.c.put(namespace, p, val, author='a' * 128,
                               comment='c' * 1024)
                r = self.c.read(namespace, p).value
                self.assertEqual((r.namespace, r.path, r.author, r.comment),
                                 (namespace, p, 'a' * 128, 'c' * 1024))
                self.assertEqual(doc_of(r), val)
                self.assertEqual(r.version, v.version)
        # A document of exactly the size limit (compact, so its stored
        # form is no larger).
        big = '"' + 'x' * (ch.MAX_JSON - 2) + '"'
        self.assertEqual(len(big), ch.MAX_JSON)
        self.c.update(self.ns, 'big/ok', big)
        self.assertEqual(loads(self.c.read(self.ns, 'big/ok').value.json),
                         'x' * (ch.MAX_JSON - 2))

    def test_update_namespace(self):
        for bad in self.BAD_NAMESPACES:
            with self.subTest(namespace=bad):
                self.reject(self.c.put, 'namespace', bad, 'p', 1)

    def test_update_path(self):
        for bad in self.BAD_PATHS + ['a.b', 'p.x', 'a/b.c']:
            with self.subTest(path=bad):
                self.reject(self.c.put, 'path', self.ns, bad, 1)

    def test_update_json(self):
        cases = ['', ' ', '{', '}', '{"a":1,}', '[1,]', '[1 2]', "{'a':1}",
                 '{"a":1,"a":2}', '{"a":{"b":1,"b":1}}',
                 '[{"x":1,"y":2,"x":3}]', '{a:1}', 'NaN', 'Infinity',
                 '-Infinity', 'nul', 'tru', 'True', 'None', 'undefined',
                 '01', '1.', '.5', '+1', '1e', '0x10', '"abc', '"a\\x"',
                 '"a\nb"', '"tab\there"', '{"a" 1}', '{"a":1}{"b":2}',
                 '1 2', '{} x', '/* c */ {}', '{"a":1} // c', '\x00',
                 '"\\u12"', '[' * 10 + ']' * 9]
        for bad in cases:
            with self.subTest(json=bad):
                self.reject(self.c.update, 'json', self.ns, self.path, bad)
                self.reject(self.c.update, 'json', self.ns, 'new/path', bad)
        over = '"' + 'x' * (ch.MAX_JSON - 1) + '"'
        self.assertEqual(len(over), ch.MAX_JSON + 1)
        with self.subTest(json='256 KiB + 1'):
            self.reject(self.c.update, 'json', self.ns, self.path, over)
        # Large only with whitespace: over the limit as sent; either the
        # limit applies to what was sent or to the stored form.
        padded = '{"a":' + ' ' * ch.MAX_JSON + '1}'
        with self.subTest(json='padded'):
            try:
                self.c.update(self.ns, 'pad/ded', padded)
            except grpc.RpcError as e:
                self.assertCode(e, C.INVALID_ARGUMENT, 'json')
            else:
                self.assertDoc(self.c.read(self.ns, 'pad/ded').value,
                               {'a': 1})
        self.assertCode(rpc_error(self.c.read, self.ns, 'new/path'),
                        C.NOT_FOUND)

    def test_deep_nesting_does_not_crash(self):
        """Deeply nested JSON under the size limit: refused or stored, but
        the server survives parsing, reading, merging and diffing it."""
        for depth in (1000, 40000):
            deep = '[' * depth + ']' * depth
            obj = '{"a":' * depth + '1' + '}' * depth
            for label, text in (('array', deep), ('object', obj)):
                with self.subTest(depth=depth, kind=label):
                    path = 'deep/%s%d' % (label, depth)
                    try:
                        self.c.update(self.ns, path, text)
                    except grpc.RpcError as e:
                        self.assertCode(e, C.INVALID_ARGUMENT, 'json')
                    else:
                        self.c.read(self.ns, path)
                        self.c.read(self.ns, path, merged=True)
                        self.c.update(self.ns, path, '1')
                        self.c.diff(self.ns, path, from_version=1,
                                    to_version=2)
                        self.c.diff(self.ns, path, from_version=2,
                                    to_version=1)
                    self.assert_serving()

    def test_update_author_comment_expected(self):
        self.reject(self.c.put, 'author', self.ns, self.path, 2,
                    author='a' * 129)
        self.reject(self.c.put, 'comment', self.ns, self.path, 2,
                    comment='c' * 1025)
        # Multi-byte characters: the limit must not be blown past in bytes
        # either way we count; 1025 two-byte characters are over in both.
        self.reject(self.c.put, 'comment', self.ns, self.path, 2,
                    comment='\u00e9' * 1025)
        self.reject(self.c.put, 'author', self.ns, self.path, 2,
                    author='\u00e9' * 129)
        for bad in (-2, -100, -2 ** 63):
            with self.subTest(expected_version=bad):
                self.reject(self.c.put, 'expected_version', self.ns,
                            self.path, 2, expected_version=bad)

    def test_read(self):
        for bad in self.BAD_NAMESPACES:
            with self.subTest(namespace=bad):
                self.reject(self.c.read, 'namespace', bad, self.path)
        for bad in self.BAD_PATHS + self.BAD_SELECTORS:
            with self.subTest(path=bad):
                self.reject(self.c.read, 'path', self.ns, bad)
        for bad in (-1, -2 ** 63):
            with self.subTest(version=bad):
                self.reject(self.c.read, 'version', self.ns, self.path,
                            version=bad)

    def test_delete(self):
        for bad in self.BAD_NAMESPACES:
            with self.subTest(namespace=bad):
                self.reject(self.c.delete, 'namespace', bad, self.path)
        for bad in self.BAD_PATHS + ['base/doc.k']:
            with self.subTest(path=bad):
                self.reject(self.c.delete, 'path', self.ns, bad)
        self.reject(self.c.delete, 'expected_version', self.ns, self.path,
                    expected_version=-2)
        self.reject(self.c.delete, 'author', self.ns, self.path,
                    author='a' * 129)
        self.reject(self.c.delete, 'comment', self.ns, self.path,
                    comment='c' * 1025)

    def test_history(self):
        for bad in self.BAD_NAMESPACES:
            with self.subTest(namespace=bad):
                self.reject(self.c.history, 'namespace', bad, self.path)
        for bad in self.BAD_PATHS:
            with self.subTest(path=bad):
                self.reject(self.c.history, 'path', self.ns, bad)
        for bad in (-1, -2 ** 31):
            with self.subTest(page_size=bad):
                self.reject(self.c.history, 'page_size', self.ns, self.path,
                            page_size=bad)
        for bad in ('!!!not a token!!!', '\u00e9\u00e8', '%%%%', 'AAAA',
                    "' OR 1=1 --"):
            with self.subTest(page_token=bad):
                self.reject(self.c.history, 'page_token', self.ns,
                            self.path, page_size=1, page_token=bad)

    def test_diff(self):
        for bad in self.BAD_NAMESPACES:
            with self.subTest(namespace=bad):
                self.reject(self.c.diff, 'namespace', bad, self.path,
                            from_version=1, to_version=1)
        for bad in self.BAD_PATHS:
            with self.subTest(path=bad):
                self.reject(self.c.diff, 'path', self.ns, bad,
                            from_version=1, to_version=1)
        for bad in (-1, -2 ** 63):
            with self.subTest(from_version=bad):
                self.reject(self.c.diff, 'from_version', self.ns, self.path,
                            from_version=bad, to_version=1)
            with self.subTest(to_version=bad):
                self.reject(self.c.diff, 'to_version', self.ns, self.path,
                            from_version=1, to_version=bad)

    def test_rollback(self):
        for bad in self.BAD_NAMESPACES:
            with self.subTest(namespace=bad):
                self.reject(self.c.rollback, 'namespace', bad, self.path,
                            to_version=1)
        for bad in self.BAD_PATHS:
            with self.subTest(path=bad):
                self.reject(self.c.rollback, 'path', self.ns, bad,
                            to_version=1)
        for bad in (0, -1, -2 ** 63):
            with self.subTest(to_version=bad):
                self.reject(self.c.rollback, 'to_version', self.ns,
                            self.path, to_version=bad)
        self.reject(self.c.rollback, 'expected_version', self.ns, self.path,
                    to_version=1, expected_version=-2)
        self.reject(self.c.rollback, 'author', self.ns, self.path,
                    to_version=1, author='a' * 129)
        self.reject(self.c.rollback, 'comment', self.ns, self.path,
                    to_version=1, comment='c' * 1025)

    def test_list(self):
        for bad in self.BAD_NAMESPACES:
            with self.subTest(namespace=bad):
                self.reject(self.c.list, 'namespace', bad)
        for bad in ('/a', 'a//b', 'a b', 'a.b', 'caf\u00e9', "a'", 'a%',
                    'a\x00', 'p' * 257):
            with self.subTest(prefix=bad):
                self.reject(self.c.list, 'prefix', self.ns, prefix=bad)
        for bad in (-1, -2 ** 31):
            with self.subTest(page_size=bad):
                self.reject(self.c.list, 'page_size', self.ns,
                            page_size=bad)
        for bad in ('!!!not a token!!!', '\u00e9\u00e8', '%%%%', 'AAAA',
                    "' OR 1=1 --"):
            with self.subTest(page_token=bad):
                self.reject(self.c.list, 'page_token', self.ns,
                            page_size=1, page_token=bad)

    def test_watch(self):
        cases = [({'namespaces': [bad]}, 'namespaces')
                 for bad in self.BAD_NAMESPACES]
        cases += [({'namespaces': [self.ns, 'Bad']}, 'namespaces')]
        cases += [({'namespaces': [self.ns], 'prefix': bad}, 'prefix')
                  for bad in ('/a', 'a//b', 'a b', 'a.b', 'p' * 257)]
        cases += [({'namespaces': [self.ns], 'after_revision': bad},
                   'after_revision') for bad in (-1, -2 ** 63)]
        for kw, field in cases:
            with self.subTest(**{k: str(v)[:40] for k, v in kw.items()}):
                w = self.watch(**kw)
                with self.assertRaises(grpc.RpcError) as cm:
                    w.next()
                self.assertCode(cm.exception, C.INVALID_ARGUMENT, field)

    def test_invalid_utf8_on_the_wire(self):
        """Strings that are not UTF-8 (crafted on the wire) are refused."""
        bads = [b'\xff', b'\xc3\x28', b'\xc0\xaf', b'\xed\xa0\x80',
                b'\xe2\x82', b'\xf8\x88\x80\x80\x80']
        fields = {
            'json': P.UpdateRequest(namespace=self.ns, path=self.path,
                                    json='{"k":"ZZPLACEHOLDER"}'),
            'author': P.UpdateRequest(namespace=self.ns, path=self.path,
                                      json='2', author='ZZPLACEHOLDER'),
            'comment': P.UpdateRequest(namespace=self.ns, path=self.path,
                                       json='2', comment='ZZPLACEHOLDER'),
            'json key': P.UpdateRequest(namespace=self.ns, path=self.path,
                                        json='{"ZZPLACEHOLDER":1}'),
        }
        for label, req in fields.items():
            wire = req.SerializeToString()
            self.assertEqual(wire.count(b'ZZPLACEHOLDER'), 1)
            for bad in bads:
                with self.subTest(field=label, bytes=bad):
                    raw = wire.replace(b'ZZPLACEHOLDER',
                                       (b'zz' + bad + b'z' * 13)[:13])
                    before = self.snapshot()
                    e = rpc_error(self.c.raw, 'Update', raw)
                    self.assertCode(e, C.INVALID_ARGUMENT)
                    self.assertEqual(self.snapshot(), before)
        for bad in bads:
            with self.subTest(method='Read', bytes=bad):
                self.assertCode(rpc_error(self.c.raw, 'Read',
                                          ld_field(1, b'ns' + bad)),
                                C.INVALID_ARGUMENT)
            with self.subTest(method='Watch', bytes=bad):
                self.assertCode(rpc_error(self.c.raw, 'Watch',
                                          ld_field(2, b'p' + bad),
                                          stream=True),
                                C.INVALID_ARGUMENT)

    def test_nul_in_strings(self):
        self.reject(self.c.put, 'author', self.ns, self.path, 2,
                    author='a\x00b')
        self.reject(self.c.put, 'comment', self.ns, self.path, 2,
                    comment='a\x00b')

    def test_escaped_nul_in_json(self):
        """An escaped NUL is valid JSON: it round-trips, or (if the store
        cannot hold it) is refused as INVALID_ARGUMENT on json, never an
        internal error."""
        obj = {'nul': 'a\u0000b', 'k\u0000': 1}
        try:
            self.c.put(self.ns, 'nul/doc', obj)
        except grpc.RpcError as e:
            self.assertCode(e, C.INVALID_ARGUMENT, 'json')
            self.assertCode(rpc_error(self.c.read, self.ns, 'nul/doc'),
                            C.NOT_FOUND)
        else:
            self.assertDoc(self.c.read(self.ns, 'nul/doc').value, obj)

    def test_still_serving(self):
        self.assert_serving()
        self.assertDoc(self.c.read(self.ns, self.path).value, {'k': 1})


class MetacharacterTest(ConfigCase):
    """Legal names and JSON full of SQL metacharacters and quotes
    round-trip exactly through every RPC."""

    NASTY = {
        'sql': "'; DROP TABLE config_values; --",
        'sql2': "\" OR 1=1; /* */ SELECT * FROM pg_user; --",
        'quotes': 'a"b\'c\\d`e',
        'backslashes': '\\\\server\\share\\ \\n \\u0041 \\',
        'percent': '%s %d %n %% 100% LIKE \'%_%\'',
        'semicolons': ';;; ; --; -- ;',
        'dollar': '$1 $$ $tag$ body $tag$ E\'\\x41\'',
        'copy': '\\.\n\\N\t\\t',
        'unicode': '\u65e5\u672c\u8a9e \U0001F680 \u00e9\u00e8 \u200b',
        'ws': 'line1\nline2\r\n\ttab ',
        'html': '<script>alert(1)</script>&amp;',
        "key's \"quoted\" ;-- %\\": 'value',
        'nested': [{"'": '"'}, ['--', ';', '\\', '%', "''", '""']],
        'numbers': [0, -1, 3.14159, 1e-7, 2 ** 53],
    }

    def test_round_trip(self):
        ns = uniq_ns('q--x_') + '/a--b_-/0-_'
        path = 'Robert-_--DROP_TABLE/x--y/_-/--'
        text = dumps(self.NASTY)
        v1 = self.c.update(self.ns, path, text, author="o'brien\"; --",
                           comment="%s ' \" ; -- \\ %%").value
        v = self.c.update(ns, path, text, author="o'brien\"; --",
                          comment="%s ' \" ; -- \\ %%").value
        self.assertEqual((v.namespace, v.path), (ns, path))
        for n, ver in ((self.ns, v1), (ns, v)):
            r = self.c.read(n, path).value
            self.assertEqual(doc_of(r), self.NASTY)
            self.assertEqual((r.namespace, r.path, r.author, r.comment),
                             (n, path, "o'brien\"; --",
                              "%s ' \" ; -- \\ %%"))
            self.assertEqual(doc_of(self.c.read(n, path,
                                                version=ver.version).value),
                             self.NASTY)
        # Selectors into the values.
        for key in ('sql', 'quotes', 'percent', 'backslashes', 'copy'):
            with self.subTest(selector=key):
                r = self.c.read(ns, path + '.' + key).value
                self.assertEqual(doc_of(r), self.NASTY[key])
        r = self.c.read(ns, path + '.nested.1.2').value
        self.assertEqual(doc_of(r), '\\')
        # Listed, in history, diffed, rolled back, merged, watched.
        got, _ = self.c.list_all(ns)
        self.assertEqual([x.path for x in got], [path])
        got, _ = self.c.list_all(ns, prefix='Robert-_--DROP_TABLE/')
        self.assertEqual([x.path for x in got], [path])
        w = self.watch(namespaces=[ns], prefix='Robert-_--DROP_TABLE/',
                       after_revision=v.revision - 1)
        m = self.next_change(w)
        self.assertEqual((m.namespace, m.path, m.revision),
                         (ns, path, v.revision))
        self.assertEqual(doc_of(m), self.NASTY)
        self.assertTrue(w.next().caught_up)

        other = dict(self.NASTY)
        other['sql'] = "x'); DELETE FROM config_values WHERE ('1'='1"
        self.c.put(ns, path, other)
        d = self.c.diff(ns, path, from_version=1, to_version=2)
        self.assertEqual([(c.op, c.pointer, loads(c.old_json),
                           loads(c.new_json)) for c in d.changes],
                         [(CHANGED, 'sql', self.NASTY['sql'],
                           other['sql'])])
        m = self.next_change(w)
        self.assertEqual(doc_of(m), other)
        self.c.rollback(ns, path, to_version=1)
        self.assertEqual(doc_of(self.c.read(ns, path).value), self.NASTY)
        self.assertEqual(doc_of(self.c.read(ns, path, merged=True).value),
                         self.NASTY)
        hist, _ = self.c.history_all(ns, path)
        self.assertEqual([h.version for h in hist], [3, 2, 1])
        # Everything else in the database is still there.
        self.assertEqual(doc_of(self.c.read(self.ns, path).value),
                         self.NASTY)

    def test_selector_keys_with_metacharacters(self):
        obj = {"it's": {'a"b': {'c;--d': {'100%': {'x\\y': 'found'}}}}}
        self.c.put(self.ns, 'sel/meta', obj)
        r = self.c.read(self.ns, 'sel/meta.it\'s.a"b.c;--d.100%.x\\y').value
        self.assertEqual(doc_of(r), 'found')

    def test_like_wildcards_in_prefix(self):
        """A List or Watch prefix is a plain prefix, not a LIKE pattern:
        '_' and '-' match only themselves."""
        first = None
        for p in ('a_b/x', 'aXb/x', 'a-b/x', 'a_/x', 'aab/x'):
            v = self.c.put(self.ns, p, p)
            first = first or v
        got, _ = self.c.list_all(self.ns, prefix='a_b/')
        self.assertEqual([x.path for x in got], ['a_b/x'])
        w = self.watch(namespaces=[self.ns], prefix='a_b/',
                       after_revision=first.revision - 1)
        got = self.until_caught_up(w)
        self.assertEqual([x.path for x in got], ['a_b/x'])


# ---------------------------------------------------------------- watch

class WatchTest(ConfigCase):

    def write_seq(self, ns, ops):
        """Runs ops in order: ('put', path, obj) / ('del', path) /
        ('rb', path, version). Returns the Values written."""
        out = []
        for op in ops:
            if op[0] == 'put':
                out.append(self.c.put(ns, op[1], op[2]))
            elif op[0] == 'del':
                out.append(self.c.delete(ns, op[1]).value)
            else:
                out.append(self.c.rollback(ns, op[1],
                                           to_version=op[2]).value)
        return out

    def assertSameChange(self, got, want, obj=None):
        self.assertEqual((got.namespace, got.path, got.version, got.revision,
                          got.deleted),
                         (want.namespace, want.path, want.version,
                          want.revision, want.deleted))
        if want.deleted:
            self.assertEqual(got.json, '')
        elif obj is not None:
            self.assertDoc(got, obj)

    def test_from_now(self):
        self.c.put(self.ns, 'a/x', 'before')
        w = self.watch(namespaces=[self.ns])
        self.assertEqual(self.until_caught_up(w), [],
                         'after_revision 0 replays nothing')
        v = self.c.put(self.ns, 'a/x', {'after': 1}, author='me',
                       comment='live')
        got = self.next_change(w)
        self.assertSameChange(got, v, {'after': 1})
        self.assertEqual((got.author, got.comment), ('me', 'live'))
        t = self.c.delete(self.ns, 'a/x').value
        self.assertSameChange(self.next_change(w), t)
        r = self.c.rollback(self.ns, 'a/x', to_version=2).value
        self.assertSameChange(self.next_change(w), r, {'after': 1})

    def test_replay_then_live_then_resume(self):
        ops = [('put', 'a/x', {'n': 1}), ('put', 'a/y', {'n': 2}),
               ('put', 'b/z', {'n': 3}), ('put', 'a/x', {'n': 4}),
               ('del', 'a/y'), ('put', 'a/x', {'n': 6}),
               ('rb', 'a/x', 1), ('put', 'b/z', [7]),
               ('put', 'a/y', {'n': 9}), ('put', 'c', 10)]
        objs = {1: {'n': 1}, 2: {'n': 2}, 3: {'n': 3}, 4: {'n': 4},
                6: {'n': 6}, 7: {'n': 1}, 8: [7], 9: {'n': 9}, 10: 10}
        vals = self.write_seq(self.ns, ops)
        revs = [v.revision for v in vals]
        self.assertEqual(revs, sorted(set(revs)))

        # Replay after the third change: changes 4..10, then caught_up.
        w = self.watch(namespaces=[self.ns], after_revision=revs[2])
        replay = self.until_caught_up(w)
        self.assertEqual([x.revision for x in replay], revs[3:])
        for x, i in zip(replay, range(4, 11)):
            self.assertSameChange(x, vals[i - 1], objs.get(i))
        # Then live.
        live = self.c.put(self.ns, 'a/x', 'live')
        self.assertSameChange(self.next_change(w), live, 'live')
        w.close()

        # Resume after the last revision seen: the changes made while
        # disconnected, nothing before, nothing twice.
        missed = self.write_seq(self.ns, [('put', 'a/x', 'm1'),
                                          ('put', 'b/q', 'm2')])
        w = self.watch(namespaces=[self.ns], after_revision=live.revision)
        got = self.until_caught_up(w)
        self.assertEqual([x.revision for x in got],
                         [m.revision for m in missed])
        self.assertSameChange(got[0], missed[0], 'm1')
        self.assertSameChange(got[1], missed[1], 'm2')

        # Resuming at the latest revision replays nothing.
        w2 = self.watch(namespaces=[self.ns],
                        after_revision=missed[-1].revision)
        self.assertEqual(self.until_caught_up(w2), [])

        # With a prefix.
        w3 = self.watch(namespaces=[self.ns], prefix='a/',
                        after_revision=revs[2])
        got = self.until_caught_up(w3)
        want = [v for v in vals[3:] if v.path.startswith('a/')] + \
            [live, missed[0]]
        self.assertEqual([(x.path, x.revision) for x in got],
                         [(v.path, v.revision) for v in want])
        # Live events after it: filtered by the prefix too.
        self.c.put(self.ns, 'b/q', 'not for w3')
        v = self.c.put(self.ns, 'a/new', 'for w3')
        self.assertSameChange(self.next_change(w3), v, 'for w3')

    def caught_up_covers_committed(self, writer, watcher, rounds=20):
        """A change answered OK before a Watch is opened is a stored
        change: it is replayed before caught_up, not after it."""
        late = []
        for i in range(rounds):
            v = writer.put(self.ns, 'cu', i)
            w = self.watch(watcher, namespaces=[self.ns],
                           after_revision=v.revision - 1)
            got = self.until_caught_up(w)
            if [g.revision for g in got] != [v.revision]:
                late.append(i)
                # Still delivered once, right after the marker?
                self.assertEqual(self.next_change(w).revision, v.revision)
            w.close()
        self.assertEqual(late, [], 'rounds whose committed change came '
                         'after caught_up instead of before it')

    def test_caught_up_covers_committed_writes(self):
        self.caught_up_covers_committed(self.c, self.c)

    def test_namespace_filter(self):
        a, b = self.ns, self.ns + '/child'
        other = uniq_ns('w-other')
        wa = self.watch(namespaces=[a])
        wab = self.watch(namespaces=[a, other])
        wall = self.watch()
        for w in (wa, wab, wall):
            self.until_caught_up(w)
        vb = self.c.put(b, 'p', 'child')
        vo = self.c.put(other, 'p', 'other')
        va = self.c.put(a, 'p', 'a')
        # Exact namespaces: the child is not included.
        self.assertSameChange(self.next_change(wa), va, 'a')
        self.assertSameChange(self.next_change(wab), vo, 'other')
        self.assertSameChange(self.next_change(wab), va, 'a')
        # No filter: everything (other tests may write too).
        mine = []
        while len(mine) < 3:
            x = self.next_change(wall)
            if x.namespace in (a, b, other):
                mine.append(x.revision)
        self.assertEqual(mine, [vb.revision, vo.revision, va.revision])

    def stream_check(self, watch_client, write_addresses, threads=1,
                     per_thread=30, start_after=8):
        """Writers (threads, each its own channel, round-robin over
        write_addresses) put per_thread changes each into self.ns while a
        watcher on watch_client starts after start_after of them from the
        revision of a change already answered. The watcher must get every
        change after that revision exactly once, in revision order, with
        one caught_up, then a sentinel change and nothing else."""
        lock = threading.Lock()
        done = []           # (revision, path, version, obj)
        errors = []

        def writer(t):
            c = new_client(write_addresses[t % len(write_addresses)])
            try:
                for i in range(per_thread):
                    obj = {'t': t, 'i': i, 'pad': 'x' * (i % 7)}
                    path = 'stream/t%d' % t
                    try:
                        v = c.put(self.ns, path, obj)
                    except grpc.RpcError as e:
                        with lock:
                            errors.append((e.code(), e.details()))
                        return
                    with lock:
                        done.append((v.revision, path, v.version, obj))
            finally:
                c.channel.close()
        ts = [threading.Thread(target=writer, args=(t,))
              for t in range(threads)]
        for t in ts:
            t.start()
        try:
            wait_for(lambda: len(done) >= start_after or errors,
                     timeout=60, what='the first writes')
            # Resume from the start_after-th write: the writers may all
            # be done by now, and then the replay alone carries the rest.
            with lock:
                after = sorted(d[0] for d in done)[start_after - 1]
            w = self.watch(watch_client, namespaces=[self.ns],
                           after_revision=after)
        finally:
            for t in ts:
                t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(done), threads * per_thread)
        want = sorted(d for d in done if d[0] > after)
        self.assertGreater(len(want), 0)

        got, caught_up = [], 0
        last = want[-1][0]
        while not got or got[-1].revision < last:
            try:
                m = w.next(30)
            except AssertionError:      # nothing more: reported below
                break
            if m.caught_up:
                caught_up += 1
                continue
            got.append(m.value)
            if len(got) > len(want):
                break
        revs = [g.revision for g in got]
        self.assertEqual(revs, [d[0] for d in want],
                         'missing: %r, extra: %r, order ok: %r' % (
                             sorted(set(d[0] for d in want) - set(revs)),
                             sorted(set(revs) - set(d[0] for d in want)),
                             revs == sorted(revs)))
        for g, (rev, path, version, obj) in zip(got, want):
            self.assertEqual((g.path, g.version), (path, version))
            self.assertDoc(g, obj)
        # The caught_up marker comes exactly once (possibly after the last
        # change, when the replay reached it).
        if caught_up == 0:
            self.assertTrue(w.next().caught_up)
            caught_up = 1
        self.assertEqual(caught_up, 1)
        # Nothing after but what is written next.
        s = watch_client.put(self.ns, 'stream/sentinel', 'end')
        self.assertEqual(self.next_change(w).revision, s.revision)

    def test_no_gap_single_writer(self):
        self.stream_check(self.c, [self.srv.address], threads=1,
                          per_thread=40)

    def test_no_gap_concurrent_writers(self):
        self.stream_check(self.c, [self.srv.address], threads=4,
                          per_thread=20)

    def test_no_gap_live_concurrent_writers(self):
        """A watcher from now while several threads write: every write
        answered OK arrives once, in revision order."""
        w = self.watch(namespaces=[self.ns])
        self.assertEqual(self.until_caught_up(w), [])
        lock, done, errors = threading.Lock(), [], []

        def writer(t):
            c = new_client(self.srv.address)
            try:
                for i in range(15):
                    try:
                        v = c.put(self.ns, 'live/t%d' % t, i)
                    except grpc.RpcError as e:
                        with lock:
                            errors.append((e.code(), e.details()))
                        return
                    with lock:
                        done.append(v.revision)
            finally:
                c.channel.close()
        ts = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(errors, [])
        got = [self.next_change(w, 30).revision for _ in range(len(done))]
        self.assertEqual(got, sorted(done))


# ---------------------------------------------------------------- replicas

class ReplicaTest(ConfigCase):
    """Two config-srv on one database, started at the same moment (their
    migrations race under the advisory lock)."""

    start_server = False

    @classmethod
    def setUpClass(cls):
        cls.a = config_server(name='replica-a', wait=False)
        cls.addClassCleanup(cls.a.kill)
        cls.b = config_server(name='replica-b', wait=False)
        cls.addClassCleanup(cls.b.kill)
        cls.a.wait_serving(60)
        cls.b.wait_serving(60)
        cls.ca, cls.cb = client_of(cls.a), client_of(cls.b)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.a.stop_clean()
        finally:
            cls.b.stop_clean()
        assert_no_password(cls.a)
        assert_no_password(cls.b)

    def test_write_on_one_watch_on_other(self):
        w = self.watch(self.ca, namespaces=[self.ns])
        self.assertEqual(self.until_caught_up(w), [])
        v1 = self.cb.put(self.ns, 'x', {'from': 'b'})
        got = self.next_change(w)
        self.assertEqual((got.path, got.version, got.revision),
                         ('x', 1, v1.revision))
        self.assertDoc(got, {'from': 'b'})
        t = self.cb.delete(self.ns, 'x').value
        got = self.next_change(w)
        self.assertEqual((got.version, got.deleted), (2, True))
        r = self.cb.rollback(self.ns, 'x', to_version=1).value
        got = self.next_change(w)
        self.assertEqual((got.version, got.revision), (3, r.revision))
        self.assertDoc(got, {'from': 'b'})
        # Reads on either replica see the other's writes once its change
        # feed has them (the watch above came through that same feed).
        wait_for(lambda: self.ca.read(self.ns, 'x').value.version == 3,
                 what='version 3 on the other replica')
        self.assertGreater(r.revision, t.revision)

    def test_read_after_write_across_replicas(self):
        """A write answered OK on one replica reaches Reads on the other
        as soon as its change feed brings it (cached reads are eventually
        consistent across replicas, read-your-writes on the writer), and
        a CAS based on that Read succeeds."""
        path = 'raw'
        cur = 0
        for i in range(20):
            src, dst = (self.cb, self.ca) if i % 2 else (self.ca, self.cb)
            v = src.put(self.ns, path, {'i': i}, expected_version=cur or -1)
            cur = v.version
            got = src.read(self.ns, path).value
            self.assertEqual((got.version, doc_of(got)), (cur, {'i': i}),
                             'round %d: the writer read back an old value'
                             % i)
            got = wait_for(
                lambda: (lambda g: g if g.version == cur else None)(
                    dst.read(self.ns, path).value),
                what='round %d on the other replica' % i)
            self.assertEqual(doc_of(got), {'i': i})
            merged = dst.read(self.ns, path, merged=True).value
            self.assertEqual(doc_of(merged), {'i': i})
        t = self.ca.delete(self.ns, path).value
        def gone():
            try:
                self.cb.read(self.ns, path)
                return False
            except grpc.RpcError as e:
                self.assertCode(e, C.NOT_FOUND)
                return True
        wait_for(gone, what='the delete on the other replica')
        got, _ = self.cb.list_all(self.ns, include_deleted=True)
        self.assertEqual([(g.path, g.version) for g in got],
                         [(path, t.version)])

    def test_caught_up_covers_writes_on_other_replica(self):
        WatchTest.caught_up_covers_committed(self, self.cb, self.ca)

    def test_resume_on_other_replica(self):
        vals = [self.ca.put(self.ns, 'r', i) for i in range(5)]
        w = self.watch(self.cb, namespaces=[self.ns],
                       after_revision=vals[1].revision)
        got = self.until_caught_up(w)
        self.assertEqual([g.revision for g in got],
                         [v.revision for v in vals[2:]])
        v = self.ca.put(self.ns, 'r', 'live')
        self.assertEqual(self.next_change(w).revision, v.revision)

    def test_stream_across_replicas(self):
        WatchTest.stream_check(self, self.ca, [self.b.address], threads=3,
                               per_thread=15)

    def test_stream_from_both_replicas(self):
        WatchTest.stream_check(self, self.ca,
                               [self.a.address, self.b.address], threads=4,
                               per_thread=12)

    def test_cas_across_replicas(self):
        path = 'cas'
        cur = self.ca.put(self.ns, path, 0).version
        for rnd in range(10):
            out = CasRaceTest.race(self, [
                lambda: self.ca.put(self.ns, path, {'a': rnd},
                                    expected_version=cur),
                lambda: self.cb.put(self.ns, path, {'b': rnd},
                                    expected_version=cur)])
            win = CasRaceTest.check_one_winner(self, out, 'round %d' % rnd)
            self.assertEqual(win.version, cur + 1)
            cur += 1
        # The last winner may have written through ca: cb's cached read
        # follows within its change feed's delay.
        wait_for(lambda: self.cb.read(self.ns, path).value.version == cur,
                 what='version %d on the other replica' % cur)


# ---------------------------------------------------------------- outage

@unittest.skipUnless(ch.PG_CTL, 'PLATFORM_TEST_PG_CTL unset: the database '
                     'is not ours to stop')
class OutageTest(ConfigCase):
    """PostgreSQL stopped and started under a running config-srv:
    UNAVAILABLE meanwhile, recovery without a restart."""

    def test_stop_and_start_postgres(self):
        c = self.c
        v1 = c.put(self.ns, 'o', {'n': 1})
        w = self.watch(namespaces=[self.ns])
        self.assertEqual(self.until_caught_up(w), [])
        v2 = c.put(self.ns, 'o', {'n': 2})
        self.assertEqual(self.next_change(w).revision, v2.revision)

        stopped = False
        try:
            ch.pg_ctl('stop')
            stopped = True
            # Until the change feed notices the outage a plain Read may
            # still come from the cache: correct, since nothing can
            # change while the one shared database is down.
            try:
                got = c.read(self.ns, 'o').value
                self.assertEqual((got.version, doc_of(got)),
                                 (2, {'n': 2}))
            except grpc.RpcError as e:
                self.assertCode(e, C.UNAVAILABLE)
            calls = {
                'Read merged': lambda: c.read(self.ns, 'o', merged=True),
                'Update': lambda: c.put(self.ns, 'o', {'n': 'lost'}),
                'Delete': lambda: c.delete(self.ns, 'o'),
                'History': lambda: c.history(self.ns, 'o'),
                'Diff': lambda: c.diff(self.ns, 'o', from_version=1),
                'Rollback': lambda: c.rollback(self.ns, 'o', to_version=1),
                'List': lambda: c.list(self.ns),
            }
            for _ in range(2):      # the second round: no connection left
                for label, fn in calls.items():
                    with self.subTest(rpc=label):
                        self.assertCode(rpc_error(fn), C.UNAVAILABLE)
            # A new Watch cannot replay from the database: UNAVAILABLE
            # (unless it replays from memory: then correctly).
            w2 = self.watch(namespaces=[self.ns],
                            after_revision=v1.revision)
            try:
                m = w2.next()
            except grpc.RpcError as e:
                self.assertCode(e, C.UNAVAILABLE)
            else:
                self.assertEqual(m.value.revision, v2.revision)
            self.assertTrue(self.srv.running(), 'config-srv exited')
            wait_for(lambda: 'unavailable' in self.srv.stderr().lower(),
                     what='a log line about the database')
        finally:
            if stopped:
                ch.pg_ctl('start')

        def back():
            try:
                return c.read(self.ns, 'o').value
            except grpc.RpcError as e:
                if e.code() != C.UNAVAILABLE:
                    raise
                return None
        got = wait_for(back, timeout=60, what='reads after the database '
                       'came back')
        self.assertEqual(got.version, 2, 'a write during the outage '
                         'was stored')
        self.assertDoc(got, {'n': 2})
        v3 = c.put(self.ns, 'o', {'n': 3}, expected_version=2)
        self.assertEqual(v3.version, 3)

        # The watch opened before the outage either carries on with the
        # new change, or ended with UNAVAILABLE and resumes from the last
        # revision it saw: no change lost either way.
        try:
            m = w.next(30)
            while m.caught_up:
                m = w.next(30)
            self.assertEqual(m.value.revision, v3.revision)
        except grpc.RpcError as e:
            self.assertCode(e, C.UNAVAILABLE)
            w3 = self.watch(namespaces=[self.ns],
                            after_revision=v2.revision)
            got = self.until_caught_up(w3)
            self.assertEqual([g.revision for g in got], [v3.revision])
        # A new watcher gets live changes again (the listener is back).
        w4 = self.watch(namespaces=[self.ns])
        self.until_caught_up(w4)
        v4 = c.put(self.ns, 'o', {'n': 4})
        self.assertEqual(self.next_change(w4, 30).revision, v4.revision)
        self.assert_serving()


# ---------------------------------------------------------------- crash

class CrashTest(ConfigCase):
    """kill -9 in the middle of a stream of writes from several client
    threads: every write answered OK is stored after a restart."""

    start_server = False

    def test_kill9_mid_write_stream(self):
        srv = config_server(name='crash-before')
        self.addCleanup(srv.kill)
        lock = threading.Lock()
        ok = []             # (path, version, revision, obj)
        unexpected = []
        killed = threading.Event()

        def writer(t):
            c = new_client(srv.address)
            try:
                i = 0
                while True:
                    i += 1
                    for path in ('own/t%d' % t, 'shared'):
                        obj = {'t': t, 'i': i, 'path': path,
                               'pad': 'x' * random.randrange(0, 2000)}
                        try:
                            v = c.put(self.ns, path, obj, timeout=10,
                                      author='t%d' % t)
                        except grpc.RpcError as e:
                            if not killed.is_set():
                                with lock:
                                    unexpected.append((e.code(),
                                                       e.details()))
                            return
                        with lock:
                            ok.append((path, v.version, v.revision, obj))
                    if i > 100000:
                        return
            finally:
                c.channel.close()
        ts = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for t in ts:
            t.start()
        try:
            wait_for(lambda: len(ok) >= 200 or unexpected, timeout=90,
                     what='writes before the kill')
        finally:
            killed.set()
            srv.kill()          # SIGKILL
            for t in ts:
                t.join(60)
        self.assertFalse(any(t.is_alive() for t in ts), 'a writer hung')
        self.assertEqual(srv.returncode, -signal.SIGKILL)
        srv.check_sanitizers()
        self.assertEqual(unexpected, [])

        keys = [(p, v) for p, v, _, _ in ok]
        self.assertEqual(len(keys), len(set(keys)),
                         'two writes answered OK with one version')
        self.assertEqual(len({r for _, _, r, _ in ok}), len(ok),
                         'two writes answered OK with one revision')

        srv2 = config_server(name='crash-after')
        self.addCleanup(srv2.kill)
        c = client_of(srv2)
        lost = []
        for path, version, rev, obj in ok:
            try:
                r = c.read(self.ns, path, version=version).value
            except grpc.RpcError as e:
                lost.append((path, version, e.code()))
                continue
            if doc_of(r) != obj or r.revision != rev:
                lost.append((path, version, 'json or revision differs'))
        self.assertEqual(lost, [], '%d of %d acknowledged writes lost'
                         % (len(lost), len(ok)))
        # Versions go on after the highest one stored.
        for path in {p for p, _, _, _ in ok}:
            top = max(v for p, v, _, _ in ok if p == path)
            latest = c.read(self.ns, path).value.version
            self.assertGreaterEqual(latest, top)
            self.assertEqual(c.put(self.ns, path, 'after').version,
                             latest + 1)
        # The acknowledged writes replay through Watch too.
        first = min(r for _, _, r, _ in ok)
        w = self.watch(c, namespaces=[self.ns], after_revision=first - 1)
        seen = {x.revision for x in self.until_caught_up(w)}
        self.assertEqual({r for _, _, r, _ in ok} - seen, set())
        srv2.stop_clean()


if __name__ == '__main__':
    if not ch.DATABASE:
        print('test_config: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it from scripts/pg)')
        sys.exit(0)
    if not os.path.exists(ch.CONFIG_BIN):
        sys.stderr.write('missing %s (PLATFORM_BUILD_DIR=%s)\n'
                         % (ch.CONFIG_BIN, harness.BUILD_DIR))
        sys.exit(1)
    harness.run_tests()
