#!/usr/bin/python3
"""auth-srv over real gRPC against a real PostgreSQL.

The first start's bootstrap (the admin credentials file, mode 0600, and
its logged path); every grant (client_credentials, password,
refresh_token) and refresh-token rotation, reuse revoking the family;
Inspect, Revoke and PublicKeys (the JWKS checked in Python, signatures
verified with it); expired, not-yet-valid, forged, `alg: none`, HS256
with the public key, wrong-audience, wrong-issuer, tampered and revoked
tokens all inactive; rules precedence through Verify and WatchRules; key
rotation keeping old tokens valid until they expire, then dropping the
old key; brute-force lock-out per account and per peer; disabled
accounts; bad input for every field; no secret or token ever in the
server's logs; SIGTERM exits 0.

Every server class gets a schema of its own (an empty database), so the
first start bootstraps. Needs PLATFORM_TEST_DATABASE (scripts/test sets
it), else it says so and exits 0.

Run: /usr/bin/python3 tests/integration/test_auth.py (meson sets
PLATFORM_BUILD_DIR and PLATFORM_SOURCE_DIR).
"""

import json
import os
import stat
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import auth_harness as ah  # noqa: E402
from auth_harness import AuthServer, sign, split, uniq  # noqa: E402
from harness import rpc_error, wait_for  # noqa: E402

C = grpc.StatusCode
P = ah.pb()
USER = P.ACCOUNT_TYPE_USER
SERVICE = P.ACCOUNT_TYPE_SERVICE
ALLOW = P.EFFECT_ALLOW
DENY = P.EFFECT_DENY
DISCOVERY = 'platform.discovery.v1.Discovery'


class AuthCase(harness.ServiceCase):
    """One auth-srv per class on a fresh schema; at the end SIGTERM (exit
    0, no sanitizer report) and no secret or token in its logs."""

    ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.secrets = []
        cls.auth = AuthServer(name=cls.__name__, extra_args=cls.ARGS)
        cls.addClassCleanup(cls.auth.cleanup)
        creds = cls.auth.admin_credentials()
        cls.secrets.append(creds['client_secret'])
        cls.admin_token = cls.auth.admin_token()
        cls.secrets.append(cls.admin_token)
        cls.c = cls.auth.client(cls.admin_token)

    @classmethod
    def tearDownClass(cls):
        cls.auth.stop_clean()
        assert_no_secrets(cls.auth.srv, cls.secrets)

    def keep(self, *values):
        """Remembers secrets and tokens the logs must never show."""
        self.secrets.extend(v for v in values if v)

    def service(self, scopes=(), secret='', **kw):
        """A new service account: (id, secret)."""
        sid = uniq('svc')
        r = self.c.create_account(sid, SERVICE, scopes=scopes, secret=secret,
                                  **kw)
        s = secret or r.secret
        self.keep(s)
        return sid, s

    def user(self, scopes=(), password=None):
        uid = uniq('user')
        pw = password or 'pw-' + os.urandom(8).hex()
        self.c.create_account(uid, USER, scopes=scopes, secret=pw)
        self.keep(pw)
        return uid, pw

    def token_of(self, sid, secret, scope=''):
        t = self.c.client_credentials(sid, secret, scope).access_token
        self.keep(t)
        return t

    def active(self, token):
        return self.c.inspect(token).active


assert_no_secrets = harness.assert_no_secrets
log_lines = harness.log_lines


# ---------------------------------------------------------------- startup

class StartupTest(unittest.TestCase):

    def test_database_required(self):
        r = harness.run_binary(['--listen', '127.0.0.1:%d'
                                % harness.free_port()], binary=ah.AUTH_BIN)
        self.assertEqual(r.code, 2, r.stderr)
        self.assertIn('--database', r.stderr)

    def test_bad_settings_exit_2(self):
        for args, name in ((['--token-ttl', '0'], '--token-ttl'),
                           (['--token-ttl', 'x'], '--token-ttl'),
                           (['--key-alg', 'HS256'], '--key-alg'),
                           (['--key-rotation', '-1'], '--key-rotation'),
                           (['--lockout-failures', '0'],
                            '--lockout-failures')):
            r = harness.run_binary(
                ['--listen', '127.0.0.1:%d' % harness.free_port()] + args,
                binary=ah.AUTH_BIN,
                env={'PLATFORM_DATABASE': ah.DATABASE})
            self.assertEqual(r.code, 2, '%s: %s' % (args, r.stderr))
            self.assertIn(name, r.stderr)
            self.assertEqual(r.sanitizer_findings(), [])

    def test_kek_readable_by_others_refused(self):
        schema, db = ah.new_schema()
        self.addCleanup(ah.drop_schema, schema)
        d = self.tmpdir()
        kek = os.path.join(d, 'kek')
        with open(kek, 'w') as f:
            f.write('x' * 40)
        os.chmod(kek, 0o644)
        r = harness.run_binary(['--listen', '127.0.0.1:%d'
                                % harness.free_port(), '--kek-file', kek,
                                '--bootstrap-file', os.path.join(d, 'b')],
                               binary=ah.AUTH_BIN,
                               env={'PLATFORM_DATABASE': db})
        self.assertEqual(r.code, 1, r.stderr)
        self.assertIn('kek', r.stderr)
        self.assertEqual(r.sanitizer_findings(), [])

    def tmpdir(self):
        import tempfile
        import shutil
        d = tempfile.mkdtemp(prefix='platform-it-auth-')
        self.addCleanup(shutil.rmtree, d, True)
        return d


