#!/usr/bin/python3
"""discovery-srv registry behaviour over real gRPC.

Register / GetService / Deregister, heartbeats, ListServices paging, Watch
ordering, TTL expiry, and the validation of every field of a Register.
Run: /usr/bin/python3 tests/integration/test_discovery.py (meson sets
PLATFORM_BUILD_DIR and PLATFORM_SOURCE_DIR).
"""

import itertools
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
from harness import Server, rpc_error, wait_for  # noqa: E402

P = harness.protos().discovery
C = grpc.StatusCode
CREATED = P.EVENT_TYPE_CREATED
UPDATED = P.EVENT_TYPE_UPDATED
DELETED = P.EVENT_TYPE_DELETED
SYNCED = P.EVENT_TYPE_SYNCED
EVENT_NAMES = {v: k for k, v in P.EventType.items()}

uniq = harness.uniq     # a service name no other test uses


def now_ms():
    return int(time.time() * 1000)


def node(nid, address, metadata=None):
    n = P.Node(id=nid, address=address)
    if metadata:
        n.metadata.update(metadata)
    return n


def endpoint(name, metadata=None):
    e = P.Endpoint(name=name)
    if metadata:
        e.metadata.update(metadata)
    return e


def service(name, version='v1', nodes=(), metadata=None, endpoints=()):
    s = P.Service(name=name, version=version)
    if metadata:
        s.metadata.update(metadata)
    s.endpoints.extend(endpoints)
    s.nodes.extend(nodes)
    return s


def canon_service(s, with_expiry=True):
    return {
        'name': s.name,
        'version': s.version,
        'metadata': dict(s.metadata),
        'endpoints': [(e.name, dict(e.metadata)) for e in s.endpoints],
        'nodes': sorted((n.id, n.address, tuple(sorted(n.metadata.items())),
                         n.expires_unix_ms if with_expiry else 0)
                        for n in s.nodes),
    }


def canon(resp, with_expiry=True):
    """GetServiceResponse as plain data, independent of order."""
    return sorted((canon_service(s, with_expiry) for s in resp.services),
                  key=lambda d: d['version'])


def ev_name(e):
    return EVENT_NAMES.get(e.type, str(e.type))


def ev_node_ids(e):
    return [n.id for n in e.service.nodes]


class DiscoveryCase(harness.ServiceCase):
    """One discovery-srv per class; stopped with SIGTERM at the end, which
    must give exit code 0 and no sanitizer report."""

    self_register = True
    extra_args = ()

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(discovery='self' if cls.self_register else None,
                         extra_args=cls.extra_args, name=cls.__name__)
        cls.addClassCleanup(cls.srv.kill)
        cls.c = cls.srv.discovery_client()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop_clean()

    def setUp(self):
        self._watches = []

    def tearDown(self):
        for w in self._watches:
            w.close()

    def watch(self, name=''):
        w = self.c.watch(name)
        self._watches.append(w)
        return w

    def next_event(self, w, types=None):
        e = w.next()
        if types is not None:
            self.assertIn(e.type, types, 'unexpected %s event: %s'
                          % (ev_name(e), e))
        return e

    def drain_initial(self, w):
        """Reads CREATED events up to SYNCED; returns the CREATED ones."""
        created = []
        while True:
            e = self.next_event(w, (CREATED, SYNCED))
            if e.type == SYNCED:
                return created
            created.append(e)


