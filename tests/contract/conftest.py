"""The contract suite: the local stack started exactly as `make run` starts it (as the e2e suite
does, on free ports), fuzzed from its own OpenAPI document and fed a table of hostile requests.
The last test reads everything the stack printed meanwhile."""

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Stack, start_stack, stop_stack

AFTER_THE_SUITE = "after_the_contract_suite"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    running = start_stack()
    yield running
    stop_stack(running)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/contract" in str(item.fspath):
            item.add_marker(pytest.mark.contract)
    # A stable sort: everything keeps its order, the log checks move to the end.
    items.sort(key=lambda item: item.get_closest_marker(AFTER_THE_SUITE) is not None)
