#!/usr/bin/python3
"""router-srv and the smart clients over real gRPC against a real
PostgreSQL.

A real fleet: discovery-srv, router-srv and probe-srv nodes (one told to
be slow, one to fail), called by name from router-client (libplatform's
client following router-srv). Clients shift load away from the slow and
the failing node (the share of calls each node gets, before and after);
a 90/10 split by version holds over 2,000 calls; a rate limit is enforced
(RESOURCE_EXHAUSTED past it); with router-srv killed clients keep routing
by their last view; fleet-wide ejection from reported stats within
max_ejection_percent; rules versioned and shared by two replicas; Watch
pushes changes; bad input for every field.

Needs PLATFORM_TEST_DATABASE (scripts/test sets it from scripts/pg), else
it says so and exits 0. No test asserts a time: each waits for a
condition.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import router_harness as rh  # noqa: E402
from harness import Server, rpc_error, wait_for  # noqa: E402

C = grpc.StatusCode
P = rh.pb()
PING = '/platform.probe.v1.Probe/Ping'
WAIT = 60


class Fleet(harness.ServiceCase):
    """discovery-srv, router-srv and probe-srv nodes per class (VERSIONS
    gives each node's version); every process stopped with SIGTERM at
    the end: exit 0 and no sanitizer report."""

    VERSIONS = ('1', '1', '1')

    @classmethod
    def setUpClass(cls):
        rh.start_fleet(cls, cls.VERSIONS)

    @classmethod
    def tearDownClass(cls):
        rh.stop_fleet(cls)

    def client(self, **kw):
        c = rh.Client(self.d.address, **kw)
        self.addCleanup(c.kill)
        return c

    def wait_weights(self, c, pred, what):
        """Polls the client's weights for probe's nodes (by node id)
        until pred holds."""
        ids = {p.address: p.node_id for p in self.probes}

        def ok():
            w = {ids.get(a, a): v for a, v in c.weights().items()}
            return pred(w) and w
        return wait_for(ok, timeout=WAIT, what=what)


class ShiftTest(Fleet):
    VERSIONS = ('1', '1', '1', '1')

    def test_load_leaves_slow_and_failing_nodes(self):
        c = self.client()
        wait_for(lambda: c.views() > 0, timeout=WAIT,
                 what='router-srv view in the client')
        before = c.calls(800)
        self.assertEqual(before['codes'], {'OK': 800}, before)
        for node, share in rh.shares(before).items():
            self.assertGreater(share, 0.15, before)
            self.assertLess(share, 0.35, before)
        slow, failing = self.probes[1], self.probes[2]
        slow.probe.behave(delay_ms=30)
        failing.probe.behave(fail_percent=100)
        self.addCleanup(slow.probe.behave)
        self.addCleanup(failing.probe.behave)

        # Batches until the last one shows the shift; the shares are
        # then asserted on that batch. Failed calls are the ones the
        # failing node got (no retries: Ping is called as not
        # idempotent).
        def shifted():
            r = c.calls(400)
            s = rh.shares(r)
            got_failing = r['codes'].get('UNAVAILABLE', 0) / 400
            return (s.get('p1', 0) < 0.10 and got_failing < 0.05) and r
        after = wait_for(shifted, timeout=WAIT, what='load shifted')
        s = rh.shares(after)
        self.assertLess(s.get('p1', 0), 0.10, after)
        self.assertNotIn('p2', after['nodes'], after)
        self.assertLess(after['codes'].get('UNAVAILABLE', 0), 20, after)
        for healthy in ('p0', 'p3'):
            self.assertGreater(s.get(healthy, 0), 0.35, after)
        # router-srv saw it from the reports: the slow node degraded.
        st = wait_for(lambda: [n for n in self.rc.call(
            'Stats', service='probe').nodes
            if n.address == slow.address and
            n.state == P.NODE_STATE_DEGRADED], timeout=WAIT,
            what='the slow node degraded in router-srv')
        self.assertGreater(st[0].requests, 0)
        c.close()


class RoutingTest(Fleet):
    VERSIONS = ('1', '1', '2')

    def tearDown(self):
        try:
            self.rc.call('DeleteRules', service='probe')
        except grpc.RpcError:
            pass

    def test_split_90_10_by_version(self):
        c = self.client()
        self.rc.set_rules('probe', splits=[P.Split(version='2',
                                                   percent=10)])
        self.wait_weights(c, lambda w: w.get('p2') == 1000 and
                          w.get('p0') == 4500, 'the split in the client')
        r = c.calls(2000)
        self.assertEqual(r['codes'], {'OK': 2000}, r)
        v2 = r['versions'].get('2', 0) / 2000
        self.assertGreater(v2, 0.07, r)
        self.assertLess(v2, 0.13, r)
        c.close()

    def test_split_by_caller_label(self):
        canary = self.client(labels=['track=canary'])
        plain = self.client()
        self.rc.set_rules('probe', splits=[P.Split(
            version='2', percent=100, label_key='track',
            label_value='canary')])
        self.wait_weights(canary, lambda w: w.get('p2') == 10000,
                          'the canary split in the canary client')
        self.wait_weights(plain, lambda w: w.get('p2') == 3333 and
                          w.get('p0') == 3333, 'no split for the others')
        r = canary.calls(200)
        self.assertEqual(r['versions'], {'2': 200}, r)
        r = plain.calls(300)
        self.assertGreater(r['versions'].get('1', 0), 150, r)
        canary.close()
        plain.close()

    def test_rate_limit(self):
        c = self.client()
        self.rc.set_rules('probe', limits=[P.RateLimit(
            method=PING, rate=20, burst=10)])
        # Once the limit is in the client, calls past it are refused
        # there, before they leave the process.
        r = wait_for(lambda: (lambda x: x['codes'].get(
            'RESOURCE_EXHAUSTED') and x)(c.calls(100)), timeout=WAIT,
            what='RESOURCE_EXHAUSTED past the limit')
        r = c.calls(300)
        ok = r['codes'].get('OK', 0)
        elapsed_s = r['us'] / 1e6
        # A full bucket at most, and what flowed in while they ran.
        self.assertLessEqual(ok, 10 + 20 * elapsed_s + 1, r)
        self.assertGreater(r['codes'].get('RESOURCE_EXHAUSTED', 0), 0, r)
        self.assertLessEqual(set(r['codes']), {'OK', 'RESOURCE_EXHAUSTED'},
                             r)
        # The bucket fills again at the rate.
        wait_for(lambda: c.calls(1)['codes'] == {'OK': 1}, timeout=WAIT,
                 what='a call within the limit again')
        # Removed: every call goes through again.
        self.rc.call('DeleteRules', service='probe')
        wait_for(lambda: c.calls(50)['codes'] == {'OK': 50}, timeout=WAIT,
                 what='the limit lifted')
        c.close()

    def test_weight_override_drains_a_node(self):
        c = self.client()
        self.rc.set_rules('probe', weights=[P.WeightOverride(
            node_id='p1', weight=0)])
        self.wait_weights(c, lambda w: w.get('p1') == 0, 'p1 drained')
        r = c.calls(300)
        self.assertNotIn('p1', r['nodes'], r)
        c.close()

    def test_watch_pushes_changes(self):
        w = self.rc.watch(service='probe')
        self.addCleanup(w.cancel)
        first = w.next()
        self.assertEqual(first.view.service, 'probe')
        self.assertEqual(len(first.view.nodes), 3)
        self.assertTrue(w.next().synced)
        self.rc.set_rules('probe', weights=[P.WeightOverride(
            version='2', weight=300)])
        m = w.next()
        weights = {n.id: n.weight for n in m.view.nodes}
        self.assertEqual(weights['p2'], 6000, m)
        self.assertEqual(m.view.rules_version,
                         self.rc.call('GetRules',
                                      service='probe').rules.version)


class KilledRouterTest(Fleet):

    def test_clients_keep_the_last_view(self):
        c = self.client()
        self.rc.set_rules('probe', weights=[P.WeightOverride(
            node_id='p0', weight=0)])
        self.wait_weights(c, lambda w: w.get('p0') == 0, 'p0 drained')
        self.r.kill()
        r = c.calls(300)
        self.assertEqual(r['codes'], {'OK': 300}, r)
        self.assertNotIn('p0', r['nodes'], r)
        self.assertEqual(set(r['nodes']), {'p1', 'p2'}, r)
        c.close()
        # router-srv again, on the same database: the rule is still there.
        self.__class__.r = rh.router_server(self.d.address,
                                            name='router-again')
        self.addCleanup(self.r.kill)
        rc = rh.RouterClient(self.r.get_channel())
        got = wait_for(lambda: rc.call('GetRules', service='probe'),
                       timeout=WAIT, what='the rules loaded again')
        self.assertEqual(got.rules.weights[0].node_id, 'p0')
        rc.call('DeleteRules', service='probe')


class FakeNodes(harness.ServiceCase):
    """discovery-srv with nodes registered by hand (no process behind
    them: their stats come from Reports) and two router-srv replicas."""

    @classmethod
    def setUpClass(cls):
        cls.d = Server(discovery='self', name='discovery-fake')
        cls.addClassCleanup(cls.d.kill)
        cls.r = rh.router_server(cls.d.address, name='router-a')
        cls.addClassCleanup(cls.r.kill)
        cls.r2 = rh.router_server(cls.d.address, name='router-b')
        cls.addClassCleanup(cls.r2.kill)
        cls.rc = rh.RouterClient(cls.r.get_channel())
        cls.rc2 = rh.RouterClient(cls.r2.get_channel())
        cls.dc = cls.d.discovery_client()

    @classmethod
    def tearDownClass(cls):
        cls.r.stop_clean()
        cls.r2.stop_clean()
        cls.d.stop_clean()

    def register(self, service, n):
        D = self.dc.pb
        nodes = [D.Node(id='%s-n%d' % (service, i),
                        address='10.0.0.%d:80' % (i + 1)) for i in range(n)]
        self.dc.register_req(D.RegisterRequest(service=D.Service(
            name=service, version='1', nodes=nodes), ttl_seconds=300))
        for rc in (self.rc, self.rc2):
            wait_for(lambda: len(rc.call('Select', service=service)
                                 .view.nodes) == n, what='nodes in router')
        return [nd.address for nd in nodes]

    def report(self, rc, service, addr, requests, errors, ms=1.0):
        st = P.MethodStats(service=service, address=addr,
                           method='/x.Y/Z', requests=requests,
                           latency_ms_sum=ms * requests,
                           latency_ms_max=ms)
        if errors:
            st.errors[14] = errors
        rc.call('Report', client='test', stats=[st])

    def states(self, rc, service):
        return {n.address: (n.state, n.weight) for n in rc.call(
            'Select', service=service).view.nodes}

    def test_outlier_ejected_fleet_wide_within_the_cap(self):
        svc = rh.uniq('ej')
        addrs = self.register(svc, 4)
        # Two nodes fail; max_ejection_percent 25 of 4 nodes: one out.
        self.rc.set_rules(svc, outlier=P.OutlierDetection(
            max_ejection_percent=25))
        wait_for(lambda: self.rc2.call('GetRules', service=svc),
                 what='the rules on the other replica')
        for rc in (self.rc, self.rc2):   # clients report to every replica
            for i, a in enumerate(addrs):
                self.report(rc, svc, a, 100, {1: 90, 2: 70}.get(i, 0))
        for rc in (self.rc, self.rc2):
            st = wait_for(lambda: (lambda s: [a for a in s if s[a][0] ==
                          P.NODE_STATE_EJECTED] and s)(self.states(rc, svc)),
                          what='an ejection')
            ejected = [a for a in st if st[a][0] == P.NODE_STATE_EJECTED]
            self.assertEqual(ejected, [addrs[1]], st)   # the worst
            self.assertEqual(st[addrs[1]][1], 0, st)
        stats = self.rc.call('Stats', service=svc)
        node = [n for n in stats.nodes if n.address == addrs[1]][0]
        self.assertEqual(node.requests, 0)   # judged afresh after it
        self.assertGreater(node.ejected_until_unix_ms, 0)

    def test_rounding_to_zero_still_ejects_one(self):
        svc = rh.uniq('round')
        addrs = self.register(svc, 3)
        self.rc.set_rules(svc, outlier=P.OutlierDetection(
            max_ejection_percent=10))
        for a in addrs:
            self.report(self.rc, svc, a, 100, 95 if a == addrs[0] else 0)
        st = wait_for(lambda: (lambda s: s[addrs[0]][0] ==
                      P.NODE_STATE_EJECTED and s)(self.states(self.rc, svc)),
                      what='one ejected at 10% of 3 nodes (envoy#3263)')
        self.assertEqual(st[addrs[1]][0], P.NODE_STATE_ACTIVE)

    def test_never_the_last_node(self):
        svc = rh.uniq('last')
        addrs = self.register(svc, 1)
        self.report(self.rc, svc, addrs[0], 100, 100)
        # Decisions run twice a second; a Stats after a few of them.
        wait_for(lambda: self.rc.call('Stats', service=svc).nodes[0]
                 .errors == 100, what='the report counted')
        for _ in range(3):
            self.assertEqual(self.states(self.rc, svc)[addrs[0]][0],
                             P.NODE_STATE_ACTIVE)

    def test_slow_node_degraded(self):
        svc = rh.uniq('slow')
        addrs = self.register(svc, 3)
        for a in addrs:
            self.report(self.rc, svc, a, 100, 0,
                        ms=50.0 if a == addrs[2] else 1.0)
        st = wait_for(lambda: (lambda s: s[addrs[2]][0] ==
                      P.NODE_STATE_DEGRADED and s)(self.states(self.rc, svc)),
                      what='the slow node degraded')
        self.assertLess(st[addrs[2]][1] * 5, st[addrs[0]][1], st)

    def test_rules_versioned_and_shared(self):
        svc = rh.uniq('rules')
        r1 = self.rc.set_rules(svc, weights=[P.WeightOverride(
            version='1', weight=5)])
        self.assertEqual(r1.version, 1)
        r2 = self.rc2.set_rules(svc, expected_version=1, limits=[
            P.RateLimit(rate=5)])
        self.assertEqual(r2.version, 2)
        self.assertCode(rpc_error(self.rc.set_rules, svc,
                                  expected_version=1),
                        C.FAILED_PRECONDITION, 'expected_version')
        got = wait_for(lambda: (lambda g: g.rules.version == 2 and g)(
            self.rc.call('GetRules', service=svc)), what='version 2 on a')
        self.assertEqual(got.rules.limits[0].rate, 5)
        self.assertIn(svc, [r.service for r in
                            self.rc2.call('ListRules').rules])
        self.assertCode(rpc_error(self.rc.call, 'DeleteRules', service=svc,
                                  expected_version=1),
                        C.FAILED_PRECONDITION, 'expected_version')
        self.rc.call('DeleteRules', service=svc, expected_version=2)
        wait_for(lambda: rpc_error(self.rc2.call, 'GetRules', service=svc)
                 .code() == C.NOT_FOUND, what='deleted on b')
        self.assertCode(rpc_error(self.rc.call, 'DeleteRules', service=svc),
                        C.NOT_FOUND)
        # Set again after a delete: the version goes on counting.
        self.assertEqual(self.rc.set_rules(svc).version, 4)

    def test_unknown_service(self):
        svc = rh.uniq('none')
        self.assertCode(rpc_error(self.rc.call, 'Select', service=svc),
                        C.NOT_FOUND, svc)
        self.assertCode(rpc_error(self.rc.call, 'Stats', service=svc),
                        C.NOT_FOUND, svc)
        self.assertCode(rpc_error(self.rc.call, 'GetRules', service=svc),
                        C.NOT_FOUND, svc)

    def test_bad_input(self):
        A = C.INVALID_ARGUMENT
        rc = self.rc
        bad_names = ('', 'a b', 'x' * 129, "'; DROP TABLE router_rules;--",
                     'caf\u00e9')
        for name in bad_names:
            for m in ('Select', 'Stats', 'GetRules', 'DeleteRules'):
                self.assertCode(rpc_error(rc.call, m, service=name), A,
                                'service')
            self.assertCode(rpc_error(rc.set_rules, name), A,
                            'rules.service')
        self.assertCode(rpc_error(rc.call, 'SetRules'), A, 'rules')
        self.assertCode(rpc_error(rc.call, 'Select', service='probe',
                                  caller='a b'), A, 'caller')
        self.assertCode(rpc_error(rc.call, 'Select', service='probe',
                                  labels=[P.Label(key='', value='x')]),
                        A, 'labels[0].key')
        self.assertCode(rpc_error(rc.call, 'Select', service='probe',
                                  labels=[P.Label(key='k', value='a b')]),
                        A, 'labels[0].value')
        self.assertCode(rpc_error(rc.call, 'Select', service='probe',
                                  labels=[P.Label(key='k%d' % i)
                                          for i in range(33)]),
                        A, 'labels')
        w = rc.watch(service='a b')
        self.assertCode(w.end(), A, 'service')
        w = rc.watch(caller='x' * 200)
        self.assertCode(w.end(), A, 'caller')
        svc = 'probe'
        cases = [
            (dict(weights=[P.WeightOverride()]), 'rules.weights[0]'),
            (dict(weights=[P.WeightOverride(node_id='n', version='1')]),
             'rules.weights[0]'),
            (dict(weights=[P.WeightOverride(version='1', weight=10001)]),
             'rules.weights[0].weight'),
            (dict(weights=[P.WeightOverride(node_id='a b')]),
             'rules.weights[0].node_id'),
            (dict(splits=[P.Split(percent=5)]), 'rules.splits[0].version'),
            (dict(splits=[P.Split(version='2', percent=101)]),
             'rules.splits[0].percent'),
            (dict(splits=[P.Split(version='2', percent=60),
                          P.Split(version='3', percent=50)]),
             'rules.splits[1].percent'),
            (dict(splits=[P.Split(version='2', label_value='x')]),
             'rules.splits[0].label_value'),
            (dict(limits=[P.RateLimit(rate=0)]), 'rules.limits[0].rate'),
            (dict(limits=[P.RateLimit(rate=-1)]), 'rules.limits[0].rate'),
            (dict(limits=[P.RateLimit(rate=float('nan'))]),
             'rules.limits[0].rate'),
            (dict(limits=[P.RateLimit(rate=1, method='Ping')]),
             'rules.limits[0].method'),
            (dict(limits=[P.RateLimit(rate=1), P.RateLimit(rate=2)]),
             'rules.limits[1].method'),
            (dict(outlier=P.OutlierDetection(error_percent=101)),
             'outlier.error_percent'),
            (dict(outlier=P.OutlierDetection(max_ejection_percent=101)),
             'outlier.max_ejection_percent'),
            (dict(outlier=P.OutlierDetection(latency_factor=1.0)),
             'outlier.latency_factor'),
            (dict(outlier=P.OutlierDetection(base_ejection_ms=5)),
             'outlier.base_ejection_ms'),
            (dict(outlier=P.OutlierDetection(window_ms=10)),
             'outlier.window_ms'),
        ]
        for fields, field in cases:
            self.assertCode(rpc_error(rc.set_rules, svc, **fields), A, field)
        self.assertCode(rpc_error(rc.set_rules, svc, expected_version=-1),
                        A, 'expected_version')
        self.assertCode(rpc_error(rc.call, 'DeleteRules', service=svc,
                                  expected_version=-1), A, 'expected_version')
        # Nothing was stored by any of them.
        self.assertCode(rpc_error(rc.call, 'GetRules', service=svc),
                        C.NOT_FOUND)
        good = dict(service='s', address='1.2.3.4:5', method='/a.B/C',
                    requests=10)
        stats_cases = [
            (dict(service=''), 'stats[0].service'),
            (dict(address=''), 'stats[0].address'),
            (dict(address='a b'), 'stats[0].address'),
            (dict(method='C'), 'stats[0].method'),
            (dict(method='/a.B/'), 'stats[0].method'),
            (dict(requests=10**10), 'stats[0].requests'),
            (dict(errors={0: 1}), 'stats[0].errors'),
            (dict(errors={17: 1}), 'stats[0].errors'),
            (dict(errors={14: 11}), 'stats[0].errors'),
            (dict(latency_ms_sum=-1.0), 'stats[0].latency_ms'),
            (dict(latency_ms_max=float('inf')), 'stats[0].latency_ms'),
        ]
        for fields, field in stats_cases:
            st = dict(good)
            st.update(fields)
            self.assertCode(rpc_error(rc.call, 'Report', stats=[
                P.MethodStats(**st)]), A, field)
        self.assertCode(rpc_error(rc.call, 'Report', client='a b'), A,
                        'client')
        self.assertCode(rpc_error(rc.call, 'Report', stats=[
            P.MethodStats(**good)] * 10001), A, 'stats')
        # None of those reports counted.
        self.assertCode(rpc_error(rc.call, 'Stats', service='s'),
                        C.NOT_FOUND)
        # A request that is not a protobuf message at all.
        self.assertCode(rpc_error(rc.raw, 'Select', b'\xff\xff\xff'), A)


if __name__ == '__main__':
    if not rh.DATABASE:
        print('test_router: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it from scripts/pg)')
        sys.exit(0)
    for b in (rh.ROUTER_BIN, rh.PROBE_BIN, rh.CLIENT_BIN):
        if not os.path.exists(b):
            sys.stderr.write('missing %s\n' % b)
            sys.exit(1)
    harness.run_tests()