class BootstrapTest(AuthCase):

    def test_file_mode_and_logged_path(self):
        st = os.stat(self.auth.bootstrap_file)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.auth.kek_file).st_mode),
                         0o600)
        creds = self.auth.admin_credentials()
        self.assertEqual(creds['client_id'], 'admin')
        self.assertGreaterEqual(len(creds['client_secret']), 32)
        paths = [ln.get('path') for ln in log_lines(self.auth.srv)
                 if 'bootstrap file' in ln.get('msg', '')]
        self.assertEqual(paths, [self.auth.bootstrap_file])

    def test_admin_token_and_rules(self):
        i = self.c.inspect(self.admin_token)
        self.assertTrue(i.active)
        self.assertEqual(i.sub, 'admin')
        self.assertEqual(i.account_type, SERVICE)
        self.assertIn(ah.ADMIN_SCOPE, i.scopes)
        ids = {r.id for r in self.c.call('ListRules').rules}
        self.assertTrue({'bootstrap-admin', 'bootstrap-discovery-register',
                         'bootstrap-discovery-deregister',
                         'bootstrap-discovery-get-service',
                         'bootstrap-discovery-list-services',
                         'bootstrap-discovery-watch',
                         'bootstrap-event-publish'} <= ids, ids)
        sid, s = self.service()
        for m in ('Register', 'Deregister', 'GetService', 'ListServices',
                  'Watch'):
            v = self.c.verify(account=sid, service=DISCOVERY, method=m)
            self.assertTrue(v.allowed, v.reason)
        v = self.c.verify(account=sid, service='platform.event.v1.Event',
                          method='PublishBatch')
        self.assertTrue(v.allowed, v.reason)
        v = self.c.verify(account=sid, service='platform.config.v1.Config',
                          method='Update')
        self.assertFalse(v.allowed)
        uid, _ = self.user()
        v = self.c.verify(account=uid, service=DISCOVERY, method='Register')
        self.assertFalse(v.allowed)
        v = self.c.verify(account='admin', service='platform.kv.v1.Kv',
                          method='Put')
        self.assertTrue(v.allowed)
        self.assertEqual(v.rule.id, 'bootstrap-admin')

    def test_restart_does_not_bootstrap_again(self):
        creds = self.auth.admin_credentials()
        self.auth.stop_clean()
        assert_no_secrets(self.auth.srv, self.secrets)
        os.unlink(self.auth.bootstrap_file)
        self.auth.start()
        self.assertFalse(os.path.exists(self.auth.bootstrap_file))
        # The same admin, and keys that still verify the earlier token.
        c = self.auth.client()
        t = c.client_credentials(creds['client_id'],
                                 creds['client_secret']).access_token
        self.keep(t)
        self.assertTrue(c.inspect(self.admin_token, token=t).active)
        type(self).c = self.auth.client(self.admin_token)


# ---------------------------------------------------------------- grants

