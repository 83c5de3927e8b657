#!/usr/bin/env bash
# init: the fleet's certificates and service identities, made once.
#
#   deploy/init.sh DIR          make what is missing in DIR
#   deploy/init.sh -h|--help    this text
#
# What scripts/run does for the local fleet, for a fleet elsewhere
# (docker-compose's `init` service, the Kubernetes Job in deploy/k8s/,
# or by hand). Makes in DIR:
#
#   ca/                 the development CA (scripts/certs), its key: keep
#                       this folder private to whoever runs init
#   NAME/               one folder per server NAME: ca.crt, tls.crt,
#                       tls.key and credentials.json (its service account
#                       NAME-srv's client_id and client_secret, mode 0600);
#                       auth/ also holds kek (auth-srv's key-encryption
#                       key) and its credentials.json is the admin's
#   platformctl/        ca.crt, tls.crt, tls.key and admin.json: what an
#                       operator needs to log in as the admin
#
# When a credentials.json is missing it starts a temporary auth-srv on
# 127.0.0.1:17072 (PLATFORM_INIT_AUTH_PORT), plaintext, against
# PLATFORM_DATABASE: on an empty database its first start writes the
# admin's credentials; then, as the admin, it makes each server's
# service account with platformctl (kv-srv's gets the scope kv.peer,
# monitor-srv's monitor.peer; an account that exists gets a new secret)
# and stops it. What exists is
# kept, so running it again changes nothing. Run as root with
# PLATFORM_INIT_USER set (the compose file: platform), it gives DIR to
# that user and goes on as that user.
#
# PLATFORM_INIT_SERVERS   the servers (default: discovery config auth
#                         event kv sync db monitor router trace)
# PLATFORM_CERT_DOMAINS   extra DNS suffixes for the certificates
#                         (scripts/certs), e.g. "platform.svc"
# PLATFORM_INIT_SEED      a folder laid out as DIR (read-only, say the
#                         Kubernetes Secrets of an earlier run): its files
#                         are copied into DIR first where DIR has none
# PLATFORM_INIT_K8S       a folder to write DIR as Kubernetes Secrets to,
#                         one manifest per folder F, Secret platform-F in
#                         the namespace PLATFORM_INIT_NAMESPACE (the Job)
# Binaries: build/ of this checkout when there is one, else $PATH.
set -euo pipefail

SERVERS=(${PLATFORM_INIT_SERVERS:-discovery config auth event kv sync db monitor router trace})
AUTH_PORT=${PLATFORM_INIT_AUTH_PORT:-17072}
START_TIMEOUT_S=30      # for the temporary auth-srv to listen and bootstrap

say() { printf 'init: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

case "${1-}" in
-h | --help) sed -n '2,41s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
"") say "usage: init.sh DIR (see --help)"; exit 2 ;;
esac
(($# == 1)) || { say "usage: init.sh DIR (see --help)"; exit 2; }
[[ ${AUTH_PORT} =~ ^[1-9][0-9]{0,4}$ ]] ||
	{ say "PLATFORM_INIT_AUTH_PORT must be a port number"; exit 2; }
for name in "${SERVERS[@]}"; do
	[[ $name =~ ^[a-z0-9]+$ ]] ||
		{ say "PLATFORM_INIT_SERVERS: not a server name: $name"; exit 2; }
done
mkdir -p "$1"
DIR=$(cd "$1" && pwd)

# The folders exist before the user they belong to takes over: in a
# container they are volumes that start out owned by root.
owner=${PLATFORM_INIT_USER-}
if ((EUID == 0)) && [[ -n $owner && $owner != root ]]; then
	group=$(id -gn "$owner") || die "PLATFORM_INIT_USER: no user $owner"
	install -d -m 0700 -o "$owner" -g "$group" "$DIR" "$DIR/ca" \
	    "$DIR/platformctl" "${SERVERS[@]/#/$DIR/}"
	chown -R "$owner:$group" "$DIR"
	exec setpriv --reuid="$owner" --regid="$group" --init-groups \
	    -- "${BASH_SOURCE[0]}" "$DIR"
fi

umask 077
FOLDERS=(ca platformctl "${SERVERS[@]}")
mkdir -p "${FOLDERS[@]/#/$DIR/}"

# What an earlier run made, kept elsewhere (read-only Secrets, links).
if [[ -n ${PLATFORM_INIT_SEED-} ]]; then
	for f in "${FOLDERS[@]}"; do
		for file in "$PLATFORM_INIT_SEED/$f"/*; do
			[[ -f $file && ! -e $DIR/$f/${file##*/} ]] || continue
			install -m 0600 "$file" "$DIR/$f/${file##*/}"
		done
	done
fi

# DIR as Kubernetes Secrets (for `kubectl apply --server-side -f`).
k8s_secrets() {
	local out=$1 ns=${PLATFORM_INIT_NAMESPACE:-platform} f file
	mkdir -p "$out"
	for f in "${FOLDERS[@]}"; do
		{
			printf 'apiVersion: v1\nkind: Secret\nmetadata:\n'
			printf '  name: platform-%s\n  namespace: %s\n' "$f" "$ns"
			printf '  labels:\n    app.kubernetes.io/part-of: platform\n'
			printf '    app.kubernetes.io/managed-by: platform-init\n'
			printf 'type: Opaque\ndata:\n'
			for file in "$DIR/$f"/*; do
				[[ -f $file && ${file##*/} =~ ^[A-Za-z0-9._-]+$ ]] ||
					continue
				printf '  %s: %s\n' "${file##*/}" "$(base64 -w 0 "$file")"
			done
		} >"$out/platform-$f.yaml"
	done
	say "Kubernetes Secrets written to $out"
}

