"""monitor-srv against a real fleet: discovery-srv, config-srv on the test
PostgreSQL, small nodes to stop and resume, and monitor-srv probing them
all over gRPC. Every wait is a poll for the condition itself."""

import json
import os
import signal
import sys
import unittest

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import config_harness as ch  # noqa: E402
import event_harness as eh  # noqa: E402
import monitor_harness as mh  # noqa: E402
from harness import wait_for, rpc_error  # noqa: E402
from monitor_harness import PASSING, WARNING, CRITICAL  # noqa: E402

C = grpc.StatusCode
# Fast probes so a test waits seconds, not minutes.
FAST = ['--probe-interval-ms', '300', '--probe-timeout-ms', '250',
        '--scrape-interval-ms', '1000']


def node_server(disc, name, extra=()):
    """A small node of the fleet to stop and resume: a discovery-srv of
    its own registered with disc (as service "discovery"), with a long
    TTL so that a stopped node stays registered while the test looks."""
    return harness.Server(discovery=disc.address, name=name,
                          extra_args=['--register-ttl', '120'] + list(extra))


def node_id_of(srv):
    """The node id a server registered under (the harness gives none)."""
    for line in harness.log_lines(srv):
        if line.get('msg') == 'server started':
            return line['node']
    raise AssertionError('%s logged no start' % srv.name)


class MonitorCase(harness.ServiceCase):

    def assertCode(self, err, code, field=None):
        self.assertEqual(err.code(), code, err.details())
        if field:
            self.assertIn(field, err.details())


