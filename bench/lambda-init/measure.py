#!/usr/bin/env python3
"""Cold-start time of Lambda `bootstrap` binaries against a stub of the Lambda runtime API.

For each binary and run: start a stub HTTP server implementing the runtime API
(`GET /2018-06-01/runtime/invocation/next`, `POST .../invocation/<id>/response|error`),
spawn the binary with AWS_LAMBDA_RUNTIME_API pointing at it, and record
  init  = spawn -> its first `next` request (what Lambda bills as the init phase)
  first = spawn -> its answer to the first event
Prints the median (and min/max) of each per binary, and the ratio to the baseline.

usage: measure.py [--runs N] [--runner CMD] NAME=PATH[:EVENT] ...   (the first NAME is the baseline)
EVENT is one of the names in EVENTS below (default: hello).
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_GATEWAY_HEALTH = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/health",
    "rawQueryString": "",
    "headers": {"accept": "application/json", "host": "example.execute-api.eu-west-1.amazonaws.com"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "example",
        "domainName": "example.execute-api.eu-west-1.amazonaws.com",
        "domainPrefix": "example",
        "http": {"method": "GET", "path": "/health", "protocol": "HTTP/1.1",
                 "sourceIp": "192.0.2.1", "userAgent": "measure"},
        "requestId": "req-1",
        "routeKey": "$default",
        "stage": "$default",
        "time": "26/Nov/2026:19:00:00 +0000",
        "timeEpoch": 1795719600000,
    },
    "isBase64Encoded": False,
}

# Events that need no AWS call to answer, so the figure is the function's own start-up.
EVENTS = {
    "hello": {"hello": "world"},
    "api-health": API_GATEWAY_HEALTH,
    "empty-records": {"Records": []},
    # Not a recorder payload: answered with an error at once (a POST to /error).
    "invalid": {},
}

# What a function's execution environment sets; dummy credentials keep the SDK's
# configuration load off the network (as Lambda's environment credentials do).
LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "measure",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_LOG_STREAM_NAME": "stream",
    "AWS_LAMBDA_LOG_GROUP_NAME": "group",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_SESSION_TOKEN": "token",
    "AWS_EC2_METADATA_DISABLED": "true",
    "EVENTS_TABLE": "events",
    "IDEMPOTENCY_TABLE": "idempotency",
    "READ_MODELS_TABLE": "read-models",
    "STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:orders",
    "RUST_LOG": "warn",
}


def lambda_env():
    """A function's environment, not this shell's: Lambda passes no HOME (so no ~/.aws
    files) and no SSL_CERT_DIR. On provided.al2023 the trust roots are one bundle file
    (/etc/pki/tls/certs holds no per-certificate links), so the stub points SSL_CERT_FILE
    at this machine's bundle; Debian's /etc/ssl/certs would add 145 single-cert files."""
    env = {k: os.environ[k] for k in ("PATH", "LANG", "TZ") if k in os.environ}
    for bundle in ("/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt"):
        if os.path.exists(bundle):
            env["SSL_CERT_FILE"] = bundle
            break
    env.update(LAMBDA_ENV)
    return env


class Run:
    def __init__(self, event):
        self.event = json.dumps(event).encode()
        self.spawned = None
        self.next_at = None
        self.done_at = None
        self.done = threading.Event()
        self.served = False
        self.answer = b""


def make_handler(run):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            now = time.perf_counter()
            if not self.path.endswith("/runtime/invocation/next"):
                self.send_error(404)
                return
            if run.served:
                # The second `next`: hold it until the run is over (Lambda would freeze here);
                # by then the process is gone, so there is no one to answer.
                run.done.wait(10)
                self.close_connection = True
                return
            run.served = True
            run.next_at = now
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(run.event)))
            self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                             "arn:aws:lambda:eu-west-1:123456789012:function:measure")
            self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
            self.end_headers()
            self.wfile.write(run.event)

        def do_POST(self):
            now = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if "/runtime/invocation/" in self.path and (
                self.path.endswith("/response") or self.path.endswith("/error")
            ):
                if run.done_at is None:
                    run.done_at = now
                    run.outcome = self.path.rsplit("/", 1)[-1]
                    run.answer = body
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if run.done_at is not None:
                run.done.set()

    return Handler


def once(path, event, runner):
    run = Run(event)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(run))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = lambda_env()
    env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{server.server_address[1]}"
    run.spawned = time.perf_counter()
    proc = subprocess.Popen(runner + [path], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    finished = run.done.wait(30)
    proc.kill()
    _, err = proc.communicate()
    server.shutdown()
    server.server_close()
    if not finished:
        raise SystemExit(f"{path}: no answer within 30 s; stderr:\n{err.decode(errors='replace')[-2000:]}")
    return ((run.next_at - run.spawned) * 1000, (run.done_at - run.spawned) * 1000, run.outcome,
            run.answer)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--runner", default="", help="e.g. 'qemu-aarch64 -L /usr/aarch64-linux-gnu'")
    p.add_argument("--json", action="store_true")
    p.add_argument("--show", action="store_true", help="print each binary's first answer")
    p.add_argument("binaries", nargs="+", metavar="NAME=PATH[:EVENT]")
    a = p.parse_args()
    runner = shlex.split(a.runner)
    specs = []
    for spec in a.binaries:
        name, _, rest = spec.partition("=")
        path, _, event = rest.partition(":")
        if not name or not path or not os.access(path, os.X_OK):
            raise SystemExit(f"not an executable: {spec}")
        if (event or "hello") not in EVENTS:
            raise SystemExit(f"unknown event {event!r} (one of {', '.join(EVENTS)})")
        specs.append((name, path, EVENTS[event or "hello"]))
    results = {}
    # Interleaved rounds, so a burst of load on the shared machine hits every binary alike.
    samples = {name: [] for name, _, _ in specs}
    for _ in range(a.runs):
        for name, path, event in specs:
            samples[name].append(once(path, event, runner))
    base = None
    for name, path, _ in specs:
        s = samples[name]
        init = [x[0] for x in s]
        first = [x[1] for x in s]
        r = {
            "size_bytes": os.path.getsize(path),
            "init_ms_median": statistics.median(init),
            "init_ms_min": min(init),
            "init_ms_max": max(init),
            "first_ms_median": statistics.median(first),
            "outcome": s[0][2],
            "runs": len(s),
        }
        if base is None:
            base = r
        r["init_ratio"] = r["init_ms_median"] / base["init_ms_median"]
        r["first_ratio"] = r["first_ms_median"] / base["first_ms_median"]
        results[name] = r
    if a.show:
        for name, _, _ in specs:
            print(f"{name}: {samples[name][0][3].decode(errors='replace')}", file=sys.stderr)
    if a.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'binary':<11} {'size':>10} {'init median':>12} {'(min-max)':>17} {'x base':>7} "
          f"{'1st answer':>11} {'x base':>7}  runs={a.runs}")
    for name, r in results.items():
        print(f"{name:<11} {r['size_bytes'] / 1e6:>8.2f}MB {r['init_ms_median']:>10.2f}ms "
              f"{r['init_ms_min']:>7.2f}-{r['init_ms_max']:<7.2f}ms {r['init_ratio']:>6.2f}x "
              f"{r['first_ms_median']:>9.2f}ms {r['first_ratio']:>6.2f}x  ({r['outcome']})")


if __name__ == "__main__":
    sys.exit(main())