class RegistryTest(DiscoveryCase):
    """Register, GetService, Deregister, heartbeats, node ids."""

    def test_register_then_get_round_trips(self):
        name = uniq('rt')
        s = service(name, '1.2.3',
                    metadata={'team': 'core', 'zone': 'eu-1'},
                    endpoints=[endpoint('Svc.Get', {'idempotent': 'true'}),
                               endpoint('Svc.Put')],
                    nodes=[node(name + '-n1', '10.0.0.1:8080', {'k': 'v'}),
                           node(name + '-n2', '[::1]:9090')])
        before = now_ms()
        r = self.c.register(s)
        after = now_ms()
        self.assertEqual(r.ttl_seconds, 30, 'ttl 0 means the default 30')
        self.assertGreater(r.revision, 0)

        got = self.c.get(name)
        self.assertEqual(len(got.services), 1)
        self.assertEqual(canon(got, with_expiry=False),
                         [canon_service(s, with_expiry=False)])
        for n in got.services[0].nodes:
            self.assertGreaterEqual(n.expires_unix_ms, before + 30000 - 2000)
            self.assertLessEqual(n.expires_unix_ms, after + 30000 + 2000)

    def test_revision_grows_with_changes(self):
        a, b = uniq('rev'), uniq('rev')
        r1 = self.c.register(service(a, nodes=[node(a + '-n', 'h:1')]))
        r2 = self.c.register(service(b, nodes=[node(b + '-n', 'h:2')]))
        self.assertGreater(r2.revision, r1.revision)

    def test_ttl_in_force(self):
        name = uniq('ttl')
        n = [node(name + '-n', 'h:1')]
        for asked, in_force in ((0, 30), (1, 1), (2, 2), (3600, 3600),
                                (30, 30)):
            with self.subTest(ttl=asked):
                r = self.c.register(service(name, nodes=n), ttl_seconds=asked)
                self.assertEqual(r.ttl_seconds, in_force)
        for bad in (3601, 86400, 2 ** 32 - 1):
            with self.subTest(ttl=bad):
                e = rpc_error(self.c.register, service(name, nodes=n),
                              ttl_seconds=bad)
                self.assertCode(e, C.INVALID_ARGUMENT, 'ttl_seconds')

    def test_versions_are_separate(self):
        name = uniq('ver')
        self.c.register(service(name, 'v1', nodes=[node(name + '-a', 'h:1')]))
        self.c.register(service(name, 'v2', nodes=[node(name + '-b', 'h:2'),
                                                   node(name + '-c', 'h:3')]))
        got = {s.version: sorted(n.id for n in s.nodes)
               for s in self.c.get(name).services}
        self.assertEqual(got, {'v1': [name + '-a'],
                               'v2': [name + '-b', name + '-c']})

    def test_register_adds_nodes(self):
        """Two instances register the same version, each its own node."""
        name = uniq('add')
        self.c.register(service(name, nodes=[node(name + '-a', 'h:1')]))
        self.c.register(service(name, nodes=[node(name + '-b', 'h:2')]))
        got = self.c.get(name)
        self.assertEqual(len(got.services), 1)
        self.assertEqual(sorted(n.id for n in got.services[0].nodes),
                         [name + '-a', name + '-b'])

    def test_heartbeat_extends_expiry(self):
        name = uniq('hb')
        s = service(name, nodes=[node(name + '-n', 'h:1')])
        self.c.register(s, ttl_seconds=60)
        e1 = self.c.get(name).services[0].nodes[0].expires_unix_ms
        time.sleep(0.05)        # let the millisecond clock move on
        self.c.register(s, ttl_seconds=60)
        e2 = self.c.get(name).services[0].nodes[0].expires_unix_ms
        self.assertGreater(e2, e1)

    def test_deregister(self):
        name = uniq('dereg')
        ids = [name + '-%d' % i for i in range(3)]
        self.c.register(service(name, 'v1', nodes=[
            node(i, 'h:%d' % (k + 1)) for k, i in enumerate(ids)]))
        self.c.register(service(name, 'v2', nodes=[node(name + '-x', 'h:9')]))

        r = self.c.deregister(name, 'v1', ids[0])
        self.assertEqual(r.removed, 1)
        got = {s.version: sorted(n.id for n in s.nodes)
               for s in self.c.get(name).services}
        self.assertEqual(got, {'v1': ids[1:], 'v2': [name + '-x']})

        for args in ((name, 'v1', ids[0]),        # already gone
                     (name, 'v1', 'no-such-node'),
                     (name, 'v3', ''),
                     (name, 'v2', ids[1]),        # wrong version
                     (uniq('nosuch'), 'v1', ''),
                     (uniq('nosuch'), 'v1', 'x')):
            with self.subTest(args=args):
                self.assertCode(rpc_error(self.c.deregister, *args),
                                C.NOT_FOUND)

        r = self.c.deregister(name, 'v1', '')
        self.assertEqual(r.removed, 2)
        got = self.c.get(name)
        self.assertEqual([s.version for s in got.services], ['v2'])

        r = self.c.deregister(name, 'v2', '')
        self.assertEqual(r.removed, 1)
        self.assertCode(rpc_error(self.c.get, name), C.NOT_FOUND)

        # A removed node id is free to use under another service.
        other = uniq('dereg')
        self.c.register(service(other, nodes=[node(ids[0], 'h:1')]))
        self.assertEqual(self.c.get(other).services[0].nodes[0].id, ids[0])

    def test_node_id_unique_across_services(self):
        a, b = uniq('owner'), uniq('thief')
        nid = a + '-node'
        self.c.register(service(a, 'v1', metadata={'m': '1'},
                                nodes=[node(nid, 'h:1')]))
        before = canon(self.c.get(a))
        cases = {
            'other name': service(b, 'v1', nodes=[node(nid, 'h:2')]),
            'other version': service(a, 'v2', nodes=[node(nid, 'h:2')]),
            'other name, second node': service(
                b, 'v1', nodes=[node(b + '-ok', 'h:3'), node(nid, 'h:2')]),
        }
        for label, s in cases.items():
            with self.subTest(case=label):
                e = rpc_error(self.c.register, s)
                self.assertCode(e, C.INVALID_ARGUMENT)
                self.assertRegex(e.details(), r'service\.nodes\[\d+\]\.id')
                self.assertEqual(canon(self.c.get(a)), before)
                self.assertCode(rpc_error(self.c.get, b), C.NOT_FOUND)
        e = rpc_error(self.c.deregister, a, 'v2', '')
        self.assertCode(e, C.NOT_FOUND)

    def test_same_node_id_twice_in_one_request(self):
        name = uniq('dup')
        s = service(name, nodes=[node(name + '-n', 'h:1'),
                                 node(name + '-n', 'h:2')])
        e = rpc_error(self.c.register, s)
        self.assertCode(e, C.INVALID_ARGUMENT)
        self.assertRegex(e.details(), r'service\.nodes\[\d+\]\.id')
        self.assertCode(rpc_error(self.c.get, name), C.NOT_FOUND)

    def test_get_service_errors(self):
        self.assertCode(rpc_error(self.c.get, uniq('unknown')), C.NOT_FOUND)
        for bad in ('', 'Upper', 'has space', 'a/b', '-lead', 'x' * 129,
                    'caf\u00e9'):
            with self.subTest(name=bad):
                self.assertCode(rpc_error(self.c.get, bad),
                                C.INVALID_ARGUMENT, 'name')

    def test_self_registration(self):
        """Started with --discovery pointing at itself, the server lists
        itself as service "discovery" at its listen address."""
        def find():
            try:
                got = self.c.get('discovery')
            except grpc.RpcError:
                return None
            for s in got.services:
                for n in s.nodes:
                    if n.address == self.srv.address:
                        return s, n
            return None
        s, n = wait_for(find, what='self-registration of discovery-srv')
        self.assertEqual(s.version, harness.project_version())
        self.assertTrue(n.id)
        self.assertGreater(n.expires_unix_ms, now_ms())

    def test_metacharacters_round_trip(self):
        name = uniq('meta')
        values = {
            'sql': "'; DROP TABLE services; --",
            'sql2': "\" OR 1=1; /* */ SELECT * FROM pg_user",
            'shell': '$(rm -rf /) `id` ; | & > /dev/null < x',
            'format': '%s%n%x%p%%',
            'quotes': 'a"b\'c\\d',
            'json': '{"a": [1, null], "b": "\\u0000"}',
            'ws': 'line1\nline2\r\n\ttab ',
            'unicode': '\u65e5\u672c\u8a9e \U0001F680 \u00e9\u00e8',
            'empty': '',
            'html': '<script>alert(1)</script>&amp;',
        }
        s = service(name, 'v1', metadata=values,
                    endpoints=[endpoint('E', values)],
                    nodes=[node(name + '-n', 'h:1', values)])
        self.c.register(s)
        got = self.c.get(name).services[0]
        self.assertEqual(dict(got.metadata), values)
        self.assertEqual(dict(got.endpoints[0].metadata), values)
        self.assertEqual(dict(got.nodes[0].metadata), values)


