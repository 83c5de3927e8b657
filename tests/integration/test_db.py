#!/usr/bin/python3
"""db-srv over real gRPC against a real PostgreSQL.

Every RPC; databases and collections; Create/Read/Update (whole and RFC
7386 merge patch)/Delete with expected revisions and a race of writers
where exactly one wins; BatchWrite atomic across collections; Search
over a table of filters checked against an independent evaluation in
Python (db_harness.evaluate), with ordering, projection and cursor
paging while documents come and go; Count; values and filters full of
SQL metacharacters round-tripping and injecting nothing; Watch from a
revision, with a filter, resumed with no gap and no duplicate; TTL
expiry (hidden at once, then an EXPIRED change); declared indexes
built concurrently and the unindexed-scan counter; bad input for every
field naming it.

Needs PLATFORM_TEST_DATABASE (scripts/test sets it from scripts/pg), else
it says so and exits 0. Every database name has a random part, so the
tests can run again and again against the same PostgreSQL.
"""

import json
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import db_harness as dh  # noqa: E402
from db_harness import (cond, all_of, any_of, not_of, evaluate,  # noqa: E402
                        uniq_name)
from harness import rpc_error, wait_for  # noqa: E402

C = grpc.StatusCode
P = dh.pb()
MERGE = P.UPDATE_MODE_MERGE_PATCH


class DBCase(harness.ServiceCase):
    """One db-srv per class, stopped with SIGTERM at the end (exit 0, no
    sanitizer report). Each test gets a database and a collection of its
    own."""

    STREAM_ITEM = 'change'
    extra_args = ()

    @classmethod
    def setUpClass(cls):
        cls.mport = harness.free_port()
        cls.srv = dh.db_server(name=cls.__name__, extra_args=[
            '--metrics-listen', '127.0.0.1:%d' % cls.mport] +
            list(cls.extra_args))
        cls.addClassCleanup(cls.srv.kill)
        cls.c = dh.client_of(cls.srv)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop_clean()

    def setUp(self):
        self.db = uniq_name('db')
        self.coll = 'items'
        self.c.call('CreateDatabase', name=self.db)
        self.c.call('CreateCollection', database=self.db, name=self.coll)
        self._watches = []

    def tearDown(self):
        for w in self._watches:
            w.close()

    def watch(self, coll=None, **kw):
        w = self.c.watch(self.db, coll or self.coll, **kw)
        self._watches.append(w)
        return w

    def err(self, method, **kw):
        return rpc_error(self.c.call, method, **kw)