class GrantsTest(AuthCase):

    def test_client_credentials(self):
        sid, secret = self.service(scopes=['b', 'a', 'a'])
        r = self.c.client_credentials(sid, secret)
        self.keep(r.access_token)
        self.assertEqual(r.token_type, 'Bearer')
        self.assertEqual(r.expires_in, 900)
        self.assertEqual(r.refresh_token, '')
        self.assertEqual(r.scope, 'a b')
        h, claims, _ = split(r.access_token)
        self.assertEqual(h['alg'], 'RS256')
        self.assertEqual(claims['sub'], sid)
        self.assertEqual(claims['account_type'], 'service')
        self.assertEqual(claims['iss'], 'platform-auth')
        self.assertEqual(claims['aud'], 'platform')
        self.assertEqual(claims['exp'] - claims['iat'], 900)
        self.assertEqual(claims['nbf'], claims['iat'])
        self.assertTrue(claims['jti'])
        i = self.c.inspect(r.access_token)
        self.assertTrue(i.active)
        self.assertEqual((i.token_type, i.sub, list(i.scopes), i.jti,
                          i.exp, i.kid),
                         ('access_token', sid, ['a', 'b'], claims['jti'],
                          claims['exp'], h['kid']))
        # Narrowed scope; a scope not held.
        r = self.c.client_credentials(sid, secret, scope='b')
        self.keep(r.access_token)
        self.assertEqual(r.scope, 'b')
        e = rpc_error(self.c.client_credentials, sid, secret, scope='c')
        self.assertCode(e, C.INVALID_ARGUMENT, 'scope')

    def test_bad_credentials_same_message(self):
        sid, secret = self.service()
        e1 = rpc_error(self.c.client_credentials, sid, secret + 'x')
        e2 = rpc_error(self.c.client_credentials, uniq('nobody'), secret)
        self.assertCode(e1, C.UNAUTHENTICATED)
        self.assertCode(e2, C.UNAUTHENTICATED)
        self.assertEqual(e1.details(), e2.details())
        uid, pw = self.user()
        e3 = rpc_error(self.c.password, uid, pw + 'x')
        self.assertCode(e3, C.UNAUTHENTICATED)
        self.assertEqual(e3.details(), e1.details())

    def test_grant_fits_account_type(self):
        sid, secret = self.service()
        uid, pw = self.user()
        self.assertCode(rpc_error(self.c.password, sid, secret),
                        C.PERMISSION_DENIED)
        self.assertCode(rpc_error(self.c.client_credentials, uid, pw),
                        C.PERMISSION_DENIED)

    def test_password_and_refresh_rotation(self):
        uid, pw = self.user(scopes=['read', 'write'])
        r1 = self.c.password(uid, pw)
        self.keep(r1.access_token, r1.refresh_token)
        self.assertTrue(r1.refresh_token)
        self.assertEqual(split(r1.access_token)[1]['account_type'], 'user')
        i = self.c.inspect(r1.refresh_token)
        self.assertTrue(i.active)
        self.assertEqual((i.token_type, i.sub), ('refresh_token', uid))
        r2 = self.c.refresh(r1.refresh_token, scope='read')
        self.keep(r2.access_token, r2.refresh_token)
        self.assertEqual(r2.scope, 'read')
        self.assertNotEqual(r2.refresh_token, r1.refresh_token)
        self.assertTrue(self.active(r2.access_token))
        self.assertFalse(self.c.inspect(r1.refresh_token).active)
        # The successor keeps the whole grant's scopes.
        r3 = self.c.refresh(r2.refresh_token)
        self.keep(r3.access_token, r3.refresh_token)
        self.assertEqual(r3.scope, 'read write')
        # Reuse of a used one: refused, and the whole family is revoked.
        e = rpc_error(self.c.refresh, r1.refresh_token)
        self.assertCode(e, C.UNAUTHENTICATED)
        self.assertFalse(self.c.inspect(r3.refresh_token).active)
        self.assertCode(rpc_error(self.c.refresh, r3.refresh_token),
                        C.UNAUTHENTICATED)
        # Another login is a new family, untouched.
        r4 = self.c.password(uid, pw)
        self.keep(r4.access_token, r4.refresh_token)
        r5 = self.c.refresh(r4.refresh_token)
        self.keep(r5.access_token, r5.refresh_token)
        self.assertCode(rpc_error(self.c.refresh, 'x' * 43),
                        C.UNAUTHENTICATED)

    def test_disabled_account(self):
        sid, secret = self.service()
        t = self.token_of(sid, secret)
        uid, pw = self.user()
        r = self.c.password(uid, pw)
        self.keep(r.access_token, r.refresh_token)
        for acct in (sid, uid):
            self.c.update_account(acct, ['disabled'], disabled=True)
        self.assertCode(rpc_error(self.c.client_credentials, sid, secret),
                        C.PERMISSION_DENIED)
        self.assertCode(rpc_error(self.c.password, uid, pw),
                        C.PERMISSION_DENIED)
        self.assertFalse(self.active(t))
        self.assertFalse(self.active(r.access_token))
        self.assertCode(rpc_error(self.c.refresh, r.refresh_token),
                        C.UNAUTHENTICATED)
        self.c.update_account(sid, ['disabled'], disabled=False)
        self.assertTrue(self.active(t))

    def test_revoke(self):
        sid, secret = self.service()
        t = self.token_of(sid, secret)
        mine = self.c.with_token(t)
        other_sid, other_secret = self.service()
        other = self.token_of(other_sid, other_secret)
        # Not yours: refused; an unknown or malformed token: OK.
        self.assertCode(rpc_error(mine.revoke, other), C.PERMISSION_DENIED)
        mine.revoke('not-a-token')
        mine.revoke('a.b.c')
        mine.revoke(other[:-4] + 'AAAA')
        self.assertTrue(self.active(other))
        # Your own: revoked until it expires; revoking again is OK.
        t2 = self.token_of(sid, secret)
        mine.revoke(t2)
        self.assertFalse(self.active(t2))
        mine.revoke(t2)
        # A revoked token is no caller any more.
        mine.revoke(t)
        self.assertCode(rpc_error(mine.inspect, other), C.UNAUTHENTICATED)
        # Admin revokes anyone's; refresh tokens revoke their family.
        self.c.revoke(other)
        self.assertFalse(self.active(other))
        uid, pw = self.user()
        r = self.c.password(uid, pw)
        self.keep(r.access_token, r.refresh_token)
        user = self.c.with_token(r.access_token)
        user.revoke(r.refresh_token, hint='refresh_token')
        self.assertCode(rpc_error(self.c.refresh, r.refresh_token),
                        C.UNAUTHENTICATED)

    def test_public_keys(self):
        ks = self.c.call('PublicKeys', token='').keys
        self.assertEqual(len(ks), 1)
        k = ks[0]
        self.assertEqual((k.kty, k.use, k.alg), ('RSA', 'sig', 'RS256'))
        self.assertEqual(k.e, 'AQAB')
        self.assertEqual(len(ah.b64u_decode(k.n)), 256)
        self.assertNotIn('=', k.n)
        self.assertEqual(k.kid, ah.thumbprint(k))
        jwks = json.loads(self.c.call('PublicKeys', token='').jwks_json)
        self.assertEqual(jwks['keys'][0]['kid'], k.kid)
        self.assertNotIn('d', jwks['keys'][0])
        ah.verify_signature(self.admin_token, k)
        self.assertEqual(split(self.admin_token)[0]['kid'], k.kid)

    def test_callers_need_tokens(self):
        sid, secret = self.service()
        t = self.token_of(sid, secret)
        svc = self.c.with_token(t)
        anon = self.c.with_token('')
        self.assertCode(rpc_error(anon.inspect, t), C.UNAUTHENTICATED)
        self.assertCode(rpc_error(anon.revoke, t), C.UNAUTHENTICATED)
        self.assertCode(rpc_error(anon.verify, account=sid,
                                  service='a', method='b'),
                        C.UNAUTHENTICATED)
        self.assertCode(rpc_error(svc.inspect, t, token='Bearer'),
                        C.UNAUTHENTICATED)
        self.assertTrue(svc.inspect(t).active)
        self.assertFalse(svc.verify(account=sid, service='a',
                                    method='b').allowed)
        for method, kw in (('CreateAccount', {}), ('GetAccount',
                           {'id': sid}), ('ListAccounts', {}),
                           ('DeleteAccount', {'id': sid}),
                           ('DeleteRule', {'id': 'x'})):
            self.assertCode(rpc_error(svc.call, method, **kw) if method !=
                            'CreateAccount' else rpc_error(
                                svc.create_account, uniq(), SERVICE),
                            C.PERMISSION_DENIED)
            self.assertCode(rpc_error(anon.call, method, **kw) if method !=
                            'CreateAccount' else rpc_error(
                                anon.create_account, uniq(), SERVICE),
                            C.UNAUTHENTICATED)
        # Reading the rules takes the admin scope or a service account
        # (every server's guard reads them): a user may not.
        self.assertEqual(len(svc.call('ListRules').rules), len(
            self.c.call('ListRules').rules))
        uid, pw = self.user()
        ut = self.c.password(uid, pw).access_token
        self.keep(ut)
        user = self.c.with_token(ut)
        self.assertCode(rpc_error(user.call, 'ListRules'),
                        C.PERMISSION_DENIED)
        self.assertCode(rpc_error(anon.call, 'ListRules'),
                        C.UNAUTHENTICATED)
        self.assertCode(user.watch_rules().end(), C.PERMISSION_DENIED)

    def test_account_crud(self):
        sid, secret = self.service(scopes=['x'], metadata={'team': 'a'})
        a = self.c.call('GetAccount', id=sid).account
        self.assertEqual((a.id, a.type, list(a.scopes), dict(a.metadata),
                          a.disabled), (sid, SERVICE, ['x'], {'team': 'a'},
                                        False))
        self.assertGreater(a.created_unix_ms, 0)
        e = rpc_error(self.c.create_account, sid, SERVICE)
        self.assertCode(e, C.ALREADY_EXISTS)
        r = self.c.update_account(sid, ['scopes', 'metadata'],
                                  scopes=['y', 'z'], metadata={'k': 'v'})
        self.assertEqual(list(r.account.scopes), ['y', 'z'])
        self.assertEqual(dict(r.account.metadata), {'k': 'v'})
        # A new secret: generated, shown once; the old one stops working.
        r = self.c.update_account(sid, ['secret'])
        self.keep(r.secret)
        self.assertCode(rpc_error(self.c.client_credentials, sid, secret),
                        C.UNAUTHENTICATED)
        self.token_of(sid, r.secret)
        r = self.c.update_account(sid, ['secret'], secret='given-secret-1')
        self.keep('given-secret-1')
        self.assertEqual(r.secret, '')
        self.token_of(sid, 'given-secret-1')
        self.c.call('DeleteAccount', id=sid)
        self.assertCode(rpc_error(self.c.call, 'GetAccount', id=sid),
                        C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.call, 'DeleteAccount', id=sid),
                        C.NOT_FOUND)
        self.assertCode(rpc_error(self.c.update_account, sid, ['disabled']),
                        C.NOT_FOUND)

    def test_list_accounts_paged(self):
        made = sorted(self.service()[0] for _ in range(5))
        seen, token, pages = [], '', 0
        while True:
            r = self.c.call('ListAccounts', page_size=2, page_token=token)
            self.assertLessEqual(len(r.accounts), 2)
            seen += [a.id for a in r.accounts]
            pages += 1
            token = r.next_page_token
            if not token:
                break
        self.assertEqual(seen, sorted(seen))
        self.assertTrue(set(made) <= set(seen))
        self.assertIn('admin', seen)
        self.assertGreaterEqual(pages, 3)


