#!/usr/bin/python3
"""`platformctl login|logout|token|accounts|rules` against a real auth-srv
and PostgreSQL, and the stored token sent by every other command.

A service logs in with auth-srv's bootstrap credentials file (the token
file 0600 in a folder 0700 under a temporary XDG_CONFIG_HOME), `token`
prints a JWT Inspect calls active, logout revokes it and removes the
file; a user logs in with a password on stdin and gets a refresh token;
`token` and other commands refresh an expired access token (auth-srv
with --token-ttl 1); accounts and rules round trips, both output
formats; bad usage exits 2; the secrets never appear in platformctl's
output except the generated one, once; and services, watch, config and
events calls carry `authorization: Bearer <the stored token>` (checked by
a recording gRPC server standing in for them).

Needs PLATFORM_TEST_DATABASE (scripts/test sets it), else it says so and
exits 0.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import unittest
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import auth_harness as ah  # noqa: E402
from auth_harness import AuthServer, split, uniq  # noqa: E402
from harness import Server, wait_for  # noqa: E402

P = ah.pb()


class CtlCase(unittest.TestCase):
    """One discovery-srv and one auth-srv (registered with it) per class;
    every test a config folder of its own."""

    ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.disco = Server(discovery='self', name=cls.__name__ + '-disco')
        cls.addClassCleanup(cls.disco.stop_clean)
        cls.auth = AuthServer(name=cls.__name__ + '-auth',
                              extra_args=('--discovery', cls.disco.address)
                              + cls.ARGS)
        cls.addClassCleanup(cls.auth.cleanup)
        cls.creds = cls.auth.admin_credentials()
        # What platformctl must never print, and what only `token` may.
        cls.secrets = [cls.creds['client_secret']]
        cls.outputs = []

    @classmethod
    def tearDownClass(cls):
        cls.auth.stop_clean()

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix='platform-it-ctl-auth-')
        self.addCleanup(shutil.rmtree, self.home, True)
        self.xdg = os.path.join(self.home, 'config')
        self.token_file = os.path.join(self.xdg, 'platform', 'token.json')
        self.addCleanup(self.no_secrets_printed)

    def no_secrets_printed(self):
        for args, text in self.outputs:
            for s in self.secrets:
                self.assertNotIn(s, text, 'platformctl %s printed a secret'
                                 % ' '.join(args))

    def ctl(self, *args, stdin=None, code=0, auth=True, record=True):
        """Runs platformctl; (stdout, stderr). --auth unless auth=False
        (then auth-srv is found through discovery)."""
        argv = [harness.PLATFORMCTL_BIN, '--timeout', '10000'] + list(args)
        if auth:
            argv += ['--auth', self.auth.srv.address]
        p = subprocess.run(
            argv, input=stdin, capture_output=True, text=True,
            timeout=harness.TIMEOUT, env=harness.child_env({
                'HOME': self.home, 'XDG_CONFIG_HOME': self.xdg,
                'PLATFORM_DISCOVERY': self.disco.address}))
        self.assertEqual(harness.sanitizer_findings(p.stderr), [], p.stderr)
        self.assertEqual(p.returncode, code,
                         'platformctl %s: %s' % (' '.join(args), p.stderr))
        if record:
            self.outputs.append((args, p.stdout + p.stderr))
        return p.stdout, p.stderr

    def admin(self):
        """An Auth client with a fresh admin token."""
        return self.auth.client(self.auth.admin_token())

    def login_admin(self, **kw):
        return self.ctl('login', '--credentials', self.auth.bootstrap_file,
                        **kw)

    def stored(self):
        with open(self.token_file) as f:
            return json.load(f)

    def token(self):
        """`platformctl token`, whose output may hold a token."""
        out, _ = self.ctl('token', record=False)
        return out.strip()

    def user(self, scopes=()):
        uid = uniq('user')
        pw = 'pw-' + os.urandom(8).hex()
        self.admin().create_account(uid, P.ACCOUNT_TYPE_USER, scopes=scopes,
                                    secret=pw)
        self.secrets.append(pw)
        return uid, pw


class CtlAuthTest(CtlCase):

    def test_service_login_token_logout(self):
        out, _ = self.login_admin(auth=False)     # auth-srv by discovery
        self.assertIn('logged in as admin', out)
        st = os.stat(self.token_file)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(
            os.stat(os.path.dirname(self.token_file)).st_mode), 0o700)
        saved = self.stored()
        self.assertEqual(saved['account'], 'admin')
        self.assertNotIn('refresh_token', saved)      # a service login
        self.assertNotIn('auth', saved)               # none was given
        self.assertNotIn(self.creds['client_secret'], json.dumps(saved))
        # No temporary file left beside it.
        self.assertEqual(sorted(os.listdir(os.path.dirname(
            self.token_file))), ['token.json', 'token.lock'])

        t = self.token()
        self.assertEqual(t, saved['access_token'])
        self.assertEqual(len(t.split('.')), 3)
        self.assertEqual(split(t)[1]['sub'], 'admin')
        c = self.admin()
        r = c.inspect(t)
        self.assertTrue(r.active)
        self.assertEqual(r.sub, 'admin')
        # The token never shows anywhere but in `token`.
        self.secrets.append(t)
        out, _ = self.ctl('-o', 'json', 'token', record=False)
        self.assertEqual(json.loads(out)['access_token'], t)

        # Another command works with a token stored.
        out, _ = self.ctl('services')
        self.assertIn('auth', out)

        out, _ = self.ctl('logout', auth=False)
        self.assertIn('revoked', out)
        self.assertFalse(os.path.exists(self.token_file))
        self.assertFalse(c.inspect(t).active)
        _, err = self.ctl('token', code=1)
        self.assertIn('not logged in', err)
        _, err = self.ctl('logout')
        self.assertIn('not logged in', err)
        # Without a login, administration says what to do.
        _, err = self.ctl('accounts', 'list', code=1)
        self.assertIn('UNAUTHENTICATED', err)
        self.assertIn('login', err)

    def test_user_password_login(self):
        uid, pw = self.user()
        _, err = self.ctl('login', uid, stdin='wrong\n', code=1)
        self.assertIn('UNAUTHENTICATED', err)
        self.assertFalse(os.path.exists(self.token_file))
        out, _ = self.ctl('login', uid, stdin=pw + '\n')
        self.assertIn('logged in as ' + uid, out)
        saved = self.stored()
        self.assertEqual(saved['account'], uid)
        self.assertEqual(saved['auth'], self.auth.srv.address)
        self.assertTrue(saved['refresh_token'])
        self.secrets += [saved['access_token'], saved['refresh_token']]
        t = self.token()
        c = self.admin()
        self.assertEqual(c.inspect(t).sub, uid)
        # A user without platform:admin may not administer.
        _, err = self.ctl('accounts', 'list', code=1)
        self.assertIn('PERMISSION_DENIED', err)

        # The address kept at login serves logout without --auth.
        self.ctl('logout', auth=False)
        self.assertFalse(c.inspect(t).active)
        self.assertFalse(c.inspect(saved['refresh_token'],
                                   'refresh_token').active)
        self.assertFalse(os.path.exists(self.token_file))

    def test_accounts(self):
        self.login_admin()
        sid = uniq('svc')
        out, err = self.ctl('-o', 'json', 'accounts', 'create', sid,
                            '--type', 'service', '--scope', 'orders:read',
                            '--scope', 'orders:write', '--meta', 'team=x',
                            record=False)
        a = json.loads(out)
        self.assertEqual(a['id'], sid)
        self.assertEqual(a['type'], 'service')
        self.assertEqual(a['scopes'], ['orders:read', 'orders:write'])
        self.assertEqual(a['metadata'], {'team': 'x'})
        self.assertIn('only this once', err)
        secret = a['secret']
        self.secrets.append(secret)
        self.assertTrue(self.auth.client().client_credentials(
            sid, secret).access_token)

        out, _ = self.ctl('accounts', 'list')
        lines = out.splitlines()
        self.assertEqual(lines[0].split()[:4],
                         ['ID', 'TYPE', 'SCOPES', 'STATUS'])
        row = [ln for ln in lines if ln.startswith(sid + ' ')]
        self.assertEqual(len(row), 1, out)
        self.assertIn('orders:read,orders:write', row[0])
        self.assertIn('team=x', row[0])
        out, _ = self.ctl('-o', 'json', 'accounts', 'list')
        self.assertIn(sid, [x['id'] for x in json.loads(out)])

        out, _ = self.ctl('accounts', 'update', sid, '--scope', 'a',
                          '--meta', 'k=v', '--meta', 'j=w')
        self.assertIn('k=v', out)
        self.assertNotIn('secret', out)
        out, _ = self.ctl('-o', 'json', 'accounts', 'get', sid)
        a = json.loads(out)
        self.assertEqual(a['scopes'], ['a'])
        self.assertEqual(a['metadata'], {'k': 'v', 'j': 'w'})
        self.assertFalse(a['disabled'])

        # A new secret, shown once (here as a table); the old one ends.
        out, _ = self.ctl('accounts', 'update', sid, '--new-secret',
                          record=False)
        new = [ln for ln in out.splitlines() if ln.startswith('secret: ')]
        self.assertEqual(len(new), 1, out)
        new = new[0][len('secret: '):]
        self.secrets.append(new)
        self.assertNotEqual(new, secret)
        with self.assertRaises(grpc.RpcError):
            self.auth.client().client_credentials(sid, secret)
        self.assertTrue(self.auth.client().client_credentials(
            sid, new).access_token)

        out, _ = self.ctl('accounts', 'disable', sid)
        self.assertIn('disabled', out)
        out, _ = self.ctl('-o', 'json', 'accounts', 'get', sid)
        self.assertTrue(json.loads(out)['disabled'])
        self.ctl('accounts', 'enable', sid)
        out, _ = self.ctl('-o', 'json', 'accounts', 'get', sid)
        self.assertFalse(json.loads(out)['disabled'])
        # '' empties a list.
        out, _ = self.ctl('-o', 'json', 'accounts', 'update', sid,
                          '--scope', '')
        self.assertEqual(json.loads(out)['scopes'], [])

        out, _ = self.ctl('accounts', 'delete', sid)
        self.assertIn('deleted ' + sid, out)
        _, err = self.ctl('accounts', 'get', sid, code=1)
        self.assertIn('NOT_FOUND', err)
        _, err = self.ctl('accounts', 'create', 'bad id!', '--type', 'user',
                          code=1)
        self.assertIn('INVALID_ARGUMENT', err)

    def test_rules(self):
        self.login_admin()
        sid = uniq('svc')
        self.admin().create_account(sid, P.ACCOUNT_TYPE_SERVICE,
                                    scopes=['orders:read'], secret='s' * 24)
        out, _ = self.ctl('-o', 'json', 'rules', 'create', '--service',
                          'shop.Orders', '--method', 'Get*', '--scope',
                          'orders:read', '--allow', '--priority', '5',
                          '--description', 'readers read')
        rule = json.loads(out)[0]
        self.assertEqual(rule['effect'], 'allow')
        self.assertEqual(rule['priority'], 5)
        self.assertEqual(rule['scope'], 'orders:read')
        rid = rule['id']
        out, _ = self.ctl('rules', 'create', '--service', 'shop.Orders',
                          '--method', 'GetSecret', '--account', sid,
                          '--deny', '--priority', '5')
        self.assertIn('account=' + sid, out)
        deny = out.splitlines()[1].split()[0]

        out, _ = self.ctl('rules', 'list')
        self.assertEqual(out.splitlines()[0].split()[:3],
                         ['ID', 'PRIORITY', 'EFFECT'])
        self.assertIn(rid, out)
        self.assertIn('readers read', out)

        out, _ = self.ctl('rules', 'verify', '--service', 'shop.Orders',
                          '--method', 'GetOrder', '--account', sid)
        self.assertTrue(out.startswith('allowed'), out)
        self.assertIn('decided by rule ' + rid, out)
        out, _ = self.ctl('-o', 'json', 'rules', 'verify', '--service',
                          'shop.Orders', '--method', 'GetSecret',
                          '--account', sid)
        v = json.loads(out)
        self.assertFalse(v['allowed'])
        self.assertEqual(v['rule']['id'], deny)
        out, _ = self.ctl('rules', 'verify', '--service', 'shop.Orders',
                          '--method', 'PutOrder', '--scope', 'orders:read',
                          '--type', 'service')
        self.assertTrue(out.startswith('denied'), out)
        self.assertIn('no rule applies', out)

        for r in (rid, deny):
            out, _ = self.ctl('rules', 'delete', r)
            self.assertIn('deleted', out)
        out, _ = self.ctl('-o', 'json', 'rules', 'list')
        ids = [x['id'] for x in json.loads(out)]
        self.assertNotIn(rid, ids)
        self.assertNotIn(deny, ids)
        # The bootstrap rules are still there.
        self.assertGreaterEqual(len(ids), 3)

    def test_bad_usage(self):
        bad = [
            ('accounts',), ('accounts', 'nope'), ('rules', 'nope'),
            ('accounts', 'get'), ('accounts', 'get', 'a', 'b'),
            ('accounts', 'create', 'x'),
            ('accounts', 'create', 'x', '--type', 'robot'),
            ('accounts', 'update', 'x'),
            ('accounts', 'create', 'x', '--type', 'user', '--meta', 'nokv'),
            ('accounts', 'list', '--allow'),
            ('rules', 'create', '--service', 's', '--method', 'm',
             '--account', 'a'),
            ('rules', 'create', '--service', 's', '--method', 'm',
             '--account', 'a', '--allow', '--deny'),
            ('rules', 'create', '--service', 's', '--method', 'm',
             '--allow'),
            ('rules', 'create', '--service', 's', '--method', 'm',
             '--account', 'a', '--allow', '--priority', 'high'),
            ('rules', 'verify', '--service', 's', '--method', 'm'),
            ('rules', 'verify', '--service', 's', '--method', 'm',
             '--account', 'a', '--scope', 'x'),
            ('rules', 'verify', '--method', 'm', '--account', 'a'),
            ('login',),                           # no ID, stdin no tty
            ('login', 'a', '--credentials', self.auth.bootstrap_file),
            ('login', '--credentials', os.path.join(self.home, 'none')),
            ('token', '--credentials', 'x'),
            ('login', 'a', 'b'),
            ('logout', 'x'),
            ('accounts', 'list', '--scope'),
            ('accounts', 'list', '-o', 'yaml'),
        ]
        for args in bad:
            with self.subTest(args=args):
                self.ctl(*args, stdin='', code=2)
        self.ctl('--auth', 'nocolon', 'accounts', 'list', auth=False,
                 code=2)
        # A credentials file without the fields, and an empty password.
        f = os.path.join(self.home, 'creds.json')
        with open(f, 'w') as fh:
            json.dump({'client_id': 'admin'}, fh)
        self.ctl('login', '--credentials', f, code=2)
        self.ctl('login', 'someone', stdin='\n', code=2)
        self.assertFalse(os.path.exists(self.token_file))
        for args in (('accounts', 'help'), ('rules', '--help'),
                     ('login', '-h')):
            out, _ = self.ctl(*args)
            self.assertIn('accounts create', out)
        out, _ = self.ctl('--help')
        self.assertIn('login', out)
        self.assertIn('--auth', out)


# ------------------------------------------------------- the stored token

class Recorder:
    """A gRPC server answering every unary method with an empty message
    and every stream with none, keeping the metadata each call brought:
    a stand-in for discovery, config-srv and event-srv."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        self.server.add_generic_rpc_handlers((self,))
        self.port = self.server.add_insecure_port('127.0.0.1:0')
        self.address = '127.0.0.1:%d' % self.port
        self.server.start()

    def service(self, details):
        with self.lock:
            self.calls.append((details.method,
                               dict(details.invocation_metadata)))
        if details.method.endswith('/Watch') or \
                details.method.endswith('/Subscribe'):
            return grpc.unary_stream_rpc_method_handler(
                lambda req, ctx: iter(()))
        return grpc.unary_unary_rpc_method_handler(lambda req, ctx: b'')

    def authorization(self, method_suffix):
        with self.lock:
            return [md.get('authorization') for m, md in self.calls
                    if m.endswith(method_suffix)]

    def stop(self):
        self.server.stop(None)


