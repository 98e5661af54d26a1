"""The environment the handlers see when the local stack runs them.

Each function's execution environments are processes of their own, with an environment built,
lowest precedence first, from:

1. template.yaml: Globals plus the function's own variables;
2. the local wiring: table endpoints, the simulator's URL, local secrets;
3. the shell of `make run` (so SESSION_EXPIRY_MINUTES=1 make run reaches the handlers);

except that AWS credentials, region, profiles and endpoints are always forced to the local ones
and anything that could point the SDK at a real account is removed: `make run` must never touch
AWS, whatever the user's shell holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from local.endpoints import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY, LocalPorts
from local.template import LOCAL_REGION, FunctionSpec

# Credentials and config sources botocore would otherwise consult before or besides our keys.
REMOVED_AWS_VARIABLES = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
)
ENDPOINT_PREFIX = "AWS_ENDPOINT_URL"


def forced_aws_environment(ports: LocalPorts) -> dict[str, str]:
    """AWS settings that always win: fake keys, the local region, and local endpoints only.

    AWS_ENDPOINT_URL (every service) points at moto, so a service nobody thought of still lands
    on an emulator; service-specific variables take precedence over it in botocore.
    """
    moto = ports.moto_url
    return {
        "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": moto,
        "AWS_ENDPOINT_URL_DYNAMODB": ports.dynamodb_url,
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": ports.dynamodb_url,
        "AWS_ENDPOINT_URL_EVENTBRIDGE": moto,
        "AWS_ENDPOINT_URL_EVENTS": moto,
        "AWS_ENDPOINT_URL_SQS": moto,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto,
        "AWS_ENDPOINT_URL_SSM": moto,
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": moto,
        "AWS_ENDPOINT_URL_LAMBDA": ports.invoke_url,
    }


def local_wiring_defaults(ports: LocalPorts) -> dict[str, str]:
    """What makes the handlers talk to the local parts; the user's shell may override these."""
    return {
        "QPAY_BASE_URL": f"{ports.simulator_url}/v2",
        "QPAY_CLIENT_ID": "TEST_MERCHANT",
        "QPAY_CLIENT_SECRET": "local-sim-secret",
        # Empty: credentials and webhook keys come from the variables here, not Secrets Manager.
        "QPAY_SECRET_ARN": "",
        "WEBHOOK_SECRET_ARN": "",
        "WEBHOOK_SECRET": "local-webhook-secret",
        "PUBLIC_BASE_URL": ports.api_url,
        "POWERTOOLS_TRACE_DISABLED": "true",
        # sam local sets it too; code may use it to tell a local run.
        "AWS_SAM_LOCAL": "true",
    }


def _no_proxy_for_loopback(shell: Mapping[str, str]) -> dict[str, str]:
    """Keep a corporate HTTP(S)_PROXY from capturing calls to the local parts."""
    existing = shell.get("NO_PROXY") or shell.get("no_proxy") or ""
    hosts = [host for host in existing.split(",") if host.strip()]
    for loopback in ("127.0.0.1", "localhost"):
        if loopback not in hosts:
            hosts.append(loopback)
    value = ",".join(hosts)
    return {"NO_PROXY": value, "no_proxy": value}


def build_function_environment(
    function: FunctionSpec,
    ports: LocalPorts,
    shell_environment: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete environment of one function's execution environments (see the module
    docstring for the order)."""
    shell = dict(os.environ if shell_environment is None else shell_environment)
    environment = dict(function.environment)
    environment.update(local_wiring_defaults(ports))
    environment.update(shell)
    for name in list(environment):
        if name in REMOVED_AWS_VARIABLES or name.startswith(ENDPOINT_PREFIX):
            del environment[name]
    environment.update(forced_aws_environment(ports))
    environment.update(_no_proxy_for_loopback(shell))
    return environment


def child_process_environment(ports: LocalPorts | None = None) -> dict[str, str]:
    """The shell's environment made safe for a child process (moto and the simulator run boto3 too).

    AWS profiles, session tokens and endpoints from the shell are dropped and fake keys set. With
    `ports`, AWS endpoints point at the local parts as for the handlers; without (moto itself),
    none are set, so moto's own SDK use never loops back to itself.
    """
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in REMOVED_AWS_VARIABLES and not name.startswith(ENDPOINT_PREFIX)
    }
    if ports is not None:
        environment.update(forced_aws_environment(ports))
    else:
        environment.update(
            AWS_ACCESS_KEY_ID=LOCAL_ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=LOCAL_SECRET_ACCESS_KEY,
            AWS_DEFAULT_REGION=LOCAL_REGION,
            AWS_REGION=LOCAL_REGION,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
        )
    environment.update(_no_proxy_for_loopback(os.environ))
    environment["PYTHONUNBUFFERED"] = "1"
    return environment
