#!/usr/bin/python3
"""`platformctl trace ...` against a real trace-srv on a real PostgreSQL:
get prints a stored trace as an indented tree with durations (and as
JSON), search with every filter over several pages, services,
operations and deps, trace-srv found through discovery, a trace that is
not stored exits 1, usage errors exit 2.

Needs PLATFORM_TEST_DATABASE (scripts/test sets it from scripts/pg),
else it says so and exits 0. No test asserts a time."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import trace_harness as th  # noqa: E402
from harness import Server  # noqa: E402
from test_ctl_kv import run_ctl  # noqa: E402
from trace_harness import ids, now_ns, request, span, uniq  # noqa: E402


class CtlTraceTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.disc = Server(discovery='self', name='discovery-ctl-trace')
        cls.addClassCleanup(cls.disc.stop_clean)
        cls.srv = th.trace_server(name='ctl-trace',
                                  discovery=cls.disc.address)
        cls.addClassCleanup(cls.srv.stop_clean)
        cls.c = th.client_of(cls.srv)
        # A trace of two services: a -> b, b's span an error.
        cls.svc_a, cls.svc_b = uniq('shop'), uniq('pay')
        tid, root = ids()
        call, serve, db = os.urandom(8), os.urandom(8), os.urandom(8)
        t0 = now_ns()
        cls.tid = tid.hex()
        cls.c.export(request(cls.svc_a, [
            span(tid, root, 'checkout', start_ns=t0, duration_ns=40000000,
                 attrs={'order': 'o-1'}),
            span(tid, call, 'call pay', parent=root, kind=th.CLIENT,
                 start_ns=t0 + 1000000, duration_ns=30000000)]))
        cls.c.export(request(cls.svc_b, [
            span(tid, serve, 'charge', parent=call, start_ns=t0 + 2000000,
                 duration_ns=25000000, error=True, message='declined'),
            span(tid, db, 'insert', parent=serve, kind=th.INTERNAL,
                 start_ns=t0 + 3000000, duration_ns=5000000)]))

    def ctl(self, *args, code=0, via_discovery=False):
        args = list(args)
        if not via_discovery:
            at = args.index('trace') + 1
            args[at:at] = ['--trace', self.srv.address]
        else:
            args += ['--discovery', self.disc.address]
        rc, out, err = run_ctl(args)
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(rc, code, (args, out, err))
        return out.decode('utf-8', 'replace'), err

    def test_get_tree(self):
        out, _ = self.ctl('trace', 'get', self.tid)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith('OPERATION'))
        col = lines[0].index('SERVICE')
        names = [ln[:col] for ln in lines[1:]]
        # Each span under its parent, indented two more.
        self.assertEqual([n.rstrip() for n in names],
                         ['checkout', '  call pay', '    charge',
                          '      insert'])
        self.assertIn('40.000ms', lines[1])
        self.assertIn('+0.000ms', lines[1])
        self.assertIn('+2.000ms', lines[3])
        self.assertIn('declined', lines[3])
        self.assertIn(self.svc_b, lines[3])

    def test_get_json_and_missing(self):
        out, _ = self.ctl('-o', 'json', 'trace', 'get', self.tid)
        j = json.loads(out)
        self.assertEqual(len(j['spans']), 4)
        self.assertEqual(j['spans'][0]['attributes'], {'order': 'o-1'})
        _, err = self.ctl('trace', 'get', os.urandom(16).hex(), code=1)
        self.assertIn('NOT_FOUND', err)
        _, err = self.ctl('trace', 'get', 'nonsense', code=1)
        self.assertIn('trace_id', err)

    def test_search(self):
        out, _ = self.ctl('trace', 'search', '--service', self.svc_b,
                          '--errors')
        self.assertIn(self.tid, out)
        self.assertIn('%s checkout' % self.svc_a, out)
        out, _ = self.ctl('trace', 'search', '--attr', 'order=o-1',
                          '--min-duration', '30ms', '--since', '1h')
        self.assertIn(self.tid, out)
        out, _ = self.ctl('trace', 'search', '--service', self.svc_a,
                          '--operation', 'checkout', '--max-duration',
                          '1ms')
        self.assertNotIn(self.tid, out)

    def test_search_pages_and_limit(self):
        svc = uniq('many')
        spans = [span(ids()[0], os.urandom(8), 'op',
                      start_ns=now_ns() + i) for i in range(250)]
        self.c.export(request(svc, spans))
        out, _ = self.ctl('-o', 'json', 'trace', 'search', '--service', svc,
                          '--limit', '1000')
        self.assertEqual(len(json.loads(out)), 250)
        out, _ = self.ctl('-o', 'json', 'trace', 'search', '--service', svc,
                          '--limit', '7')
        self.assertEqual(len(json.loads(out)), 7)

    def test_services_operations_deps(self):
        out, _ = self.ctl('trace', 'services')
        self.assertIn(self.svc_a, out.split())
        out, _ = self.ctl('trace', 'operations', self.svc_b)
        self.assertIn('charge', out)
        self.assertIn('INTERNAL', out)
        out, _ = self.ctl('-o', 'json', 'trace', 'deps')
        d = [x for x in json.loads(out) if x['parent'] == self.svc_a]
        self.assertEqual(d, [{'parent': self.svc_a, 'child': self.svc_b,
                              'call_count': 1, 'error_count': 1,
                              'error_rate': 1.0}])
        out, _ = self.ctl('trace', 'deps', '--since', '2h')
        self.assertIn('100.0%', out)

    def test_through_discovery(self):
        out, _ = self.ctl('trace', 'get', self.tid, via_discovery=True)
        self.assertIn('checkout', out)

    def test_usage_errors(self):
        for args in (['trace', 'get'], ['trace', 'search', '--attr', 'x'],
                     ['trace', 'search', '--since', 'soon'],
                     ['trace', 'search', '--limit', '0'],
                     ['trace', 'search', '--min-duration', 'x'],
                     ['trace', 'operations'], ['trace', 'nope']):
            self.ctl(*args, code=2)
        rc, _, err = run_ctl(['trace', '--trace', 'nowhere', 'services'])
        self.assertEqual(rc, 2, err)


if __name__ == '__main__':
    if not th.DATABASE:
        print('test_ctl_trace: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it)')
        sys.exit(0)
    harness.run_tests()