@unittest.skipUnless(ch.DATABASE, 'needs PLATFORM_TEST_DATABASE')
class FleetTest(MonitorCase):
    """One fleet for the tests that only add to it."""

    @classmethod
    def setUpClass(cls):
        cls.disc = harness.Server(discovery='self', name='mon-discovery')
        cls.addClassCleanup(cls.disc.stop_clean)
        cls.mon = mh.monitor_server(cls.disc.address, name='monitor-srv',
                                    extra_args=FAST +
                                    ['--flap-threshold', '2'])
        cls.addClassCleanup(cls.mon.stop_clean)
        cls.c = mh.client_of(cls.mon)
        cls.event = eh.event_server(discovery=cls.disc.address,
                                    name='mon-event')
        cls.addClassCleanup(cls.event.stop_clean)
        cls.ev = eh.client_of(cls.event)
        cls.mport = harness.free_port()
        cls.config = ch.config_server(
            discovery=cls.disc.address, name='mon-config',
            extra_args=['--check-interval-ms', '300', '--metrics-listen',
                        '127.0.0.1:%d' % cls.mport])
        cls.addClassCleanup(cls.config.stop_clean)
        cls.config_id = node_id_of(cls.config)

    def passing(self, node_id):
        n = self.c.node(node_id)
        return n is not None and n.status == PASSING

    def test_probed_and_pushed_checks_pass(self):
        """config-srv is probed (health) and reports its own database
        check; both pass, and the node is passing."""
        def both():
            n = self.c.node(self.config_id)
            names = {c.name: c for c in n.checks} if n else {}
            return n if ('health' in names and 'database' in names) \
                else None
        n = wait_for(both, what='config-srv probed and reported')
        self.assertEqual(n.status, PASSING)
        self.assertEqual(n.service, 'config')
        self.assertEqual(n.address, self.config.address)
        checks = {c.name: c for c in n.checks}
        self.assertFalse(checks['health'].pushed)
        self.assertEqual(checks['health'].output, 'SERVING')
        self.assertTrue(checks['database'].pushed)
        self.assertEqual(checks['database'].status, PASSING)
        self.assertIn('SELECT 1', checks['database'].output)
        # The server serves its check as a health service of its own.
        self.assertEqual(self.config.health_check('check.database').status,
                         1)
        # The service's status is its nodes' worst.
        svc = [s for s in self.c.call('GetStatus', service='config').services]
        self.assertEqual(len(svc), 1)
        self.assertEqual(svc[0].status, PASSING)

    def test_stopped_node_critical_then_passing(self):
        """SIGSTOP: the probe times out and the node turns critical
        (after --flap-threshold 2 probes); SIGCONT: passing again. The
        watch sees exactly those two changes."""
        node = node_server(self.disc, 'mon-node-stop')
        self.addCleanup(node.kill)
        nid = node_id_of(node)
        wait_for(lambda: self.passing(nid), what='the node passing')
        w = self.c.watch()
        self.addCleanup(w.close)
        self.assertTrue(w.caught_up.wait(harness.TIMEOUT))
        self.assertEqual(w.initial.get(nid), PASSING)
        os.kill(node.proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: (PASSING, CRITICAL) in w.of(nid), timeout=30,
                     what='the stopped node critical')
            n = self.c.node(nid)
            self.assertEqual(n.status, CRITICAL)
            self.assertIn('timeout', n.checks[0].output)
        finally:
            os.kill(node.proc.pid, signal.SIGCONT)
        wait_for(lambda: (CRITICAL, PASSING) in w.of(nid), timeout=30,
                 what='the resumed node passing')
        self.assertEqual(w.of(nid), [(PASSING, CRITICAL),
                                     (CRITICAL, PASSING)])
        # The same changes as platform events in event-srv, and no other:
        # its first status, then down and up.
        def events():
            evs = self.ev.query_all(subject='platform.monitor.status_changed',
                                    order=1, metadata={'node': nid})
            return evs if len(evs) >= 3 else None
        evs = wait_for(events, timeout=30, what='the status events')
        got = [(d['previous'], d['status'])
               for d in (json.loads(e.data.decode()) for e in evs)]
        self.assertEqual(got, [('unspecified', 'passing'),
                               ('passing', 'critical'),
                               ('critical', 'passing')])
        self.assertEqual(evs[1].type, 'platform.monitor.status_changed.v1')
        self.assertEqual(evs[1].source, 'monitor-srv')
        crit = json.loads(evs[1].data.decode())
        self.assertEqual((crit['node_id'], crit['service']),
                         (nid, 'discovery'))
        self.assertEqual(crit['checks'][0]['name'], 'health')
        node.stop_clean()
        # A node that leaves is removed from the picture, and the watch
        # says so.
        wait_for(lambda: self.c.node(nid) is None, what='the node gone')
        wait_for(lambda: any(n == nid and r for n, p, s, r in w.changes),
                 what='the removal on the watch')

    def test_pushed_check_expires(self):
        """A pushed check not renewed within its TTL is critical."""
        nid = mh.uniq('pushed')
        self.c.report(nid, 'batch', 'queue-drained', PASSING, 'ok',
                      ttl_ms=1000)
        self.assertEqual(self.c.check(nid, 'queue-drained').status, PASSING)
        wait_for(lambda: self.c.check(nid, 'queue-drained').status ==
                 CRITICAL, what='the check expired')
        c = self.c.check(nid, 'queue-drained')
        self.assertIn('TTL expired', c.output)
        self.assertEqual(c.ttl_ms, 1000)
        # A report renews it.
        self.c.report(nid, 'batch', 'queue-drained', WARNING, 'slow',
                      ttl_ms=60000)
        # Damped: one warning after a critical is not a change yet.
        self.assertEqual(self.c.check(nid, 'queue-drained').status, CRITICAL)
        self.c.report(nid, 'batch', 'queue-drained', WARNING, 'slow',
                      ttl_ms=60000)
        self.assertEqual(self.c.check(nid, 'queue-drained').status, WARNING)
        self.assertEqual(self.c.node(nid).status, WARNING)

    def test_flap_damping(self):
        """--flap-threshold 2: alternating results change nothing; two in
        a row do, once."""
        nid = mh.uniq('flappy')
        w = self.c.watch('flaps')
        self.addCleanup(w.close)
        self.assertTrue(w.caught_up.wait(harness.TIMEOUT))

        def report(status):
            self.c.report(nid, 'flaps', 'disk', status, ttl_ms=60000)
        report(PASSING)
        for _ in range(5):
            report(CRITICAL)
            report(PASSING)
        self.assertEqual(self.c.node(nid).status, PASSING)
        report(CRITICAL)
        report(CRITICAL)
        self.assertEqual(self.c.node(nid).status, CRITICAL)
        wait_for(lambda: len(w.of(nid)) >= 2, what='the changes watched')
        self.assertEqual(w.of(nid), [(0, PASSING), (PASSING, CRITICAL)])

    def test_stats_scraped(self):
        """config-srv advertises its metrics endpoint; Stats serves its
        summary, per node and per service."""
        def scraped():
            r = self.c.call('Stats', service='config')
            for n in r.nodes:
                if n.node_id == self.config_id and n.scraped_ms > 0 and \
                        n.requests > 0:
                    return r
            return None
        r = wait_for(scraped, timeout=30, what='config-srv scraped')
        n = [x for x in r.nodes if x.node_id == self.config_id][0]
        self.assertEqual(n.error, '')
        self.assertGreater(n.memory_bytes, 1 << 20)
        self.assertGreaterEqual(n.requests, n.errors)
        self.assertGreater(n.p99_ms, 0)
        self.assertEqual([s.service for s in r.services], ['config'])
        self.assertEqual(r.services[0].nodes, 1)
        self.assertEqual(r.services[0].requests, n.requests)

    def test_service_settings(self):
        svc = mh.uniq('svc')
        d = self.c.call('GetServiceSettings', service=svc).settings
        self.assertEqual((d.interval_ms, d.timeout_ms), (300, 250))
        r = self.c.set_settings(svc, 2000, 500).settings
        self.assertEqual((r.service, r.interval_ms, r.timeout_ms),
                         (svc, 2000, 500))
        d = self.c.call('GetServiceSettings', service=svc).settings
        self.assertEqual((d.interval_ms, d.timeout_ms), (2000, 500))

    def test_bad_input(self):
        P = self.c.pb
        ok = dict(node_id='n', service='s', name='c', status=PASSING,
                  output='', ttl_ms=5000)
        cases = [
            ('node_id', dict(node_id='')),
            ('node_id', dict(node_id='x' * 256)),
            ('node_id', dict(node_id='a\nb')),
            ('service', dict(service='')),
            ('name', dict(name='')),
            ('name', dict(name='Upper')),
            ('name', dict(name='x' * 65)),
            ('name', dict(name='health')),
            ('status', dict(status=0)),
            ('status', dict(status=7)),
            ('output', dict(output='x' * 1025)),
            ('ttl_ms', dict(ttl_ms=999)),
            ('ttl_ms', dict(ttl_ms=86400001)),
        ]
        for field, bad in cases:
            with self.subTest(field=field, bad=str(bad)[:40]):
                kw = dict(ok)
                kw.update(bad)
                self.assertCode(rpc_error(self.c.call, 'ReportCheck', **kw),
                                C.INVALID_ARGUMENT, field)
        # Nothing of them was stored.
        self.assertIsNone(self.c.node('n'))
        S = P.ServiceSettings
        for field, req in [
                ('settings', dict()),
                ('settings.service', dict(settings=S(
                    interval_ms=1000, timeout_ms=100))),
                ('settings.interval_ms', dict(settings=S(
                    service='s', interval_ms=199, timeout_ms=100))),
                ('settings.interval_ms', dict(settings=S(
                    service='s', interval_ms=3600001, timeout_ms=100))),
                ('settings.timeout_ms', dict(settings=S(
                    service='s', interval_ms=1000, timeout_ms=49))),
                ('settings.timeout_ms', dict(settings=S(
                    service='s', interval_ms=1000, timeout_ms=1001)))]:
            with self.subTest(field=field):
                self.assertCode(rpc_error(self.c.call, 'SetServiceSettings',
                                          **req), C.INVALID_ARGUMENT, field)
        for method, kw, field in [
                ('GetServiceSettings', dict(service=''), 'service'),
                ('GetStatus', dict(service='x' * 256), 'service'),
                ('ListChecks', dict(node_id='x' * 256), 'node_id'),
                ('Stats', dict(service='\x01'), 'service')]:
            with self.subTest(method=method):
                self.assertCode(rpc_error(self.c.call, method, **kw),
                                C.INVALID_ARGUMENT, field)
        w = self.c.watch('x' * 256)
        self.addCleanup(w.close)
        self.assertCode(w.end(), C.INVALID_ARGUMENT, 'service')
        # A node's check reported under another service is refused.
        nid = mh.uniq('svcmix')
        self.c.report(nid, 'one', 'c', PASSING)
        self.assertCode(rpc_error(self.c.report, nid, 'two', 'c', PASSING),
                        C.FAILED_PRECONDITION, 'node_id')

    def test_bad_settings(self):
        base = ['--database', 'postgresql://x@127.0.0.1:1/x',
                '--discovery', self.disc.address]
        for args in (['--probe-interval-ms', '10'],
                     ['--probe-timeout-ms', 'x'],
                     ['--probe-interval-ms', '500', '--probe-timeout-ms',
                      '600'],
                     ['--flap-threshold', '0'],
                     ['--scrape-interval-ms', '5'],
                     ['--probers', '17']):
            with self.subTest(args=args):
                r = harness.run_binary(base + args, binary=mh.MONITOR_BIN)
                self.assertEqual(r.code, 2, r.stderr)
                self.assertIn(args[-2] if len(args) > 2 else args[0],
                              r.stderr)
        r = harness.run_binary(['--database', 'postgresql://x@h/x'],
                               binary=mh.MONITOR_BIN)
        self.assertEqual(r.code, 2, r.stderr)
        self.assertIn('--discovery', r.stderr)


