"""botocore event handlers for every botocore session a process will create (pynamodb's, boto3's,
Powertools'), put in place before the handler imports botocore: the local runtime's IAM guard
(local/iam.py) and AWS faults (local/aws_faults.py) hang on them.

Standard library only: an execution environment (local/lambda_worker.py) loads this file by its
path before the handler.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from typing import Any

Handlers = list[tuple[str, Callable[..., Any]]]


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs `then(module)` right after `name` is imported, wherever the import comes from."""

    def __init__(self, name: str, then: Callable[[Any], None]):
        self.name = name
        self.then = then
        self._loader: Any = None

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self]
        self.then(module)


def install(handlers: Handlers) -> None:
    """Add `handlers`, in order, to botocore's BUILTIN_HANDLERS, which every Session registers;
    if botocore is not imported yet, as soon as it is (one hook, so no hook hides another)."""

    def register(handlers_module: Any) -> None:
        handlers_module.BUILTIN_HANDLERS.extend(handlers)

    if "botocore.handlers" in sys.modules:
        register(sys.modules["botocore.handlers"])
    else:
        sys.meta_path.insert(0, _AfterImport("botocore.handlers", register))
