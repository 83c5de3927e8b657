#!/usr/bin/python3
"""event_bench: event-srv beside nats-server, in one run on one machine.

Publish throughput (single and batch) and publish-to-delivery latency
percentiles for event-srv (durable: committed in PostgreSQL before the
answer), NATS JetStream with file storage (durable: stored before the
ack) and core NATS (in memory, no acknowledgement). One Python load
generator drives all three the same way: N publishes in flight for
throughput, a fixed rate with one subscriber for latency; NATS is spoken
in its text protocol over a socket (no client library). Writes a table
between the bench:event markers of bench/README.md.

usage: bench/event_bench.py  (env: EVENT_BIN, PLATFORM_DATABASE,
       BENCH_SECONDS=5, BENCH_INFLIGHT=128, BENCH_RATE=500)
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
import harness  # noqa: E402
sys.path.insert(0, HERE)
from benchlib import pct, start, stop_all  # noqa: E402
import event_harness as eh  # noqa: E402

SECONDS = float(os.environ.get('BENCH_SECONDS', '5'))
INFLIGHT = int(os.environ.get('BENCH_INFLIGHT', '128'))
RATE = int(os.environ.get('BENCH_RATE', '500'))
BATCH = 100
PAYLOAD = b'{"order":12345,"amount":"99.95","currency":"EUR","ok":true}'


# ---------------------------------------------------------------- NATS

class Nats:
    """The NATS text protocol over one socket, enough for PUB/SUB,
    request-reply and JetStream acks."""

    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b''
        self.line()                                   # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
                       b'PING\r\n')
        while self.line() != b'PONG':
            pass

    def line(self):
        while b'\r\n' not in self.buf:
            self.buf += self.s.recv(1 << 16)
        ln, self.buf = self.buf.split(b'\r\n', 1)
        return ln

    def msg(self):
        """The next MSG's (subject, payload); answers PINGs."""
        while True:
            ln = self.line()
            if ln == b'PING':
                self.s.sendall(b'PONG\r\n')
                continue
            if not ln.startswith(b'MSG'):
                continue
            n = int(ln.split()[-1])
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(1 << 16)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return ln.split()[1], data

    def pub(self, subject, data, reply=b''):
        return b'PUB %s %s %d\r\n%s\r\n' % (subject, reply, len(data), data)

    def request(self, subject, data):
        self.s.sendall(b'SUB _r.x 99\r\n' + self.pub(subject, data, b'_r.x'))
        _, d = self.msg()
        self.s.sendall(b'UNSUB 99\r\n')
        return json.loads(d)