@unittest.skipUnless(ch.DATABASE, 'needs PLATFORM_TEST_DATABASE')
class RestartTest(MonitorCase):
    """Check state outlives a monitor-srv restart (Consul resets TTL
    checks to critical when its agent restarts)."""

    def test_state_kept_across_restart(self):
        disc = harness.Server(discovery='self', name='mon-r-discovery')
        self.addCleanup(disc.stop_clean)
        mon = mh.monitor_server(disc.address, name='monitor-r',
                                extra_args=FAST)
        c = mh.client_of(mon)
        config = ch.config_server(discovery=disc.address, name='mon-r-config',
                                  extra_args=['--check-interval-ms', '300'])
        self.addCleanup(config.stop_clean)
        cid = node_id_of(config)
        c.report(cid, 'config', 'cache-warm', PASSING, 'warm',
                 ttl_ms=600000)
        wait_for(lambda: c.node(cid) is not None and
                 c.node(cid).status == PASSING and
                 len(c.node(cid).checks) == 3, what='config-srv passing')
        before = c.node(cid)
        settings = c.set_settings('config', 400, 300).settings
        mon.stop_clean()

        mon = mh.monitor_server(disc.address, name='monitor-r',
                                port=mon.port, extra_args=FAST)
        self.addCleanup(mon.stop_clean)
        c = mh.client_of(mon)
        # The first answer already has the pushed checks as they were,
        # and the node's status since the same time: nothing changed.
        n = wait_for(lambda: c.node(cid), what='the node known again')
        self.assertEqual(n.status, PASSING)
        self.assertEqual(n.since_ms, before.since_ms)
        warm = c.check(cid, 'cache-warm')
        self.assertEqual((warm.status, warm.output, warm.ttl_ms),
                         (PASSING, 'warm', 600000))
        old = [x for x in before.checks if x.name == 'cache-warm'][0]
        self.assertEqual(warm.updated_ms, old.updated_ms)
        got = c.call('GetServiceSettings', service='config').settings
        self.assertEqual(got, settings)
        mon.stop_clean()


