"""The environment-variables file for `sam local invoke` against the running local stack.

`make run` writes it (LOCAL_SAM_ENV_FILE, default .local/sam-env.json): for each function, the
values its local execution environments get, for every variable the template declares for it
(SAM only overrides variables a function's template Environment declares; template.yaml declares
the endpoint and local-credential variables for that reason). With `--docker-network host` the
container reaches the stack at 127.0.0.1; LOCAL_SAM_ENV_HOST=host.docker.internal writes that host
instead, for container engines without host networking.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from local.endpoints import LOCAL_HOST
from local.template import FunctionSpec, Template

DEFAULT_FILE = Path(".local") / "sam-env.json"


def env_file_path(repo_root: Path, environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    configured = environ.get("LOCAL_SAM_ENV_FILE")
    return Path(configured) if configured else repo_root / DEFAULT_FILE


def _rehosted(value: str, host: str) -> str:
    """A URL on the stack's loopback address, moved to `host`; any other value unchanged."""
    if host == LOCAL_HOST or "://" not in value:
        return value
    parts = urlsplit(value)
    if parts.hostname != LOCAL_HOST:
        return value
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def sam_env_vars(
    template: Template,
    environment_for: Callable[[FunctionSpec], Mapping[str, str]],
    *,
    host: str = LOCAL_HOST,
) -> dict[str, dict[str, str]]:
    """{function logical id: {variable: value}} as the local workers get them."""
    files: dict[str, dict[str, str]] = {}
    for function_id, function in template.functions.items():
        values = environment_for(function)
        files[function_id] = {
            name: _rehosted(values[name], host) for name in sorted(function.environment) if name in values
        }
    return files


def write_sam_env_file(path: Path, variables: Mapping[str, Mapping[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(variables, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)
