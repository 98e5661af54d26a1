"""The one page-cursor codec: a position as unpadded base64url JSON, opaque to clients. Decoding
proves only that the text is a cursor's shape; whoever issued it checks what it holds (the
by_user listing its key, the operators' listing its streams and filter)."""

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from qpay_common.domain.errors import InvalidCursor


def encode_cursor(position: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The JSON object a cursor holds; InvalidCursor for anything else."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise InvalidCursor() from None
    if not isinstance(position, dict):
        raise InvalidCursor()
    return position
