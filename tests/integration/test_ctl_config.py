"""`platformctl config ...` against a real config-srv and PostgreSQL:
every subcommand, JSON from an argument and from stdin, both output
formats, and the exit codes (0 ok, 1 the call failed, 2 usage)."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import config_harness as ch  # noqa: E402


class CtlConfigTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = ch.config_server()
        cls.addClassCleanup(cls.srv.stop_clean)

    def ctl(self, *args, stdin=None):
        p = subprocess.run(
            [harness.PLATFORMCTL_BIN, '--config', self.srv.address,
             '--timeout', '10000'] + list(args),
            input=stdin, capture_output=True, text=True,
            timeout=harness.TIMEOUT, env=harness.child_env())
        self.assertEqual(harness.sanitizer_findings(p.stderr), [],
                         p.stderr)
        return p

    def test_set_get_history_diff_rollback_delete(self):
        ns = ch.uniq_ns('ctl')
        r = self.ctl('config', 'set', ns, 'payments/limits',
                     '{"daily": {"max": 100}, "note": "it\'s; -- \\"q\\""}',
                     '--comment', 'first')
        self.assertEqual(r.returncode, 0, r.stderr)
        # From stdin, with compare-and-set on version 1.
        r = self.ctl('config', 'set', ns, 'payments/limits', '-',
                     '--expect', '1', stdin='{"daily": {"max": 200}}')
        self.assertEqual(r.returncode, 0, r.stderr)
        # A stale expected version is refused: exit 1, status named.
        r = self.ctl('config', 'set', ns, 'payments/limits', '{}',
                     '--expect', '1')
        self.assertEqual(r.returncode, 1)
        self.assertIn('FAILED_PRECONDITION', r.stderr)

        r = self.ctl('config', 'get', ns, 'payments/limits.daily.max')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), 200)
        r = self.ctl('-o', 'json', 'config', 'get', ns, 'payments/limits',
                     '--version', '1')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('it\'s; -- \\"q\\"', r.stdout)

        r = self.ctl('-o', 'json', 'config', 'history', ns,
                     'payments/limits')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count('"version"'), 2, r.stdout)

        r = self.ctl('config', 'diff', ns, 'payments/limits', '1', '2')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('daily.max', r.stdout)

        r = self.ctl('config', 'rollback', ns, 'payments/limits', '1')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl('config', 'get', ns, 'payments/limits.daily.max')
        self.assertEqual(json.loads(r.stdout), 100)

        r = self.ctl('config', 'delete', ns, 'payments/limits')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl('config', 'get', ns, 'payments/limits')
        self.assertEqual(r.returncode, 1)
        self.assertIn('NOT_FOUND', r.stderr)

    def test_merged_get(self):
        ns = ch.uniq_ns('ctlm')
        for level, doc in (('global', '{"a": 1, "b": 1}'),
                           (ns, '{"b": 2}')):
            r = self.ctl('config', 'set', level, 'merged/' + ns.replace(
                '/', '-'), doc)
            self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl('config', 'get', ns, 'merged/' + ns.replace('/', '-'),
                     '--merged')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {'a': 1, 'b': 2})

    def test_usage_errors_exit_2(self):
        for args in (['config'], ['config', 'frob'],
                     ['config', 'get', 'ns-only'],
                     ['config', 'set', 'ns', 'p', '{not json'],
                     ['config', 'diff', 'ns', 'p', 'x']):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))

    def test_bad_namespace_exit_1(self):
        r = self.ctl('config', 'get', 'Bad//ns', 'p')
        self.assertEqual(r.returncode, 1)
        self.assertIn('INVALID_ARGUMENT', r.stderr)


if __name__ == '__main__':
    if not ch.DATABASE:
        print('test_ctl_config: PLATFORM_TEST_DATABASE is unset; skipping')
        sys.exit(0)
    harness.run_tests()
