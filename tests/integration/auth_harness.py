"""Helpers for the auth-srv integration tests (test_auth.py).

Builds on harness.py: the message classes of platform.auth.v1, a client
for every Auth method that sends `authorization: Bearer <token>`, auth-srv
started on a schema of its own (so every server class sees an empty
database: the first start bootstraps), and JOSE helpers to craft tokens:
base64url, HS256, and signing with auth-srv's own key, unsealed from the
database with the key-encryption key the test gave it (Debian's
python3-cryptography).

Environment (scripts/test sets it):
  PLATFORM_TEST_DATABASE  conninfo of the PostgreSQL the tests may write to
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import harness
from harness import RPC_TIMEOUT, Server, WatchReader

AUTH_BIN = os.path.join(harness.BUILD_DIR, 'services', 'auth', 'auth-srv')
AUTH_SERVICE = 'platform.auth.v1.Auth'
AUTH_PREFIX = '/' + AUTH_SERVICE + '/'
ADMIN_SCOPE = 'platform:admin'

DATABASE = os.environ.get('PLATFORM_TEST_DATABASE') or None

RUN = harness.RUN

# ---------------------------------------------------------------- protos

pb = harness.proto_module('platform/auth/v1/auth.proto', 'it_auth_pb2')
uniq = harness.uniq


# ---------------------------------------------------------------- client

class AuthClient(harness.ServiceClient):
    """platform.auth.v1.Auth over a channel. Every method takes the
    request's fields as keyword arguments and an optional token= (the
    client's own token by default; '' sends none)."""

    PREFIX = AUTH_PREFIX
    METHODS = ('Token', 'Inspect', 'Revoke', 'PublicKeys', 'Verify',
               'CreateAccount', 'GetAccount', 'UpdateAccount',
               'DeleteAccount', 'ListAccounts', 'CreateRule', 'DeleteRule',
               'ListRules')
    STREAMS = ('WatchRules',)

    def __init__(self, channel, token=None):
        super().__init__(channel, pb())
        self.token = token

    def _md(self, token):
        token = self.token if token is None else token
        return [('authorization', 'Bearer ' + token)] if token else None

    def call(self, _method, token=None, timeout=RPC_TIMEOUT, **fields):
        req = getattr(self.pb, _method + 'Request')(**fields)
        return self._m[_method](req, timeout=timeout,
                                metadata=self._md(token))

    def watch_rules(self, token=None):
        return WatchReader(self._m['WatchRules'](self.pb.WatchRulesRequest(),
                                       metadata=self._md(token)))

    def with_token(self, token):
        return AuthClient(self.channel, token)

    # -- grants

    def client_credentials(self, client_id, secret, scope=''):
        return self.call('Token', token='', grant_type='client_credentials',
                         client_id=client_id, client_secret=secret,
                         scope=scope)

    def password(self, username, password, scope=''):
        return self.call('Token', token='', grant_type='password',
                         username=username, password=password, scope=scope)

    def refresh(self, refresh_token, scope=''):
        return self.call('Token', token='', grant_type='refresh_token',
                         refresh_token=refresh_token, scope=scope)

    def inspect(self, token_str, hint='', token=None):
        return self._m['Inspect'](
            self.pb.InspectRequest(token=token_str, token_type_hint=hint),
            timeout=RPC_TIMEOUT, metadata=self._md(token))

    def revoke(self, token_str, hint='', token=None):
        return self._m['Revoke'](
            self.pb.RevokeRequest(token=token_str, token_type_hint=hint),
            timeout=RPC_TIMEOUT, metadata=self._md(token))

    def create_account(self, id, type, scopes=(), secret='', metadata=None,
                       disabled=False, token=None):
        acct = self.pb.Account(id=id, type=type, scopes=list(scopes),
                               metadata=metadata or {}, disabled=disabled)
        return self.call('CreateAccount', token=token, account=acct,
                         secret=secret)

    def update_account(self, id, mask, secret='', token=None, **fields):
        acct = self.pb.Account(id=id, **fields)
        return self.call('UpdateAccount', token=token, account=acct,
                         update_mask=list(mask), secret=secret)

    def create_rule(self, token=None, **fields):
        return self.call('CreateRule', token=token,
                         rule=self.pb.Rule(**fields)).rule

    def verify(self, token=None, **fields):
        return self.call('Verify', token=token, **fields)


# ---------------------------------------------------------------- database

