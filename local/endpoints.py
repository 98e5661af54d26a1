"""Where the local stack's parts listen, and boto3 clients that can only reach them.

The stack, the inspection tool and the tests all read the same port defaults and environment
variables from here, so `make inspect` finds what `make run` started.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

from local.template import LOCAL_REGION

LOCAL_HOST = "127.0.0.1"
LOCAL_ACCESS_KEY_ID = "local"
LOCAL_SECRET_ACCESS_KEY = "local"


@dataclass(frozen=True)
class LocalPorts:
    api: int = 3000
    invoke: int = 3001
    dynamodb: int = 8000
    moto: int = 5000
    simulator: int = 3100
    host: str = LOCAL_HOST

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: int | None) -> LocalPorts:
        """Defaults < LOCAL_*_PORT environment variables < explicit (command line) overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for port_field in fields(cls):
            if port_field.name == "host":
                continue
            variable = PORT_ENV_VARIABLES[port_field.name]
            if overrides.get(port_field.name) is not None:
                values[port_field.name] = int(overrides[port_field.name])  # type: ignore[arg-type]
            elif env.get(variable):
                try:
                    values[port_field.name] = int(env[variable])
                except ValueError as error:
                    raise ValueError(f"{variable} must be a port number, got {env[variable]!r}") from error
        return cls(**values)

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    @property
    def api_url(self) -> str:
        return self.url(self.api)

    @property
    def invoke_url(self) -> str:
        return self.url(self.invoke)

    @property
    def dynamodb_url(self) -> str:
        return self.url(self.dynamodb)

    @property
    def moto_url(self) -> str:
        return self.url(self.moto)

    @property
    def simulator_url(self) -> str:
        return self.url(self.simulator)

    def described(self) -> list[tuple[str, int, str]]:
        """(what, port, how to change it) for messages about busy ports."""
        return [
            (PORT_DESCRIPTIONS[name], getattr(self, name), f"{PORT_ENV_VARIABLES[name]} / --{name}-port")
            for name in PORT_ENV_VARIABLES
        ]


PORT_ENV_VARIABLES = {
    "api": "LOCAL_API_PORT",
    "invoke": "LOCAL_INVOKE_PORT",
    "dynamodb": "LOCAL_DYNAMODB_PORT",
    "moto": "LOCAL_MOTO_PORT",
    "simulator": "LOCAL_SIMULATOR_PORT",
}
PORT_DESCRIPTIONS = {
    "api": "HTTP API front door",
    "invoke": "Lambda Invoke API",
    "dynamodb": "DynamoDB Local",
    "moto": "moto (EventBridge, SQS, CloudWatch Logs, SSM)",
    "simulator": "QPay simulator",
}


def local_client(service: str, endpoint_url: str, **config: Any) -> Any:
    """A boto3 client pinned to a local endpoint with fake credentials: it can never reach AWS.

    The user's shell may name a profile (AWS_PROFILE) or config files that do not exist here or
    point elsewhere; this client reads none of them.
    """
    # session_vars entries: (config file key, environment variable, default, converter).
    core = botocore.session.Session(
        session_vars={
            "profile": (None, None, None, None),
            "config_file": (None, None, os.devnull, None),
            "credentials_file": (None, None, os.devnull, None),
        }
    )
    return boto3.session.Session(botocore_session=core).client(
        service,
        endpoint_url=endpoint_url,
        region_name=LOCAL_REGION,
        aws_access_key_id=LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=LOCAL_SECRET_ACCESS_KEY,
        config=Config(
            connect_timeout=config.pop("connect_timeout", 2),
            read_timeout=config.pop("read_timeout", 10),
            retries={"max_attempts": config.pop("max_attempts", 2)},
            **config,
        ),
    )


def port_is_free(port: int, host: str = LOCAL_HOST) -> bool:
    """True if a server could listen on host:port now (same SO_REUSEADDR as our servers use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = LOCAL_HOST) -> int:
    """A port the OS considers free right now (for tests and throwaway servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
