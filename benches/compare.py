#!/usr/bin/env python3
"""vestibule against nginx, HAProxy and Postfix on this machine, in one run (issue #8).

Every system under test (SUT) runs pinned to CPU 1 with one worker thread (nginx worker_processes 1,
haproxy nbthread 1, vestibule [proxy] threads = 1); the upstream (nginx serving a fixed 1 KiB body
with keep-alive), the websocket upstream and every load generator run on CPU 0. The system "pingora"
is benches/bare_pingora.rs, pingora with nothing of vestibule's: the floor vestibule is built on,
so v/pingora is what vestibule's own code costs and pingora/nginx what the framework does. One ECDSA P-256
certificate for all, loopback only, every loop bounded in time. CPU is read from /proc/PID/stat
(utime+stime, children included) of the SUT's whole process tree, before and after each run.

Websockets: RSS per idle ws/wss connection (5,000 held), and CPU per message through the tunnel
(`wsload`): 64 KiB messages echoed one at a time, and 10,000 small messages/s on each of 4 connections.

Usage:  python3 benches/compare.py [--reps 3] [--duration 10] [--ws 5000] [--mail 5000]
                                   [--bin target/release/vestibule] [--out benches/RESULTS.md]
        python3 benches/compare.py --smoke      (CI: every scenario once, about a second each)
Prerequisites (benches/run installs them): wrk, h2load (nghttp2-client), nginx, haproxy, postfix,
openssl, and postfix's smtp-source/smtp-sink.
"""

import argparse
import asyncio
import base64
import datetime
import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUT_CPU, LOAD_CPU = "1", "0"
HZ = os.sysconf("SC_CLK_TCK")
PF = os.path.join(ROOT, ".test-peers/postfix")
NOFILE = 65536

# Fixed loopback ports: below the tests' 20000-32000 and the ephemeral range (32768 and up).
UP, UP_TLS, WS_UP = 18001, 18002, 18003
PLAIN, TLS = 18011, 18012
ADMIN, PUSH, SMTP, SINK = 18021, 18022, 18023, 18024


# ---------------------------------------------------------------------------------------------
# processes, CPU and memory
# ---------------------------------------------------------------------------------------------

def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + argv


def raise_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    n = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def start(argv, cpu, log, env=None):
    return subprocess.Popen(pinned(cpu, argv), stdout=log, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=raise_nofile, start_new_session=True)


def stop(p):
    if p and p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def wait_port(port, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def tree(root):
    """root and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root):
    """utime+stime+cutime+cstime over the tree: reaped children are counted by their parent."""
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return total / HZ


def rss_kib(root):
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def run(argv, timeout):
    r = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True, timeout=timeout,
                       preexec_fn=raise_nofile)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# load generators and their output
# ---------------------------------------------------------------------------------------------

def to_ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, duration, conns=64, headers=(), script=None):
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    out = run(argv + [url], duration + 60)
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk {url}: {errors.group(1)} non-2xx answers\n{out}")
    lat = dict((p, to_ms(v, u)) for p, v, u in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)", out))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "requests": reqs,
            "p50": lat.get("50"), "p99": lat.get("99")}


def h2load(url, duration):
    out = run(["h2load", "-c32", "-m10", "-t1", "-D", str(duration), url], duration + 60)
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    fin = re.search(r"finished in ([\d.]+)(s|ms), ([\d.]+) req/s", out)
    if not m or not fin:
        raise SystemExit(f"h2load output not understood:\n{out}")
    return {"rps": float(fin.group(3)), "requests": int(m.group(1))}


def s_time_reuse(port, duration, clients=4):
    """Resumed TLS 1.3 handshakes: `clients` openssl s_time loops at once, each reconnecting with the
    ticket of its previous connection (s_time prints `r` for every resumed one) and fetching /1k."""
    argv = pinned(LOAD_CPU, ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-reuse", "-time",
                             str(duration), "-www", "/1k"])
    t0 = time.monotonic()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(clients)]
    outs = [p.communicate(timeout=duration + 60)[0] for p in procs]
    elapsed = time.monotonic() - t0
    n = 0
    for out in outs:
        m = re.search(r"(\d+) connections in [\d.]+s;", out)
        if not m or "rrr" not in out:
            raise SystemExit(f"openssl s_time did not resume sessions:\n{out[-2000:]}")
        n += int(m.group(1))
    return {"rps": n / elapsed, "requests": n}


# ---------------------------------------------------------------------------------------------
# websockets: an upstream that answers 101 and holds, and N idle clients
# ---------------------------------------------------------------------------------------------

def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()


async def ws_upstream(port):
    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept_key(key.group(1).decode()).encode() + b"\r\n\r\n")
        await writer.drain()
        # Echo every byte back (idle clients send none: the connection is just held). The proxies
        # relay bytes, so the client's masked frames come back as they were sent.
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


async def ws_clients(port, n, use_tls):
    ctx = None
    if use_tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    sem = asyncio.Semaphore(100)
    held = []

    async def one(i):
        async with sem:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="bench.test" if ctx else None)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(f"GET /ws HTTP/1.1\r\nHost: bench.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"connection {i}: {head[:80]!r}")
            held.append((reader, writer))

    await asyncio.gather(*(one(i) for i in range(n)))
    print(f"ready {len(held)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the harness closes stdin


def ws_frame(payload):
    """A masked binary frame (mask key 0: the payload is sent as is)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 65536:
        head = bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


async def ws_upgrade(port, use_tls):
    ctx = None
    if use_tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="bench.test" if ctx else None)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: bench.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade: {head[:80]!r}")
    return reader, writer