def nats_throughput(port, acked):
    """Publishes for SECONDS with INFLIGHT unacked (JetStream acks) or
    flushed by PING every INFLIGHT (core): events per second."""
    n = Nats(port)
    if acked:
        n.s.sendall(b'SUB _ack.* 1\r\n')
    done, sent, t0 = 0, 0, time.monotonic()
    end = t0 + SECONDS
    while time.monotonic() < end:
        if acked:
            chunk = b''.join(n.pub(b'bench.tp', PAYLOAD, b'_ack.%d' % i)
                             for i in range(sent, sent + INFLIGHT - (
                                 sent - done)))
            sent += INFLIGHT - (sent - done)
            n.s.sendall(chunk)
            for _ in range(INFLIGHT // 2):
                _, d = n.msg()
                if b'"seq"' not in d:
                    raise SystemExit('JetStream publish failed: %r' % d)
                done += 1
        else:
            n.s.sendall(b''.join(n.pub(b'core.tp', PAYLOAD)
                                 for _ in range(INFLIGHT)) + b'PING\r\n')
            while n.line() != b'PONG':
                pass
            done += INFLIGHT
    while acked and done < sent:
        n.msg()
        done += 1
    return done / (time.monotonic() - t0)


def nats_latency(port, jetstream):
    """Publish at RATE; receive through a JetStream push consumer (stored
    first) or a core subscription: delivery latencies in ms."""
    sub, pub = Nats(port), Nats(port)
    subject = b'bench.lat' if jetstream else b'core.lat'
    if jetstream:
        sub.request(b'$JS.API.CONSUMER.CREATE.bench', json.dumps({
            'stream_name': 'bench', 'config': {
                'deliver_subject': 'lat.deliver', 'ack_policy': 'none',
                'deliver_policy': 'new', 'filter_subject': 'bench.lat'}})
            .encode())
        sub.s.sendall(b'SUB lat.deliver 1\r\nPING\r\n')
    else:
        sub.s.sendall(b'SUB core.lat 1\r\nPING\r\n')
    while sub.line() != b'PONG':
        pass
    return rate_latency(
        lambda: pub.s.sendall(pub.pub(subject, b'%d' % time.perf_counter_ns())),
        lambda: int(sub.msg()[1]))


def rate_latency(publish, receive):
    """Publishes at RATE for SECONDS on a thread while receiving here;
    each payload is the send time."""
    n = int(RATE * SECONDS)
    lat = []

    def run():
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            publish()
    th = threading.Thread(target=run)
    th.start()
    for _ in range(n):
        sent = receive()
        lat.append((time.perf_counter_ns() - sent) / 1e6)
    th.join()
    return lat


# ---------------------------------------------------------------- event-srv

def event_throughput(addr, batch):
    c = eh.new_client(addr)
    topic = 'bench.tp'
    reqs = [c.pb.PublishRequest(topic=topic, type='bench', data=PAYLOAD)
            for _ in range(BATCH)]
    lock, done = threading.Lock(), [0]
    sem = threading.Semaphore(INFLIGHT // (8 if batch else 1))
    end = time.monotonic() + SECONDS
    t0 = time.monotonic()

    def cb(f, n):
        if f.exception() is not None:
            raise SystemExit('event-srv publish failed: %s' % f.exception())
        with lock:
            done[0] += n
        sem.release()
    while time.monotonic() < end:
        sem.acquire()
        if batch:
            f = c.future('PublishBatch', events=reqs)
            f.add_done_callback(lambda f: cb(f, BATCH))
        else:
            f = c.future('Publish', topic=topic, type='bench', data=PAYLOAD)
            f.add_done_callback(lambda f: cb(f, 1))
    for _ in range(INFLIGHT // (8 if batch else 1)):
        sem.acquire()
    elapsed = time.monotonic() - t0
    c.channel.close()
    return done[0] / elapsed


def event_latency(addr):
    c = eh.new_client(addr)
    w = c.subscribe(['bench.lat'])
    while not w.next().caught_up:
        pass
    pub = c._m['Publish']
    req = c.pb.PublishRequest
    futures = []        # a future dropped may cancel its call

    def publish():
        futures.append(pub.future(req(topic='bench.lat', type='bench',
                                      data=b'%d' % time.perf_counter_ns())))
    lat = rate_latency(publish, lambda: int(w.next().event.data))
    w.close()
    c.channel.close()
    return lat


# ---------------------------------------------------------------- the run

def main():
    binary = os.environ.get('EVENT_BIN') or os.path.join(
        ROOT, 'build-release', 'services', 'event', 'event-srv')
    db = os.environ.get('PLATFORM_DATABASE')
    if not db or not os.path.exists(binary):
        raise SystemExit('need PLATFORM_DATABASE and %s' % binary)
    work = tempfile.mkdtemp(prefix='event-bench-')
    try:
        ep, cp, jp = (harness.free_port() for _ in range(3))
        start([binary, '--listen', '127.0.0.1:%d' % ep, '--log-format',
               'json'], env=dict(os.environ, PLATFORM_DATABASE=db,
                                   PLATFORM_INSECURE_NO_AUTH='1'))
        start(['nats-server', '-a', '127.0.0.1', '-p', str(cp)])
        start(['nats-server', '-a', '127.0.0.1', '-p', str(jp), '-js',
               '-sd', work])
        for p in (ep, cp, jp):
            harness.wait_for(lambda: harness.port_listening(p),
                             what='port %d' % p)
        time.sleep(0.5)
        Nats(jp).request(b'$JS.API.STREAM.CREATE.bench', json.dumps({
            'name': 'bench', 'subjects': ['bench.>'], 'storage': 'file',
            'max_msgs': 2000000}).encode())
        rows = []
        addr = '127.0.0.1:%d' % ep
        rows.append(('event-srv Publish (durable, committed)',
                     event_throughput(addr, False), event_latency(addr)))
        rows.append(('event-srv PublishBatch of %d' % BATCH,
                     event_throughput(addr, True), None))
        rows.append(('NATS JetStream, file storage (acked)',
                     nats_throughput(jp, True), nats_latency(jp, True)))
        rows.append(('core NATS (in memory, no ack)',
                     nats_throughput(cp, False), nats_latency(cp, False)))
    finally:
        stop_all()
        shutil.rmtree(work, True)
    table = report(rows)
    print(table)
    readme = os.path.join(HERE, 'README.md')
    text = open(readme).read()
    b, e = '<!-- bench:event:begin -->', '<!-- bench:event:end -->'
    if b in text:
        text = text[:text.index(b) + len(b)] + '\n\n' + table + '\n' + \
            text[text.index(e):]
        open(readme, 'w').write(text)


def report(rows):
    ver = subprocess.run(['nats-server', '--version'], capture_output=True,
                         text=True).stdout.strip()
    out = ['Measured %s on %d CPU(s); %gs per target, %d publishes in '
           'flight (%d batches), latency at %d events/s; %s.' % (
               time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
               os.cpu_count(), SECONDS, INFLIGHT, INFLIGHT // 8, RATE, ver),
           '',
           '| Target | events/s | latency p50 | p90 | p99 | max |',
           '|---|---:|---:|---:|---:|---:|']
    for name, tp, lat in rows:
        if lat:
            l = ' | '.join('%.2f ms' % pct(lat, q)
                           for q in (0.5, 0.9, 0.99, 1.0))
        else:
            l = ' | '.join(['-'] * 4)
        out.append('| %s | %.0f | %s |' % (name, tp, l))
    return '\n'.join(out)


if __name__ == '__main__':
    try:
        main()
    finally:
        stop_all()