def psql(sql, database=None):
    """Runs sql with psql; the rows as lists of strings."""
    r = subprocess.run(['psql', database or DATABASE, '-qAt',
                        '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-c', sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if r.returncode != 0:
        raise AssertionError('psql failed: %s'
                             % r.stderr.decode('utf-8', 'replace'))
    out = r.stdout.decode('utf-8')
    return [ln.split('\t') for ln in out.splitlines() if ln]


def new_schema():
    """A fresh schema and the conninfo that makes it auth-srv's database
    (its search_path), for a first start on an empty database."""
    name = harness.uniq('auth_it').replace('-', '_')
    psql('CREATE SCHEMA %s' % name)
    sep = '&' if '?' in DATABASE else '?'
    return name, '%s%soptions=-csearch_path%%3D%s' % (DATABASE, sep, name)


def drop_schema(name):
    psql('DROP SCHEMA IF EXISTS %s CASCADE' % name)


# ---------------------------------------------------------------- server

class AuthServer:
    """auth-srv on its own schema and state folder. The conninfo goes in
    PLATFORM_DATABASE so that the password stays out of the process
    list."""

    def __init__(self, name='auth-srv', extra_args=(), schema=None,
                 state=None, wait=True):
        if schema is None:
            self.schema, self.database = new_schema()
        else:
            self.schema, self.database = schema
        self.state = state or tempfile.mkdtemp(prefix='platform-it-auth-')
        self.kek_file = os.path.join(self.state, 'kek')
        self.bootstrap_file = os.path.join(self.state, 'bootstrap.json')
        self.extra_args = list(extra_args)
        self.name = name
        self.srv = None
        self.start(wait)

    def start(self, wait=True):
        args = ['--kek-file', self.kek_file,
                '--bootstrap-file', self.bootstrap_file] + self.extra_args
        self.srv = Server(binary=AUTH_BIN, extra_args=args,
                          env={'PLATFORM_DATABASE': self.database},
                          name=self.name, wait=wait, timeout=60.0)
        return self.srv

    def client(self, token=None):
        return AuthClient(self.srv.get_channel(), token)

    def admin_credentials(self):
        with open(self.bootstrap_file) as f:
            return json.load(f)

    def admin_token(self):
        c = self.admin_credentials()
        return self.client().client_credentials(
            c['client_id'], c['client_secret']).access_token

    def stop_clean(self):
        return self.srv.stop_clean()

    def cleanup(self):
        if self.srv is not None:
            self.srv.kill()
        shutil.rmtree(self.state, True)
        try:
            drop_schema(self.schema)
        except AssertionError:
            pass

    # -- the server's own signing key, for crafting tokens

    def kek(self):
        with open(self.kek_file, 'rb') as f:
            return hashlib.sha256(f.read().rstrip(b'\r\n')).digest()

    def signing_key(self):
        """(kid, alg, private key) of the key that signs now."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        rows = psql('SELECT kid, alg, sealed FROM %s.auth_signing_keys '
                    'WHERE retired_ms IS NULL' % self.schema)
        kid, alg, sealed = rows[0]
        blob = b64u_decode(sealed)
        assert blob[0] == 1
        pem = AESGCM(self.kek()).decrypt(blob[1:13], blob[13:],
                                         kid.encode())
        return kid, alg, serialization.load_pem_private_key(pem, None)


# ---------------------------------------------------------------- JOSE

def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))


def b64u_json(obj):
    return b64u(json.dumps(obj, separators=(',', ':')).encode())


def split(token):
    h, p, s = token.split('.')
    return (json.loads(b64u_decode(h)), json.loads(b64u_decode(p)), s)


def sign(alg, key, header, claims):
    """A compact JWS: alg 'none', 'HS256' (key: bytes), 'RS256' or 'ES256'
    (key: a cryptography private key)."""
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import \
        decode_dss_signature
    h = dict(header)
    h['alg'] = alg
    data = (b64u_json(h) + '.' + b64u_json(claims)).encode()
    if alg == 'none':
        sig = b''
    elif alg == 'HS256':
        m = hmac.HMAC(key, hashes.SHA256())
        m.update(data)
        sig = m.finalize()
    elif alg == 'RS256':
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, 'big') + s.to_bytes(32, 'big')
    return data.decode() + '.' + b64u(sig)


def public_key_of(jwk):
    """A cryptography public key from a JWK message or dict."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    g = (lambda k: getattr(jwk, k)) if not isinstance(jwk, dict) \
        else jwk.get
    if g('kty') == 'RSA':
        return rsa.RSAPublicNumbers(
            int.from_bytes(b64u_decode(g('e')), 'big'),
            int.from_bytes(b64u_decode(g('n')), 'big')).public_key()
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64u_decode(g('x')), 'big'),
        int.from_bytes(b64u_decode(g('y')), 'big'),
        ec.SECP256R1()).public_key()


def verify_signature(token, jwk):
    """Raises unless token's signature verifies with jwk."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import \
        encode_dss_signature
    data, s = token.rsplit('.', 1)
    data = data.encode()
    sig = b64u_decode(s)
    key = public_key_of(jwk)
    if jwk.kty == 'RSA':
        key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        der = encode_dss_signature(int.from_bytes(sig[:32], 'big'),
                                   int.from_bytes(sig[32:], 'big'))
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))


def thumbprint(jwk):
    """RFC 7638 thumbprint of a JWK message."""
    if jwk.kty == 'RSA':
        members = {'e': jwk.e, 'kty': 'RSA', 'n': jwk.n}
    else:
        members = {'crv': jwk.crv, 'kty': 'EC', 'x': jwk.x, 'y': jwk.y}
    text = json.dumps(members, separators=(',', ':'), sort_keys=True)
    return b64u(hashlib.sha256(text.encode()).digest())