# ---------------------------------------------------------------- forgeries

class ForgedTokensTest(AuthCase):
    """Tokens that must be inactive: each is crafted in Python."""

    def setUp(self):
        sid, secret = self.service(scopes=['s'])
        self.sid = sid
        self.good = self.token_of(sid, secret)
        self.header, self.claims, _ = split(self.good)
        self.kid, self.alg, self.key = self.auth.signing_key()

    def real(self, **changes):
        """A token signed with the server's own key, claims changed."""
        claims = dict(self.claims)
        claims.update(changes)
        claims = {k: v for k, v in claims.items() if v is not None}
        t = sign('RS256', self.key, {'kid': self.kid, 'typ': 'JWT'}, claims)
        self.keep(t)
        return t

    def test_control(self):
        self.assertTrue(self.active(self.good))
        self.assertTrue(self.active(self.real()))

    def test_expired_and_not_yet_valid(self):
        now = int(time.time())
        self.assertFalse(self.active(self.real(exp=now - 1)))
        self.assertFalse(self.active(self.real(nbf=now + 60)))
        self.assertFalse(self.active(self.real(exp=None)))

    def test_wrong_audience_and_issuer(self):
        self.assertFalse(self.active(self.real(aud='other')))
        self.assertFalse(self.active(self.real(aud=['other', 'x'])))
        self.assertTrue(self.active(self.real(aud=['other', 'platform'])))
        self.assertFalse(self.active(self.real(iss='evil')))

    def test_alg_none(self):
        for alg in ('none', 'None', 'NONE'):
            t = sign('none', None, self.header, self.claims)
            if alg != 'none':
                h, p, _ = t.split('.')
                hd = dict(self.header, alg=alg)
                t = ah.b64u_json(hd) + '.' + p + '.'
            self.assertFalse(self.active(t))
        # alg none with the real signature left on.
        h = ah.b64u_json(dict(self.header, alg='none'))
        self.assertFalse(self.active(h + self.good[self.good.index('.'):]))

    def test_hs256_with_public_key(self):
        from cryptography.hazmat.primitives import serialization
        pub = self.key.public_key()
        for secret in (
                pub.public_bytes(serialization.Encoding.PEM,
                                 serialization.PublicFormat
                                 .SubjectPublicKeyInfo),
                pub.public_bytes(serialization.Encoding.DER,
                                 serialization.PublicFormat
                                 .SubjectPublicKeyInfo),
                ah.b64u_decode(self.c.call('PublicKeys').keys[0].n)):
            for alg in ('HS256',):
                t = sign(alg, secret, self.header, self.claims)
                self.assertFalse(self.active(t))

    def test_forged_signature(self):
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        other = rsa.generate_private_key(65537, 2048)
        self.assertFalse(self.active(sign('RS256', other, self.header,
                                          self.claims)))
        eck = ec.generate_private_key(ec.SECP256R1())
        self.assertFalse(self.active(sign('ES256', eck, self.header,
                                          self.claims)))
        # A kid that is not ours.
        self.assertFalse(self.active(sign('RS256', self.key,
                                          {'kid': 'nope'}, self.claims)))
        # The signature cut or garbled.
        self.assertFalse(self.active(self.good[:-10]))
        self.assertFalse(self.active(self.good + 'A'))
        self.assertFalse(self.active(self.good.rsplit('.', 1)[0] + '.'))

    def test_tampered_claims(self):
        h, p, s = self.good.split('.')
        for change in ({'sub': 'admin'}, {'scope': 's platform:admin'},
                       {'exp': self.claims['exp'] + 3600}):
            forged = ah.b64u_json(dict(self.claims, **change))
            self.assertFalse(self.active(h + '.' + forged + '.' + s))
        # Header tampering (kid kept, typ changed) breaks it too.
        h2 = ah.b64u_json(dict(self.header, typ='at+jwt'))
        self.assertFalse(self.active(h2 + '.' + p + '.' + s))
        # Junk of every shape.
        for junk in ('.', '..', 'a.b.c', 'a.b.c.d', '!!!.###.$$$',
                     ah.b64u_json([1]) + '.' + p + '.' + s,
                     ah.b64u(b'{"alg":"RS256"') + '.' + p + '.' + s):
            self.assertFalse(self.active(junk))

    def test_revoked(self):
        t = self.real()
        self.assertTrue(self.active(t))
        self.c.revoke(t)
        self.assertFalse(self.active(t))
        self.assertFalse(self.active(self.real()))   # the same jti