# The tools: this checkout's scripts/ and build/, or the image's $PATH.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CERTS=$HERE/../scripts/certs
[[ -x $CERTS ]] || CERTS=$(command -v platform-certs) ||
	die "neither scripts/certs nor platform-certs found"
BUILD=${PLATFORM_INIT_BUILD:-$HERE/../build}

# Settings meant for a server of the fleet must not reach the temporary
# auth-srv or platformctl: they are told everything they need here.
for v in $(compgen -e); do
	[[ $v == PLATFORM_* && $v != PLATFORM_DATABASE &&
	    $v != PLATFORM_CERT_DOMAINS && $v != PLATFORM_INIT_* ]] &&
	    unset "$v"
done

# ---- certificates: one per server and one for platformctl

PLATFORM_CERTS_DIR=$DIR/ca "$CERTS" "${SERVERS[@]}" platformctl
for name in "${SERVERS[@]}" platformctl; do
	install -m 0644 "$DIR/ca/ca.pem" "$DIR/$name/ca.crt"
	install -m 0644 "$DIR/ca/$name.pem" "$DIR/$name/tls.crt"
	install -m 0600 "$DIR/ca/$name-key.pem" "$DIR/$name/tls.key"
done

# What the run ends with, however it ends well.
done_ok() {
	[[ -f $DIR/platformctl/admin.json ]] ||
		install -m 0600 "$ADMIN" "$DIR/platformctl/admin.json"
	[[ -z ${PLATFORM_INIT_K8S-} ]] || k8s_secrets "$PLATFORM_INIT_K8S"
	say "certificates and credentials are in place in $DIR"
}

# ---- service identities

ADMIN=$DIR/auth/credentials.json
missing=()
for name in "${SERVERS[@]}"; do
	[[ $name == auth || -f $DIR/$name/credentials.json ]] ||
		missing+=("$name")
done
if [[ -f $ADMIN && ${#missing[@]} == 0 ]]; then
	done_ok
	exit 0
fi
[[ -n ${PLATFORM_DATABASE-} ]] ||
	die "PLATFORM_DATABASE is not set: it is needed to make the accounts"

AUTH_SRV=$BUILD/services/auth/auth-srv
CTL=$BUILD/cli/platformctl
[[ -x $AUTH_SRV ]] || AUTH_SRV=$(command -v auth-srv) ||
	die "auth-srv not found (neither in $BUILD nor on \$PATH)"
[[ -x $CTL ]] || CTL=$(command -v platformctl) ||
	die "platformctl not found (neither in $BUILD nor on \$PATH)"

work=$(mktemp -d)
auth_pid=""
cleanup() {
	if [[ -n $auth_pid ]]; then
		kill -TERM "$auth_pid" 2>/dev/null || true
		wait "$auth_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$AUTH_PORT") 2>/dev/null; }
port_open && die "127.0.0.1:$AUTH_PORT is in use (PLATFORM_INIT_AUTH_PORT)"

# The admin's credentials are the bootstrap file an empty database's
# first start writes; auth-srv is the admin itself afterwards.
"$AUTH_SRV" --listen "127.0.0.1:$AUTH_PORT" --discovery "" \
    --log-format text --grace-ms 0 --kek-file "$DIR/auth/kek" \
    --bootstrap-file "$ADMIN" >"$work/auth.log" 2>&1 &
auth_pid=$!
failed() {
	say "$*; the temporary auth-srv said:"
	tail -n 20 "$work/auth.log" >&2
	exit 1
}
waited=0
until port_open && [[ -f $ADMIN ]]; do
	kill -0 "$auth_pid" 2>/dev/null || failed "auth-srv exited"
	((waited < START_TIMEOUT_S * 10)) ||
		failed "no admin credentials in $ADMIN after ${START_TIMEOUT_S}s (a database bootstrapped before keeps its admin: put its credentials there)"
	sleep 0.1
	waited=$((waited + 1))
done

ctl() {
	XDG_CONFIG_HOME=$work "$CTL" --auth "127.0.0.1:$AUTH_PORT" "$@"
}
ctl login --credentials "$ADMIN" >/dev/null 2>"$work/ctl.err" ||
	failed "cannot log in as the admin: $(cat "$work/ctl.err")"

# The secret platformctl prints once, in its JSON answer (base64url).
secret_of() { sed -n 's/.*"secret": *"\([A-Za-z0-9_-]*\)".*/\1/p'; }

for name in "${missing[@]}"; do
	scope=()
	# kv-srv nodes copy entries to each other (the rule
	# bootstrap-kv-replicate asks for the scope kv.peer).
	[[ $name == kv ]] && scope=(--scope kv.peer)
	[[ $name == monitor ]] && scope=(--scope monitor.peer)
	if ! out=$(ctl -o json accounts create "$name-srv" --type service \
	    "${scope[@]}" 2>"$work/ctl.err"); then
		# Made by an earlier run whose file is gone: a new secret.
		out=$(ctl -o json accounts update "$name-srv" --new-secret \
		    "${scope[@]}" 2>>"$work/ctl.err") ||
			failed "cannot make the account $name-srv: $(cat "$work/ctl.err")"
	fi
	secret=$(secret_of <<<"$out")
	[[ -n $secret ]] || failed "no secret in platformctl's answer for $name-srv"
	printf '{"client_id": "%s", "client_secret": "%s"}\n' "$name-srv" \
	    "$secret" >"$DIR/$name/.credentials.json.tmp"
	mv "$DIR/$name/.credentials.json.tmp" "$DIR/$name/credentials.json"
	say "made the service account $name-srv ($DIR/$name/credentials.json)"
done
ctl logout >/dev/null 2>&1 || true
done_ok