async def ws_load(port, mode, duration):
    """`big`: 64 KiB messages, one round trip at a time on one connection; `small`: 64-byte
    messages at 10,000/s on each of WS_SMALL_CONNS connections (10 every millisecond), echoed.
    Prints the messages that came back."""
    if mode == "big":
        reader, writer = await ws_upgrade(port, False)
        frame = ws_frame(b"x" * 65536)
        done, end = 0, time.monotonic() + duration
        while time.monotonic() < end:
            writer.write(frame)
            await reader.readexactly(len(frame))
            done += 1
        print(f"done {done}", flush=True)
        return
    frame = ws_frame(b"y" * 64)
    burst = frame * 10

    async def one():
        reader, writer = await ws_upgrade(port, False)
        got = 0

        async def drain():
            nonlocal got
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                got += len(data)

        rx = asyncio.create_task(drain())
        start = time.monotonic()
        sent = 0
        while (now := time.monotonic()) < start + duration:
            due = int((now - start) * 1000) + 1
            while sent < due:
                writer.write(burst)
                sent += 1
            await writer.drain()
            await asyncio.sleep(0.001)
        deadline = time.monotonic() + 10
        while got < sent * len(burst) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        rx.cancel()
        writer.close()
        return got // len(frame)

    counts = await asyncio.gather(*(one() for _ in range(WS_SMALL_CONNS)))
    print(f"done {sum(counts)}", flush=True)


WS_SMALL_CONNS = 4


def measure_ws_throughput(res, system, pid, reps, duration):
    for name, mode in (("ws 64 KiB message round trips", "big"),
                       (f"ws 10,000 small messages/s on each of {WS_SMALL_CONNS} connections", "small")):
        for _ in range(reps):
            c0 = cpu_seconds(pid)
            out = run([sys.executable, __file__, "--ws-load", str(PLAIN), mode, str(duration)], duration + 60)
            c1 = cpu_seconds(pid)
            n = int(re.search(r"done (\d+)", out).group(1))
            res.add(name, "messages/s", system, n / duration)
            if n:
                res.add(name, "CPU us/message", system, (c1 - c0) * 1e6 / n)
        print(f"  {system}: {name}: {res.median((name, 'CPU us/message', system))} us/message", flush=True)