class ExpiryTest(AuthCase):
    ARGS = ('--token-ttl', '1')

    def test_expired_by_ttl(self):
        sid, secret = self.service()
        r = self.c.client_credentials(sid, secret)
        self.keep(r.access_token)
        self.assertEqual(r.expires_in, 1)
        # The admin token expires too: a fresh caller for each check.
        creds = self.auth.admin_credentials()

        def expired():
            t = self.auth.client().client_credentials(
                creds['client_id'], creds['client_secret']).access_token
            self.keep(t)
            return not self.c.inspect(r.access_token, token=t).active
        wait_for(expired, timeout=15, what='the token to expire')


class Es256Test(AuthCase):
    ARGS = ('--key-alg', 'ES256')

    def test_es256_tokens_and_jwks(self):
        k = self.c.call('PublicKeys').keys[0]
        self.assertEqual((k.kty, k.crv, k.alg), ('EC', 'P-256', 'ES256'))
        self.assertEqual(len(ah.b64u_decode(k.x)), 32)
        self.assertEqual(len(ah.b64u_decode(k.y)), 32)
        self.assertEqual(k.kid, ah.thumbprint(k))
        self.assertEqual(split(self.admin_token)[0]['alg'], 'ES256')
        ah.verify_signature(self.admin_token, k)
        h, claims, _ = split(self.admin_token)
        # RS256 against an EC key: the alg does not fit the key.
        from cryptography.hazmat.primitives.asymmetric import rsa
        other = rsa.generate_private_key(65537, 2048)
        self.assertFalse(self.active(sign('RS256', other, h, claims)))
        kid, alg, key = self.auth.signing_key()
        t = sign('ES256', key, h, claims)
        self.keep(t)
        self.assertTrue(self.active(t))
        self.assertFalse(self.active(sign('HS256', ah.b64u_decode(k.x), h,
                                          claims)))


