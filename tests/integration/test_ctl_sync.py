#!/usr/bin/python3
"""`platformctl sync ...` against real sync-srv replicas on a real
PostgreSQL: lock -- CMD runs CMD with the fencing token, the lock name
and the lease in its environment and passes its exit status on; lock
commands at two replicas at once never overlap and their tokens only
grow (a history of every CMD's start and end, checked whole); a lease
revoked under a running CMD, or sync-srv killed under it, kills CMD
(exit 1, stderr says why); Ctrl-C while waiting revokes the lease, so
it leaves the queue; leader and observe following a campaign, a
proclamation and a resignation; leases; sync-srv found through
discovery; usage errors exit 2.

Needs PLATFORM_TEST_DATABASE (scripts/test sets it from scripts/pg),
else it says so and exits 0. No test asserts a time."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sync_harness as sh  # noqa: E402
from test_ctl_kv import Watch, run_ctl  # noqa: E402
from test_sync import metered, waiters  # noqa: E402

SH = '/bin/sh'


class CtlSyncTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = metered('ctl-sync-a')
        cls.addClassCleanup(cls.srv.stop_clean)
        cls.srv2 = sh.sync_server(name='ctl-sync-b')
        cls.addClassCleanup(cls.srv2.stop_clean)
        cls.c = sh.client_of(cls.srv)

    def setUp(self):
        self.n = sh.uniq('ctl')
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def args(self, args, srv=None):
        """ARGS with --sync after the group's word, where its flags go."""
        args = list(args)
        at = args.index('sync') + 1
        args[at:at] = ['--sync', (srv or self.srv).address]
        return args

    def ctl(self, *args, code=0, srv=None):
        """platformctl ARGS --sync; stdout and stderr as text."""
        rc, out, err = run_ctl(self.args(args, srv))
        err_ = harness.sanitizer_findings(err)
        self.assertEqual(err_, [], err)
        self.assertEqual(rc, code, (args, out, err))
        return out.decode('utf-8', 'replace'), err

    def lock(self, script, *extra, code=0, srv=None):
        return self.ctl('sync', 'lock', *extra, self.n, '--', SH, '-c',
                        script, code=code, srv=srv)

    # ---- lock -- CMD

    def test_lock_runs_cmd_with_token(self):
        out, _ = self.lock('echo "$PLATFORM_FENCING_TOKEN '
                           '$PLATFORM_LOCK_NAME $PLATFORM_LEASE_ID"')
        token, name, lease = out.split()
        self.assertEqual(name, self.n)
        self.assertGreater(int(token), 0)
        # Released when CMD ended: Unlock, and the lease revoked.
        with self.assertRaises(Exception):
            self.c.call('TimeToLive', lease_id=int(lease))
        other = self.c.grant()
        self.assertGreater(self.c.lock(self.n, other, try_lock=True),
                           int(token))
        self.c.call('Revoke', lease_id=other)
        # The next holder by platformctl gets a larger token still.
        out2, _ = self.lock('echo $PLATFORM_FENCING_TOKEN')
        self.assertGreater(int(out2), int(token))

    def test_exit_status_passed_on(self):
        self.lock('exit 7', code=7)
        self.lock('kill -TERM $$', code=128 + 15)
        _, err = self.ctl('sync', 'lock', self.n, '--',
                          '/nonexistent/cmd', code=127)
        self.assertIn('cannot run /nonexistent/cmd', err)
        # The lock was released each time: a try-lock takes it.
        lease = self.c.grant()
        self.c.lock(self.n, lease, try_lock=True)
        self.c.call('Revoke', lease_id=lease)

    def test_concurrent_locks_never_overlap(self):
        """Six lock commands at once, three at each replica, each CMD
        appending its start and its end with its token to one file: the
        file (O_APPEND, so its order is the order of the writes) must
        read start, end, start, end, ... with the same token in each
        pair and tokens strictly growing."""
        hist = os.path.join(self.dir.name, 'history')
        script = ('echo "start $PLATFORM_FENCING_TOKEN" >> "$H"; '
                  'sleep 0.1; echo "end $PLATFORM_FENCING_TOKEN" >> "$H"')
        procs = []
        for i in range(6):
            srv = self.srv if i % 2 == 0 else self.srv2
            procs.append(subprocess.Popen(
                [harness.PLATFORMCTL_BIN, '--timeout', '10000'] +
                self.args(['sync', 'lock', self.n, '--', SH, '-c',
                           script], srv),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=harness.child_env({'H': hist})))
        for p in procs:
            out, err = p.communicate(timeout=harness.TIMEOUT * 4)
            err = err.decode('utf-8', 'replace')
            self.assertEqual(harness.sanitizer_findings(err), [], err)
            self.assertEqual(p.returncode, 0, err)
        with open(hist) as f:
            lines = [ln.split() for ln in f.read().splitlines()]
        self.assertEqual(len(lines), 12, lines)
        last = 0
        for i in range(0, len(lines), 2):
            self.assertEqual(lines[i][0], 'start', lines)
            self.assertEqual(lines[i + 1], ['end', lines[i][1]], lines)
            self.assertGreater(int(lines[i][1]), last, lines)
            last = int(lines[i][1])

    def test_lease_lost_kills_cmd(self):
        """The lease revoked under a running CMD: the keeper hears so at
        its next renewal, CMD is killed, the status is 1."""
        f = os.path.join(self.dir.name, 'lease')
        box = {}

        def run():
            box['r'] = run_ctl(self.args([
                'sync', 'lock', '--ttl', '3s', self.n, '--', SH, '-c',
                'echo $PLATFORM_LEASE_ID > %s.tmp; mv %s.tmp %s; '
                'exec sleep 60' % (f, f, f)]))
        t = threading.Thread(target=run)
        t.start()
        harness.wait_for(lambda: os.path.exists(f), what='CMD started')
        with open(f) as fh:
            lease = int(fh.read())
        self.c.call('Revoke', lease_id=lease)
        t.join(harness.TIMEOUT * 2)
        self.assertFalse(t.is_alive())
        rc, out, err = box['r']
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(rc, 1, err)
        self.assertIn('lease %d' % lease, err)
        self.assertIn('killing', err)

    def test_server_gone_loses_the_lease(self):
        """sync-srv killed under a running CMD: no renewal gets through,
        so at the TTL less its margin the lease counts as lost and CMD is
        killed (the lock may be someone else's by then)."""
        srv = sh.sync_server(name='ctl-sync-gone')
        self.addCleanup(srv.kill)
        f = os.path.join(self.dir.name, 'started')
        box = {}

        def run():
            box['r'] = run_ctl(self.args([
                'sync', 'lock', '--ttl', '2s', self.n, '--', SH, '-c',
                'touch %s; exec sleep 60' % f], srv))
        t = threading.Thread(target=run)
        t.start()
        harness.wait_for(lambda: os.path.exists(f), what='CMD started')
        srv.kill()
        t.join(harness.TIMEOUT)
        self.assertFalse(t.is_alive())
        rc, out, err = box['r']
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(rc, 1, err)
        self.assertIn('could not be renewed within its TTL', err)
        self.assertIn('killing', err)

    def test_lock_without_cmd_holds_until_interrupted(self):
        w = Watch(self.args(['sync', 'lock', self.n]))
        self.addCleanup(w.kill)
        ln = w.until(lambda ln: ln.startswith(self.n + ' token='),
                     'the lock held')
        token = int(ln.split()[1].split('=')[1])
        lease = self.c.grant()
        with self.assertRaises(Exception):
            self.c.lock(self.n, lease, try_lock=True)
        code, err = w.interrupt()
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(code, 0, err)
        self.assertGreater(self.c.lock(self.n, lease, try_lock=True),
                           token)
        self.c.unlock(self.n, lease)
        # -o json: one object, the lease in it alive until Ctrl-C.
        w = Watch(['-o', 'json'] + self.args(['sync', 'lock', self.n]))
        self.addCleanup(w.kill)
        j = json.loads(w.until(lambda ln: ln.startswith('{'), 'json'))
        self.assertEqual(j['name'], self.n)
        self.assertGreater(j['token'], token)
        self.assertGreater(self.c.call('TimeToLive',
                                       lease_id=j['lease_id']).ttl_ms, 0)
        code, err = w.interrupt()
        self.assertEqual((code, harness.sanitizer_findings(err)), (0, []),
                         err)
        self.c.call('Revoke', lease_id=lease)

    def test_interrupted_while_waiting(self):
        """Ctrl-C while lock waits: the lease is revoked, so the waiter
        leaves the queue at once (else it would be granted the lock when
        it came free, and hold it until its lease lapsed)."""
        lease = self.c.grant()
        token = self.c.lock(self.n, lease)
        w = Watch(self.args(['sync', 'lock', self.n, '--', 'true']))
        self.addCleanup(w.kill)
        harness.wait_for(lambda: waiters(self.srv) == 1,
                         what='platformctl waiting')
        code, err = w.interrupt()
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(code, 128 + 2, err)
        self.assertIn('interrupted while waiting', err)
        self.c.unlock(self.n, lease)
        other = self.c.grant()
        self.assertGreater(self.c.lock(self.n, other, try_lock=True),
                           token)
        self.c.call('Revoke', lease_id=other)
        self.c.call('Revoke', lease_id=lease)

    def test_wait_gives_up(self):
        lease = self.c.grant()
        self.c.lock(self.n, lease)
        _, err = self.lock('true', '--wait', '1s', code=1)
        self.assertIn('DEADLINE_EXCEEDED', err)
        self.c.call('Revoke', lease_id=lease)

    # ---- leader, observe

    def test_leader_and_observe(self):
        e = self.n
        w = Watch(self.args(['sync', 'observe', e]))
        self.addCleanup(w.kill)
        w.until(lambda ln: ln == e + ' no leader', 'no leader yet')
        _, err = self.ctl('sync', 'leader', e, code=1)
        self.assertIn('has no leader', err)

        lease = self.c.grant()
        r = self.c.call('Campaign', election=e, lease_id=lease,
                        value=b'host-a')
        want = '%s lease=%d token=%d value=host-a' % (e, lease,
                                                     r.leader.token)
        w.until(lambda ln: ln == want, 'the leader')
        out, _ = self.ctl('sync', 'leader', e)
        self.assertEqual(out, want + '\n')
        out, _ = self.ctl('-o', 'json', 'sync', 'leader', e)
        self.assertEqual(json.loads(out), {
            'election': e, 'lease_id': lease, 'token': r.leader.token,
            'value': 'host-a'})

        self.c.call('Proclaim', election=e, lease_id=lease,
                    token=r.leader.token, value=b'host-b')
        w.until(lambda ln: ln.endswith('value=host-b'), 'the proclamation')
        self.c.call('Resign', election=e, lease_id=lease)
        w.until(lambda ln: ln == e + ' no leader', 'the resignation')
        code, err = w.interrupt()
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(code, 0, err)
        self.c.call('Revoke', lease_id=lease)

    # ---- leases

    def test_leases(self):
        a, b = self.c.grant(10000), self.c.grant(20000)
        out, _ = self.ctl('sync', 'leases', str(a), str(b))
        rows = [ln.split() for ln in out.splitlines()]
        self.assertEqual(rows[0], ['LEASE', 'TTL_MS', 'REMAINING_MS'])
        self.assertEqual([(r[0], r[1]) for r in rows[1:]],
                         [(str(a), '10000'), (str(b), '20000')])
        out, _ = self.ctl('-o', 'json', 'sync', 'leases', str(a))
        j = json.loads(out)
        self.assertEqual((j[0]['lease_id'], j[0]['ttl_ms']), (a, 10000))
        self.assertLessEqual(j[0]['remaining_ms'], 10000)
        self.c.call('Revoke', lease_id=a)
        _, err = self.ctl('sync', 'leases', str(a), code=1)
        self.assertIn('TimeToLive: NOT_FOUND', err)
        self.c.call('Revoke', lease_id=b)

    # ---- usage

    def test_usage_errors(self):
        for args, says in [
                (['sync', 'lock'], 'missing NAME'),
                (['sync', 'lock', 'x', '--ttl', '50ms', '--', 'true'],
                 '--ttl must be a duration'),
                (['sync', 'lock', 'x', '--wait', 'soon', '--', 'true'],
                 '--wait must be a duration'),
                (['sync', 'leases'], 'missing'),
                (['sync', 'leases', 'abc'], "not 'abc'"),
                (['sync', 'leader'], 'missing'),
                (['sync', 'observe', 'a', 'b'], 'observe'),
                (['sync', 'leader', '--ttl', '5s', 'x'], '--ttl'),
                (['sync', 'frobnicate'], 'frobnicate'),
                (['sync', '--sync', 'nohost', 'leader', 'x'],
                 '--sync must be host:port')]:
            rc, out, err = run_ctl(args)
            self.assertEqual(rc, 2, (args, err))
            self.assertIn(says, err, args)
            self.assertIn("Try 'platformctl", err, args)


