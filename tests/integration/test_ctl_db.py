#!/usr/bin/python3
"""`platformctl db ...` against a real db-srv on the real PostgreSQL the
suite starts: databases, collections, create and drop; get (the document
as stored, -o json the record); put (a new id, an id of one's own, stdin,
replace, --if-absent, --merge, --expect-revision and the compare-and-set
that loses, --ttl); delete; find with filters, order, fields and --limit
over several pages; count; watch seeing changes made after it started
(and --after-revision, --filter); db-srv found through a real
discovery-srv; bad input and the exit codes (0 ok, 1 the call failed
with its status named, 2 usage)."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import db_harness as dh  # noqa: E402
from test_ctl_kv import Watch, run_ctl  # noqa: E402


class CtlDBTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = dh.db_server(name='ctl-db')
        cls.addClassCleanup(cls.srv.stop_clean)
        cls.c = dh.client_of(cls.srv)

    def setUp(self):
        self.db = dh.uniq_name('cdb')
        self.coll = 'items'
        self.c.call('CreateDatabase', name=self.db)
        self.c.call('CreateCollection', database=self.db, name=self.coll)

    def ctl(self, *args, stdin=None, code=0, env=None):
        """platformctl ARGS with --db after the group's word; stdout and
        stderr as text."""
        args = list(args)
        at = args.index('db') + 1
        args[at:at] = ['--db', self.srv.address]
        rc, out, err = run_ctl(args, stdin=stdin, env=env)
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(rc, code, (args, out, err))
        return out.decode('utf-8'), err

    def record(self, id):
        out, _ = self.ctl('-o', 'json', 'db', 'get', self.db, self.coll, id)
        return json.loads(out)

    def watch(self, *args):
        w = Watch(['db', '--db', self.srv.address, 'watch', self.db,
                   self.coll] + list(args))
        self.addCleanup(w.kill)
        return w

    # ---- databases and collections

    def test_databases_and_collections(self):
        name = dh.uniq_name('cmk')
        out, _ = self.ctl('db', 'create', name)
        self.assertEqual(out, 'created %s\n' % name)
        self.ctl('db', 'create', name, 'orders')
        self.ctl('db', 'create', name, 'users')
        _, err = self.ctl('db', 'create', name, 'orders', code=1)
        self.assertIn('ALREADY_EXISTS', err)
        self.c.create(name, 'orders', {'n': 1})
        self.c.create(name, 'orders', {'n': 2})

        out, _ = self.ctl('db', 'databases')
        rows = [ln.split() for ln in out.splitlines()]
        self.assertEqual(rows[0], ['NAME', 'CREATED'])
        self.assertIn(name, [r[0] for r in rows[1:]])
        out, _ = self.ctl('-o', 'json', 'db', 'databases')
        self.assertIn(name, [d['name'] for d in json.loads(out)])

        out, _ = self.ctl('db', 'collections', name)
        rows = [ln.split() for ln in out.splitlines()]
        self.assertEqual(rows[0], ['NAME', 'DOCUMENTS', 'CREATED'])
        self.assertEqual([r[:2] for r in rows[1:]],
                         [['orders', '2'], ['users', '0']])
        self.assertRegex(rows[1][2], r'^\d{4}-\d\d-\d\dT')
        out, _ = self.ctl('-o', 'json', 'db', 'collections', name)
        cs = json.loads(out)
        self.assertEqual([(c['name'], c['documents']) for c in cs],
                         [('orders', 2), ('users', 0)])

        out, _ = self.ctl('db', 'drop', name, 'users')
        self.assertEqual(out, 'dropped %s users\n' % name)
        out, _ = self.ctl('db', 'collections', name)
        self.assertEqual(len(out.splitlines()), 2)
        self.ctl('db', 'drop', name)
        _, err = self.ctl('db', 'collections', name, code=1)
        self.assertIn('NOT_FOUND', err)
        _, err = self.ctl('db', 'drop', name, code=1)
        self.assertIn('NOT_FOUND', err)

    # ---- get, put, delete

    def test_put_get(self):
        out, _ = self.ctl('db', 'put', self.db, self.coll, 'o-1',
                          '{"name": "ann", "n": 12345678901234567}')
        self.assertRegex(out, r'^%s items o-1: revision \d+$' % self.db)
        out, _ = self.ctl('db', 'get', self.db, self.coll, 'o-1')
        # The document as stored, one line; the int64 exact.
        self.assertEqual(out.count('\n'), 1)
        self.assertEqual(json.loads(out),
                         {'name': 'ann', 'n': 12345678901234567})
        r = self.record('o-1')
        self.assertEqual(r['id'], 'o-1')
        self.assertEqual(r['document'], {'name': 'ann',
                                         'n': 12345678901234567})
        self.assertEqual(r['revision'], r['create_revision'])
        self.assertEqual(r['expires_unix_ms'], 0)
        doc = self.c.read(self.db, self.coll, 'o-1')
        self.assertEqual(doc.revision, r['revision'])
        # --field: a projection.
        out, _ = self.ctl('db', 'get', self.db, self.coll, 'o-1', '--field',
                          'name')
        self.assertEqual(json.loads(out), {'name': 'ann'})

    def test_put_new_id_and_stdin(self):
        out, _ = self.ctl('-o', 'json', 'db', 'put', self.db, self.coll,
                          '{"a": 1}')
        r = json.loads(out)
        self.assertRegex(r['id'], r'^[0-9a-f]{32}$')
        self.assertEqual(r['document'], {'a': 1})
        self.assertEqual(json.loads(self.c.read(self.db, self.coll,
                                                r['id']).json), {'a': 1})
        text = json.dumps({'s': "it's; DROP TABLE x; --\u00e9\n",
                           'deep': {'l': [1, 2, {'x': None}]}})
        self.ctl('db', 'put', self.db, self.coll, 'from-stdin', '-',
                 stdin=text.encode())
        out, _ = self.ctl('db', 'get', self.db, self.coll, 'from-stdin')
        self.assertEqual(json.loads(out), json.loads(text))
        # Without an id, stdin too.
        out, _ = self.ctl('db', 'put', self.db, self.coll, '-',
                          stdin=b'{"b": 2}')
        self.assertRegex(out, r'items [0-9a-f]{32}: revision \d+$')

    def test_replace_merge_if_absent_ttl(self):
        self.ctl('db', 'put', self.db, self.coll, 'k', '{"a": 1, "b": 2}')
        r1 = self.record('k')
        # An id that is there: replaced.
        self.ctl('db', 'put', self.db, self.coll, 'k', '{"a": 5}')
        r2 = self.record('k')
        self.assertEqual(r2['document'], {'a': 5})
        self.assertGreater(r2['revision'], r1['revision'])
        self.assertEqual(r2['create_revision'], r1['create_revision'])
        # --if-absent: only a new one.
        _, err = self.ctl('db', 'put', self.db, self.coll, 'k', '{}',
                          '--if-absent', code=1)
        self.assertIn('Create: ALREADY_EXISTS', err)
        self.assertEqual(self.record('k')['document'], {'a': 5})
        self.ctl('db', 'put', self.db, self.coll, 'fresh', '{"f": 1}',
                 '--if-absent')
        # --merge: an RFC 7386 patch.
        out, _ = self.ctl('-o', 'json', 'db', 'put', self.db, self.coll, 'k',
                          '{"b": {"c": 3}, "a": null}', '--merge')
        self.assertEqual(json.loads(out)['document'], {'b': {'c': 3}})
        _, err = self.ctl('db', 'put', self.db, self.coll, 'none', '{}',
                          '--merge', code=1)
        self.assertIn('NOT_FOUND', err)
        # --ttl.
        out, _ = self.ctl('db', 'put', self.db, self.coll, 't', '{}',
                          '--ttl', '1h')
        self.assertRegex(out, r'revision \d+, expires in \d+s$')
        self.assertGreater(self.record('t')['expires_unix_ms'], 0)
        # A replace keeps the time to live; --ttl none clears it.
        self.ctl('db', 'put', self.db, self.coll, 't', '{"x": 1}')
        self.assertGreater(self.record('t')['expires_unix_ms'], 0)
        self.ctl('db', 'put', self.db, self.coll, 't', '{"x": 2}', '--ttl',
                 'none')
        self.assertEqual(self.record('t')['expires_unix_ms'], 0)
        self.ctl('db', 'put', self.db, self.coll, 'n', '{}', '--ttl', 'none')
        self.assertEqual(self.record('n')['expires_unix_ms'], 0)
        self.ctl('db', 'put', self.db, self.coll, 'short', '{}', '--ttl',
                 '200ms')
        harness.wait_for(lambda: run_ctl([
            'db', '--db', self.srv.address, 'get', self.db, self.coll,
            'short'])[0] == 1, what='the document expired')

    def test_cas(self):
        self.ctl('db', 'put', self.db, self.coll, 'c', '{"v": 1}')
        rev1 = self.record('c')['revision']
        out, _ = self.ctl('-o', 'json', 'db', 'put', self.db, self.coll, 'c',
                          '{"v": 2}', '--expect-revision', str(rev1))
        rev2 = json.loads(out)['revision']
        self.assertGreater(rev2, rev1)
        # The revision moved on: refused, nothing changed.
        _, err = self.ctl('db', 'put', self.db, self.coll, 'c', '{"v": 3}',
                          '--expect-revision', str(rev1), code=1)
        self.assertIn('Update: FAILED_PRECONDITION', err)
        _, err = self.ctl('db', 'put', self.db, self.coll, 'c', '{"v": 3}',
                          '--merge', '--expect-revision', str(rev1), code=1)
        self.assertIn('FAILED_PRECONDITION', err)
        self.assertEqual(self.record('c')['document'], {'v': 2})
        _, err = self.ctl('db', 'delete', self.db, self.coll, 'c',
                          '--expect-revision', str(rev1), code=1)
        self.assertIn('Delete: FAILED_PRECONDITION', err)
        self.assertEqual(self.record('c')['revision'], rev2)
        out, _ = self.ctl('db', 'delete', self.db, self.coll, 'c',
                          '--expect-revision', str(rev2))
        self.assertRegex(out, r'^%s items c: deleted \(revision \d+\)$'
                         % self.db)
        _, err = self.ctl('db', 'get', self.db, self.coll, 'c', code=1)
        self.assertIn('Read: NOT_FOUND', err)
        _, err = self.ctl('db', 'delete', self.db, self.coll, 'c', code=1)
        self.assertIn('NOT_FOUND', err)
        self.ctl('db', 'put', self.db, self.coll, 'd', '{}')
        out, _ = self.ctl('-o', 'json', 'db', 'delete', self.db, self.coll,
                          'd')
        r = json.loads(out)
        self.assertEqual((r['id'], r['deleted']), ('d', True))
        self.assertGreater(r['revision'], rev2)

    # ---- batch

    def test_batch(self):
        self.c.call('CreateCollection', database=self.db, name='other')
        self.c.create(self.db, self.coll, {'v': 1}, id='u')
        self.c.create(self.db, self.coll, {'v': 1}, id='gone')
        rev = self.c.read(self.db, self.coll, 'u').revision
        writes = [
            {'create': {'collection': self.coll, 'id': 'b1',
                        'document': {'x': 0.1, 'n': 12345678901234567}}},
            {'create': {'collection': 'other', 'document': {'y': 2},
                        'ttl_ms': 3600000}},
            {'update': {'collection': self.coll, 'id': 'u',
                        'document': {'w': 2}, 'merge': True,
                        'expected_revision': rev}},
            {'delete': {'collection': self.coll, 'id': 'gone'}}]
        out, _ = self.ctl('db', 'batch', self.db, json.dumps(writes))
        lines = out.splitlines()
        self.assertEqual(len(lines), 4, out)
        self.assertRegex(lines[0], r'^create items b1: revision \d+$')
        self.assertRegex(lines[1], r'^create other [0-9a-f]{32}: revision')
        self.assertRegex(lines[2], r'^update items u: revision \d+$')
        self.assertRegex(lines[3], r'^delete items gone: revision \d+$')
        # The document exactly as given: 0.1 and the int64.
        out, _ = self.ctl('db', 'get', self.db, self.coll, 'b1')
        self.assertEqual(out, '{"n": 12345678901234567, "x": 0.1}\n')
        self.assertEqual(self.record('u')['document'], {'v': 1, 'w': 2})
        self.ctl('db', 'get', self.db, self.coll, 'gone', code=1)

        # All or none: the stale revision of the second write fails it,
        # and the first is not applied either.
        writes = [{'create': {'collection': self.coll, 'id': 'never',
                              'document': {}}},
                  {'delete': {'collection': self.coll, 'id': 'u',
                              'expected_revision': rev}}]
        _, err = self.ctl('db', 'batch', self.db, '-',
                          stdin=json.dumps(writes).encode(), code=1)
        self.assertIn('BatchWrite: FAILED_PRECONDITION', err)
        self.assertIn('writes[1]', err)
        self.ctl('db', 'get', self.db, self.coll, 'never', code=1)
        out, _ = self.ctl('-o', 'json', 'db', 'batch', self.db, json.dumps(
            [{'delete': {'collection': self.coll, 'id': 'u'}}]))
        r = json.loads(out)
        self.assertEqual([(x['op'], x['id']) for x in r['results']],
                         [('delete', 'u')])
        self.assertEqual(r['revision'], r['results'][0]['revision'])

    # ---- find, count

    def fill(self, n):
        """n documents i-00000.. with i, group i % 3, name."""
        P = dh.pb()
        docs = [{'i': i, 'g': i % 3, 'name': 'n%05d' % i} for i in range(n)]
        for lo in range(0, n, 1000):
            self.c.call('BatchWrite', database=self.db, writes=[
                P.Write(create=P.CreateRequest(
                    collection=self.coll, id='i-%05d' % d['i'],
                    json=json.dumps(d))) for d in docs[lo:lo + 1000]])
        return docs

    def find(self, *args):
        out, _ = self.ctl('db', 'find', self.db, self.coll, *args)
        return [json.loads(ln) for ln in out.splitlines()]

    def test_find_across_pages(self):
        docs = self.fill(2300)
        # Every page of 1000 (three calls), one document a line.
        self.assertEqual(self.find(), docs)
        # Small pages, a filter, an order: the same as Python's answer.
        q = {'filter': {'all': [
                {'path': 'g', 'op': 'eq', 'value': 1},
                {'not': {'path': 'name', 'op': 'prefix', 'value': 'n001'}}]},
             'order': ['-i']}
        want = sorted([d for d in docs if d['g'] == 1 and
                       not d['name'].startswith('n001')],
                      key=lambda d: -d['i'])
        self.assertEqual(self.find(json.dumps(q), '--page-size', '7'), want)
        # The query's limit, and --limit stopping inside a page.
        q['limit'] = 10
        self.assertEqual(self.find(json.dumps(q), '--page-size', '4'),
                         want[:10])
        self.assertEqual(self.find(json.dumps(q), '--limit', '1001'),
                         want[:1001])
        # fields, order as objects, any/in/exists/ops in any case.
        q = {'filter': {'any': [{'path': 'i', 'op': 'IN',
                                 'value': [3, 5, 7]},
                                {'path': 'i', 'op': 'operator_ge',
                                 'value': 2298}]},
             'order': [{'path': 'g', 'descending': True}, 'i'],
             'fields': ['i']}
        self.assertEqual(self.find(json.dumps(q)),
                         [{'i': 5}, {'i': 7}, {'i': 2299}, {'i': 3},
                          {'i': 2298}])
        # -o json: records, one a line.
        out, _ = self.ctl('-o', 'json', 'db', 'find', self.db, self.coll,
                          json.dumps({'filter': {'path': 'i', 'op': 'lt',
                                                 'value': 2}}))
        rs = [json.loads(ln) for ln in out.splitlines()]
        self.assertEqual([(r['id'], r['document']['i']) for r in rs],
                         [('i-00000', 0), ('i-00001', 1)])
        self.assertTrue(all(r['revision'] > 0 for r in rs))
        # Nothing matches: nothing printed.
        self.assertEqual(self.find(json.dumps({'filter': {
            'path': 'nope', 'op': 'exists', 'value': True}})), [])

        out, _ = self.ctl('db', 'count', self.db, self.coll)
        self.assertEqual(out, '2300\n')
        out, _ = self.ctl('-o', 'json', 'db', 'count', self.db, self.coll,
                          '{"filter": {"path": "g", "op": "eq", '
                          '"value": 0}}')
        self.assertEqual(json.loads(out), {'count': 767,
                                           'estimated': False})
        # The planner's estimate: a number, said to be one.
        out, _ = self.ctl('-o', 'json', 'db', 'count', self.db, self.coll,
                          '--mode', 'planned')
        self.assertTrue(json.loads(out)['estimated'])
        self.assertIsInstance(json.loads(out)['count'], int)
        out, _ = self.ctl('db', 'count', self.db, self.coll, '--mode',
                          'PLANNED')
        self.assertRegex(out, r'^\d+ \(estimated\)$')

    def real_docs(self):
        for id, v in (('a', 0.1), ('b', 2.5e-7), ('c', 1.0), ('d', 3),
                      ('e', 0.30000000000000004), ('f', -1.5e-30)):
            self.c.create(self.db, self.coll, {'v': v, 'id': id}, id=id)

    def find_ids(self, value):
        return [d['id'] for d in self.find(
            '{"filter": {"path": "v", "op": "eq", "value": %s}}' % value)]

    def test_find_numbers(self):
        self.real_docs()
        self.assertEqual(self.find_ids('1.0'), ['c'])
        self.assertEqual(self.find_ids('1'), ['c'])
        self.assertEqual(self.find_ids('3'), ['d'])
        self.assertEqual(self.find_ids('3.0'), ['d'])

    def test_find_real_numbers(self):
        """platformctl sends 0.1 as "0.1" (ctl_json_text), not as
        jansson's 17 digits (0.10000000000000001), which JSONB takes for
        another number, and db-srv binds a condition's value as the
        caller wrote it (services/db/filter.c)."""
        self.real_docs()
        for v, want in (('0.1', ['a']), ('2.5e-7', ['b']),
                        ('0.30000000000000004', ['e']),
                        ('-1.5e-30', ['f']), ('0.10', ['a'])):
            self.assertEqual(self.find_ids(v), want, v)

    def test_find_metacharacters(self):
        nasty = "x'); DROP TABLE db_documents; --\"\\%_*"
        self.c.create(self.db, self.coll, {'s': nasty}, id='m')
        self.c.create(self.db, self.coll, {'s': 'plain'}, id='p')
        q = {'filter': {'path': 's', 'op': 'eq', 'value': nasty}}
        self.assertEqual(self.find(json.dumps(q)), [{'s': nasty}])
        q = {'filter': {'path': 's', 'op': 'prefix', 'value': "x')"}}
        self.assertEqual(self.find(json.dumps(q)), [{'s': nasty}])
        self.assertEqual(self.c.call('Count', database=self.db,
                                     collection=self.coll).count, 2)

    def test_query_from_stdin(self):
        self.fill(5)
        q = json.dumps({'filter': {'path': 'i', 'op': 'ge', 'value': 3}})
        out, _ = self.ctl('db', 'find', self.db, self.coll, '-',
                          stdin=q.encode())
        self.assertEqual([json.loads(ln)['i'] for ln in out.splitlines()],
                         [3, 4])
        out, _ = self.ctl('db', 'count', self.db, self.coll, '-',
                          stdin=q.encode())
        self.assertEqual(out, '2\n')

    # ---- indexes

    def indexes(self):
        out, _ = self.ctl('-o', 'json', 'db', 'indexes', self.db, self.coll)
        return {ix['name']: ix for ix in json.loads(out)}

    def test_indexes(self):
        self.fill(20)
        out, _ = self.ctl('db', 'create-index', self.db, self.coll, 'by_g_i',
                          'g', 'i')
        self.assertEqual(out, '%s items by_g_i: building\n' % self.db)
        self.ctl('db', 'create-index', self.db, self.coll, 'all', '--gin')
        harness.wait_for(lambda: all(ix['state'] == 'READY' for ix in
                                     self.indexes().values()) and
                         len(self.indexes()) == 2, what='indexes ready')
        ix = self.indexes()
        self.assertEqual((ix['by_g_i']['kind'], ix['by_g_i']['paths']),
                         ('EXPRESSION', ['g', 'i']))
        self.assertEqual((ix['all']['kind'], ix['all']['paths']),
                         ('GIN', []))
        out, _ = self.ctl('db', 'indexes', self.db, self.coll)
        rows = [ln.split() for ln in out.splitlines()]
        self.assertEqual(rows[0], ['NAME', 'KIND', 'STATE', 'PATHS',
                                   'ERROR'])
        self.assertIn(['by_g_i', 'EXPRESSION', 'READY', '["g","i"]', '-'],
                      rows)
        _, err = self.ctl('db', 'create-index', self.db, self.coll, 'all',
                          '--gin', code=1)
        self.assertIn('ALREADY_EXISTS', err)
        out, _ = self.ctl('db', 'drop-index', self.db, self.coll, 'all')
        self.assertEqual(out, 'dropped %s items all\n' % self.db)
        self.assertEqual(list(self.indexes()), ['by_g_i'])
        _, err = self.ctl('db', 'drop-index', self.db, self.coll, 'all',
                          code=1)
        self.assertIn('NOT_FOUND', err)

    # ---- watch

    def test_watch(self):
        self.c.create(self.db, self.coll, {'v': 0}, id='before')
        w = self.watch()
        w.until(lambda ln: ln == '-- caught up --', 'caught up')
        # Changes made after it started, by platformctl itself.
        self.ctl('db', 'put', self.db, self.coll, 'w-1', '{"v": 1}')
        ln = w.until(lambda ln: ln.startswith('PUT w-1 '), 'the put')
        rev = self.record('w-1')['revision']
        self.assertEqual(ln, 'PUT w-1 revision=%d {"v": 1}' % rev)
        self.ctl('db', 'delete', self.db, self.coll, 'before')
        w.until(lambda ln: ln.startswith('DELETE before revision='),
                'the delete')
        self.assertFalse([ln for ln in w.seen if 'before' in ln and
                          ln.startswith('PUT')], w.seen)
        code, err = w.interrupt()
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(code, 0, err)

    def test_watch_after_revision_filter_json(self):
        a = self.c.create(self.db, self.coll, {'k': 'a'}, id='a')
        self.c.create(self.db, self.coll, {'k': 'b'}, id='b')
        w = Watch(['-o', 'json', 'db', '--db', self.srv.address, 'watch',
                   self.db, self.coll, '--after-revision', str(a.revision - 1),
                   '--filter', '{"path": "k", "op": "ne", "value": "b"}'])
        self.addCleanup(w.kill)
        first = json.loads(w.until(lambda ln: True, 'the stored change'))
        self.assertEqual((first['type'], first['id'], first['revision'],
                          first['document']), ('PUT', 'a', a.revision,
                                               {'k': 'a'}))
        w.until(lambda ln: json.loads(ln).get('caught_up'), 'caught up')
        self.c.create(self.db, self.coll, {'k': 'b'}, id='b2')
        self.c.create(self.db, self.coll, {'k': 'c'}, id='c')
        ev = json.loads(w.until(lambda ln: '"c"' in ln, 'the live put'))
        self.assertEqual(ev['document'], {'k': 'c'})
        self.assertFalse([ln for ln in w.seen if '"b' in ln], w.seen)
        code, err = w.interrupt()
        self.assertEqual(code, 0, err)

    # ---- bad input

    def test_usage_errors_exit_2(self):
        q = self.db, self.coll
        for args, says in (
                (['db'], 'missing command'),
                (['db', 'frob'], "unknown command 'frob'"),
                (['db', 'get', 'd', 'c'], 'missing DATABASE COLLECTION ID'),
                (['db', 'put', 'd', 'c'], 'missing'),
                (['db', 'get', 'd', 'c', 'i', 'x'], 'unexpected argument'),
                (['db', 'put', *q, 'i', '{nope'], 'the document is not JSON'),
                (['db', 'put', *q, 'i', '{}', '--ttl', '400d'], '--ttl'),
                (['db', 'put', *q, 'i', '{}', '--expect-revision', '0'],
                 '--expect-revision'),
                (['db', 'put', *q, '{}', '--merge'], 'needs the document'),
                (['db', 'put', *q, 'i', '{}', '--merge', '--if-absent'],
                 'does not go with --merge'),
                (['db', 'find', *q, '[1]'], 'the query must be an object'),
                (['db', 'find', *q, '{"filter": {"path": "a", "op": "like"}}'],
                 'filter.op must be one of'),
                (['db', 'find', *q, '{"filter": {"all": [{"x": 1}]}}'],
                 'filter.all[0]'),
                (['db', 'find', *q, '{"filter": {"all": [], "any": []}}'],
                 'one of all, any, not'),
                (['db', 'find', *q, '{"filters": {}}'],
                 'unknown key "filters"'),
                (['db', 'find', *q, '{"limit": 0}'], '"limit"'),
                (['db', 'find', *q, '{"order": [3]}'], 'order[0]'),
                (['db', 'find', *q, '--page-size', '1001'], '--page-size'),
                (['db', 'count', *q, '{"order": []}'], 'takes "filter" only'),
                (['db', 'count', *q, '--mode', 'guess'], '--mode must be'),
                (['db', 'batch', 'd', '[]'], 'array of 1..1000'),
                (['db', 'batch', 'd', '[{"upsert": {}}]'], 'writes[0] must be'),
                (['db', 'batch', 'd', '[{"create": {"collection": "c"}}]'],
                 'writes[0].create.document is missing'),
                (['db', 'batch', 'd', '[{"delete": {"collection": "c", '
                  '"id": 5}}]'], 'writes[0].delete.id must be a string'),
                (['db', 'batch', 'd', '[{"delete": {"collection": "c", '
                  '"id": "i", "merge": true}}]'], 'unknown key "merge"'),
                (['db', 'create-index', *q, 'ix'], 'missing PATH'),
                (['db', 'create-index', *q, 'ix', 'a', '--gin'], 'no PATH'),
                (['db', 'find', *q, '--gin'], '--gin applies to'),
                (['db', 'watch', *q, '--filter', '{"path": 1, "op": "eq"}'],
                 '--filter.path'),
                (['db', 'watch', *q, '--after-revision', 'x'],
                 '--after-revision'),
                (['db', 'get', *q, 'i', '--merge'],
                 '--merge applies to put only'),
                (['db', 'get', *q, 'i', '--db', 'nocolon'], '--db'),
                (['db', 'get', *q, 'i', '--nope'], "unknown flag '--nope'")):
            rc, out, err = run_ctl(args)
            self.assertEqual(rc, 2, (args, out, err))
            self.assertIn(says, err, args)
            self.assertIn("Try 'platformctl db help'", err, args)

    def test_bad_input_from_the_server_exit_1(self):
        _, err = self.ctl('db', 'get', 'bad name!', 'c', 'i', code=1)
        self.assertIn('INVALID_ARGUMENT', err)
        _, err = self.ctl('db', 'put', self.db, self.coll, 'i', '[1, 2]',
                          code=1)
        self.assertIn('INVALID_ARGUMENT', err)
        self.assertIn('json', err)
        _, err = self.ctl('db', 'find', self.db, self.coll, json.dumps(
            {'filter': {'path': 'a..b', 'op': 'eq', 'value': 1}}), code=1)
        self.assertIn('Search: INVALID_ARGUMENT', err)
        _, err = self.ctl('db', 'get', self.db, 'nocoll', 'i', code=1)
        self.assertIn('NOT_FOUND', err)
        # Nothing was written by any of it.
        self.assertEqual(self.c.call('Count', database=self.db,
                                     collection=self.coll).count, 0)
        rc, _, err = run_ctl(['db', 'get', 'd', 'c', 'i', '--db',
                              '127.0.0.1:%d' % harness.free_port(),
                              '--timeout', '2000'])
        self.assertEqual(rc, 1, err)
        self.assertIn('UNAVAILABLE', err)

    def test_help(self):
        for args in (['db', 'help'], ['db', '--help'], ['db', 'find', '-h']):
            rc, out, err = run_ctl(args)
            self.assertEqual(rc, 0, err)
            text = out.decode()
            for word in ('databases', 'collections DATABASE',
                         'get DATABASE COLLECTION ID',
                         'put DATABASE COLLECTION [ID] JSON|-',
                         'find DATABASE COLLECTION [QUERY]', 'count',
                         'watch DATABASE COLLECTION', '--expect-revision',
                         '--merge', '--after-revision', '--filter', '--db'):
                self.assertIn(word, text, args)
        rc, out, _ = run_ctl(['--help'])
        self.assertIn(b'db COMMAND', out)

    def test_address_from_environment(self):
        self.c.create(self.db, self.coll, {'e': 1}, id='env')
        rc, out, err = run_ctl(['db', 'get', self.db, self.coll, 'env'],
                               env={'PLATFORM_DB': self.srv.address})
        self.assertEqual((rc, json.loads(out)), (0, {'e': 1}), err)


class CtlDBDiscoveryTest(unittest.TestCase):
    """Without --db: the service "db" found through discovery-srv, for
    unary calls and for the stream."""

    @classmethod
    def setUpClass(cls):
        cls.disco = harness.Server(discovery='self', name='ctl-db-disco')
        cls.addClassCleanup(cls.disco.stop_clean)
        cls.srv = dh.db_server(name='ctl-db-reg', discovery=cls.disco.address)
        cls.addClassCleanup(cls.srv.stop_clean)
        d = cls.disco.discovery_client()
        harness.wait_for(lambda: d.get('db').services, what='db registered')

    def test_by_discovery(self):
        db = dh.uniq_name('cdd')
        g = ['--discovery', self.disco.address]
        for args in (['db', 'create', db], ['db', 'create', db, 'c'],
                     ['db', 'put', db, 'c', 'k', '{"v": 1}']):
            rc, out, err = run_ctl(g + args)
            self.assertEqual(rc, 0, err)
        rev = json.loads(run_ctl(g + ['-o', 'json', 'db', 'get', db, 'c',
                                      'k'])[1])['revision']
        w = Watch(g + ['db', 'watch', db, 'c', '--after-revision',
                       str(rev - 1)])
        self.addCleanup(w.kill)
        w.until(lambda ln: ln.startswith('PUT k '), 'the stored put')
        w.until(lambda ln: ln == '-- caught up --', 'caught up')
        rc, out, err = run_ctl(g + ['db', 'put', db, 'c', 'k', '{"v": 2}'])
        self.assertEqual(rc, 0, err)
        w.until(lambda ln: ln.startswith('PUT k ') and ln.endswith(
            '{"v": 2}'), 'the update')
        code, err = w.interrupt()
        self.assertEqual(code, 0, err)
        rc, out, err = run_ctl(g + ['db', 'get', db, 'c', 'k'])
        self.assertEqual((rc, out), (0, b'{"v": 2}\n'), err)


if __name__ == '__main__':
    if not dh.DATABASE:
        print('test_ctl_db: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it from scripts/pg)')
        sys.exit(0)
    harness.run_tests()
