#!/usr/bin/python3
"""`platformctl route ...` against a real router-srv on a real
PostgreSQL, with probe-srv nodes in a real discovery-srv: show (table
and JSON), weight, split and limit each changing one rule and keeping
the others, clear, delete, stats after a client's calls, router-srv
found through discovery or given by --router, a lost update refused
(FAILED_PRECONDITION), usage errors exit 2.

Needs PLATFORM_TEST_DATABASE (scripts/test sets it from scripts/pg),
else it says so and exits 0. No test asserts a time."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import router_harness as rh  # noqa: E402
from harness import Server, wait_for  # noqa: E402
from test_ctl_kv import run_ctl  # noqa: E402

PING = '/platform.probe.v1.Probe/Ping'


class CtlRouteTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = Server(discovery='self', name='discovery-ctl-route')
        cls.addClassCleanup(cls.d.stop_clean)
        cls.r = rh.router_server(cls.d.address, name='router-ctl')
        cls.addClassCleanup(cls.r.stop_clean)
        cls.probes = [rh.probe_server(cls.d.address, 'c%d' % i,
                                      version=v)
                      for i, v in enumerate(('1', '2'))]
        for p in cls.probes:
            cls.addClassCleanup(p.stop_clean)
        cls.rc = rh.RouterClient(cls.r.get_channel())
        wait_for(lambda: len(cls.rc.call('Select', service='probe')
                             .view.nodes) == 2, what='probe in router-srv')

    def tearDown(self):
        run_ctl(['route', 'delete', 'probe', '--router', self.r.address])

    def ctl(self, *args, code=0, router=True):
        args = list(args)
        if router:
            args += ['--router', self.r.address]
        rc, out, err = run_ctl(args)
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(rc, code, (args, out, err))
        return out.decode('utf-8', 'replace'), err

    def show(self):
        out, _ = self.ctl('-o', 'json', 'route', 'show', 'probe')
        return json.loads(out)

    def test_show_table_and_json(self):
        out, _ = self.ctl('route', 'show', 'probe')
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ['NODE', 'ADDRESS', 'VERSION',
                                            'WEIGHT', 'STATE'])
        self.assertIn('c0', out)
        self.assertIn('rules: none', out)
        j = self.show()
        self.assertEqual(sorted(n['id'] for n in j['nodes']), ['c0', 'c1'])
        self.assertEqual({n['weight'] for n in j['nodes']}, {5000})
        self.assertIsNone(j['rules'])

    def test_weight_split_limit_each_keep_the_others(self):
        self.ctl('route', 'weight', 'probe', 'node=c0', '300')
        # Versions go on counting through deletes: relative to this one.
        v0 = self.show()['rules']['version']
        self.ctl('route', 'split', 'probe', '2', '10')
        self.ctl('route', 'limit', 'probe', PING, '50', '--burst', '5')
        self.ctl('route', 'limit', 'probe', '1000')
        j = self.show()
        r = j['rules']
        self.assertEqual(r['version'], v0 + 3)
        self.assertEqual(r['weights'], [{'node_id': 'c0', 'version': '',
                                         'weight': 300}])
        self.assertEqual([(s['version'], s['percent']) for s in
                          r['splits']], [('2', 10)])
        self.assertEqual(sorted((lim['method'], lim['rate'], lim['burst'])
                                for lim in r['limits']),
                         [('', 1000.0, 0), (PING, 50.0, 5)])
        w = {n['id']: n['weight'] for n in j['nodes']}
        self.assertEqual(w['c1'], 1000)
        self.assertEqual(w['c0'], 9000)
        # The same target again replaces it; clear removes it.
        self.ctl('route', 'weight', 'probe', 'node=c0', '5')
        self.ctl('route', 'split', 'probe', '2', 'clear')
        self.ctl('route', 'limit', 'probe', PING, 'clear')
        r = self.show()['rules']
        self.assertEqual([x['weight'] for x in r['weights']], [5])
        self.assertEqual(r['splits'], [])
        self.assertEqual([x['method'] for x in r['limits']], [''])
        out, _ = self.ctl('route', 'show', 'probe')
        self.assertIn('weight node=c0 5', out)
        self.assertIn('limit * 1000/s', out)

    def test_split_for_a_label(self):
        self.ctl('route', 'split', 'probe', '2', '100', '--label',
                 'track=canary')
        r = self.show()['rules']
        self.assertEqual(r['splits'][0]['label_key'], 'track')
        self.assertEqual(r['splits'][0]['label_value'], 'canary')
        # A caller without the label sees no split.
        self.assertEqual({n['weight'] for n in self.show()['nodes']},
                         {5000})

    def test_stats_after_calls(self):
        c = rh.Client(self.d.address)
        self.addCleanup(c.kill)
        wait_for(lambda: c.views() > 0, what='a view in the client')
        c.calls(100)
        c.close()   # its last report goes out as it stops

        def counted():
            out, _ = self.ctl('-o', 'json', 'route', 'stats', 'probe')
            j = json.loads(out)
            return sum(n['requests'] for n in j['nodes']) >= 100 and j
        j = wait_for(counted, what='the calls in router-srv')
        self.assertEqual(j['window_ms'], 10000)
        out, _ = self.ctl('route', 'stats', 'probe')
        self.assertEqual(out.split()[:7], ['ADDRESS', 'REQUESTS', 'ERRORS',
                                           'MEAN_MS', 'WEIGHT', 'STATE',
                                           'EJECTED_UNTIL'])

    def test_found_through_discovery(self):
        out, _ = self.ctl('--discovery', self.d.address, 'route', 'show',
                          'probe', router=False)
        self.assertIn('c1', out)

    def test_unknown_service_and_delete(self):
        _, err = self.ctl('route', 'show', 'nothing-here', code=1)
        self.assertIn('NOT_FOUND', err)
        _, err = self.ctl('route', 'delete', 'probe', code=1)
        self.assertIn('NOT_FOUND', err)
        self.ctl('route', 'limit', 'probe', '7')
        self.ctl('route', 'delete', 'probe')
        self.assertIsNone(self.show()['rules'])

    def test_lost_update_refused(self):
        self.ctl('route', 'limit', 'probe', '7')
        v = self.show()['rules']['version']
        # Someone else's change lands between our read and our write:
        # the write names the version it read and is refused.
        self.rc.set_rules('probe', expected_version=v,
                          limits=[rh.pb().RateLimit(rate=8)])
        with self.assertRaises(Exception) as e:
            self.rc.set_rules('probe', expected_version=v)
        self.assertIn('expected_version', e.exception.details())
        self.assertEqual(self.show()['rules']['limits'][0]['rate'], 8.0)

    def test_usage_errors(self):
        for args in (['route', 'weight', 'probe', 'c0', '5'],
                     ['route', 'weight', 'probe', 'node=', '5'],
                     ['route', 'weight', 'probe', 'node=c0', '10001'],
                     ['route', 'weight', 'probe', 'node=c0', 'x'],
                     ['route', 'split', 'probe', '2', '101'],
                     ['route', 'split', 'probe', '2', '5', '--label', 'x'],
                     ['route', 'limit', 'probe', '0'],
                     ['route', 'limit', 'probe', 'fast'],
                     ['route', 'limit', 'probe', '5', '--burst', '-1'],
                     ['route', 'show'],
                     ['route', 'show', 'a', 'b'],
                     ['route', 'bogus']):
            _, err = self.ctl(*args, code=2)
            self.assertIn('platformctl', err)
        _, err = self.ctl('route', 'show', 'probe', '--router', 'nohost',
                          code=2, router=False)
        self.assertIn('--router', err)
        # A bad rule reaches router-srv, which names the field.
        _, err = self.ctl('route', 'limit', 'probe', 'Ping', '5', code=1)
        self.assertIn('INVALID_ARGUMENT', err)
        self.assertIn('method', err)
        out, _ = self.ctl('route', 'help', router=False)
        for word in ('show', 'stats', 'weight', 'split', 'limit'):
            self.assertIn(word, out)


if __name__ == '__main__':
    if not rh.DATABASE:
        print('test_ctl_route: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it from scripts/pg)')
        sys.exit(0)
    harness.run_tests()