class ListTest(DiscoveryCase):
    """ListServices paging. The server is not given --discovery here (it
    may still list itself); every check filters by its own name prefix."""

    self_register = False

    def list_all(self, page_size):
        names, pages, token = [], [], ''
        for _ in range(10000):
            r = self.c.list(page_size=page_size, page_token=token)
            pages.append(len(r.services))
            names.extend(s.name for s in r.services)
            token = r.next_page_token
            if not token:
                return names, pages
        self.fail('ListServices never returned an empty next_page_token')

    def register_many(self, names, nodes_per=1):
        futs = []
        for i, name in enumerate(names):
            s = service(name, nodes=[node('%s-%d' % (name, k), 'h:%d' % (k + 1))
                                     for k in range(nodes_per)])
            futs.append(self.c._m['Register'].future(
                P.RegisterRequest(service=s, ttl_seconds=600),
                timeout=harness.RPC_TIMEOUT))
            if len(futs) >= 64:
                for f in futs:
                    f.result()
                futs = []
        for f in futs:
            f.result()

    def test_paging_returns_every_name_once(self):
        prefix = uniq('page')
        names = ['%s-%02d' % (prefix, i) for i in range(25)]
        shuffled = names[:]
        random.Random(7).shuffle(shuffled)
        self.register_many(shuffled)

        got, pages = self.list_all(7)
        self.assertEqual(got, sorted(got), 'names not in ascending order')
        self.assertEqual(len(got), len(set(got)), 'a name came twice')
        mine = [n for n in got if n.startswith(prefix + '-')]
        self.assertEqual(mine, names)
        self.assertTrue(all(p == 7 for p in pages[:-1]),
                        'a page before the last is not full: %r' % pages)
        self.assertLessEqual(pages[-1], 7)

    def test_summary(self):
        name = uniq('sum')
        self.c.register(service(name, 'v1', nodes=[node(name + '-a', 'h:1'),
                                                   node(name + '-b', 'h:2')]))
        self.c.register(service(name, 'v2', nodes=[node(name + '-c', 'h:3')]))
        token = ''
        while True:
            r = self.c.list(page_size=1000, page_token=token)
            for s in r.services:
                if s.name == name:
                    self.assertEqual(sorted(s.versions), ['v1', 'v2'])
                    self.assertEqual(s.node_count, 3)
                    return
            token = r.next_page_token
            if not token:
                self.fail('%s not listed' % name)

    def test_page_size_default_and_clamp(self):
        prefix = uniq('bulk')
        self.register_many(['%s-%04d' % (prefix, i) for i in range(1001)])

        r = self.c.list(page_size=0)
        self.assertEqual(len(r.services), 100, 'page_size 0 means 100')
        self.assertTrue(r.next_page_token)

        r = self.c.list(page_size=5000)
        self.assertEqual(len(r.services), 1000, 'page_size clamps to 1000')
        self.assertTrue(r.next_page_token)

        r = self.c.list(page_size=1000)
        self.assertEqual(len(r.services), 1000)

        got, pages = self.list_all(5000)
        self.assertEqual(got, sorted(set(got)))
        self.assertEqual(
            len([n for n in got if n.startswith(prefix + '-')]), 1001)
        self.assertTrue(all(p == 1000 for p in pages[:-1]), pages)

    def test_bad_arguments(self):
        for ps in (-1, -1000, -2 ** 31):
            with self.subTest(page_size=ps):
                self.assertCode(rpc_error(self.c.list, page_size=ps),
                                C.INVALID_ARGUMENT, 'page_size')
        for tok in ('!!!not a token!!!', '\u00e9\u00e8\u00ea', '%%%%'):
            with self.subTest(page_token=tok):
                self.assertCode(rpc_error(self.c.list, page_size=5,
                                          page_token=tok),
                                C.INVALID_ARGUMENT, 'page_token')


