"""Child processes never outlive the stack, a child that dies takes the stack down with a non-zero exit,
and a busy port is named before anything starts."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from local.endpoints import LocalPorts, free_port
from local.processes import ManagedProcess
from local.stack import LocalStack, LocalStackError, check_ports, run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes: it no longer runs or holds a port.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def wait_until(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_children_die_when_the_stack_is_killed_hard(tmp_path):
    # Given a parent that started a long-running child through ManagedProcess
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """\
            import sys, time
            from local.processes import ManagedProcess
            child = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
            child.start()
            print(child.pid, flush=True)
            time.sleep(60)
            """
        )
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    child_pid = int(parent.stdout.readline())
    assert pid_alive(child_pid)

    # When the parent is killed without any chance to clean up
    parent.kill()
    parent.wait(timeout=5)

    # Then the kernel stops the child too
    assert wait_until(lambda: not pid_alive(child_pid))


def test_stop_terminates_and_output_reaches_logging(caplog):
    child = ManagedProcess(
        "talker",
        [sys.executable, "-u", "-c", "import time; print('hello from the child'); time.sleep(60)"],
        output_level=20,
    )
    with caplog.at_level(20):
        child.start()
        assert wait_until(lambda: "hello from the child" in caplog.text)
        child.stop()

    assert not child.is_running()
    assert not pid_alive(child.pid)


class _OneChildStack(LocalStack):
    """A stack whose only part is one child process, to exercise the supervision loop quickly."""

    def __init__(self, command):
        super().__init__(ROOT / "template.yaml", LocalPorts())
        self.command = command

    def start(self):
        self.simulator = ManagedProcess("flaky-child", self.command)
        self.simulator.start()

    def banner(self):
        return "test banner"


def test_a_child_that_dies_stops_the_stack_with_a_non_zero_exit(capsys, caplog):
    stack = _OneChildStack([sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(3)"])

    started = time.monotonic()
    exit_code = run(stack)

    assert exit_code == 1
    assert time.monotonic() - started < 5
    assert "LOCAL STACK READY" in capsys.readouterr().out
    assert "flaky-child exited with code 3" in caplog.text


def test_sigterm_stops_the_stack_and_its_children_with_exit_0():
    stack = _OneChildStack([sys.executable, "-c", "import time; time.sleep(60)"])
    # The signal arrives while run() supervises; run() restores pytest's handlers when it returns.
    threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()

    exit_code = run(stack)

    assert exit_code == 0
    assert not pid_alive(stack.simulator.pid)


def test_busy_port_is_named_with_how_to_change_it():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = LocalPorts(
            api=free_port(), invoke=free_port(), dynamodb=port, moto=free_port(), simulator=free_port()
        )

        with pytest.raises(LocalStackError) as raised:
            check_ports(ports)

    message = str(raised.value)
    assert f"port {port}" in message
    assert "DynamoDB Local" in message
    assert "LOCAL_DYNAMODB_PORT" in message


def test_stack_cli_refuses_to_start_on_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            **{name: str(free_port()) for name in ("LOCAL_INVOKE_PORT", "LOCAL_DYNAMODB_PORT")},
        }
        env.update(LOCAL_MOTO_PORT=str(free_port()), LOCAL_SIMULATOR_PORT=str(free_port()))

        finished = subprocess.run(
            [sys.executable, "-m", "local.stack", "--api-port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert finished.returncode == 1
    assert f"port {port} (HTTP API front door" in finished.stderr
    assert "LOCAL STACK READY" not in finished.stdout


def test_two_parts_on_one_port_is_refused():
    port = free_port()

    with pytest.raises(LocalStackError, match="both configured for port"):
        check_ports(
            LocalPorts(api=port, invoke=port, dynamodb=free_port(), moto=free_port(), simulator=free_port())
        )
