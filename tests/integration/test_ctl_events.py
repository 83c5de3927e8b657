#!/usr/bin/python3
"""`platformctl events ...` against a real event-srv and PostgreSQL:
publish (argument, stdin, metadata, idempotency key), tail (start
positions, a consumer group that acknowledges), query, groups, both output
formats, and the exit codes (0 ok, 1 the call failed, 2 usage)."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import event_harness as eh  # noqa: E402


class CtlEventsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = eh.event_server(name='ctl-events')
        cls.addClassCleanup(cls.srv.stop_clean)

    def ctl(self, *args, stdin=None, code=0):
        p = subprocess.run(
            [harness.PLATFORMCTL_BIN, '--timeout', '10000'] + list(args) +
            ['--events', self.srv.address],
            input=stdin, capture_output=True, timeout=harness.TIMEOUT,
            env=harness.child_env())
        err = p.stderr.decode('utf-8', 'replace')
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(p.returncode, code, err)
        return p.stdout.decode('utf-8', 'replace'), err

    def test_publish_tail_query_groups(self):
        t = eh.uniq('ctl')
        out, _ = self.ctl('events', 'publish', t + '.a', '{"x": 1}',
                          '--meta', 'k=v', '--key', 'once')
        self.assertIn('offset 1', out)
        out, _ = self.ctl('events', 'publish', t + '.a', 'again',
                          '--key', 'once')
        self.assertIn('duplicate', out)
        self.ctl('events', 'publish', t + '.b', '-', '--type', 'bin.v1',
                 stdin=b'\x00\xff')
        out, _ = self.ctl('-o', 'json', 'events', 'publish', t + '.a', 'z')
        self.assertEqual(json.loads(out)['offset'], 2)

        out, _ = self.ctl('-o', 'json', 'events', 'tail', t + '.>',
                          '--from', 'earliest', '--count', '3')
        evs = [json.loads(ln) for ln in out.splitlines()]
        self.assertEqual([e['topic'] for e in evs],
                         [t + '.a', t + '.b', t + '.a'])
        self.assertEqual(evs[0]['data'], '{"x": 1}')
        self.assertEqual(evs[0]['metadata'], {'k': 'v'})
        self.assertEqual(evs[1]['data_base64'], 'AP8=')
        out, _ = self.ctl('events', 'tail', t + '.a', '--from',
                            'offset:2', '--count', '1')
        self.assertIn(t + '.a@2', out)

        g = eh.uniq('cg')
        out, _ = self.ctl('events', 'tail', t + '.*', '--group', g,
                          '--from', 'earliest', '--count', '3')
        self.assertEqual(len(out.splitlines()), 3)
        out, _ = self.ctl('-o', 'json', 'events', 'groups')
        mine = [x for x in json.loads(out) if x['name'] == g]
        self.assertEqual(mine[0]['pending'], 0)
        self.assertEqual(mine[0]['subjects'], [t + '.*'])

        out, _ = self.ctl('events', 'query', t + '.>', '--meta', 'k=v')
        lines = out.splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn('SEQUENCE', lines[0])
        out, _ = self.ctl('-o', 'json', 'events', 'query', t + '.>',
                          '--oldest', '--limit', '2')
        self.assertEqual([e['offset'] for e in json.loads(out)], [1, 1])
        out, _ = self.ctl('events', 'query', t + '.>', '--type', 'bin.v1')
        self.assertIn('b64:AP8=', out)

    def test_errors(self):
        _, err = self.ctl('events', 'publish', 'bad..topic', 'x', code=1)
        self.assertIn('INVALID_ARGUMENT', err)
        self.assertIn('topic', err)
        self.ctl('events', 'nope', code=2)
        self.ctl('events', 'tail', code=2)
        self.ctl('events', 'tail', 'a', '--from', 'sometime', code=2)
        self.ctl('events', 'query', '--limit', '0', code=2)
        self.ctl('events', 'publish', 'a', 'x', '--meta', 'novalue', code=2)
        out, _ = self.ctl('events', 'help')
        self.assertIn('publish', out)


if __name__ == '__main__':
    if not eh.DATABASE:
        print('test_ctl_events: PLATFORM_TEST_DATABASE is unset; skipping')
        sys.exit(0)
    harness.run_tests()