def idle_ws_kib(sut_pid, port, n, use_tls):
    """KiB of SUT RSS per idle (ws or wss) connection held through it."""
    before = rss_kib(sut_pid)
    p = subprocess.Popen(pinned(LOAD_CPU, [sys.executable, __file__, "--ws-clients", str(port), str(n),
                                           "tls" if use_tls else "plain"]),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=raise_nofile)
    try:
        line = p.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"websocket clients failed: {line}{p.stdout.read()}")
        time.sleep(1)  # let the SUT settle its buffers; this is a measurement, not a synchronisation
        after = rss_kib(sut_pid)
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    return (after - before) / n


# ---------------------------------------------------------------------------------------------
# systems under test
# ---------------------------------------------------------------------------------------------

BODY_1K = "x" * 1023 + "\n"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def certificate(work):
    key, crt = os.path.join(work, "key.pem"), os.path.join(work, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=bench.test",
                    "-addext", "subjectAltName=DNS:bench.test,IP:127.0.0.1"], check=True, capture_output=True)
    os.chmod(key, 0o600)
    combined = write(os.path.join(work, "combined.pem"), open(crt).read() + open(key).read())
    return crt, key, combined


def upstream_nginx(work, crt, key):
    d = os.path.join(work, "upstream")
    os.makedirs(d)
    write(os.path.join(d, "1k"), BODY_1K)
    conf = write(os.path.join(d, "nginx.conf"), f"""
worker_processes 1; worker_rlimit_nofile {NOFILE}; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 30000; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{UP}; listen 127.0.0.1:{UP_TLS} ssl http2;
    ssl_certificate {crt}; ssl_certificate_key {key}; ssl_protocols TLSv1.3;
    location = /1k {{ root {d}; default_type application/octet-stream; }}
    location = /api/v1/send_push {{ default_type application/json; return 200 '{{"status":"OK"}}'; }}
  }}
}}
""")
    return ["nginx", "-p", d, "-c", conf]


def sut_nginx(work, crt, key):
    d = os.path.join(work, "nginx")
    os.makedirs(d)
    conf = write(os.path.join(d, "nginx.conf"), f"""
worker_processes 1; worker_rlimit_nofile {NOFILE}; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 12000; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  upstream up {{ server 127.0.0.1:{UP}; keepalive 64; keepalive_requests 1000000; }}
  upstream ws {{ server 127.0.0.1:{WS_UP}; }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{PLAIN}; listen 127.0.0.1:{TLS} ssl http2; server_name bench.test;
    ssl_certificate {crt}; ssl_certificate_key {key}; ssl_protocols TLSv1.3;
    ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location /ws {{ proxy_pass http://ws; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade;
                    proxy_set_header Connection $connection_upgrade; proxy_read_timeout 3600s; }}
  }}
}}
""")
    return ["nginx", "-p", d, "-c", conf]


def sut_haproxy(work, combined):
    # HAProxy refuses to start when maxconn needs more descriptors than the hard limit allows.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    maxconn = 9000 if hard == resource.RLIM_INFINITY else max(256, min(9000, (hard - 200) // 2))
    d = os.path.join(work, "haproxy")
    os.makedirs(d)
    conf = write(os.path.join(d, "haproxy.cfg"), f"""
global
  nbthread 1
  maxconn {maxconn}
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout tunnel 3600s
  http-reuse always
frontend fe
  bind 127.0.0.1:{PLAIN}
  bind 127.0.0.1:{TLS} ssl crt {combined} alpn h2,http/1.1
  use_backend ws if {{ path_beg /ws }}
  default_backend up
backend up
  server s1 127.0.0.1:{UP}
backend ws
  server w1 127.0.0.1:{WS_UP}
""")
    return ["haproxy", "-f", conf, "-db"]


