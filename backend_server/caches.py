"""A least-recently-used cache bounded in entries and in bytes (the server's reply and edit caches)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Hashable


class BoundedLRU:
    """At most `max_entries` values whose sizes (given by the caller, in bytes) add up to at most
    `max_bytes`; the least recently used go first. A value larger than `max_bytes` is not kept."""

    def __init__(self, max_entries: int, max_bytes: int):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of key (now the most recently used), or default."""
        if key not in self._items:
            return default
        self._items.move_to_end(key)
        return self._items[key][0]

    def put(self, key: Hashable, value: Any, size: int) -> bool:
        """Keep value under key; False when it alone exceeds the byte bound (then nothing is kept)."""
        self.pop(key)
        if size > self.max_bytes:
            return False
        self._items[key] = (value, size)
        self.nbytes += size
        while len(self._items) > self.max_entries or self.nbytes > self.max_bytes:
            _, (_, dropped) = self._items.popitem(last=False)
            self.nbytes -= dropped
        return True

    def pop(self, key: Hashable) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.nbytes -= item[1]
