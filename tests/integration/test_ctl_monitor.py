#!/usr/bin/python3
"""`platformctl status|checks|watch-status` against a real monitor-srv
(found through discovery or given with --monitor): the table of every
node and its checks, coloured on a terminal only, JSON output, the
checks with their output, the watch printing the current state and then
each change, and usage errors. No test asserts a time."""

import json
import os
import pty
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import monitor_harness as mh  # noqa: E402
from harness import wait_for  # noqa: E402
from monitor_harness import PASSING, CRITICAL  # noqa: E402
from test_ctl_kv import Watch, run_ctl  # noqa: E402
from test_monitor import FAST, node_id_of  # noqa: E402


@unittest.skipUnless(mh.DATABASE, 'needs PLATFORM_TEST_DATABASE')
class CtlMonitorTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.disc = harness.Server(discovery='self', name='ctlmon-discovery')
        cls.addClassCleanup(cls.disc.stop_clean)
        cls.mon = mh.monitor_server(cls.disc.address, name='ctlmon-monitor',
                                    extra_args=FAST +
                                    ['--flap-threshold', '1'])
        cls.addClassCleanup(cls.mon.stop_clean)
        cls.c = mh.client_of(cls.mon)
        cls.mon_id = node_id_of(cls.mon)
        # monitor-srv probes itself like any node.
        wait_for(lambda: cls.c.node(cls.mon_id) is not None,
                 what='monitor-srv probed')

    def ctl(self, *args, code=0, env=None):
        rc, out, err = run_ctl(['--discovery', self.disc.address] +
                               list(args), env=env)
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(rc, code, (args, out, err))
        return out.decode('utf-8', 'replace'), err

    def test_status_table(self):
        out, _ = self.ctl('status')
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ['SERVICE', 'NODE', 'STATUS',
                                            'CHECKS'])
        mine = [ln for ln in lines if self.mon_id in ln]
        self.assertEqual(len(mine), 1, out)
        self.assertEqual(mine[0].split()[:3], ['monitor', self.mon_id,
                                               'passing'])
        self.assertIn('health:passing', mine[0].split()[3:])
        self.assertNotIn('\033[', out)      # a pipe: no colour

    def test_status_of_a_service_as_json(self):
        svc = mh.uniq('ctlsvc')
        nid = mh.uniq('ctlnode')
        self.c.report(nid, svc, 'disk', CRITICAL, 'full', ttl_ms=600000)
        self.c.report(nid, svc, 'queue', PASSING, 'empty', ttl_ms=600000)
        out, _ = self.ctl('-o', 'json', 'status', svc)
        nodes = json.loads(out)
        self.assertEqual([n['node_id'] for n in nodes], [nid])
        self.assertEqual(nodes[0]['status'], 'critical')
        # The check that decided comes first.
        self.assertEqual([(c['name'], c['status']) for c in
                          nodes[0]['checks']],
                         [('disk', 'critical'), ('queue', 'passing')])
        out, _ = self.ctl('status', svc, '--monitor', self.mon.address)
        self.assertEqual(out.splitlines()[1].split(),
                         [svc, nid, 'critical', 'disk:critical',
                          'queue:passing'])

    def status_on_a_tty(self, svc, no_color):
        """`platformctl status SVC` with its stdout on a pseudo-terminal:
        what it wrote there."""
        master, slave = pty.openpty()
        try:
            p = subprocess.run(
                [harness.PLATFORMCTL_BIN, '--discovery', self.disc.address,
                 'status', svc], stdout=slave, stderr=subprocess.PIPE,
                timeout=harness.TIMEOUT,
                env=harness.child_env({'NO_COLOR': no_color}))
            os.close(slave)
            slave = None
            self.assertEqual(p.returncode, 0, p.stderr)
            out = b''
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:     # EIO: the writer is gone
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)

    def test_colour_on_a_terminal_only(self):
        svc = mh.uniq('ttysvc')
        self.c.report(mh.uniq('tty'), svc, 'disk', CRITICAL, ttl_ms=600000)
        self.assertIn(b'\033[31mcritical\033[0m',
                      self.status_on_a_tty(svc, ''))
        # NO_COLOR turns it off even there.
        out = self.status_on_a_tty(svc, '1')
        self.assertIn(b'critical', out)
        self.assertNotIn(b'\033[', out)

    def test_checks(self):
        nid = mh.uniq('chk')
        self.c.report(nid, 'chk', 'backup', PASSING, 'last run ok',
                      ttl_ms=600000)
        out, _ = self.ctl('checks', '--node', nid)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ['SERVICE', 'NODE', 'CHECK',
                                            'STATUS', 'UPDATED', 'OUTPUT'])
        self.assertEqual(len(lines), 2, out)
        row = lines[1].split()
        self.assertEqual(row[:4], ['chk', nid, 'backup', 'passing'])
        self.assertTrue(lines[1].endswith('last run ok'))
        # monitor-srv's own: its probe and the database check it reports.
        wait_for(lambda: len(json.loads(self.ctl(
            '-o', 'json', 'checks', '--node', self.mon_id)[0])) == 2,
            what='both checks of monitor-srv')
        out, _ = self.ctl('-o', 'json', 'checks', '--node', self.mon_id)
        got = json.loads(out)
        self.assertEqual(sorted((c['name'], c['pushed']) for c in got),
                         [('database', True), ('health', False)])

    def test_watch_status(self):
        svc = mh.uniq('watchsvc')
        nid = mh.uniq('watched')
        self.c.report(nid, svc, 'job', PASSING, ttl_ms=600000)
        w = Watch(['--discovery', self.disc.address, 'watch-status', svc])
        self.addCleanup(w.kill)
        first = w.until(lambda ln: nid in ln, 'the current state')
        self.assertTrue(first.endswith('%s %s passing job:passing'
                                       % (svc, nid)), first)
        self.c.report(nid, svc, 'job', CRITICAL, ttl_ms=600000)
        change = w.until(lambda ln: 'passing -> critical' in ln,
                         'the change')
        self.assertTrue(change.endswith('%s %s passing -> critical '
                                        'job:critical' % (svc, nid)), change)
        # Ctrl-C ends it cleanly.
        self.assertEqual(w.interrupt(), (0, ''))

    def test_usage_errors(self):
        for args in (['status', 'a', 'b'],
                     ['status', '--monitor', 'nocolon'],
                     ['checks', '--node', 'x' * 256],
                     ['status', 'x' * 256],
                     ['status', '--node', 'n']):
            with self.subTest(args=args):
                _, err = self.ctl(*args, code=2)
                self.assertIn('platformctl', err)

    def test_no_monitor_is_a_failure(self):
        disc = harness.Server(discovery='self', name='ctlmon-lonely')
        self.addCleanup(disc.stop_clean)
        rc, _, err = run_ctl(['--discovery', disc.address, 'status'])
        self.assertEqual(rc, 1, err)
        self.assertIn('monitor', err)


if __name__ == '__main__':
    harness.run_tests()