class WatchTest(DiscoveryCase):
    """Watch: initial CREATED events, SYNCED, then live events in order."""

    def test_initial_state_then_live_events(self):
        name = uniq('watch')
        ids = [name + '-n%d' % i for i in range(3)]
        base_nodes = [node(i, 'h:%d' % (k + 1)) for k, i in enumerate(ids)]
        self.c.register(service(name, 'v1', metadata={'s': '1'},
                                nodes=base_nodes), ttl_seconds=600)
        other = uniq('watch-other')
        self.c.register(service(other, nodes=[node(other + '-n', 'h:1')]))

        w = self.watch(name)
        created = self.drain_initial(w)
        self.assertEqual(sorted(i for e in created for i in ev_node_ids(e)),
                         sorted(ids))
        for e in created:
            self.assertEqual(e.service.name, name)
            self.assertEqual(e.service.version, 'v1')
            self.assertEqual(len(e.service.nodes), 1,
                             'a CREATED event holds just its node')
            self.assertEqual(dict(e.service.metadata), {'s': '1'})

        revisions = []

        def expect(types, node_id=None):
            e = self.next_event(w, types)
            self.assertEqual(e.service.name, name)
            if node_id is not None:
                self.assertIn(node_id, ev_node_ids(e))
            revisions.append(e.revision)
            return e

        # A new node: CREATED.
        n3 = name + '-n3'
        self.c.register(service(name, 'v1', metadata={'s': '1'},
                                nodes=[node(n3, 'h:4')]), ttl_seconds=600)
        e = expect((CREATED,), n3)
        self.assertEqual(e.service.nodes[0].address, 'h:4')

        # A heartbeat (the same Register again) is no event; the next event
        # must be for the address change that follows it.
        self.c.register(service(name, 'v1', metadata={'s': '1'},
                                nodes=base_nodes), ttl_seconds=600)
        self.c.register(service(name, 'v1', metadata={'s': '1'},
                                nodes=[node(ids[0], 'h:100')]),
                        ttl_seconds=600)
        e = expect((UPDATED,), ids[0])
        self.assertEqual([n.address for n in e.service.nodes
                          if n.id == ids[0]], ['h:100'])

        # Node metadata changes: UPDATED.
        self.c.register(service(name, 'v1', metadata={'s': '1'},
                                nodes=[node(ids[1], 'h:2', {'x': 'y'})]),
                        ttl_seconds=600)
        e = expect((UPDATED,), ids[1])
        self.assertEqual([dict(n.metadata) for n in e.service.nodes
                          if n.id == ids[1]], [{'x': 'y'}])

        # Service metadata changes: UPDATED (one or more events), then the
        # endpoints change: UPDATED again; a DELETED closes the sequence.
        self.c.register(service(name, 'v1', metadata={'s': '2'},
                                nodes=[node(ids[2], 'h:3')]), ttl_seconds=600)
        self.c.register(service(name, 'v1', metadata={'s': '2'},
                                endpoints=[endpoint('Svc.New')],
                                nodes=[node(ids[2], 'h:3')]), ttl_seconds=600)
        self.c.deregister(name, 'v1', n3)
        seen_meta = seen_ep = False
        while True:
            e = expect((UPDATED, DELETED))
            if e.type == DELETED:
                break
            if dict(e.service.metadata) == {'s': '2'}:
                seen_meta = True
            if [ep.name for ep in e.service.endpoints] == ['Svc.New']:
                seen_ep = True
        self.assertTrue(seen_meta, 'no UPDATED for the service metadata')
        self.assertTrue(seen_ep, 'no UPDATED for the endpoints')
        self.assertEqual(ev_node_ids(e), [n3])
        self.assertEqual(e.reason, 'deregistered')

        # Every node of the version at once: one DELETED per node.
        self.c.deregister(name, 'v1', '')
        gone = set()
        for _ in ids:
            e = expect((DELETED,))
            self.assertEqual(e.reason, 'deregistered')
            gone.update(ev_node_ids(e))
        self.assertEqual(gone, set(ids))

        self.assertEqual(revisions, sorted(set(revisions)),
                         'revisions not strictly increasing: %r' % revisions)

    def test_filter_by_service(self):
        a, b = uniq('wa'), uniq('wb')
        wa = self.watch(a)
        wall = self.watch('')
        self.assertEqual(self.drain_initial(wa), [])
        self.drain_initial(wall)

        self.c.register(service(b, nodes=[node(b + '-n', 'h:1')]))
        self.c.register(service(a, nodes=[node(a + '-n', 'h:1')]))

        e = self.next_event(wa, (CREATED,))
        self.assertEqual((e.service.name, ev_node_ids(e)), (a, [a + '-n']))

        seq = []
        while len(seq) < 2:
            e = self.next_event(wall)
            if e.service.name in (a, b):
                self.assertEqual(e.type, CREATED)
                seq.append(e.service.name)
        self.assertEqual(seq, [b, a])

        self.c.deregister(b, 'v1', '')
        self.c.deregister(a, 'v1', '')
        e = self.next_event(wa, (DELETED,))
        self.assertEqual(e.service.name, a)

    def test_watch_before_service_exists(self):
        name = uniq('later')
        w = self.watch(name)
        self.assertEqual(self.drain_initial(w), [])
        self.c.register(service(name, nodes=[node(name + '-n', 'h:1')]))
        e = self.next_event(w, (CREATED,))
        self.assertEqual(ev_node_ids(e), [name + '-n'])

    def test_bad_name(self):
        for bad in ('Bad', 'has space', '-x', 'x' * 129):
            with self.subTest(name=bad):
                w = self.watch(bad)
                with self.assertRaises(grpc.RpcError) as cm:
                    w.next()
                self.assertCode(cm.exception, C.INVALID_ARGUMENT)

    def test_ttl_expiry(self):
        short, mixed = uniq('expire'), uniq('expire-mixed')
        w = self.watch(short)
        wm = self.watch(mixed)
        self.drain_initial(w)
        self.drain_initial(wm)

        self.c.register(service(short, nodes=[node(short + '-n', 'h:1')]),
                        ttl_seconds=1)
        self.c.register(service(mixed, 'v1',
                                nodes=[node(mixed + '-long', 'h:1')]),
                        ttl_seconds=600)
        self.c.register(service(mixed, 'v2',
                                nodes=[node(mixed + '-short', 'h:2')]),
                        ttl_seconds=1)
        self.next_event(w, (CREATED,))

        def gone():
            try:
                self.c.get(short)
            except grpc.RpcError as e:
                return e.code() == C.NOT_FOUND
            return False
        wait_for(gone, what='a ttl=1 node to expire')

        e = self.next_event(w, (DELETED,))
        self.assertEqual(ev_node_ids(e), [short + '-n'])
        self.assertEqual(e.reason, 'expired')

        wait_for(lambda: [s.version for s in self.c.get(mixed).services]
                 == ['v1'], what='the ttl=1 version to expire')
        kinds = []
        while True:
            e = self.next_event(wm, (CREATED, DELETED))
            kinds.append((ev_name(e), tuple(ev_node_ids(e)), e.reason))
            if e.type == DELETED:
                break
        self.assertEqual(kinds[-1],
                         ('EVENT_TYPE_DELETED', (mixed + '-short',),
                          'expired'))
        self.assertEqual(canon(self.c.get(mixed), False)[0]['nodes'][0][0],
                         mixed + '-long')


