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

    def test_numbers_round_trip_exactly(self):
        """Why documents are JSON text: an int64 past 2^53 and reals come
        back as they were written, also through a merge patch."""
        c, db, co = self.c, self.db, self.coll
        doc = {'big': 9007199254740993, 'min': -9223372036854775808,
               'max': 9223372036854775807, 'f': 0.1, 'tiny': 1e-300,
               'e': 1.5e18, 'neg': -0.0}
        c.create(db, co, doc, id='n')
        self.assertEqual(json.loads(c.read(db, co, 'n').json), doc)
        m = c.update(db, co, 'n', {'x': 1}, mode=MERGE)
        self.assertEqual(json.loads(m.json), dict(doc, x=1))
        self.assertEqual(json.loads(c.read(db, co, 'n').json), dict(doc, x=1))
        docs, _ = c.search_all(db, co, filter=cond('big', 'EQ',
                                                   9007199254740993))
        self.assertEqual([d.id for d in docs], ['n'])
        docs, _ = c.search_all(db, co, filter=cond('big', 'EQ',
                                                   9007199254740992))
        self.assertEqual(docs, [])

    def test_count_modes(self):
        c, db, co = self.c, self.db, self.coll
        for i in range(3):
            c.create(db, co, {'i': i}, id=str(i))
        f = cond('i', 'GE', 1)
        r = c.call('Count', database=db, collection=co, filter=f)
        self.assertEqual((r.count, r.estimated), (2, False))
        # Smaller than --scan-warn-documents (1000): estimated is exact.
        r = c.call('Count', database=db, collection=co, filter=f,
                   mode=P.COUNT_MODE_ESTIMATED)
        self.assertEqual((r.count, r.estimated), (2, False))
        # The planner's guess: a number, said to be one.
        r = c.call('Count', database=db, collection=co, filter=f,
                   mode=P.COUNT_MODE_PLANNED)
        self.assertTrue(r.estimated)
        self.assertGreaterEqual(r.count, 0)
        r = c.call('Count', database=db, collection=co,
                   mode=P.COUNT_MODE_PLANNED)
        self.assertTrue(r.estimated)

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


    def test_group_commit_answers_each_write_on_its_own(self):
        """Concurrent single writes share transactions (group commit);
        one failing its check fails alone."""
        c, db, co = self.c, self.db, self.coll
        for i in range(10):
            c.create(db, co, {'i': i}, id='taken%d' % i)
        before = harness.metric(self.mport, 'db_write_batches_total')
        futs = []
        for i in range(60):
            if i % 6 == 0:
                futs.append(('dup', c.future('Create', database=db,
                                             collection=co,
                                             id='taken%d' % (i // 6),
                                             json='{}')))
            elif i % 6 == 1:
                futs.append(('stale', c.future(
                    'Update', database=db, collection=co,
                    id='taken%d' % (i // 6), json='{}',
                    expected_revision=1)))
            else:
                futs.append(('ok', c.future('Create', database=db,
                                            collection=co, id='new%d' % i,
                                            json=json.dumps({'i': i}))))
        revs = []
        for kind, f in futs:
            if kind == 'ok':
                revs.append(f.result().document.revision)
            else:
                e = rpc_error(f.result)
                self.assertCode(e, C.ALREADY_EXISTS if kind == 'dup'
                                else C.FAILED_PRECONDITION)
        self.assertEqual(len(set(revs)), 40)
        self.assertEqual(c.call('Count', database=db, collection=co).count,
                         50)
        after = harness.metric(self.mport, 'db_write_batches_total')
        self.assertGreater(after, before)
        self.assertLessEqual(after - before, 60)


# A corpus with every JSON type at the paths the filters look at.
CORPUS = {
    'a': {'n': 1, 's': 'apple', 'b': True, 'tags': ['red', 'fruit'],
          'o': {'k': 1, 'deep': {'x': 'y'}}},
    'b': {'n': 2.5, 's': 'banana', 'b': False, 'tags': ['yellow', 'fruit'],
          'o': {'k': 2}},
    'c': {'n': 3, 's': 'cherry', 'tags': ['red'], 'o': {'k': 1}},
    'd': {'n': '3', 's': 'date', 'b': None, 'o': {}},
    'e': {'n': -7, 's': 'Elder', 'tags': [], 'o': {'k': [1, 2]}},
    'f': {'s': 'fig', 'b': 1, 'tags': ['green', {'x': 1}]},
    'g': {'n': 10, 's': '', 'o': {'deep': {'x': 'z'}}},
    'h': {'n': 3.0, 's': 'apricot', 'tags': ['orange', 'fruit']},
    'i': {'n': 1e3, 's': 'ünïcode', 'o': None},
    'j': {'n': 0, 's': "it's", 'tags': ['a"b', 'c\\d']},
    'k': {},
    'l': {'n': [1, 2], 's': ['apple'], 'b': {'x': 1}},
}


def filter_table():
    """(name, Filter): more than twenty, every operator, nested paths,
    type mismatches, missing paths, all/any/not."""
    return [
        ('eq number', cond('n', 'EQ', 3)),
        ('eq 3 matches 3.0', cond('n', 'EQ', 3.0)),
        ('eq string not number', cond('n', 'EQ', '3')),
        ('eq bool', cond('b', 'EQ', True)),
        ('eq null', cond('b', 'EQ', None)),
        ('eq nested', cond('o.k', 'EQ', 1)),
        ('eq deep', cond('o.deep.x', 'EQ', 'y')),
        ('eq object', cond('o', 'EQ', {'k': 2})),
        ('eq array', cond('tags', 'EQ', ['red'])),
        ('eq array index', cond('tags.0', 'EQ', 'red')),
        ('ne', cond('s', 'NE', 'apple')),
        ('ne missing counts', cond('b', 'NE', True)),
        ('lt number', cond('n', 'LT', 3)),
        ('le number', cond('n', 'LE', 3)),
        ('gt number', cond('n', 'GT', 2.5)),
        ('ge number', cond('n', 'GE', 10)),
        ('lt string bytes', cond('s', 'LT', 'banana')),
        ('ge string', cond('s', 'GE', 'd')),
        ('gt string vs numbers', cond('n', 'GT', '2')),
        ('in', cond('s', 'IN', ['fig', 'date', 'nope', 3])),
        ('in mixed types', cond('n', 'IN', [3, '3', True])),
        ('prefix', cond('s', 'PREFIX', 'ap')),
        ('prefix empty', cond('s', 'PREFIX', '')),
        ('prefix unicode', cond('s', 'PREFIX', 'ün')),
        ('exists', cond('b', 'EXISTS')),
        ('exists null counts', cond('o', 'EXISTS', True)),
        ('not exists', cond('tags', 'EXISTS', False)),
        ('exists nested', cond('o.deep', 'EXISTS')),
        ('contains element', cond('tags', 'CONTAINS', 'fruit')),
        ('contains elements', cond('tags', 'CONTAINS', ['fruit', 'red'])),
        ('contains object', cond('o', 'CONTAINS', {'deep': {}})),
        ('contains object in array', cond('tags', 'CONTAINS', [{'x': 1}])),
        ('contains on scalar', cond('n', 'CONTAINS', 3)),
        ('all', all_of(cond('tags', 'CONTAINS', 'fruit'),
                       cond('n', 'LT', 3))),
        ('any', any_of(cond('s', 'PREFIX', 'ch'), cond('b', 'EQ', False),
                       cond('o.k', 'EQ', [1, 2]))),
        ('not', not_of(cond('tags', 'CONTAINS', 'fruit'))),
        ('not of missing', not_of(cond('n', 'GT', 0))),
        ('not any', not_of(any_of(cond('n', 'EQ', 1), cond('s', 'EXISTS',
                                                          False)))),
        ('nested all any not', all_of(
            any_of(cond('n', 'GE', 1), cond('s', 'PREFIX', 'f')),
            not_of(all_of(cond('b', 'EXISTS'), cond('b', 'NE', True))))),
        ('everything', P.Filter()),
    ]


class SearchTest(DBCase):

    extra_args = ('--scan-warn-documents', '5')

    def load(self, corpus=CORPUS, coll=None):
        for id_, doc in corpus.items():
            self.c.create(self.db, coll or self.coll, doc, id=id_)

    def test_filter_table_against_python(self):
        self.load()
        table = filter_table()
        self.assertGreaterEqual(len(table), 20)
        for name, f in table:
            with self.subTest(filter=name):
                want = sorted(i for i, d in CORPUS.items()
                              if evaluate(f, d))
                docs, _ = self.c.search_all(self.db, self.coll, filter=f,
                                            page_size=4)
                got = [d.id for d in docs]
                self.assertEqual(got, sorted(got), 'id order')
                self.assertEqual(got, want)
                n = self.c.call('Count', database=self.db,
                                collection=self.coll, filter=f).count
                self.assertEqual(n, len(want))
        # The table does not only say yes or no.
        sizes = {len([1 for d in CORPUS.values() if evaluate(f, d)])
                 for _, f in table}
        self.assertGreater(len(sizes), 5)

    def test_order_projection_and_cursor(self):
        docs = {'d%02d' % i: {'rank': i % 4, 'v': i, 'x': {'y': i}}
                for i in range(23)}
        docs['none'] = {'v': 99}        # no rank: sorts last
        self.load(docs)
        order = [P.Order(path='rank', descending=True), P.Order(path='v')]
        got, pages = self.c.search_all(self.db, self.coll, order_by=order,
                                       fields=['v', 'x.y'], page_size=5)
        self.assertEqual(pages[:-1], [5] * (len(pages) - 1))

        def key(kv):
            i, d = kv
            return ('rank' not in d, -d.get('rank', 0), d['v'], i)
        want = [i for i, _ in sorted(docs.items(), key=key)]
        self.assertEqual([d.id for d in got], want)
        for d in got:
            self.assertEqual(json.loads(d.json),
                             {'v': docs[d.id]['v'],
                              'x': {'y': docs[d.id]['x']['y']}}
                             if 'x' in docs[d.id] else {'v': 99})
        # A cursor holds while documents come and go between pages: no
        # repeat, nothing skipped that was there all along.
        r = self.c.call('Search', database=self.db, collection=self.coll,
                        order_by=[P.Order(path='v')], page_size=10)
        seen = [d.id for d in r.documents]
        self.c.create(self.db, self.coll, {'v': -1, 'rank': 0}, id='early')
        self.c.delete(self.db, self.coll, 'd15')
        self.c.create(self.db, self.coll, {'v': 50}, id='late')
        token = r.next_page_token
        while token:
            r = self.c.call('Search', database=self.db,
                            collection=self.coll,
                            order_by=[P.Order(path='v')], page_size=10,
                            page_token=token)
            seen += [d.id for d in r.documents]
            token = r.next_page_token
        self.assertEqual(len(seen), len(set(seen)))
        self.assertNotIn('early', seen)
        self.assertNotIn('d15', seen)
        self.assertIn('late', seen)
        for i in docs:
            if i != 'd15':
                self.assertIn(i, seen)
        # A token from another search, or made up.
        self.assertCode(self.err('Search', database=self.db,
                                 collection=self.coll, page_token=token or
                                 'zz'), C.INVALID_ARGUMENT, 'page_token')
        r = self.c.call('Search', database=self.db, collection=self.coll,
                        order_by=order, page_size=2)
        self.assertCode(self.err('Search', database=self.db,
                                 collection=self.coll, page_size=2,
                                 page_token=r.next_page_token),
                        C.INVALID_ARGUMENT, 'page_token')

    def test_sql_metacharacters_round_trip(self):
        evil = ["'; DROP TABLE db_documents; --", '$1 $$ \\ \\\\ "q"',
                '%_%', "' OR '1'='1", '\u2028 ünï 😀', 'a.b', '*/ /*']
        for i, v in enumerate(evil):
            doc = {v: v, 'v': v, 'nested': {v: [v, {v: v}]}}
            d = self.c.create(self.db, self.coll, doc, id=v)
            self.assertEqual(d.id, v)
            r = self.c.read(self.db, self.coll, v)
            self.assertEqual(json.loads(r.json), doc)
            # Found by its value, and only it.
            docs, _ = self.c.search_all(self.db, self.coll,
                                        filter=cond('v', 'EQ', v))
            self.assertEqual([x.id for x in docs], [v])
            docs, _ = self.c.search_all(self.db, self.coll,
                                        filter=cond('v', 'PREFIX', v))
            self.assertEqual([x.id for x in docs],
                             sorted(e for e in evil[:i + 1]
                                    if e.startswith(v)))
            # A path of metacharacters (without dots: a.b is a path).
            if '.' not in v:
                docs, _ = self.c.search_all(
                    self.db, self.coll, filter=all_of(
                        cond(v, 'EXISTS'), cond('nested.' + v + '.0',
                                                'EQ', v)))
                self.assertEqual([x.id for x in docs], [v])
                docs, _ = self.c.search_all(
                    self.db, self.coll, order_by=[P.Order(path=v)],
                    fields=[v])
                self.assertIn(v, [x.id for x in docs])
        # '%' and '_' are no wildcards.
        docs, _ = self.c.search_all(self.db, self.coll,
                                    filter=cond('v', 'PREFIX', '%'))
        self.assertEqual([x.id for x in docs], ['%_%'])
        # Nothing was injected: every document is there, the table too.
        self.assertEqual(self.c.call('Count', database=self.db,
                                     collection=self.coll).count, len(evil))
        self.assertEqual(self.c.call('ListCollections', database=self.db)
                         .collections[0].documents, len(evil))
        # A merge patch of metacharacters.
        v = evil[0]
        m = self.c.update(self.db, self.coll, v, {v: None, 'k': v},
                          mode=MERGE)
        self.assertEqual(json.loads(m.json),
                         {'v': v, 'nested': {v: [v, {v: v}]}, 'k': v})

    def test_indexes_and_unindexed_scans(self):
        self.load()
        name = 'unindexed'
        before = harness.metric(self.mport, 'db_unindexed_searches_total')
        f = cond('o.k', 'EQ', 1)
        want = sorted(i for i, d in CORPUS.items() if evaluate(f, d))
        docs, _ = self.c.search_all(self.db, self.coll, filter=f)
        self.assertEqual([d.id for d in docs], want)
        after = harness.metric(self.mport, 'db_unindexed_searches_total')
        self.assertEqual(after, before + 1)
        # A planned or estimated count scans nothing, an exact one does.
        for mode in (P.COUNT_MODE_PLANNED, P.COUNT_MODE_ESTIMATED):
            r = self.c.call('Count', database=self.db, collection=self.coll,
                            filter=f, mode=mode)
            self.assertTrue(r.estimated)
        self.assertEqual(harness.metric(self.mport,
                                        'db_unindexed_searches_total'),
                         after)
        self.assertEqual(self.c.call('Count', database=self.db,
                                     collection=self.coll,
                                     filter=f).count, len(want))
        after += 1
        self.assertEqual(harness.metric(self.mport,
                                        'db_unindexed_searches_total'),
                         after)
        self.assertTrue(any('no index serves' in line.get('msg', '') and
                            line.get('collection') == self.coll
                            for line in harness.log_lines(self.srv)))
        r = self.c.call('CreateIndex', database=self.db,
                        collection=self.coll, name='by_k', paths=['o.k'])
        self.assertEqual(r.index.state, P.INDEX_STATE_BUILDING)
        self.c.call('CreateIndex', database=self.db, collection=self.coll,
                    name='all', kind=P.INDEX_KIND_GIN)
        self.assertCode(self.err('CreateIndex', database=self.db,
                                 collection=self.coll, name='all',
                                 kind=P.INDEX_KIND_GIN),
                        C.ALREADY_EXISTS, 'all')

        def ready():
            ix = self.c.call('ListIndexes', database=self.db,
                             collection=self.coll).indexes
            return (len(ix) == 2 and all(i.state == P.INDEX_STATE_READY
                                         for i in ix)) and ix
        ix = wait_for(ready, what='both indexes ready')
        self.assertEqual(sorted((i.name, list(i.paths), i.kind)
                                for i in ix),
                         [('all', [], P.INDEX_KIND_GIN),
                          ('by_k', ['o.k'], P.INDEX_KIND_EXPRESSION)])
        # The planner can use them for the SQL filters compile to (a
        # custom plan, as for the unprepared statements searches are).
        import auth_harness as ah
        names = dict(ah.psql(
            "SELECT name, sql_name FROM db_indexes WHERE database = '%s'"
            " AND collection = '%s'" % (self.db, self.coll)))

        def plan(where, value):
            return str(ah.psql(
                "SET enable_seqscan = off; SET enable_indexscan = off;"
                " PREPARE q(text, text, text[],"
                " jsonb) AS SELECT d.id FROM db_documents d"
                " WHERE d.database = $1 AND d.collection = $2 AND " + where +
                "; EXPLAIN EXECUTE q('%s', '%s', '{o,k}', '%s')"
                % (self.db, self.coll, value)))
        self.assertIn(names['by_k'], plan(
            "(d.body #> $3::text[]) = $4::jsonb", '1'))
        # Served now: the same answers, nothing counted.
        for _, f in filter_table():
            docs, _ = self.c.search_all(self.db, self.coll,
                                        filter=all_of(f, cond('o.k', 'EQ',
                                                              1)))
            self.assertEqual([d.id for d in docs],
                             sorted(i for i, d in CORPUS.items()
                                    if evaluate(f, d) and
                                    evaluate(cond('o.k', 'EQ', 1), d)))
        self.assertEqual(harness.metric(self.mport,
                                        'db_unindexed_searches_total'),
                         after)
        self.c.call('DropIndex', database=self.db, collection=self.coll,
                    name='by_k')
        self.assertCode(self.err('DropIndex', database=self.db,
                                 collection=self.coll, name='by_k'),
                        C.NOT_FOUND, 'by_k')
        self.assertEqual([i.name for i in self.c.call(
            'ListIndexes', database=self.db, collection=self.coll).indexes],
            ['all'])
        self.c.call('DropCollection', database=self.db, name=self.coll)


class BatchTest(DBCase):

    def test_batch_is_atomic_across_collections(self):
        c, db = self.c, self.db
        c.call('CreateCollection', database=db, name='other')
        a = c.create(db, self.coll, {'n': 1}, id='a')
        W, CR, UR, DR = P.Write, P.CreateRequest, P.UpdateRequest, \
            P.DeleteRequest
        bad = [W(create=CR(collection='other', id='x', json='{"v":1}')),
               W(update=UR(collection=self.coll, id='a', json='{"n":2}')),
               W(delete=DR(collection=self.coll, id='a',
                           expected_revision=a.revision))]
        e = self.err('BatchWrite', database=db, writes=bad)
        self.assertCode(e, C.FAILED_PRECONDITION, 'writes[2]')
        self.assertCode(rpc_error(c.read, db, 'other', 'x'), C.NOT_FOUND)
        self.assertEqual(c.read(db, self.coll, 'a').revision, a.revision)
        e = self.err('BatchWrite', database=db, writes=[
            W(create=CR(collection='other', id='x', json='{}')),
            W(create=CR(collection='nope', id='x', json='{}'))])
        self.assertCode(e, C.NOT_FOUND, 'writes[1]')
        self.assertCode(rpc_error(c.read, db, 'other', 'x'), C.NOT_FOUND)
        good = [W(create=CR(collection='other', id='x', json='{"v":1}')),
                W(update=UR(collection=self.coll, id='a',
                            json='{"m":1}', mode=MERGE,
                            expected_revision=a.revision)),
                W(update=UR(collection='other', id='x', json='{"w":2}',
                            mode=MERGE)),
                W(create=CR(collection=self.coll, id='b', json='{}')),
                W(delete=DR(collection=self.coll, id='b'))]
        r = c.call('BatchWrite', database=db, writes=good)
        revs = [x.revision for x in r.results]
        self.assertEqual(revs, list(range(revs[0], revs[0] + len(good))))
        self.assertEqual(r.revision, revs[-1])
        self.assertEqual(json.loads(c.read(db, 'other', 'x').json),
                         {'v': 1, 'w': 2})
        self.assertEqual(json.loads(c.read(db, self.coll, 'a').json),
                         {'n': 1, 'm': 1})
        self.assertEqual(json.loads(r.results[2].document.json),
                         {'v': 1, 'w': 2})
        self.assertCode(rpc_error(c.read, db, self.coll, 'b'), C.NOT_FOUND)
        counts = {x.name: x.documents for x in c.call(
            'ListCollections', database=db).collections}
        self.assertEqual(counts, {'other': 1, self.coll: 1})


class WatchTest(DBCase):

    def test_watch_replay_live_and_resume_with_no_gap(self):
        c, db, co = self.c, self.db, self.coll
        c.call('CreateCollection', database=db, name='elsewhere')
        first = c.create(db, co, {'i': 0}, id='x0')
        for i in range(1, 5):
            c.create(db, co, {'i': i}, id='x%d' % i)
        c.create(db, 'elsewhere', {'i': 100}, id='y')
        c.update(db, co, 'x1', {'i': 11})
        c.delete(db, co, 'x2')
        w = self.watch(after_revision=first.revision - 1)
        got = self.until_caught_up(w)
        self.assertEqual([(x.type, x.document.id) for x in got],
                         [(P.CHANGE_TYPE_PUT, 'x%d' % i) for i in range(5)]
                         + [(P.CHANGE_TYPE_PUT, 'x1'),
                            (P.CHANGE_TYPE_DELETE, 'x2')])
        self.assertEqual(json.loads(got[5].document.json), {'i': 11})
        self.assertEqual(json.loads(got[6].document.json), {'i': 2})
        revs = [x.revision for x in got]
        self.assertEqual(revs, sorted(revs))
        # Live changes while writers race the replay of another watcher.
        stop = threading.Event()
        written = []

        def writer():
            n = 0
            while not stop.is_set() and n < 200:
                d = c.create(db, co, {'i': 1000 + n}, id='w%d' % n)
                written.append(d.revision)
                n += 1
        t = threading.Thread(target=writer)
        t.start()
        seen = []
        for _ in range(20):
            seen.append(w.next().change.revision)
        w.close()
        # Resume after the last revision seen: the rest with no gap.
        w2 = self.watch(after_revision=seen[-1])
        stop.set()
        t.join()
        end = written[-1]
        while seen[-1] < end:
            m = w2.next()
            if m.caught_up:
                continue
            seen.append(m.change.revision)
        self.assertEqual(len(seen), len(set(seen)), 'a duplicate')
        self.assertEqual(seen, sorted(seen))
        self.assertEqual([r for r in written if r > seen[0] - 1],
                         [r for r in seen if r in set(written)])

    def test_watch_with_filter_and_only_new(self):
        c, db, co = self.c, self.db, self.coll
        c.create(db, co, {'kind': 'a'}, id='old')
        w = self.watch(filter=cond('kind', 'EQ', 'b'))
        self.assertTrue(w.next().caught_up)
        c.create(db, co, {'kind': 'a'}, id='1')
        c.create(db, co, {'kind': 'b'}, id='2')
        c.update(db, co, '1', {'kind': 'b'})
        c.delete(db, co, '2')
        got = [w.next().change for _ in range(3)]
        self.assertEqual([(x.type, x.document.id) for x in got],
                         [(P.CHANGE_TYPE_PUT, '2'), (P.CHANGE_TYPE_PUT, '1'),
                          (P.CHANGE_TYPE_DELETE, '2')])
        self.assertCode(rpc_error(lambda: self.c.watch(db, 'nope').next()),
                        C.NOT_FOUND, 'nope')

    def test_ttl_expiry(self):
        c, db, co = self.c, self.db, self.coll
        keep = c.create(db, co, {'k': 1}, id='keep', ttl_ms=3600000)
        self.assertGreater(keep.expires_unix_ms, 0)
        w = self.watch()
        self.assertTrue(w.next().caught_up)
        d = c.create(db, co, {'k': 2}, id='brief', ttl_ms=1)
        self.assertEqual(w.next().change.document.id, 'brief')
        m = w.next().change
        self.assertEqual((m.type, m.document.id),
                         (P.CHANGE_TYPE_EXPIRED, 'brief'))
        self.assertGreater(m.revision, d.revision)
        self.assertCode(rpc_error(c.read, db, co, 'brief'), C.NOT_FOUND)
        self.assertEqual([x.id for x in c.search_all(db, co)[0]], ['keep'])
        # ttl_ms -1 clears it, 0 keeps it.
        u = c.update(db, co, 'keep', {'k': 3})
        self.assertEqual(u.expires_unix_ms, keep.expires_unix_ms)
        u = c.update(db, co, 'keep', {'k': 3}, ttl_ms=-1)
        self.assertEqual(u.expires_unix_ms, 0)
        # The id is free again.
        c.create(db, co, {'k': 4}, id='brief')



class BadInputTest(DBCase):

    def test_bad_input_names_the_field(self):
        db, co = self.db, self.coll
        W, CR, UR, DR = P.Write, P.CreateRequest, P.UpdateRequest, \
            P.DeleteRequest
        F, Cond = P.Filter, P.Condition
        loc = dict(database=db, collection=co)
        deep = cond('a', 'EQ', 1)
        for _ in range(9):
            deep = not_of(deep)
        cases = [
            ('CreateDatabase', dict(name=''), 'name'),
            ('CreateDatabase', dict(name='a b'), 'name'),
            ('CreateDatabase', dict(name='x' * 64), 'name'),
            ('CreateDatabase', dict(name="a';--"), 'name'),
            ('ListDatabases', dict(page_size=-1), 'page_size'),
            ('ListDatabases', dict(page_token='nope'), 'page_token'),
            ('DropDatabase', dict(name='a/b'), 'name'),
            ('CreateCollection', dict(database='', name='c'), 'database'),
            ('CreateCollection', dict(database=db, name='c.d'), 'name'),
            ('ListCollections', dict(database='é'), 'database'),
            ('ListCollections', dict(database=db, page_size=-3),
             'page_size'),
            ('ListCollections', dict(database=db, page_token='zz'),
             'page_token'),
            ('DropCollection', dict(database=db, name=''), 'name'),
            ('Create', dict(loc, collection='', json='{}'), 'collection'),
            ('Create', dict(loc, database='-x-?', json='{}'), 'database'),
            ('Create', dict(loc, id='a\nb', json='{}'), 'id'),
            ('Create', dict(loc, id='i' * 257, json='{}'), 'id'),
            ('Create', dict(loc, json=''), 'json'),
            ('Create', dict(loc, json='[1]'), 'json'),
            ('Create', dict(loc, json='{"a":1,"a":2}'), 'json'),
            ('Create', dict(loc, json='{"a":'), 'json'),
            ('Create', dict(loc, json='{"a":"\\u0000"}'), 'json'),
            ('Create', dict(loc, json='{"a":[1e300]}'), 'json'),
            ('Update', dict(loc, id='x', json='{"a":-1e19}', mode=MERGE),
             'json'),
            ('Create', dict(loc, json='{"a":"' + 'x' * 300000 + '"}'),
             'json'),
            ('Create', dict(loc, json='{}', ttl_ms=-1), 'ttl_ms'),
            ('Create', dict(loc, json='{}', ttl_ms=31536000001), 'ttl_ms'),
            ('Read', dict(loc, id=''), 'id'),
            ('Read', dict(loc, id='x', fields=['a..b']), 'fields[0]'),
            ('Read', dict(loc, id='x', fields=['a', '']), 'fields[1]'),
            ('Update', dict(loc, id='', json='{}'), 'id'),
            ('Update', dict(loc, id='x', json='3'), 'json'),
            ('Update', dict(loc, id='x', json='nope', mode=MERGE), 'json'),
            ('Update', dict(loc, id='x', json='{}', mode=7), 'mode'),
            ('Update', dict(loc, id='x', json='{}', expected_revision=-1),
             'expected_revision'),
            ('Update', dict(loc, id='x', json='{}', ttl_ms=-2), 'ttl_ms'),
            ('Delete', dict(loc, id=''), 'id'),
            ('Delete', dict(loc, id='x', expected_revision=-5),
             'expected_revision'),
            ('BatchWrite', dict(database=db), 'writes'),
            ('BatchWrite', dict(database=db, writes=[W()] * 1001),
             'writes'),
            ('BatchWrite', dict(database=db, writes=[W()]), 'writes[0]'),
            ('BatchWrite', dict(database='?', writes=[W(delete=DR(
                collection=co, id='x'))]), 'database'),
            ('BatchWrite', dict(database=db, writes=[
                W(delete=DR(collection=co, id='x')),
                W(create=CR(collection=co, json='[]'))]),
             'writes[1].create.json'),
            ('BatchWrite', dict(database=db, writes=[
                W(update=UR(collection=co, id='', json='{}'))]),
             'writes[0].update.id'),
            ('BatchWrite', dict(database=db, writes=[
                W(delete=DR(collection='', id='x'))]),
             'writes[0].delete.collection'),
            ('Search', dict(loc, collection=''), 'collection'),
            ('Search', dict(loc, filter=F(condition=Cond(path='a'))),
             'filter.condition.op'),
            ('Search', dict(loc, filter=F(condition=Cond(op=1, value='1'))),
             'filter.condition.path'),
            ('Search', dict(loc, filter=F(condition=Cond(
                path='a', op=99, value='1'))), 'filter.condition.op'),
            ('Search', dict(loc, filter=cond('a', 'EQ')),
             'filter.condition.value'),
            ('Search', dict(loc, filter=cond('a', 'LT', [1])),
             'filter.condition.value'),
            ('Search', dict(loc, filter=cond('a', 'IN', list(range(101)))),
             'filter.condition.value'),
            ('Search', dict(loc, filter=cond('a', 'PREFIX', 1)),
             'filter.condition.value'),
            ('Search', dict(loc, filter=cond('a', 'EXISTS', 'yes')),
             'filter.condition.value'),
            ('Search', dict(loc, filter=all_of(cond('a', 'EQ', 1),
                                               cond('a.', 'EQ', 1))),
             'filter.all[1].condition.path'),
            ('Search', dict(loc, filter=any_of(not_of(F(condition=Cond(
                path='a', op=1, value='{'))))),
             'filter.any[0].not.condition.value'),
            ('Search', dict(loc, filter=deep), 'filter'),
            ('Search', dict(loc, filter=all_of(*[cond('a', 'EQ', 1)] * 101)),
             'filter'),
            ('Search', dict(loc, order_by=[P.Order(path='')]),
             'order_by[0].path'),
            ('Search', dict(loc, order_by=[P.Order(path='a')] * 5),
             'order_by'),
            ('Search', dict(loc, fields=['ok', '.']), 'fields[1]'),
            ('Search', dict(loc, page_size=-1), 'page_size'),
            ('Search', dict(loc, page_token='x'), 'page_token'),
            ('Count', dict(loc, database=''), 'database'),
            ('Count', dict(loc, filter=cond('a', 'GT', True)),
             'filter.condition.value'),
            ('Count', dict(loc, mode=9), 'mode'),
            ('CreateIndex', dict(loc, name=''), 'name'),
            ('CreateIndex', dict(loc, name='i'), 'paths'),
            ('CreateIndex', dict(loc, name='i', paths=['a'] * 5), 'paths'),
            ('CreateIndex', dict(loc, name='i', paths=['a', 'b..c']),
             'paths[1]'),
            ('CreateIndex', dict(loc, name='i', kind=P.INDEX_KIND_GIN,
                                 paths=['a']), 'paths'),
            ('CreateIndex', dict(loc, name='i', kind=9, paths=['a']),
             'kind'),
            ('ListIndexes', dict(loc, collection='a b'), 'collection'),
            ('DropIndex', dict(loc, name="x'"), 'name'),
        ]
        for method, fields, field in cases:
            with self.subTest(method=method, field=field):
                self.assertCode(self.err(method, **fields),
                                C.INVALID_ARGUMENT, field)
        for req, field in ((dict(database=''), 'database'),
                           (dict(after_revision=-1), 'after_revision'),
                           (dict(filter=cond('a', 'NE')),
                            'filter.condition.value')):
            with self.subTest(method='Watch', field=field):
                kw = dict(loc, **req)
                w = self.c.watch(kw.pop('database'), kw.pop('collection'),
                                 **kw)
                self.assertCode(w.end(), C.INVALID_ARGUMENT, field)
        # Malformed protobuf and an id that is not UTF-8, on the wire.
        self.assertCode(rpc_error(self.c.raw, 'Create', b'\xff\xff\xff'),
                        C.INVALID_ARGUMENT)
        raw = (harness.ld_field(1, db.encode()) +
               harness.ld_field(2, co.encode()) +
               harness.ld_field(3, b'\xff\xfe') +
               harness.ld_field(4, b'{}'))
        self.assertCode(rpc_error(self.c.raw, 'Create', raw),
                        C.INVALID_ARGUMENT)
        # None of it wrote anything.
        self.assertEqual(self.c.call('Count', **loc).count, 0)
        self.assertEqual([x.name for x in self.c.call(
            'ListCollections', database=db).collections], [co])

    def test_bad_settings(self):
        for args, env, flag in (
                (['--scan-warn-documents', 'lots'], None,
                 '--scan-warn-documents'),
                (['--scan-warn-documents', '-1'], None,
                 '--scan-warn-documents'),
                (['--notify', 'maybe'], None, '--notify'),
                (['--changes-retention-ms', '999'], None,
                 '--changes-retention-ms'),
                ([], {'PLATFORM_DATABASE': ''}, '--database'),
                ([], {'PLATFORM_DATABASE': 'host=x port=notaport =='},
                 '--database')):
            with self.subTest(flag=flag, args=args):
                e = {'PLATFORM_DATABASE': dh.DATABASE}
                e.update(env or {})
                r = harness.run_binary(args, binary=dh.DB_BIN, env=e)
                self.assertEqual(r.code, 2, r.stderr)
                self.assertIn(flag, r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1)



class TenancyTest(harness.ServiceCase):
    """db-srv with the guard on: the rules let callers call the methods,
    their scopes decide which databases and collections they touch."""

    @classmethod
    def setUpClass(cls):
        from test_guard import Fleet, ALLOW
        f = cls.fleet = Fleet('dbtenancy')
        cls.addClassCleanup(f.cleanup)
        sid, secret = f.service_account('db')
        cls.srv = f.add(dh.db_server(env=f.guarded_env(
            f.credentials_file(sid, secret))))
        cls.a = uniq_name('tena')
        cls.b = uniq_name('tenb')
        cls.tokens = {}
        for who, scopes in (('owner', ['db:' + cls.a]),
                            ('other', ['db:' + cls.b]),
                            ('reader', ['db.read:%s/pub' % cls.a]),
                            ('none', [])):
            aid, sec = f.service_account('db' + who, scopes=scopes)
            cls.tokens[who] = f.token(aid, sec)
        f.rule(service=dh.DB_SERVICE, method='*', account='*', effect=ALLOW)

    @classmethod
    def tearDownClass(cls):
        cls.fleet.stop()

    def as_(self, who, method, **kw):
        c = dh.client_of(self.srv)
        req = getattr(c.pb, method + 'Request')(**kw)
        return c._m[method](req, timeout=harness.RPC_TIMEOUT, metadata=[
            ('authorization', 'Bearer ' + self.tokens[who])])

    def denied(self, who, method, **kw):
        e = rpc_error(self.as_, who, method, **kw)
        self.assertCode(e, C.PERMISSION_DENIED)
        return e

    def test_scopes_decide_databases_and_collections(self):
        a, b = self.a, self.b
        wait_for(lambda: self.as_('owner', 'CreateDatabase', name=a),
                 what='the guard to have keys and rules')
        for co in ('pub', 'priv'):
            self.as_('owner', 'CreateCollection', database=a, name=co)
            self.as_('owner', 'Create', database=a, collection=co, id='1',
                     json='{"v":1}')
        self.as_('other', 'CreateDatabase', name=b)
        e = self.denied('owner', 'CreateDatabase', name=b + 'x')
        self.assertIn(b + 'x', e.details())
        self.denied('other', 'Read', database=a, collection='pub', id='1')
        self.denied('none', 'ListCollections', database=a)
        # The reader reads a/pub and nothing else, and writes nothing.
        r = self.as_('reader', 'Read', database=a, collection='pub', id='1')
        self.assertEqual(json.loads(r.document.json), {'v': 1})
        self.as_('reader', 'Search', database=a, collection='pub')
        self.denied('reader', 'Read', database=a, collection='priv', id='1')
        self.denied('reader', 'Update', database=a, collection='pub',
                    id='1', json='{}')
        self.denied('reader', 'BatchWrite', database=a, writes=[P.Write(
            delete=P.DeleteRequest(collection='pub', id='1'))])
        # A batch is refused whole when one write is out of scope.
        self.denied('owner', 'BatchWrite', writes=[
            P.Write(delete=P.DeleteRequest(database=a, collection='pub',
                                           id='1')),
            P.Write(delete=P.DeleteRequest(database=b, collection='x',
                                           id='1'))])
        self.as_('owner', 'Read', database=a, collection='pub', id='1')
        # Listing shows only the databases the caller may read.
        names = [d.name for d in self.as_('owner', 'ListDatabases',
                                          page_size=1000).databases]
        self.assertIn(a, names)
        self.assertNotIn(b, names)
        # Watch is checked too.
        c = dh.client_of(self.srv)
        w = harness.WatchReader(c._m['Watch'](
            P.WatchRequest(database=a, collection='priv'),
            metadata=[('authorization', 'Bearer ' + self.tokens['reader'])]))
        self.assertCode(w.end(), C.PERMISSION_DENIED)



class ReplicasTest(harness.ServiceCase):
    """Several db-srv on one database: a change written through one
    reaches watchers on the others, with LISTEN/NOTIFY and without it
    (polling, as on engines that lack it); kill -9 in the middle of
    batches loses no acknowledged write."""

    STREAM_ITEM = 'change'

    def setUp(self):
        self.db = uniq_name('rep')

    def pair(self, *args):
        a = dh.db_server(name='db-a', extra_args=args)
        self.addCleanup(a.kill)
        b = dh.db_server(name='db-b', extra_args=args)
        self.addCleanup(b.kill)
        return a, b

    def cross_replica_watch(self, *args):
        a, b = self.pair(*args)
        ca, cb = dh.client_of(a), dh.client_of(b)
        ca.call('CreateDatabase', name=self.db)
        ca.call('CreateCollection', database=self.db, name='c')
        first = ca.create(self.db, 'c', {'i': 0}, id='0')
        w = cb.watch(self.db, 'c', after_revision=first.revision - 1)
        self.addCleanup(w.close)
        self.assertEqual([x.document.id for x in self.until_caught_up(w)],
                         ['0'])
        for i in range(1, 6):
            ca.create(self.db, 'c', {'i': i}, id=str(i))
            m = w.next().change
            self.assertEqual((m.document.id, json.loads(m.document.json)),
                             (str(i), {'i': i}))
        self.assertEqual(json.loads(cb.read(self.db, 'c', '5').json),
                         {'i': 5})
        w.close()
        a.stop_clean()
        b.stop_clean()

    def test_watch_across_replicas_with_notify(self):
        self.cross_replica_watch()

    def test_watch_across_replicas_by_polling(self):
        self.cross_replica_watch('--notify', 'off')

    def test_registry_shows_the_backend(self):
        """Each db-srv tells discovery which PostgreSQL it serves
        (host:port/dbname, never the password) and which databases."""
        from urllib.parse import urlsplit
        disc = harness.Server(discovery='self', name='discovery-db')
        self.addCleanup(disc.kill)
        srv = dh.db_server(name='db-registered', discovery=disc.address)
        self.addCleanup(srv.kill)
        d = disc.discovery_client()

        def metadata():
            r = d.get('db')
            return [dict(n.metadata) for s in r.services for n in s.nodes
                    if 'backend' in n.metadata] or \
                [dict(s.metadata) for s in r.services
                 if 'backend' in s.metadata]
        md = wait_for(metadata, what='db-srv registered')[0]
        u = urlsplit(dh.DATABASE)
        self.assertEqual(md['backend'], '%s:%d%s' % (u.hostname, u.port,
                                                     u.path))
        self.assertEqual(md['databases'], '*')
        self.assertEqual(md['grpc_service'], dh.DB_SERVICE)
        if u.password:
            self.assertNotIn(u.password, str(md))
        srv.stop_clean()
        disc.stop_clean()

    def test_kill_9_mid_batch_loses_no_acknowledged_write(self):
        srv = dh.db_server(name='db-kill')
        self.addCleanup(srv.kill)
        c = dh.client_of(srv)
        c.call('CreateDatabase', name=self.db)
        for co in ('x', 'y'):
            c.call('CreateCollection', database=self.db, name=co)
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def writer(k):
            cl = dh.new_client(srv.address)
            n = 0
            while not stop.is_set():
                ids = ['%d-%d-%d' % (k, n, j) for j in range(5)]
                writes = [P.Write(create=P.CreateRequest(
                    collection='xy'[j % 2], id=i, json=json.dumps({'i': i})))
                    for j, i in enumerate(ids)]
                try:
                    r = cl.call('BatchWrite', database=self.db,
                                writes=writes)
                except grpc.RpcError:
                    break
                with lock:
                    acked.append((ids, r.revision))
                n += 1
            cl.channel.close()
        ts = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        wait_for(lambda: len(acked) >= 40, what='40 batches acknowledged')
        srv.kill()
        stop.set()
        for t in ts:
            t.join()
        srv2 = dh.db_server(name='db-kill-2')
        self.addCleanup(srv2.kill)
        c2 = dh.client_of(srv2)
        lost = []
        for ids, _ in acked:
            for j, i in enumerate(ids):
                try:
                    d = c2.read(self.db, 'xy'[j % 2], i)
                    if json.loads(d.json) != {'i': i}:
                        lost.append(i)
                except grpc.RpcError:
                    lost.append(i)
        self.assertEqual(lost, [])
        # A batch is all or nothing: no document without its batch-mates.
        for co in ('x', 'y'):
            for d in c2.search_all(self.db, co, page_size=1000)[0]:
                k, n, j = d.id.split('-')
                for jj in range(5):
                    c2.read(self.db, 'xy'[jj % 2], '%s-%s-%d' % (k, n, jj))
        # The acknowledged changes replay through Watch.
        low = min(r for _, r in acked)
        w = c2.watch(self.db, 'x', after_revision=low - 5)
        self.addCleanup(w.close)
        seen = {x.document.id for x in self.until_caught_up(w)}
        want = {i for ids, _ in acked for j, i in enumerate(ids)
                if j % 2 == 0}
        self.assertEqual(want - seen, set())
        srv2.stop_clean()



class RetentionTest(harness.ServiceCase):
    """Changes older than --changes-retention-ms are dropped; a Watch
    from before them is OUT_OF_RANGE rather than silently missing
    some, and documents stay."""

    def test_compacted_changes(self):
        srv = dh.db_server(name='db-retention', extra_args=[
            '--changes-retention-ms', '1000'])
        self.addCleanup(srv.kill)
        c = dh.client_of(srv)
        db = uniq_name('ret')
        c.call('CreateDatabase', name=db)
        c.call('CreateCollection', database=db, name='c')
        first = c.create(db, 'c', {'i': 1}, id='1')
        c.update(db, 'c', '1', {'i': 2})

        def refused():
            w = c.watch(db, 'c', after_revision=first.revision)
            try:
                w.next()
                return False            # replayed: not compacted yet
            except grpc.RpcError as e:
                return e.code() == C.OUT_OF_RANGE and e
            finally:
                w.close()
        e = wait_for(refused, timeout=60, interval=0.2,
                     what='the first changes to be compacted')
        self.assertIn('after_revision', e.details())
        self.assertEqual(json.loads(c.read(db, 'c', '1').json), {'i': 2})
        # From now on it works again.
        w = c.watch(db, 'c')
        self.addCleanup(w.close)
        self.assertTrue(w.next().caught_up)
        c.update(db, 'c', '1', {'i': 3})
        self.assertEqual(json.loads(w.next().change.document.json),
                         {'i': 3})
        w.close()
        srv.stop_clean()



class BackendsTest(harness.ServiceCase):
    """--backends keeps a database in another PostgreSQL (here another
    schema of the test server): its rows live there, every call works on
    it, listings merge, a batch cannot span two, and the registry says
    which db-srv serves which database where."""

    STREAM_ITEM = 'change'

    def test_database_on_its_own_backend(self):
        import auth_harness as ah
        schema, conninfo = ah.new_schema()
        self.addCleanup(ah.drop_schema, schema)
        mapped, other = uniq_name('mapped'), uniq_name('other')
        disc = harness.Server(discovery='self', name='discovery-dbb')
        self.addCleanup(disc.kill)
        srv = dh.db_server(name='db-backends', discovery=disc.address,
                           env={'PLATFORM_BACKENDS': '%s=%s'
                                % (mapped, conninfo)})
        self.addCleanup(srv.kill)
        c = dh.client_of(srv)
        for d in (mapped, other):
            c.call('CreateDatabase', name=d)
            c.call('CreateCollection', database=d, name='c')
            c.create(d, 'c', {'db': d}, id='1')
        self.assertEqual(ah.psql('SELECT database FROM %s.db_documents'
                                 % schema), [[mapped]])
        self.assertEqual(ah.psql("SELECT count(*) FROM public.db_documents"
                                 " WHERE database = '%s'" % mapped), [['0']])
        self.assertEqual(ah.psql("SELECT count(*) FROM public.db_documents"
                                 " WHERE database = '%s'" % other), [['1']])
        # Listings merge the backends, in name order, across pages.
        names, token = [], ''
        while True:
            r = c.call('ListDatabases', page_size=1, page_token=token)
            names += [x.name for x in r.databases]
            token = r.next_page_token
            if not token:
                break
        self.assertEqual(names, sorted(names))
        self.assertIn(mapped, names)
        self.assertIn(other, names)
        # Every call on the mapped one.
        w = c.watch(mapped, 'c', after_revision=0)
        self.addCleanup(w.close)
        self.assertTrue(w.next().caught_up)
        u = c.update(mapped, 'c', '1', {'n': 2}, mode=MERGE)
        m = w.next().change
        self.assertEqual((m.document.id, m.revision), ('1', u.revision))
        docs, _ = c.search_all(mapped, 'c', filter=cond('n', 'EQ', 2))
        self.assertEqual([d.id for d in docs], ['1'])
        self.assertEqual(c.call('Count', database=mapped,
                                collection='c').count, 1)
        c.call('CreateIndex', database=mapped, collection='c', name='n',
               paths=['n'])
        wait_for(lambda: c.call('ListIndexes', database=mapped,
                                collection='c').indexes[0].state ==
                 P.INDEX_STATE_READY, what='the index on the backend')
        r = c.call('BatchWrite', database=mapped, writes=[
            P.Write(create=P.CreateRequest(collection='c', id='2',
                                           json='{}'))])
        self.assertEqual(len(r.results), 1)
        # A batch is one transaction: not across two PostgreSQLs.
        e = rpc_error(c.call, 'BatchWrite', writes=[
            P.Write(delete=P.DeleteRequest(database=mapped, collection='c',
                                           id='2')),
            P.Write(delete=P.DeleteRequest(database=other, collection='c',
                                           id='1'))])
        self.assertCode(e, C.INVALID_ARGUMENT, 'writes[1].database')
        c.read(mapped, 'c', '2')
        # The registry.
        d = disc.discovery_client()

        def metadata():
            r = d.get('db')
            return [dict(n.metadata) for s in r.services for n in s.nodes
                    if 'backends' in n.metadata]
        md = wait_for(metadata, what='db-srv registered')[0]
        self.assertEqual(md['databases'], mapped + ',*')
        self.assertTrue(md['backends'].startswith(mapped + '='))
        pw = dh.urlsplit_password(dh.DATABASE)
        if pw:
            self.assertNotIn(pw, str(md))
        c.call('DropDatabase', name=mapped)
        self.assertEqual(ah.psql('SELECT count(*) FROM %s.db_documents'
                                 % schema), [['0']])
        w.close()
        srv.stop_clean()
        disc.stop_clean()

    def test_bad_backends(self):
        for value, what in (('noequals', 'NAME=CONNINFO'),
                            ('a b=host=x', 'not a database name'),
                            ('x=host=h port=notaport ==', 'does not parse'),
                            ('x=host=h;x=host=i', 'twice')):
            with self.subTest(value=value):
                r = harness.run_binary([], binary=dh.DB_BIN, env={
                    'PLATFORM_DATABASE': dh.DATABASE,
                    'PLATFORM_BACKENDS': value})
                self.assertEqual(r.code, 2, r.stderr)
                self.assertIn('--backends', r.stderr)
                self.assertIn(what, r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1)


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
