"""Ground-truth features computed once per object and reused by every method that is scored on it.

Every method of a run is scored against the same ground-truth views, and the networks' features of
those views (CLIP's image embeddings, I3D's logits) are the same each time. They are kept here,
keyed by everything that determines them: the protocol and scoring size, the network's location,
the view's name and the sha256 of its PNG files' bytes. A changed file, protocol or network gives
a new key, never a stale feature.

The keys live in memory (the methods of an item scored in one process) and, when a folder is given,
as one small safetensors file per key in object storage (``<run>/items/<item>/gt-features/``), so
that methods scored by different workers share them too. Two workers that compute the same key at
once write the same bytes; each write is atomic, so a reader never sees half a file.

LPIPS's ground-truth features are not kept: VGG16's five feature maps of one 512 px frame are 32M
floats (128 MB), too large to store. :func:`.protocol.evaluate_many` shares them in memory instead,
one frame batch at a time, between the predictions it scores together.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict

from torch import Tensor

from align4d_core.errors import InputError
from align4d_core.io import storage

log = logging.getLogger(__name__)

MEMORY_KEYS = 256
"""Keys kept in memory per process (a few kB each: 16 CLIP embeddings or 400 I3D logits)."""


def feature_key(kind: str, digest: str, **determinants) -> str:
    """A key for the ``kind`` features of the view whose files hash to ``digest``."""
    text = json.dumps({"kind": kind, "digest": digest, **determinants}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


class FeatureCache:
    """Ground-truth features by key: in memory, and under ``folder`` in storage when one is given."""

    _memory: OrderedDict[str, Tensor] = OrderedDict()  # shared by every cache of the process

    def __init__(self, folder: str | None = None) -> None:
        self.folder = folder
        self.hits = 0
        self.misses = 0

    def _uri(self, key: str) -> str | None:
        return None if self.folder is None else storage.join(self.folder, f"{key}.safetensors")

    def get(self, key: str) -> Tensor | None:
        value = self._memory.get(key)
        if value is None and (uri := self._uri(key)) is not None and storage.exists(uri):
            value = self._read(uri)
            if value is not None:
                self._remember(key, value)
        if value is None:
            self.misses += 1
            return None
        self._memory.move_to_end(key)
        self.hits += 1
        return value.clone()

    def put(self, key: str, value: Tensor) -> None:
        value = value.detach().cpu().contiguous()
        self._remember(key, value)
        if (uri := self._uri(key)) is not None:
            from safetensors.torch import save

            storage.write_bytes(uri, save({"features": value}))

    def _remember(self, key: str, value: Tensor) -> None:
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > MEMORY_KEYS:
            self._memory.popitem(last=False)

    @staticmethod
    def _read(uri: str) -> Tensor | None:
        """The stored features, or None (recomputed) when the file cannot be read back whole."""
        from safetensors.torch import load

        try:
            return load(storage.read_bytes(uri))["features"]
        except (InputError, KeyError, ValueError, RuntimeError, OSError) as exc:
            log.warning("ignoring an unreadable ground-truth feature file %s: %s", uri, exc)
            return None

    @classmethod
    def forget(cls) -> None:
        """Empty the process's memory (benchmarks time the work, not a previous run's keys)."""
        cls._memory.clear()