class ValidationTest(DiscoveryCase):
    """Every field of a Register is checked; a rejected Register changes
    nothing."""

    self_register = False

    def setUp(self):
        super().setUp()
        self.name = uniq('base')
        self.base = service(self.name, 'v1', metadata={'a': '1'},
                            endpoints=[endpoint('Svc.Get')],
                            nodes=[node(self.name + '-n1', 'h:1000')])
        self.c.register(self.base, ttl_seconds=600)

    def snapshot(self):
        names, token = [], ''
        while True:
            r = self.c.list(page_size=1000, page_token=token)
            # The server's own registration may land at any time.
            names.extend((s.name, tuple(sorted(s.versions)), s.node_count)
                         for s in r.services if s.name != 'discovery')
            token = r.next_page_token
            if not token:
                break
        return names, canon(self.c.get(self.name))

    def candidate(self, fresh_ids=False):
        """The baseline with changes that a partial apply would show: a
        changed address and metadata and an extra node. fresh_ids: node
        ids that are not registered yet (for a request under another name
        or version, so that only the field under test is wrong)."""
        s = P.Service()
        s.CopyFrom(self.base)
        s.metadata['a'] = '2'
        s.nodes[0].address = 'h:2000'
        s.nodes.add(id=self.name + '-n2', address='h:1001')
        if fresh_ids:
            for n in s.nodes:
                n.id = uniq('fresh')
        return s

    def reject(self, req, field):
        before = self.snapshot()
        e = rpc_error(self.c.register_req, req)
        self.assertCode(e, C.INVALID_ARGUMENT, field)
        self.assertEqual(self.snapshot(), before,
                         'a rejected Register changed the registry')

    def reject_service(self, s, field, ttl=600):
        self.reject(P.RegisterRequest(service=s, ttl_seconds=ttl), field)

    def test_service_missing(self):
        self.reject(P.RegisterRequest(ttl_seconds=10), 'service')

    def test_ttl(self):
        for ttl in (3601, 2 ** 32 - 1):
            with self.subTest(ttl=ttl):
                self.reject_service(self.candidate(), 'ttl_seconds', ttl)

    def test_name(self):
        for bad in ('', 'A', 'Abc', 'aBc', '-abc', '.abc', '_abc', 'a b',
                    'a/b', 'a:b', 'a+b', 'a@b', 'abc\n', ' abc',
                    'x' * 129, 'caf\u00e9', 'a\x00b'):
            with self.subTest(name=bad):
                s = self.candidate(fresh_ids=True)
                s.name = bad
                self.reject_service(s, 'service.name')

    def test_version(self):
        for bad in ('v' * 65, 'v 1', 'v\t1', 'v\n', 'v\u00e9', 'v\x7f',
                    'v\x01', ' '):
            with self.subTest(version=bad):
                s = self.candidate(fresh_ids=True)
                s.version = bad
                self.reject_service(s, 'service.version')

    def test_metadata(self):
        cases = {
            '65 entries': {'k%02d' % i: 'v' for i in range(65)},
            'empty key': {'': 'v'},
            '129-char key': {'k' * 129: 'v'},
            '1025-char value': {'k': 'v' * 1025},
        }
        for label, md in cases.items():
            with self.subTest(case=label):
                s = self.candidate()
                s.metadata.update(md)
                self.reject_service(s, 'service.metadata')

    def test_endpoints(self):
        s = self.candidate()
        for i in range(257):
            s.endpoints.add(name='E%d' % i)
        with self.subTest(case='257 endpoints'):
            self.reject_service(s, 'service.endpoints')
        for idx, bad in ((0, ''), (1, 'e' * 257)):
            with self.subTest(index=idx, name=bad[:8]):
                s = self.candidate()
                del s.endpoints[:]
                s.endpoints.add(name='ok')
                s.endpoints.add(name='ok2')
                s.endpoints[idx].name = bad
                self.reject_service(s, 'service.endpoints[%d].name' % idx)

    def test_nodes_count(self):
        s = self.candidate()
        del s.nodes[:]
        with self.subTest(case='no nodes'):
            self.reject_service(s, 'service.nodes')
        s = self.candidate()
        for i in range(99):
            s.nodes.add(id='%s-m%d' % (self.name, i), address='h:1')
        self.assertEqual(len(s.nodes), 101)
        with self.subTest(case='101 nodes'):
            self.reject_service(s, 'service.nodes')

    def test_node_id(self):
        for bad in ('', 'x' * 129, 'a b', 'a/b', 'a@b', 'a,b', 'n\u00e9',
                    'a\x00b', '*'):
            with self.subTest(id=bad):
                s = self.candidate()
                s.nodes[1].id = bad
                self.reject_service(s, 'service.nodes[1].id')

    def test_node_address(self):
        for bad in ('', 'host', 'host:', ':80', 'host:0', 'host:65536',
                    'host:-1', 'host:abc', 'host:80:90', '[::1', '[::1]',
                    '::1:80', 'a b:80', 'host:80 ', 'host:+80',
                    'h\u00e9st:80', 'host:99999999999999999999'):
            with self.subTest(address=bad):
                s = self.candidate()
                s.nodes[1].address = bad
                self.reject_service(s, 'service.nodes[1].address')

    def test_bad_node_after_good_ones(self):
        s = self.candidate()
        for i in range(3):
            s.nodes.add(id='%s-g%d' % (self.name, i), address='h:%d' % (i + 1))
        s.nodes[4].address = 'nope'
        self.reject_service(s, 'service.nodes[4].address')

    def test_invalid_utf8(self):
        """Strings with invalid UTF-8 (crafted on the wire) are rejected
        and change nothing."""
        placeholders = {
            'name': 'zzutfname',
            'version': 'zzutfver',
            'metadata key': 'zzutfmkey',
            'metadata value': 'zzutfmval',
            'endpoint name': 'zzutfep',
            'node id': 'zzutfnid',
            'node address': 'zzutfaddr:80',
            'node metadata value': 'zzutfnmd',
        }
        bads = [b'\xff', b'\xc3\x28', b'\xc0\xaf', b'\xed\xa0\x80',
                b'\xe2\x82', b'\xf8\x88\x80\x80\x80']
        for label, ph in placeholders.items():
            s = self.candidate(fresh_ids=label in ('name', 'version'))
            if label == 'name':
                s.name = ph
            elif label == 'version':
                s.version = ph
            elif label == 'metadata key':
                s.metadata[ph] = 'v'
            elif label == 'metadata value':
                s.metadata['k'] = ph
            elif label == 'endpoint name':
                s.endpoints[0].name = ph
            elif label == 'node id':
                s.nodes[1].id = ph
            elif label == 'node address':
                s.nodes[1].address = ph
            elif label == 'node metadata value':
                s.nodes[1].metadata['k'] = ph
            wire = P.RegisterRequest(service=s,
                                     ttl_seconds=600).SerializeToString()
            phb = ph.split(':')[0].encode()
            self.assertEqual(wire.count(phb), 1)
            for bad in bads:
                with self.subTest(field=label, bytes=bad):
                    repl = (b'zz' + bad + b'zzzzzzzzzzzz')[:len(phb)]
                    raw = wire.replace(phb, repl)
                    before = self.snapshot()
                    e = rpc_error(self.c.raw, 'Register', raw)
                    self.assertCode(e, C.INVALID_ARGUMENT)
                    self.assertEqual(self.snapshot(), before)

    def test_valid_boundaries(self):
        """Values at the edges of every limit are accepted and round-trip
        exactly."""
        n = itertools.count()

        def fresh(name=None, **kw):
            name = name or uniq('ok')
            nodes = kw.pop('nodes', None) or [
                node('nd-%s-%d' % (harness.RUN, next(n)), 'h:1')]
            return service(name, nodes=nodes, **kw)

        def nodes_of(prefix, count, address='h:1'):
            return [node('%s-%d' % (prefix, i), address)
                    for i in range(count)]

        uid = harness.uniq('u')
        cases = {
            'name 128': fresh(name='n' * (128 - len(uid)) + uid),
            'name digit first': fresh(name='0' + uid),
            'name punctuation': fresh(name='a' + uid + '.b_c-d'),
            'version empty': fresh(version=''),
            'version 64': fresh(version='~' * 64),
            'version printable': fresh(version='v1.2.3+build!#$%&()*,/;<=>?'),
            'metadata 64': fresh(metadata={'k%02d' % i: 'v'
                                           for i in range(64)}),
            'metadata key 128': fresh(metadata={'k' * 128: 'v'}),
            'metadata value 1024': fresh(metadata={'k': 'v' * 1024}),
            'metadata empty value': fresh(metadata={'k': ''}),
            'metadata unicode': fresh(metadata={'\u00e9t\u00e9':
                                                '\u65e5\U0001F680'}),
            'endpoints 256': fresh(endpoints=[endpoint('E%d' % i)
                                              for i in range(256)]),
            'endpoint name 256': fresh(endpoints=[endpoint('e' * 256)]),
            'nodes 100': fresh(nodes=nodes_of('hundred' + uid, 100)),
            'node id 128': fresh(nodes=[node(('i' * 128)[:128 - len(uid)]
                                             + uid, 'h:1')]),
            'node id charset': fresh(nodes=[node('AZ.az_09:-' + uid,
                                                 'h:1')]),
            'address localhost:1': fresh(nodes=[node('a1' + uid,
                                                     'localhost:1')]),
            'address ipv4:65535': fresh(nodes=[node('a2' + uid,
                                                    '10.1.2.3:65535')]),
            'address [::1]': fresh(nodes=[node('a3' + uid, '[::1]:80')]),
            'address [fe80::1]': fresh(nodes=[node('a4' + uid,
                                                   '[fe80::1]:443')]),
            'address dns': fresh(nodes=[node('a5' + uid,
                                             'my-host.example.com:8080')]),
        }
        # A one-letter name cannot be made unique; use the first free one.
        for ch in 'abcdefghijklmnopqrstuvwxyz0123456789':
            try:
                self.c.get(ch)
            except grpc.RpcError as e:
                if e.code() == C.NOT_FOUND:
                    cases['name 1'] = fresh(name=ch)
                    break
        self.assertIn('name 1', cases)
        for label, s in cases.items():
            with self.subTest(case=label):
                r = self.c.register(s, ttl_seconds=3600)
                self.assertEqual(r.ttl_seconds, 3600)
                got = self.c.get(s.name)
                self.assertEqual(canon(got, with_expiry=False),
                                 [canon_service(s, with_expiry=False)])
                self.assertEqual(self.c.deregister(s.name, s.version,
                                                   '').removed,
                                 len(s.nodes))