def sut_vestibule(work, binary, crt, key, smarthost=None):
    d = os.path.join(work, "vestibule" + ("-mail" if smarthost else ""))
    os.makedirs(os.path.join(d, "vhosts"))
    mail = (f'smarthost = "smtp://127.0.0.1:{smarthost}"\nsmarthost_tls = "none"\nmax_connections_per_ip = 64\n'
            if smarthost else "hold = true\n")
    write(os.path.join(d, "vestibule.toml"), f"""
state_dir = "{d}/state"
[log]
level = "warn"
access_log = false
[admin]
listen = "127.0.0.1:{ADMIN}"
[proxy]
listen = ["127.0.0.1:{PLAIN}"]
listen_tls = ["127.0.0.1:{TLS}"]
threads = 1
default_vhost = "bench"
# Every client is 127.0.0.1 here, and the websocket scenarios hold 5,000 connections.
max_connections = 100000
max_connections_per_ip = 100000
[mail]
listen = ["127.0.0.1:{SMTP}"]
hostname = "vestibule.bench.test"
{mail}
[push]
listen = "127.0.0.1:{PUSH}"
rate_limit = {{ per_second = 1000000, burst = 1000000 }}
[[push.route]]
platforms = ["apple_rn", "android_rn"]
upstream = "http://127.0.0.1:{UP}"
""")
    write(os.path.join(d, "vhosts", "bench.toml"), f"""
server_names = ["bench.test", "127.0.0.1"]
upstream = ["127.0.0.1:{UP}"]
tls = {{ cert = "{crt}", key = "{key}" }}
redirect = false
[[route]]
path = "^/ws$"
upstream = ["127.0.0.1:{WS_UP}"]
""")
    return [binary, "run", "--config", os.path.join(d, "vestibule.toml")]


def postfix_relay(work):
    d = os.path.join(work, "postfix")
    for sub in ("conf", "queue", "data"):
        os.makedirs(os.path.join(d, sub))
    shutil.chown(os.path.join(d, "data"), "postfix")
    os.chmod(work, 0o755)
    os.chmod(d, 0o755)
    master = open("/etc/postfix/master.cf").read()
    master = re.sub(r"(?m)^smtp\s+inet.*$", f"127.0.0.1:{SMTP} inet n - n - - smtpd", master)
    write(os.path.join(d, "conf", "master.cf"), master)
    write(os.path.join(d, "conf", "main.cf"), f"""
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{SINK}
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = /dev/stdout
alias_maps =
local_recipient_maps =
smtpd_client_connection_count_limit = 64
""")
    return ["postfix", "-c", os.path.join(d, "conf"), "start-fg"]


# ---------------------------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------------------------

class Results:
    def __init__(self):
        self.samples = {}  # (scenario, metric, system) -> [values]

    def add(self, scenario, metric, system, value):
        if value is not None:
            self.samples.setdefault((scenario, metric, system), []).append(value)

    def median(self, key):
        v = self.samples.get(key)
        return statistics.median(v) if v else None


def measure_http(res, system, pid, reps, duration):
    scenarios = [
        ("HTTP/1.1 keep-alive, plain", lambda: wrk(f"http://127.0.0.1:{PLAIN if pid else UP}/1k", duration)),
        ("HTTP/1.1 keep-alive, TLS 1.3", lambda: wrk(f"https://127.0.0.1:{TLS if pid else UP_TLS}/1k", duration)),
        ("full TLS 1.3 handshake per request",
         lambda: wrk(f"https://127.0.0.1:{TLS if pid else UP_TLS}/1k", duration, headers=["Connection: close"])),
        ("resumed TLS 1.3 handshake", lambda: s_time_reuse(TLS if pid else UP_TLS, duration)),
        ("HTTP/2 (h2load -c32 -m10)", lambda: h2load(f"https://127.0.0.1:{TLS if pid else UP_TLS}/1k", duration)),
    ]
    for name, go in scenarios:
        for _ in range(reps):
            c0 = cpu_seconds(pid) if pid else 0
            r = go()
            c1 = cpu_seconds(pid) if pid else 0
            res.add(name, "req/s", system, r["rps"])
            res.add(name, "p50 ms", system, r.get("p50"))
            res.add(name, "p99 ms", system, r.get("p99"))
            if pid and r["requests"]:
                res.add(name, "CPU us/req", system, (c1 - c0) * 1e6 / r["requests"])
        print(f"  {system}: {name}: {res.median((name, 'req/s', system)):.0f}/s", flush=True)