@unittest.skipUnless(ch.DATABASE and ch.PG_CTL,
                     'needs PLATFORM_TEST_DATABASE and PLATFORM_TEST_PG_CTL')
class DatabaseOutageTest(MonitorCase):
    """PostgreSQL stopped: config-srv's database check turns critical at
    monitor-srv (its report says why), and passes again once it is back.
    Only our own PostgreSQL (PLATFORM_TEST_PG_CTL) is stopped."""

    def test_database_check_follows_postgresql(self):
        disc = harness.Server(discovery='self', name='mon-o-discovery')
        self.addCleanup(disc.stop_clean)
        mon = mh.monitor_server(disc.address, name='monitor-o',
                                extra_args=FAST + ['--flap-threshold', '1'])
        self.addCleanup(mon.stop_clean)
        c = mh.client_of(mon)
        config = ch.config_server(discovery=disc.address, name='mon-o-config',
                                  extra_args=['--check-interval-ms', '300'])
        self.addCleanup(config.stop_clean)
        cid = node_id_of(config)

        def db_status(want):
            x = c.check(cid, 'database')
            return x if x is not None and x.status == want else None
        wait_for(lambda: db_status(PASSING), what='the database check')
        w = c.watch('config')
        self.addCleanup(w.close)
        self.assertTrue(w.caught_up.wait(harness.TIMEOUT))
        ch.pg_ctl('stop')
        try:
            x = wait_for(lambda: db_status(CRITICAL), timeout=60,
                         what='the database check critical')
            self.assertIn('SELECT 1', x.output)
            self.assertEqual(c.node(cid).status, CRITICAL)
            # The server says so itself too, and still serves.
            self.assertEqual(config.health_check('check.database').status,
                             2)
            self.assertEqual(config.health_check('').status, 1)
        finally:
            ch.pg_ctl('start')
        wait_for(lambda: db_status(PASSING), timeout=60,
                 what='the database check passing again')
        wait_for(lambda: w.of(cid)[-1:] == [(CRITICAL, PASSING)],
                 what='the node passing again')
        self.assertEqual(w.of(cid), [(PASSING, CRITICAL),
                                     (CRITICAL, PASSING)])

    def test_started_without_its_database(self):
        """monitor-srv started while PostgreSQL is down probes anyway;
        reports are judged but said not stored (UNAVAILABLE); once the
        database is back it is used, with no restart."""
        disc = harness.Server(discovery='self', name='mon-n-discovery')
        self.addCleanup(disc.stop_clean)
        nid = mh.uniq('nodb')
        ch.pg_ctl('stop')
        try:
            mon = mh.monitor_server(disc.address, name='monitor-n',
                                    extra_args=FAST)
            self.addCleanup(mon.stop_clean)
            c = mh.client_of(mon)
            wait_for(lambda: c.node(node_id_of(disc)) is not None,
                     what='discovery-srv probed without a database')
            err = rpc_error(c.report, nid, 'nodb', 'job', PASSING)
            self.assertCode(err, C.UNAVAILABLE, 'not stored')
            self.assertEqual(c.check(nid, 'job').status, PASSING)
            self.assertCode(rpc_error(c.set_settings, 'nodb', 1000, 100),
                            C.UNAVAILABLE)
        finally:
            ch.pg_ctl('start')

        def stored():
            try:
                c.report(nid, 'nodb', 'job', PASSING)
                return True
            except grpc.RpcError as e:
                if e.code() != C.UNAVAILABLE:
                    raise
                return False
        wait_for(stored, timeout=60, what='reports stored again')
        self.assertEqual(c.set_settings('nodb', 1000, 100).settings
                         .interval_ms, 1000)