class CrudTest(DBCase):

    def test_databases_and_collections(self):
        c = self.c
        r = c.call('CreateDatabase', name=self.db + 'x')
        self.assertEqual(r.database.name, self.db + 'x')
        self.assertGreater(r.database.created_unix_ms, 0)
        self.assertCode(self.err('CreateDatabase', name=self.db),
                        C.ALREADY_EXISTS, self.db)
        names, token = [], ''
        while True:
            r = c.call('ListDatabases', page_size=1, page_token=token)
            self.assertLessEqual(len(r.databases), 1)
            names += [d.name for d in r.databases]
            token = r.next_page_token
            if not token:
                break
        self.assertIn(self.db, names)
        self.assertIn(self.db + 'x', names)
        for n in ('b', 'a', 'c'):
            c.call('CreateCollection', database=self.db, name=n)
        self.assertCode(self.err('CreateCollection', database=self.db,
                                 name='a'), C.ALREADY_EXISTS, 'a')
        self.assertCode(self.err('CreateCollection', database='nodb-' +
                                 self.db, name='a'), C.NOT_FOUND, 'database')
        got, token = [], ''
        while True:
            r = c.call('ListCollections', database=self.db, page_size=2,
                       page_token=token)
            got += [x.name for x in r.collections]
            token = r.next_page_token
            if not token:
                break
        self.assertEqual(got, ['a', 'b', 'c', 'items'])
        c.create(self.db, 'a', {'x': 1}, id='1')
        c.create(self.db, 'a', {'x': 2}, id='2')
        r = c.call('ListCollections', database=self.db)
        self.assertEqual({x.name: x.documents for x in r.collections}['a'],
                         2)
        c.call('DropCollection', database=self.db, name='a')
        self.assertCode(rpc_error(c.read, self.db, 'a', '1'), C.NOT_FOUND,
                        'collection')
        self.assertCode(self.err('DropCollection', database=self.db,
                                 name='a'), C.NOT_FOUND, 'a')
        # A collection made again starts empty.
        c.call('CreateCollection', database=self.db, name='a')
        self.assertCode(rpc_error(c.read, self.db, 'a', '1'), C.NOT_FOUND,
                        'document')
        c.call('DropDatabase', name=self.db + 'x')
        self.assertCode(self.err('DropDatabase', name=self.db + 'x'),
                        C.NOT_FOUND, self.db + 'x')
        c.call('DropDatabase', name=self.db)
        self.assertCode(self.err('ListCollections', database=self.db),
                        C.NOT_FOUND, self.db)
        self.assertCode(rpc_error(c.read, self.db, 'b', '1'), C.NOT_FOUND)

    def test_create_read_update_delete(self):
        c, db, co = self.c, self.db, self.coll
        d = c.create(db, co, {'name': 'ada', 'tags': ['x'], 'n': 1},
                     id='ada')
        self.assertEqual(d.id, 'ada')
        self.assertGreater(d.revision, 0)
        self.assertEqual(d.create_revision, d.revision)
        self.assertEqual(json.loads(d.json),
                         {'name': 'ada', 'tags': ['x'], 'n': 1})
        self.assertCode(rpc_error(c.create, db, co, {}, id='ada'),
                        C.ALREADY_EXISTS, 'ada')
        r = c.read(db, co, 'ada')
        self.assertEqual(json.loads(r.json), json.loads(d.json))
        self.assertEqual(r.revision, d.revision)
        # Projection.
        r = c.read(db, co, 'ada', fields=['name', 'tags.0', 'nope'])
        self.assertEqual(json.loads(r.json), {'name': 'ada',
                                              'tags': {'0': 'x'}})
        # A generated id.
        g = c.create(db, co, {'k': 1})
        self.assertRegex(g.id, '^[0-9a-f]{32}$')
        # Replace.
        u = c.update(db, co, 'ada', {'name': 'ada', 'n': 2})
        self.assertGreater(u.revision, d.revision)
        self.assertEqual(u.create_revision, d.revision)
        self.assertEqual(json.loads(c.read(db, co, 'ada').json),
                         {'name': 'ada', 'n': 2})
        # Merge patch (RFC 7386): null removes, objects merge, the rest
        # replaces.
        c.update(db, co, 'ada', {'o': {'a': 1, 'b': 2}, 'arr': [1, 2]})
        m = c.update(db, co, 'ada', {'o': {'b': None, 'c': 3}, 'arr': [3],
                                     'new': {'x': None, 'y': 1}},
                     mode=MERGE)
        self.assertEqual(json.loads(m.json), {'o': {'a': 1, 'c': 3},
                                              'arr': [3],
                                              'new': {'y': 1}})
        self.assertEqual(json.loads(c.read(db, co, 'ada').json),
                         json.loads(m.json))
        # Expected revisions.
        self.assertCode(rpc_error(c.update, db, co, 'ada', {'z': 1},
                                  expected_revision=m.revision - 1),
                        C.FAILED_PRECONDITION, 'expected_revision')
        ok = c.update(db, co, 'ada', {'z': 1}, expected_revision=m.revision)
        self.assertCode(rpc_error(c.delete, db, co, 'ada',
                                  expected_revision=m.revision),
                        C.FAILED_PRECONDITION, 'expected_revision')
        r = c.delete(db, co, 'ada', expected_revision=ok.revision)
        self.assertGreater(r.revision, ok.revision)
        self.assertCode(rpc_error(c.read, db, co, 'ada'), C.NOT_FOUND,
                        'ada')
        self.assertCode(rpc_error(c.delete, db, co, 'ada'), C.NOT_FOUND)
        self.assertCode(rpc_error(c.update, db, co, 'ada', {}),
                        C.NOT_FOUND)
        # Created again: a new create_revision.
        again = c.create(db, co, {'v': 1}, id='ada')
        self.assertEqual(again.create_revision, again.revision)
        self.assertGreater(again.revision, r.revision)
        self.assertCode(rpc_error(c.create, db, 'nocoll', {}),
                        C.NOT_FOUND, 'nocoll')

    def test_concurrent_writers_exactly_one_wins(self):
        c, db, co = self.c, self.db, self.coll
        base = c.create(db, co, {'n': 0}, id='race')
        for round_ in range(3):
            cur = c.read(db, co, 'race')
            clients = [dh.new_client(self.srv.address) for _ in range(8)]
            barrier = threading.Barrier(len(clients))
            out = [None] * len(clients)

            def go(i, cl):
                barrier.wait()
                try:
                    out[i] = cl.update(db, co, 'race', {'n': i},
                                       expected_revision=cur.revision)
                except grpc.RpcError as e:
                    out[i] = e
            ts = [threading.Thread(target=go, args=(i, cl))
                  for i, cl in enumerate(clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            for cl in clients:
                cl.channel.close()
            won = [o for o in out if not isinstance(o, grpc.RpcError)]
            lost = [o for o in out if isinstance(o, grpc.RpcError)]
            self.assertEqual(len(won), 1, 'round %d' % round_)
            for e in lost:
                self.assertCode(e, C.FAILED_PRECONDITION)
            final = c.read(db, co, 'race')
            self.assertEqual(final.revision, won[0].revision)
            self.assertEqual(final.json, c.read(db, co, 'race').json)
        # Creates of one id race the same way.
        out = []
        lock = threading.Lock()

        def create():
            try:
                r = c.create(db, co, {'x': 1}, id='once')
            except grpc.RpcError as e:
                r = e
            with lock:
                out.append(r)
        ts = [threading.Thread(target=create) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(len([o for o in out
                              if not isinstance(o, grpc.RpcError)]), 1)
        for o in out:
            if isinstance(o, grpc.RpcError):
                self.assertCode(o, C.ALREADY_EXISTS)
        self.assertLess(base.revision, final.revision)


if __name__ == '__main__':
    if not dh.DATABASE:
        print('test_db: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it from scripts/pg)')
        sys.exit(0)
    if not os.path.exists(dh.DB_BIN):
        sys.stderr.write('missing %s (PLATFORM_BUILD_DIR=%s)\n'
                         % (dh.DB_BIN, harness.BUILD_DIR))
        sys.exit(1)
    harness.run_tests()
