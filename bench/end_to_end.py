"""Payments created and confirmed per second through the local stack `make run` starts (front
door, Lambda runtime with one process per execution environment, DynamoDB Local, moto, the QPay
simulator), on free ports, with N concurrent clients.

Each client loops: POST /payments, the customer pays (the simulator calls the webhook back
through the front door), then GET /payments/{id} every 50 ms until it reads PROCESSED."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests

from bench.in_process import percentile
from bench.infra import ROOT
from bench.report import Row
from local.dev_token import mint_token
from local.endpoints import free_port

READY_LINE = "LOCAL STACK READY"
# A Powertools log line (JSON) at WARNING or above, from any function of the stack.
PROBLEM = re.compile(r'"level":\s*"(WARNING|ERROR|CRITICAL)"')
CONFIRMED_BY = re.compile(r'"source":\s*"(\w+)"')


class LocalStack:
    def __init__(self) -> None:
        self.ports = {name: free_port() for name in ("API", "INVOKE", "DYNAMODB", "MOTO", "SIMULATOR")}
        self.api = f"http://127.0.0.1:{self.ports['API']}"
        self.sim = f"http://127.0.0.1:{self.ports['SIMULATOR']}"
        self.output: list[str] = []
        # The handlers' warnings and errors, kept for the JSON detail.
        self.problems: list[str] = []
        # Who proved each payment (the PaymentConfirmed metric's source: webhook, status poll...).
        self.confirmed_by: Counter[str] = Counter()
        self._process: subprocess.Popen[str] | None = None

    def start(self, timeout_s: float = 240) -> None:
        env = {**os.environ, **{f"LOCAL_{name}_PORT": str(port) for name, port in self.ports.items()}}
        env.update({"LOCAL_SCHEDULES": "off", "PYTHONUNBUFFERED": "1"})
        self._process = subprocess.Popen(
            [sys.executable, "-m", "local.stack"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        ready = threading.Event()
        process = self._process

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.output.append(line.rstrip("\n"))
                del self.output[:-200]
                confirmed = CONFIRMED_BY.search(line) if "PaymentConfirmed" in line else None
                if confirmed:
                    self.confirmed_by[confirmed.group(1)] += 1
                if PROBLEM.search(line):
                    self.problems.append(line.strip()[:400])
                if READY_LINE in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not ready.wait(0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("local stack did not start:\n" + "\n".join(self.output[-30:]))

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


CALLBACKS: Counter[str] = Counter()
# How long each payment's /_sim/pay took: the simulator answers once the webhook has answered.
CALLBACK_MS: list[int] = []
CALLBACK_LOCK = threading.Lock()


def one_payment(stack: LocalStack, http: requests.Session, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    created = http.post(f"{stack.api}/payments", json={"amount": 15000}, headers=headers, timeout=30)
    created.raise_for_status()
    session = created.json()
    paying = time.perf_counter()
    paid = http.post(f"{stack.sim}/_sim/pay", json={"invoice_id": session["invoice_id"]}, timeout=30)
    paid.raise_for_status()
    with CALLBACK_LOCK:
        CALLBACK_MS.append(round((time.perf_counter() - paying) * 1000))
    # The simulator calls the webhook back before it answers; what the webhook answered.
    callback = paid.json().get("callback") or {}
    CALLBACKS[f"{callback.get('status')} {callback.get('body', '')}"[:80]] += 1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = http.get(f"{stack.api}/payments/{session['session_id']}", headers=headers, timeout=30)
        status.raise_for_status()
        if status.json()["status"] == "PROCESSED":
            return (time.perf_counter() - started) * 1000
        time.sleep(0.05)
    raise RuntimeError(f"{session['session_id']} was not PROCESSED within 60 s")


def throughput(clients: int, payments_per_client: int, progress: Callable[[str], None]) -> list[Row]:
    stack = LocalStack()
    stack.start()
    try:
        headers = {"Authorization": f"Bearer {mint_token('bench-e2e', 120)}"}
        # Warm-up: as many execution environments per function as there are clients (the local
        # runtime starts them on first use, as Lambda does), each through one payment.
        warm_up = [
            threading.Thread(target=one_payment, args=(stack, requests.Session(), headers))
            for _ in range(clients)
        ]
        for thread in warm_up:
            thread.start()
        for thread in warm_up:
            thread.join()
        progress("end to end: stack ready and warm")
        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            http = requests.Session()
            for _ in range(payments_per_client):
                try:
                    took = one_payment(stack, http, headers)
                except Exception as exc:  # noqa: BLE001 - counted, not raised
                    with lock:
                        failures.append(str(exc)[:200])
                    continue
                with lock:
                    latencies.append(took)

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    finally:
        stack.stop()
    rate = len(latencies) / seconds
    detail: dict[str, Any] = {
        "seconds": seconds,
        "completed": len(latencies),
        "failures": failures[:5],
        "failed": len(failures),
        "latencies_ms": sorted(round(took) for took in latencies),
        "webhook_answers": dict(CALLBACKS),
        "pay_with_webhook_ms": sorted(CALLBACK_MS),
        "handler_warnings": len(stack.problems),
        "confirmed_by": dict(stack.confirmed_by),
        "handler_warning_samples": stack.problems[:10],
    }
    p50 = percentile(latencies, 0.5) if latencies else float("nan")
    p99 = percentile(latencies, 0.99) if latencies else float("nan")
    detail.update(p50_ms=p50, p99_ms=p99, mean_ms=statistics.fmean(latencies) if latencies else None)
    return [
        Row(
            section="End to end (make run stack)",
            name=f"created + confirmed, {clients} concurrent clients",
            value=round(rate, 1),
            unit="payments/s",
            reference=f"{len(latencies)} payments in {seconds:.1f} s, {len(failures)} failed; "
            f"create -> PROCESSED p50 {p50:.0f} ms / p99 {p99:.0f} ms",
            met=not failures,
            goal="no failures",
            detail=detail,
        )
    ]