class RotationTest(AuthCase):
    ARGS = ('--key-rotation', '2', '--token-ttl', '6')

    def kids(self):
        return [k.kid for k in self.c.call('PublicKeys', token='').keys]

    def test_old_tokens_verify_until_expiry(self):
        creds = self.auth.admin_credentials()
        fresh = self.auth.client()

        def token():
            t = fresh.client_credentials(creds['client_id'],
                                         creds['client_secret']).access_token
            self.keep(t)
            return t
        old = token()
        old_kid = split(old)[0]['kid']
        self.assertIn(old_kid, self.kids())

        def rotated():
            t = token()
            return t if split(t)[0]['kid'] != old_kid else None
        new = wait_for(rotated, timeout=20, what='a new signing key')
        kids = self.kids()
        self.assertIn(old_kid, kids)
        self.assertIn(split(new)[0]['kid'], kids)
        # The old key still verifies its live token.
        exp = split(old)[1]['exp']
        if time.time() < exp - 1:
            self.assertTrue(fresh.inspect(old, token=new).active)

        def dropped():
            return old_kid not in self.kids()
        wait_for(dropped, timeout=40, what='the old key to leave the JWKS')
        self.assertGreaterEqual(time.time(), exp)
        self.assertFalse(fresh.inspect(old, token=token()).active)
        # Keys that can still have live tokens stay; the set stays small.
        self.assertLessEqual(len(self.kids()), 10)


# ---------------------------------------------------------------- rules