class CtlTokenSentTest(CtlCase):

    def test_every_command_sends_the_stored_token(self):
        rec = Recorder()
        self.addCleanup(rec.stop)
        # Without a login: no header.
        self.ctl('--discovery', rec.address, 'services')
        self.assertEqual(rec.authorization('/ListServices'), [None])

        self.login_admin()
        bearer = 'Bearer ' + self.stored()['access_token']
        self.secrets.append(self.stored()['access_token'])
        self.ctl('--discovery', rec.address, 'services')
        self.ctl('--discovery', rec.address, 'service', 'x', code=0)
        self.ctl('--discovery', rec.address, 'watch')
        self.ctl('--config', rec.address, 'config', 'list', 'ns')
        self.ctl('events', 'groups', '--events', rec.address)
        self.ctl('events', 'tail', 'a.b', '--events', rec.address)
        for m in ('/ListServices', '/GetService', '/Watch', '/List',
                  '/ListGroups', '/Subscribe'):
            got = rec.authorization(m)
            self.assertTrue(got, m)
            self.assertEqual(got[-1], bearer, m)


class CtlRefreshTest(CtlCase):
    """Access tokens live one second here."""

    ARGS = ('--token-ttl', '1')

    def expired(self, token):
        return wait_for(lambda: not self.admin().inspect(token).active,
                        timeout=20, what='the access token to expire')

    def test_token_refreshes_an_expired_access_token(self):
        uid, pw = self.user(scopes=['platform:admin'])
        self.ctl('login', uid, stdin=pw)          # no line end: still read
        first = self.stored()
        self.secrets += [first['access_token'], first['refresh_token']]
        self.expired(first['access_token'])

        t = self.token()
        self.secrets.append(t)
        now = self.stored()
        self.assertNotEqual(t, first['access_token'])
        self.assertEqual(now['access_token'], t)
        self.assertNotEqual(now['refresh_token'], first['refresh_token'])
        self.secrets.append(now['refresh_token'])
        self.assertEqual(stat.S_IMODE(os.stat(self.token_file).st_mode),
                         0o600)
        self.assertEqual(self.admin().inspect(t).sub, uid)

        # Any other command refreshes an expired token before its call.
        self.expired(t)
        out, _ = self.ctl('accounts', 'get', uid)
        self.assertIn(uid, out)
        self.assertNotEqual(self.stored()['access_token'], t)
        self.secrets += [self.stored()['access_token'],
                         self.stored()['refresh_token']]

        # A refresh token that stopped working: log in again.
        self.admin().update_account(uid, ['disabled'], disabled=True)
        _, err = self.ctl('token', code=1)
        self.assertIn('log in again', err)

    def test_service_login_cannot_refresh(self):
        self.login_admin()
        t = self.stored()['access_token']
        self.secrets.append(t)
        self.expired(t)
        _, err = self.ctl('token', code=1)
        self.assertIn('log in again', err)
        # The expired token is not sent; the call says what is missing.
        _, err = self.ctl('accounts', 'list', code=1)
        self.assertIn('UNAUTHENTICATED', err)
        self.ctl('logout')
        self.assertFalse(os.path.exists(self.token_file))


if __name__ == '__main__':
    if not ah.DATABASE:
        print('test_ctl_auth: PLATFORM_TEST_DATABASE is unset; skipping')
        sys.exit(0)
    harness.run_tests()
