"""The cache of rendered charts, shared by the pages (which read it) and the warmer (which fills it)."""

from __future__ import annotations

import pickle
import threading
import zlib
from collections import OrderedDict
from typing import Callable


def _unpack(packed: bytes) -> object:
    # Only this process's own renders are ever unpickled.
    return pickle.loads(zlib.decompress(packed))


class SvgCache:
    """An LRU of rendered charts. A night's charts are keyed by its summary_id, which changes
    whenever the night is replaced, so a cached chart is never stale. Single-flight: while one
    thread renders a key, others asking for it wait for that render instead of repeating it.
    Values are kept zlib-compressed (SVG shrinks about fivefold): a day of nights for 2,000
    patients fits in a few tens of MB."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._pending: dict[tuple, threading.Event] = {}
        self._size = size
        self._lock = threading.Lock()

    def cached(self, key: tuple) -> bool:
        """True when ``key`` is rendered or being rendered."""
        with self._lock:
            return key in self._items or key in self._pending

    def get(self, key: tuple, render: Callable[[], object]) -> object:
        """The cached value for ``key``, rendering (outside the lock) on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return _unpack(self._items[key])
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = threading.Event()
        if pending is not None:
            pending.wait(timeout=60)
            with self._lock:
                if key in self._items:
                    return _unpack(self._items[key])
            return render()  # the other render failed: do it here, and let the error show
        try:
            value = render()
            packed = zlib.compress(pickle.dumps(value), 1)
            with self._lock:
                self._items[key] = packed
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._pending.pop(key).set()