class RulesTest(AuthCase):

    def rule(self, **kw):
        r = self.c.create_rule(**kw)
        self.assertTrue(r.id)
        return r

    def test_precedence(self):
        svc = 'it.%s.v1.Thing' % ah.RUN
        reader = self.rule(service=svc, method='Get*', scope='read',
                           effect=ALLOW, priority=0)
        self.rule(service=svc, method='*', account='blocked-*',
                  effect=DENY, priority=0)
        high = self.rule(service=svc, method='GetSecret', scope='read',
                         effect=DENY, priority=10)
        vip = self.rule(service=svc, method='GetSecret', account='vip',
                        effect=ALLOW, priority=20)

        def v(**kw):
            return self.c.verify(service=svc, **kw)
        r = v(method='GetThing', scopes=['read'])
        self.assertTrue(r.allowed)
        self.assertEqual(r.rule.id, reader.id)
        r = v(method='PutThing', scopes=['read'])
        self.assertFalse(r.allowed)
        self.assertFalse(r.HasField('rule'))
        self.assertIn('default', r.reason)
        self.assertFalse(v(method='GetThing', scopes=['write']).allowed)
        self.assertFalse(v(method='GetSecret', scopes=['read']).allowed)
        self.assertEqual(v(method='GetSecret', scopes=['read']).rule.id,
                         high.id)
        # Deny wins at equal priority.
        blocked = self.c.create_account('blocked-' + ah.RUN, USER,
                                        scopes=['read'],
                                        secret='blocked-pw-1').account
        self.keep('blocked-pw-1')
        r = v(method='GetThing', account=blocked.id)
        self.assertFalse(r.allowed)
        self.assertEqual(r.rule.effect, DENY)
        # Higher priority decides first.
        self.c.create_account('vip', USER, scopes=['read'],
                              secret='vip-pw-123')
        self.keep('vip-pw-123')
        r = v(method='GetSecret', account='vip')
        self.assertTrue(r.allowed)
        self.assertEqual(r.rule.id, vip.id)
        # Deleting a rule changes the answer at once.
        self.c.call('DeleteRule', id=vip.id)
        self.assertFalse(v(method='GetSecret', account='vip').allowed)
        self.assertCode(rpc_error(self.c.call, 'DeleteRule', id=vip.id),
                        C.NOT_FOUND)
        # A disabled account is never allowed; an unknown one not found.
        self.c.update_account('vip', ['disabled'], disabled=True)
        r = v(method='GetThing', account='vip')
        self.assertFalse(r.allowed)
        self.assertIn('disabled', r.reason)
        self.assertCode(rpc_error(v, method='GetThing', account='nobody-x'),
                        C.NOT_FOUND)
        # account_type matcher.
        self.rule(service=svc, method='Ping', account_type=SERVICE,
                  effect=ALLOW)
        self.assertTrue(v(method='Ping', account_type=SERVICE).allowed)
        self.assertFalse(v(method='Ping', account_type=USER).allowed)

    def test_list_and_watch(self):
        w = self.c.watch_rules()
        self.addCleanup(w.close)
        first = w.next()
        n = len(first.rules)
        r = self.rule(service='it.watch', method='*', account='*',
                      effect=ALLOW, priority=-5, description='watched')
        m = wait_for(lambda: (lambda x: x if len(x.rules) == n + 1
                              else None)(w.next()), what='the new set')
        self.assertIn(r.id, [x.id for x in m.rules])
        prios = [x.priority for x in m.rules]
        self.assertEqual(prios, sorted(prios, reverse=True))
        ids, token = [], ''
        while True:
            page = self.c.call('ListRules', page_size=1, page_token=token)
            ids += [x.id for x in page.rules]
            token = page.next_page_token
            if not token:
                break
        self.assertEqual(ids, [x.id for x in m.rules])
        self.c.call('DeleteRule', id=r.id)
        # A set may come more than once (this replica's reload, then the
        # notification's): wait for the one without the rule.
        wait_for(lambda: r.id not in [x.id for x in w.next().rules],
                 what='the set without the deleted rule')


# ---------------------------------------------------------------- lock-out

class LockoutTest(AuthCase):
    ARGS = ('--lockout-failures', '3', '--lockout-seconds', '3',
            '--lockout-peer-failures', '1000')

    def test_account_locked_then_released(self):
        sid, secret = self.service()
        for _ in range(3):
            self.assertCode(rpc_error(self.c.client_credentials, sid, 'bad' *
                                      4), C.UNAUTHENTICATED)
        e = rpc_error(self.c.client_credentials, sid, secret)
        self.assertCode(e, C.RESOURCE_EXHAUSTED)
        self.assertTrue(any('locked out' in ln.get('msg', '') and
                            ln.get('account') == sid
                            for ln in log_lines(self.auth.srv)))
        # Another account is not affected.
        other, other_secret = self.service()
        self.token_of(other, other_secret)

        def released():
            try:
                return self.token_of(sid, secret)
            except grpc.RpcError as err:
                if err.code() != C.RESOURCE_EXHAUSTED:
                    raise
                return None
        wait_for(released, timeout=20, what='the lock-out to end')


class PeerLockoutTest(AuthCase):
    ARGS = ('--lockout-failures', '100', '--lockout-seconds', '30',
            '--lockout-peer-failures', '4')

    def test_peer_locked(self):
        sid, secret = self.service()
        for _ in range(4):
            self.assertCode(rpc_error(self.c.client_credentials,
                                      uniq('guess'), 'guess-secret'),
                            C.UNAUTHENTICATED)
        self.assertCode(rpc_error(self.c.client_credentials, sid, secret),
                        C.RESOURCE_EXHAUSTED)
        self.assertTrue(any('peer locked out' in ln.get('msg', '')
                            for ln in log_lines(self.auth.srv)))


# ---------------------------------------------------------------- bad input