class ReplicaTest(harness.ServiceCase):
    """Two discovery-srv replicas (--peers): a registration on one is on
    the other, a watch on either sees it, a server given both
    (--discovery a,b) goes on heartbeating through the one left when the
    other is killed, and a restarted replica fills itself from its peer."""

    def test_replicas(self):
        import kv_harness as kh
        pa, pb = harness.free_port(), harness.free_port()
        aa, ab = '127.0.0.1:%d' % pa, '127.0.0.1:%d' % pb
        # One list for both, as a deployment gives it: each skips itself.
        peers = ['--peers', '%s,%s' % (aa, ab)]
        a = Server(port=pa, discovery='self', name='disc-a',
                   extra_args=peers)
        self.addCleanup(a.kill)
        b = Server(port=pb, discovery='self', name='disc-b',
                   extra_args=peers)
        self.addCleanup(b.kill)
        ca, cb = a.discovery_client(), b.discovery_client()
        name = uniq('rep')
        w = cb.watch(name)
        self.addCleanup(w.close)
        ca.register(service(name, nodes=[node(name + '-1', 'h:1')]))
        got = wait_for(lambda: [n.id for s in cb.get(name).services
                                for n in s.nodes], what='the copy on b')
        self.assertEqual(got, [name + '-1'])
        seen = [w.next() for _ in range(2)]
        self.assertEqual([EVENT_NAMES[m.type] for m in seen],
                         ['EVENT_TYPE_SYNCED', 'EVENT_TYPE_CREATED'])
        # A real server given both replicas.
        kv = kh.kv_server(name='kv-two-discoveries',
                          discovery='%s,%s' % (aa, ab),
                          extra_args=['--register-ttl', '3'])
        self.addCleanup(kv.kill)

        def kv_expiry(c):
            r = c.get('kv')
            return max(n.expires_unix_ms for s in r.services
                       for n in s.nodes)
        wait_for(lambda: kv_expiry(cb) > 0, what='kv-srv on b')
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        at_kill = kv_expiry(cb)
        wait_for(lambda: kv_expiry(cb) > at_kill + 1500, timeout=30,
                 what='heartbeats reaching b after a is gone')
        cb.deregister(name, 'v1')
        # a again: it takes what b holds before it serves.
        a2 = Server(port=pa, discovery='self', name='disc-a2',
                    extra_args=peers)
        self.addCleanup(a2.kill)
        ca2 = a2.discovery_client()
        self.assertGreater(kv_expiry(ca2), 0)
        self.assertCode(rpc_error(ca2.get, name), C.NOT_FOUND)
        kv.stop_clean()
        wait_for(lambda: rpc_error(cb.get, 'kv').code() == C.NOT_FOUND,
                 what='the deregistration on b')
        wait_for(lambda: rpc_error(ca2.get, 'kv').code() == C.NOT_FOUND,
                 what='the deregistration copied to a')
        a2.stop_clean()
        b.stop_clean()


if __name__ == '__main__':
    harness.run_tests()