def measure_ws(res, system, launch, reps, n):
    """A fresh SUT for every measurement: memory freed by earlier connections would hide the cost."""
    for name, port, use_tls in (("idle websockets (ws)", PLAIN, False), ("idle websockets (wss)", TLS, True)):
        for _ in range(reps):
            p = launch()
            try:
                res.add(name, "KiB/conn", system, idle_ws_kib(p.pid, port, n, use_tls))
            finally:
                stop(p)
        print(f"  {system}: {name}: {res.median((name, 'KiB/conn', system)):.1f} KiB/conn", flush=True)


def measure_mail(res, system, pid, reps, m, sink_dir):
    name = f"mail: smtp-source -s 8 -m {m} -l 4096 -> relay -> smtp-sink"
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(PF, "usr/lib/postfix"))
    for _ in range(reps):
        for f in os.listdir(sink_dir):
            os.unlink(os.path.join(sink_dir, f))
        c0, t0 = cpu_seconds(pid), time.monotonic()
        subprocess.run(pinned(LOAD_CPU, [os.path.join(PF, "usr/sbin/smtp-source"), "-s", "8", "-m", str(m), "-l", "4096",
                                         "-M", "bench.test", "-f", "load@bench.test", "-t", "sink@example.org",
                                         f"127.0.0.1:{SMTP}"]), env=env, check=True, timeout=600)
        t1 = time.monotonic()
        deadline = t1 + 600
        while len(os.listdir(sink_dir)) < m and time.monotonic() < deadline:
            time.sleep(0.02)
        t2, c1 = time.monotonic(), cpu_seconds(pid)
        n = len(os.listdir(sink_dir))
        if n != m:
            raise SystemExit(f"{system}: {n} of {m} messages reached the sink")
        res.add(name, "accept msg/s", system, m / (t1 - t0))
        res.add(name, "end-to-end msg/s", system, m / (t2 - t0))
        res.add(name, "CPU ms/msg", system, (c1 - c0) * 1e3 / m)
    print(f"  {system}: mail end to end {res.median((name, 'end-to-end msg/s', system)):.0f} msg/s", flush=True)