class BadInputTest(AuthCase):

    def check(self, fn, field, *args, **kw):
        self.assertCode(rpc_error(fn, *args, **kw), C.INVALID_ARGUMENT,
                        field)

    def test_token(self):
        t = self.c.call
        self.check(t, 'grant_type', 'Token', token='')
        self.check(t, 'grant_type', 'Token', token='', grant_type='implicit')
        cc = self.c.client_credentials
        self.check(cc, 'client_id', '', 'secret-1')
        self.check(cc, 'client_id', 'a' * 129, 'secret-1')
        self.check(cc, 'client_id', "x'; DROP TABLE auth_accounts;--",
                   'secret-1')
        self.check(cc, 'client_secret', 'admin', '')
        self.check(cc, 'client_secret', 'admin', 's' * 1025)
        self.check(cc, 'scope', 'admin',
                   self.auth.admin_credentials()['client_secret'],
                   scope='a b\x01')
        self.check(self.c.password, 'username', '', 'pw')
        self.check(self.c.password, 'password', 'someone', '')
        self.check(self.c.refresh, 'refresh_token', '')
        self.check(self.c.refresh, 'refresh_token', 'r' * 1025)

    def test_inspect_revoke_verify(self):
        for fn in (self.c.inspect, self.c.revoke):
            self.check(fn, 'token', '')
            self.check(fn, 'token', 'x' * 9000)
            self.check(fn, 'token_type_hint', 'abc', hint='id_token')
        v = self.c.verify
        self.check(v, 'service', service='', method='M', account='admin')
        self.check(v, 'service', service='a*', method='M', account='admin')
        self.check(v, 'method', service='s', method='', account='admin')
        self.check(v, 'method', service='s', method='M N', account='admin')
        self.check(v, 'account', service='s', method='M', account='a b')
        self.check(v, 'scopes[0]', service='s', method='M', scopes=[''])
        self.check(v, 'scopes', service='s', method='M', account='admin',
                   scopes=['x'])

    def test_accounts(self):
        ca = self.c.create_account
        self.check(self.c.call, 'account', 'CreateAccount')
        self.check(ca, 'account.id', '', SERVICE)
        self.check(ca, 'account.id', 'a/b', SERVICE)
        self.check(ca, 'account.id', 'é', SERVICE)
        self.check(ca, 'account.type', uniq(), 0)
        self.check(ca, 'account.type', uniq(), 7)
        self.check(ca, 'account.scopes[1]', uniq(), SERVICE,
                   scopes=['ok', 'not ok'])
        self.check(ca, 'account.scopes', uniq(), SERVICE,
                   scopes=['s%d' % i for i in range(101)])
        self.check(ca, 'account.metadata', uniq(), SERVICE,
                   metadata={'': 'x'})
        self.check(ca, 'account.metadata', uniq(), SERVICE,
                   metadata={'k': 'v' * 1025})
        self.check(ca, 'secret', uniq(), SERVICE, secret='short')
        self.check(self.c.call, 'id', 'GetAccount', id='')
        self.check(self.c.call, 'id', 'DeleteAccount', id='x y')
        ua = self.c.update_account
        self.check(self.c.call, 'account', 'UpdateAccount')
        self.check(ua, 'update_mask', 'admin', [])
        self.check(ua, 'update_mask[0]', 'admin', ['type'])
        self.check(ua, 'account.scopes[0]', 'admin', ['scopes'],
                   scopes=['*'])
        self.check(ua, 'secret', 'admin', ['secret'], secret='short')
        self.check(self.c.call, 'page_size', 'ListAccounts', page_size=-1)
        self.check(self.c.call, 'page_token', 'ListAccounts',
                   page_token='nope')
        # Nothing of that was made.
        ids = [a.id for a in self.c.call('ListAccounts').accounts]
        self.assertEqual(ids, ['admin'])

    def test_rules(self):
        cr = self.c.create_rule
        # The bootstrap rules; no bad call adds one.
        before = len(self.c.call('ListRules').rules)
        self.check(self.c.call, 'rule', 'CreateRule')
        self.check(cr, 'rule.service', method='*', account='*',
                   effect=ALLOW)
        self.check(cr, 'rule.method', service='*', account='*',
                   effect=ALLOW)
        self.check(cr, 'rule.service', service='a b', method='*',
                   account='*', effect=ALLOW)
        self.check(cr, 'rule.service', service='x' * 257, method='*',
                   account='*', effect=ALLOW)
        self.check(cr, 'rule.scope', service='*', method='*', scope="';--",
                   effect=ALLOW)
        self.check(cr, 'rule.account', service='*', method='*',
                   effect=ALLOW)
        self.check(cr, 'rule.effect', service='*', method='*', account='*')
        self.check(cr, 'rule.account_type', service='*', method='*',
                   account_type=9, effect=ALLOW)
        self.check(cr, 'rule.description', service='*', method='*',
                   account='*', effect=ALLOW, description='d' * 1025)
        self.check(self.c.call, 'id', 'DeleteRule', id='')
        self.check(self.c.call, 'page_token', 'ListRules', page_token='zz')
        self.assertEqual(len(self.c.call('ListRules').rules), before)

    def test_malformed_message(self):
        for method in ('Token', 'Inspect', 'CreateAccount', 'Verify'):
            e = rpc_error(self.c.channel.unary_unary(
                ah.AUTH_PREFIX + method,
                request_serializer=harness.identity,
                response_deserializer=harness.identity), b'\xff\xff\xff',
                timeout=harness.RPC_TIMEOUT)
            self.assertCode(e, C.INVALID_ARGUMENT)


def main():
    if not ah.DATABASE:
        print('PLATFORM_TEST_DATABASE is not set: skipping auth-srv tests')
        sys.exit(0)
    if not os.path.exists(ah.AUTH_BIN):
        sys.stderr.write('missing %s\n' % ah.AUTH_BIN)
        sys.exit(1)
    harness.run_tests()


if __name__ == '__main__':
    main()