class CtlSyncDiscoveryTest(unittest.TestCase):
    """Without --sync: the service "sync" found through discovery-srv,
    for the calls and for the KeepAlive and Observe streams."""

    @classmethod
    def setUpClass(cls):
        cls.disco = harness.Server(discovery='self', name='ctl-sync-disco')
        cls.addClassCleanup(cls.disco.stop_clean)
        cls.srv = sh.sync_server(name='ctl-sync-reg',
                                 discovery=cls.disco.address)
        cls.addClassCleanup(cls.srv.stop_clean)
        d = cls.disco.discovery_client()
        harness.wait_for(lambda: d.get('sync').services,
                         what='sync registered')

    def test_by_discovery(self):
        n = sh.uniq('ctld')
        g = ['--discovery', self.disco.address]
        rc, out, err = run_ctl(g + ['sync', 'lock', n, '--', SH, '-c',
                                    'echo $PLATFORM_FENCING_TOKEN'])
        self.assertEqual(rc, 0, err)
        self.assertGreater(int(out), 0)
        w = Watch(g + ['sync', 'observe', n])
        self.addCleanup(w.kill)
        w.until(lambda ln: ln == n + ' no leader', 'the first answer')
        code, err = w.interrupt()
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(code, 0, err)


if __name__ == '__main__':
    if not sh.DATABASE:
        print('test_ctl_sync: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it from scripts/pg)')
        sys.exit(0)
    harness.run_tests()