PUSH_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"ack_id":"ack1","platform":"apple_rn-v2","server_id":"srv1","device_id":"dev1","post_id":"post1","category":"CAN_REPLY","sound":"default","message":"hello there","badge":1,"team_id":"team1","channel_id":"chan1","root_id":"","channel_name":"Town Square","type":"message","sender_id":"user1","sender_name":"alice","version":"v2","is_crt_enabled":false,"is_id_loaded":false}'
"""


def measure_push(res, pid, reps, duration, work):
    name = "push: wrk -c32 POST /api/v1/send_push"
    lua = write(os.path.join(work, "push.lua"), PUSH_LUA)
    for _ in range(reps):
        c0 = cpu_seconds(pid)
        r = wrk(f"http://127.0.0.1:{PUSH}/api/v1/send_push", duration, conns=32, script=lua)
        c1 = cpu_seconds(pid)
        d = wrk(f"http://127.0.0.1:{UP}/api/v1/send_push", duration, conns=32, script=lua)
        res.add(name, "notifications/s", "vestibule", r["rps"])
        res.add(name, "p99 ms", "vestibule", r["p99"])
        res.add(name, "p99 ms", "direct", d["p99"])
        res.add(name, "added p99 ms", "vestibule", r["p99"] - d["p99"])
        res.add(name, "CPU us/notification", "vestibule", (c1 - c0) * 1e6 / r["requests"])
    print(f"  push: {res.median((name, 'notifications/s', 'vestibule')):.0f}/s", flush=True)


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------

SYSTEMS = ["vestibule", "pingora", "nginx", "haproxy", "postfix", "direct"]
OTHERS = ["pingora", "nginx", "haproxy", "postfix"]


def fmt(v):
    if v is None:
        return ""
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(res, key):
    v = res.samples.get(key)
    if not v:
        return "-"
    if len(v) == 1:
        return fmt(v[0])
    return f"{fmt(statistics.median(v))} ({fmt(min(v))}-{fmt(max(v))})"


def ratio(res, scenario, metric, other):
    a, b = res.median((scenario, metric, "vestibule")), res.median((scenario, metric, other))
    if a is None or b in (None, 0):
        return "-"
    return f"{a / b:.2f}"


def report(res, meta):
    lines = [f"Run {meta['date']} on {meta['machine']}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in meta["versions"]]
    lines += ["", "Medians of the repetitions, (min-max) when there are several; ratios are vestibule's median "
              "over the other system's, from this run.", "",
              "| scenario | metric | " + " | ".join(SYSTEMS) + " | " + " | ".join(f"v/{o}" for o in OTHERS) + " |",
              "|---" * (2 + len(SYSTEMS) + len(OTHERS)) + "|"]
    seen = []
    for (scenario, metric, _system) in res.samples:
        if (scenario, metric) not in seen:
            seen.append((scenario, metric))
    order = list(dict.fromkeys(s for s, _ in seen))
    seen.sort(key=lambda sm: order.index(sm[0]))
    for scenario, metric in seen:
        row = [scenario, metric] + [cell(res, (scenario, metric, s)) for s in SYSTEMS]
        row += [ratio(res, scenario, metric, o) for o in OTHERS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def version(argv, pattern=None):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        line = next((l for l in text if not pattern or re.search(pattern, l)), text[0] if text else "?")
        return line.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


def metadata(binary):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs ({cpu}), Linux {os.uname().release}",
        "versions": [
            ("vestibule", f"{version([binary, '--version'])} (git {rev}), pingora 0.9.1, rustls (ring)"),
            ("nginx", version(["nginx", "-v"])),
            ("haproxy", version(["haproxy", "-v"], "version")),
            ("postfix", version(["postconf", "-d", "mail_version"])),
            ("wrk", version(["wrk", "-v"], "wrk")),
            ("h2load", version(["h2load", "--version"])),
            ("openssl", version(["openssl", "version"])),
        ],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--ws", type=int, default=5000)
    ap.add_argument("--mail", type=int, default=5000)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/vestibule"))
    ap.add_argument("--bare", default=None,
                    help="the bare pingora floor (default: examples/bare_pingora next to --bin)")
    ap.add_argument("--out", default=None, help="also write the table to this file")
    ap.add_argument("--smoke", action="store_true", help="every scenario once, briefly (CI)")
    ap.add_argument("--only", default="", help="comma list of: http,ws,wsload,mail,push,idle")
    ap.add_argument("--systems", default="direct,vestibule,pingora,nginx,haproxy,postfix",
                    help="comma list of systems to run (default: all)")
    ap.add_argument("--ws-upstream", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ws-clients", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--ws-load", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.ws_load:
        port, mode, duration = a.ws_load
        asyncio.run(ws_load(int(port), mode, int(duration)))
        return 0
    if a.ws_upstream:
        asyncio.run(ws_upstream(a.ws_upstream))
        return 0
    if a.ws_clients:
        port, n, mode = a.ws_clients
        asyncio.run(ws_clients(int(port), int(n), mode == "tls"))
        return 0
    if a.smoke:
        a.reps, a.duration, a.ws, a.mail = 1, 1, 50, 200
    only = set(a.only.split(",")) if a.only else {"http", "ws", "wsload", "mail", "push", "idle"}
    for tool in ("wrk", "h2load", "nginx", "haproxy", "postfix", "openssl", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: run `bash benches/run` (it installs the prerequisites)")
    if not os.access(a.bin, os.X_OK):
        raise SystemExit(f"{a.bin} is missing: cargo build --release")
    systems = a.systems.split(",")
    a.bare = a.bare or os.path.join(os.path.dirname(a.bin), "examples", "bare_pingora")
    if "pingora" in systems and not os.access(a.bare, os.X_OK):
        raise SystemExit(f"{a.bare} is missing: cargo build --release --example bare_pingora")
    raise_nofile()
    work = tempfile.mkdtemp(prefix="vestibule-bench-")
    os.chmod(work, 0o755)  # nginx workers and postfix run as unprivileged users
    procs = []
    res = Results()
    log = open(os.path.join(work, "processes.log"), "w")
    try:
        crt, key, combined = certificate(work)
        up = start(upstream_nginx(work, crt, key), LOAD_CPU, log)
        procs.append(up)
        wsu = start([sys.executable, __file__, "--ws-upstream", str(WS_UP)], LOAD_CPU, log)
        procs.append(wsu)
        wait_port(UP, "the upstream nginx")
        wait_port(WS_UP, "the websocket upstream")
        print(f"work dir {work}; {a.reps} repetitions of {a.duration}s", flush=True)
        if "http" in only and "direct" in systems:
            measure_http(res, "direct", None, a.reps, a.duration)
        for system in [s for s in ("vestibule", "pingora", "nginx", "haproxy") if s in systems]:
            argv = {"vestibule": lambda: sut_vestibule(work, a.bin, crt, key),
                    "pingora": lambda: [a.bare, f"127.0.0.1:{PLAIN}", f"127.0.0.1:{TLS}", crt, key,
                                        f"127.0.0.1:{UP}", f"127.0.0.1:{WS_UP}"],
                    "nginx": lambda: sut_nginx(work, crt, key),
                    "haproxy": lambda: sut_haproxy(work, combined)}[system]()

            def launch(argv=argv, system=system):
                p = start(argv, SUT_CPU, log)
                wait_port(TLS, system)
                wait_port(PLAIN, system)
                if system == "vestibule":
                    wait_port(PUSH, "the push relay")
                    wait_port(SMTP, "the mail relay")
                return p

            if "ws" in only:
                measure_ws(res, system, launch, a.reps, a.ws)
            p = launch()
            try:
                if "idle" in only:
                    res.add("idle daemon (vestibule: proxy, mail, push on)", "RSS MiB", system, rss_kib(p.pid) / 1024)
                if "http" in only:
                    measure_http(res, system, p.pid, a.reps, a.duration)
                if "wsload" in only:
                    measure_ws_throughput(res, system, p.pid, a.reps, a.duration)
                if system == "vestibule" and "push" in only:
                    measure_push(res, p.pid, a.reps, a.duration, work)
            finally:
                stop(p)
        if "mail" in only:
            sink_dir = os.path.join(work, "sink")
            os.makedirs(sink_dir)
            os.chmod(sink_dir, 0o777)
            os.chmod(work, 0o755)
            env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(PF, "usr/lib/postfix"))
            sink = start([os.path.join(PF, "usr/sbin/smtp-sink"), "-u", "nobody", "-d", f"{sink_dir}/%M.",
                          f"127.0.0.1:{SINK}", "256"], LOAD_CPU, log, env=env)
            procs.append(sink)
            wait_port(SINK, "smtp-sink")
            for system in [s for s in ("vestibule", "postfix") if s in systems]:
                argv = sut_vestibule(work, a.bin, crt, key, smarthost=SINK) if system == "vestibule" else postfix_relay(work)
                p = start(argv, SUT_CPU, log)
                try:
                    wait_port(SMTP, system)
                    root = p.pid
                    if system == "postfix":
                        # start-fg execs master, which may detach: account for master's own tree.
                        pid = int(open(os.path.join(work, "postfix/data/master.lock")).read().split()[0])
                        root = pid if os.path.exists(f"/proc/{pid}") else p.pid
                    measure_mail(res, system, root, a.reps, a.mail, sink_dir)
                finally:
                    if system == "postfix":
                        subprocess.run(["postfix", "-c", os.path.join(work, "postfix/conf"), "abort"],
                                       capture_output=True, timeout=30)
                    stop(p)
    finally:
        for p in procs:
            stop(p)
        log.close()
    table = report(res, metadata(a.bin))
    print()
    print(table)
    if a.out:
        write(a.out, table)
    shutil.rmtree(work, ignore_errors=True)
    if a.smoke:
        missing = [k for k, v in res.samples.items() if not v or any(x is None or x != x for x in v)]
        if missing or (not a.only and len(res.samples) < 10):
            raise SystemExit(f"smoke: incomplete results: {missing or len(res.samples)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
