"""The AWS SDK clients of an execution environment: one botocore session, one DynamoDB client
shared by every table model and transaction, one EventBridge client, one Secrets Manager client.
Each has its own connect and read timeouts and a bounded number of retries: the SDK's defaults
(60 s each) would let one hung call outlast API Gateway's 30 s and the function's timeout.

Why: pynamodb builds a botocore session and a client per model class (and per Connection), and
each one parses botocore's JSON service and endpoint files again: five of them made ~0.9 s of a
function's first invocation on a small machine, against ~0.15 s for one. botocore clients are
thread safe once built (a job's thread pool shares them); building them is not, hence the lock.
boto3 itself is never imported: these clients need only botocore, which pynamodb loads anyway.
"""

import threading
from typing import Any

from qpay_common.settings import Settings

# The DynamoDB client's limits (every table call and transaction): a call that hangs fails fast
# and is retried by the SDK, well inside API Gateway's 30 s.
DYNAMODB_CONNECT_TIMEOUT_SECONDS = 2
DYNAMODB_READ_TIMEOUT_SECONDS = 5
DYNAMODB_MAX_RETRY_ATTEMPTS = 3
# Scheduled jobs work sessions from a thread pool: enough pooled connections for each thread.
DYNAMODB_MAX_POOL_CONNECTIONS = 32
# EventBridge PutEvents and Secrets Manager GetSecretValue: one small call each, on the request
# path (a publish after a payment, a cold start's secret read).
EVENTS_CONNECT_TIMEOUT_SECONDS = 2
EVENTS_READ_TIMEOUT_SECONDS = 5
EVENTS_MAX_RETRY_ATTEMPTS = 2
SECRETS_CONNECT_TIMEOUT_SECONDS = 2
SECRETS_READ_TIMEOUT_SECONDS = 5
SECRETS_MAX_RETRY_ATTEMPTS = 2

_lock = threading.Lock()
_session: Any = None
_clients: dict[tuple[str, str, str | None], Any] = {}


def _botocore_session() -> Any:
    global _session
    if _session is None:
        import botocore.session

        _session = botocore.session.get_session()
    return _session


def dynamodb_client(settings: Settings) -> Any:
    """The DynamoDB client for the settings' region and endpoint, built on first use. Its config
    is what pynamodb would give a connection with these limits (no client-side parameter
    validation, standard retry mode)."""
    from botocore.config import Config

    return _client(
        "dynamodb",
        settings.aws_region,
        settings.dynamodb_endpoint_url,
        lambda: Config(
            parameter_validation=False,
            connect_timeout=DYNAMODB_CONNECT_TIMEOUT_SECONDS,
            read_timeout=DYNAMODB_READ_TIMEOUT_SECONDS,
            max_pool_connections=DYNAMODB_MAX_POOL_CONNECTIONS,
            retries={"total_max_attempts": 1 + DYNAMODB_MAX_RETRY_ATTEMPTS, "mode": "standard"},
        ),
    )


def events_client(settings: Settings) -> Any:
    from botocore.config import Config

    return _client(
        "events",
        settings.aws_region,
        settings.eventbridge_endpoint_url,
        lambda: Config(
            connect_timeout=EVENTS_CONNECT_TIMEOUT_SECONDS,
            read_timeout=EVENTS_READ_TIMEOUT_SECONDS,
            retries={"total_max_attempts": 1 + EVENTS_MAX_RETRY_ATTEMPTS, "mode": "standard"},
        ),
    )


def secretsmanager_client(settings: Settings) -> Any:
    """The Secrets Manager client the secrets adapter hands to Powertools' SecretsProvider (which
    would otherwise build a boto3 client with the SDK's 60 s timeouts)."""
    from botocore.config import Config

    return _client(
        "secretsmanager",
        settings.aws_region,
        None,
        lambda: Config(
            connect_timeout=SECRETS_CONNECT_TIMEOUT_SECONDS,
            read_timeout=SECRETS_READ_TIMEOUT_SECONDS,
            retries={"total_max_attempts": 1 + SECRETS_MAX_RETRY_ATTEMPTS, "mode": "standard"},
        ),
    )


def _client(service: str, region: str, endpoint_url: str | None, config: Any) -> Any:
    key = (service, region, endpoint_url)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _botocore_session().create_client(
                service, region_name=region, endpoint_url=endpoint_url, config=config()
            )
            _clients[key] = client
        return client


def reset() -> None:
    """Forget the clients and the session (tests that change credentials or endpoints)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None
