"""Short-lived keys in the cache table (where others use Redis). DynamoDB's TTL deletes items
lazily, so readers also treat an item past its `expires_at` as absent."""

from typing import Any

from pynamodb.exceptions import DeleteError, PutError

from qpay_common.adapters.dynamodb.tables import CacheItem, bind, storage_call
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.settings import Settings

CONDITION_FAILED = "ConditionalCheckFailedException"


class DynamoDBCache:
    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self._items = bind(CacheItem, settings.cache_table, settings)
        self._clock = clock

    @storage_call
    def get(self, key: str) -> tuple[dict[str, Any], str | None] | None:
        """The live item's data and tag, read consistently (a lock waiter must see the holder's put)."""
        try:
            item = self._items.get(key, consistent_read=True)
        except self._items.DoesNotExist:
            return None
        if item.expires_at <= self._clock.epoch():
            return None
        return (item.data or {}), item.tag

    @storage_call
    def put(self, key: str, data: dict[str, Any], *, expires_at: float, tag: str | None = None) -> None:
        self._items(pk=key, data=data, expires_at=int(expires_at), tag=tag).save()

    @storage_call
    def put_if_absent(
        self, key: str, data: dict[str, Any], *, expires_at: float, tag: str | None = None
    ) -> bool:
        """True if this call created the key (or replaced an expired one TTL has not yet removed)."""
        condition = self._items.pk.does_not_exist() | (self._items.expires_at <= int(self._clock.epoch()))
        try:
            self._items(pk=key, data=data, expires_at=int(expires_at), tag=tag).save(condition=condition)
        except PutError as exc:
            if exc.cause_response_code == CONDITION_FAILED:
                return False
            raise
        return True

    @storage_call
    def delete(self, key: str, *, tag: str | None = None) -> bool:
        """Delete the key, only if its tag still matches when one is given."""
        condition = (self._items.tag == tag) if tag is not None else None
        try:
            self._items(pk=key, expires_at=0).delete(condition=condition)
        except DeleteError as exc:
            if exc.cause_response_code == CONDITION_FAILED:
                return False
            raise
        return True