@unittest.skipUnless(ch.DATABASE, 'needs PLATFORM_TEST_DATABASE')
class TwoMonitorsTest(MonitorCase):
    """Two replicas split the nodes by rendezvous hashing, answer for the
    whole fleet together, and one takes the other's nodes over, with their
    state, when it dies."""

    NODES = 24

    def test_split_and_take_over(self):
        disc = harness.Server(discovery='self', name='mon-2-discovery')
        self.addCleanup(disc.stop_clean)
        args = FAST + ['--register-ttl', '3']
        m1 = mh.monitor_server(disc.address, name='monitor-a',
                               extra_args=args)
        self.addCleanup(m1.stop_clean)
        m2 = mh.monitor_server(disc.address, name='monitor-b',
                               extra_args=args)
        self.addCleanup(m2.kill)
        c1, c2 = mh.client_of(m1), mh.client_of(m2)
        # Nodes to probe: registrations pointing at discovery-srv itself.
        d = harness.protos().discovery
        svc = mh.uniq('fake')
        nodes = ['%s-n%d' % (svc, i) for i in range(self.NODES)]
        disc.discovery_client().register(d.Service(
            name=svc, nodes=[d.Node(id=n, address=disc.address)
                             for n in nodes]), ttl_seconds=600)

        def local(c):
            r = c.call('GetStatus', service=svc, local=True)
            return {n.node_id: n for s in r.services for n in s.nodes}

        def split():
            a, b = local(c1), local(c2)
            return (a, b) if len(a) + len(b) == self.NODES else None
        a, b = wait_for(split, what='every node probed once')
        self.assertFalse(set(a) & set(b), 'a node probed by both')
        self.assertTrue(a and b, 'one replica probes everything')
        self.assertTrue(all(n.status == PASSING for n in
                            list(a.values()) + list(b.values())))
        self.assertEqual({n.monitor for n in a.values()}, {node_id_of(m1)})
        # Either replica answers for the whole fleet.
        for c in (c1, c2):
            whole = c.call('GetStatus', service=svc).services
            self.assertEqual(len(whole), 1)
            self.assertEqual(sorted(n.node_id for n in whole[0].nodes),
                             sorted(nodes))
            self.assertEqual(whole[0].status, PASSING)
        # A report to the replica that does not own the node reaches the
        # one that does.
        theirs = sorted(b)[0]
        c1.report(theirs, svc, 'job', PASSING, 'fine', ttl_ms=600000)
        self.assertEqual([x.name for x in c2.call(
            'ListChecks', node_id=theirs, local=True).checks if x.pushed],
            ['job'])
        self.assertEqual([x.name for x in c1.call(
            'ListChecks', node_id=theirs, local=True).checks], [])

        # A node's status is stored before its next probe: once every
        # node of b was probed again, b's decisions are all stored.
        def health_ms(c):
            return {x.node_id: x.updated_ms for x in c.call(
                'ListChecks', service=svc, local=True).checks
                if x.name == 'health'}
        first = health_ms(c2)
        wait_for(lambda: all(health_ms(c2).get(n, 0) > first[n]
                             for n in first), what='b probing again')
        w = c1.watch(svc)
        self.addCleanup(w.close)
        self.assertTrue(w.caught_up.wait(harness.TIMEOUT))
        os.kill(m2.proc.pid, signal.SIGKILL)
        m2.proc.wait()
        # Within its registration TTL the survivor probes them all ...
        wait_for(lambda: len(local(c1)) == self.NODES, timeout=30,
                 what='the survivor owning every node')
        mine = local(c1)
        self.assertTrue(all(n.monitor == node_id_of(m1)
                            for n in mine.values()))
        # ... with the state the other left: the pushed check is there,
        # and no node changed status on the way.
        job = c1.check(theirs, 'job')
        self.assertEqual((job.status, job.output), (PASSING, 'fine'))
        wait_for(lambda: all('health' in {x.name for x in n.checks}
                             for n in local(c1).values()),
                 what='every node probed by the survivor')
        self.assertEqual([ch_ for ch_ in w.changes if not ch_[3]], [])


if __name__ == '__main__':
    harness.run_tests()
