"""platformctl against a real discovery-srv: every command, both output
formats, and the exit codes (0 ok, 1 the call failed, 2 usage)."""

import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def ctl(*args, env=None, timeout=harness.TIMEOUT):
    return harness.run_binary(list(args), binary=harness.PLATFORMCTL_BIN,
                              timeout=timeout, env=env)


class PlatformctlTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Server(discovery='self')
        cls.addClassCleanup(cls.srv.stop_clean)
        cls.client = cls.srv.discovery_client()
        d = harness.protos().discovery
        svc = d.Service(name='ctl-api', version='1.2.0',
                        metadata={'team': 'payments'},
                        nodes=[d.Node(id='ctl-1', address='127.0.0.1:9001',
                                      metadata={'zone': 'a'}),
                               d.Node(id='ctl-2', address='127.0.0.1:9002')])
        cls.client.register(svc, ttl_seconds=600)

    def d(self, *args):
        return ctl('--discovery', self.srv.address, *args)

    def assertClean(self, run):
        self.assertEqual(run.sanitizer_findings(), [], run.stderr)

    def test_services_table_lists_discovery_itself(self):
        # discovery-srv registers itself; its heartbeat may lag the start.
        harness.wait_for(lambda: 'discovery' in self.d('services').stdout,
                         what='discovery listed')
        r = self.d('services')
        self.assertEqual(r.code, 0, r.stderr)
        self.assertIn('ctl-api', r.stdout)
        self.assertIn('NAME', r.stdout.splitlines()[0])
        self.assertClean(r)

    def test_services_json(self):
        r = self.d('--output', 'json', 'services')
        self.assertEqual(r.code, 0, r.stderr)
        data = json.loads(r.stdout)
        names = [s['name'] for s in data]
        self.assertIn('ctl-api', names)
        entry = [s for s in data if s['name'] == 'ctl-api'][0]
        self.assertEqual(entry['versions'], ['1.2.0'])
        self.assertEqual(entry['nodes'], 2)

    def test_services_paging_over_many(self):
        d = harness.protos().discovery
        for i in range(120):
            self.client.register(d.Service(
                name='ctl-many-%03d' % i,
                nodes=[d.Node(id='ctl-many-%03d' % i,
                              address='127.0.0.1:%d' % (10000 + i))]),
                ttl_seconds=600)
        r = self.d('--output', 'json', 'services')
        self.assertEqual(r.code, 0, r.stderr)
        names = [s['name'] for s in json.loads(r.stdout)]
        for i in range(120):
            self.assertIn('ctl-many-%03d' % i, names)
        self.assertEqual(len(names), len(set(names)))

    def test_service_table_and_json(self):
        r = self.d('service', 'ctl-api')
        self.assertEqual(r.code, 0, r.stderr)
        self.assertIn('ctl-1', r.stdout)
        self.assertIn('127.0.0.1:9002', r.stdout)
        r = self.d('service', 'ctl-api', '--output', 'json')
        self.assertEqual(r.code, 0, r.stderr)
        data = json.loads(r.stdout)
        text = json.dumps(data)
        self.assertIn('ctl-1', text)
        self.assertIn('payments', text)

    def test_service_not_found_exit_1(self):
        r = self.d('service', 'no-such-service')
        self.assertEqual(r.code, 1)
        self.assertIn('NOT_FOUND', r.stderr)

    def test_health_by_address_and_by_name(self):
        r = self.d('health', self.srv.address)
        self.assertEqual(r.code, 0, r.stderr)
        self.assertIn('SERVING', r.stdout)
        harness.wait_for(lambda: self.d('health', 'discovery').code == 0,
                         what='health by service name')

    def test_health_of_unreachable_address_exit_1(self):
        port = harness.free_port()
        r = ctl('--timeout', '2000', 'health', '127.0.0.1:%d' % port)
        self.assertEqual(r.code, 1)

    def test_unreachable_discovery_exit_1_names_status(self):
        port = harness.free_port()
        r = ctl('--discovery', '127.0.0.1:%d' % port, '--timeout', '2000',
                'services')
        self.assertEqual(r.code, 1)
        self.assertIn('UNAVAILABLE', r.stderr)

    def test_discovery_from_environment(self):
        r = ctl('services', env={'PLATFORM_DISCOVERY': self.srv.address})
        self.assertEqual(r.code, 0, r.stderr)
        self.assertIn('ctl-api', r.stdout)

    def test_usage_errors_exit_2(self):
        for args in (['frobnicate'], ['--output', 'yaml', 'services'],
                     ['service'], ['--no-such-flag'], []):
            r = ctl(*args)
            self.assertEqual(r.code, 2, (args, r.stdout, r.stderr))
            self.assertTrue(r.stderr.strip(), args)

    def test_help_exit_0(self):
        r = ctl('--help')
        self.assertEqual(r.code, 0)
        for word in ('services', 'service', 'watch', 'health',
                     'PLATFORM_DISCOVERY'):
            self.assertIn(word, r.stdout)

    def test_watch_streams_events_and_stops_on_sigint(self):
        d = harness.protos().discovery
        out_path = os.path.join(harness.log_dir(), 'watch.out')
        with open(out_path, 'wb') as out:
            p = subprocess.Popen(
                [harness.PLATFORMCTL_BIN, '--discovery', self.srv.address,
                 '--output', 'json', 'watch', 'ctl-watch'],
                stdout=out, stderr=subprocess.PIPE)
            try:
                def lines():
                    with open(out_path) as f:
                        return [json.loads(x) for x in f if x.strip()]
                harness.wait_for(lambda: len(lines()) >= 1,
                                 what='synced marker')
                self.client.register(d.Service(
                    name='ctl-watch',
                    nodes=[d.Node(id='ctl-w1', address='127.0.0.1:9100')]),
                    ttl_seconds=600)
                harness.wait_for(lambda: len(lines()) >= 2,
                                 what='created event')
                self.client.deregister('ctl-watch', '', 'ctl-w1')
                harness.wait_for(lambda: len(lines()) >= 3,
                                 what='deleted event')
                text = json.dumps(lines())
                self.assertIn('SYNCED', text)
                self.assertIn('CREATED', text)
                self.assertIn('DELETED', text)
                self.assertIn('ctl-w1', text)
            finally:
                p.send_signal(signal.SIGINT)
                code = p.wait(timeout=harness.TIMEOUT)
                err = p.stderr.read().decode(errors='replace')
                p.stderr.close()
        self.assertEqual(code, 0, err)
        self.assertEqual(harness.sanitizer_findings(err), [], err)


if __name__ == '__main__':
    harness.run_tests()
