"""The inference worker's side: recently used models kept loaded, requests served from them.

Models are loaded from the blob store on first use and kept in an LRU bounded by a memory
budget (the size of their weights); loading a model past the budget evicts the least recently
used ones first. A model's id and artifact hash identify it, so a cached model is never a stale
one. Sampling runs on a thread; each piece of a streamed generation is pushed as soon as it
exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiplatform.inference.replies import Done, Failed, InferenceRequest, Piece, Reply
from aiplatform.ml.model_files import (
    LoadedModel,
    ModelFileError,
    ModelInputError,
    generate,
    load_model,
    predict,
)
from aiplatform.storage import BlobStore

log = logging.getLogger(__name__)

Send = Callable[[Reply], Awaitable[None]]


def model_bytes(loaded: LoadedModel) -> int:
    return sum(t.numel() * t.element_size() for t in loaded.network.state_dict().values())


@dataclass
class _Entry:
    sha256: str
    model: LoadedModel
    size: int


class ModelCache:
    """Loaded models by id, least recently used first."""

    def __init__(self, blobs: BlobStore, budget_bytes: int, device: str = "cpu") -> None:
        self.blobs = blobs
        self.budget_bytes = budget_bytes
        self.device = device
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, asyncio.Lock] = {}

    @property
    def loaded(self) -> list[str]:
        return list(self._entries)

    @property
    def used_bytes(self) -> int:
        return sum(entry.size for entry in self._entries.values())

    async def get(self, model_id: str, artifact_key: str, sha256: str) -> LoadedModel:
        entry = self._entries.get(model_id)
        if entry is not None and entry.sha256 == sha256:
            self._entries.move_to_end(model_id)
            return entry.model
        # One load per model however many requests for it arrive at once.
        async with self._loading.setdefault(model_id, asyncio.Lock()):
            entry = self._entries.get(model_id)
            if entry is None or entry.sha256 != sha256:
                async with self.blobs.local_copy(artifact_key) as path:
                    model = await asyncio.to_thread(_load, path, self.device)
                entry = _Entry(sha256, model, model_bytes(model))
                self._entries[model_id] = entry
                self._evict(keep=model_id)
        self._entries.move_to_end(model_id)
        return entry.model

    def _evict(self, keep: str) -> None:
        while self.used_bytes > self.budget_bytes and len(self._entries) > 1:
            oldest = next(iter(self._entries))
            if oldest == keep:
                break
            evicted = self._entries.pop(oldest)
            log.info("evicted model %s (%d bytes) from the inference cache", oldest, evicted.size)


def _load(path: Path, device: str) -> LoadedModel:
    return load_model(path, device=device)


async def serve(cache: ModelCache, request: InferenceRequest, send: Send) -> None:
    """Answers one request through `send`: pieces then Done, or Failed."""
    try:
        model = await cache.get(request.model_id, request.artifact_key, request.sha256)
    except ModelFileError as error:
        await send(Failed(status=422, message=f"model {request.model_id} cannot serve: {error}"))
        return
    try:
        if request.kind == "generate":
            await _generate(model, request, send)
        else:
            inputs = request.inputs if request.inputs is not None else [request.prompt or ""]
            predictions = await asyncio.to_thread(predict, model, inputs)
            await send(Done(result={"predictions": predictions}))
    except ModelInputError as error:
        await send(Failed(status=422, message=str(error)))


async def _generate(model: LoadedModel, request: InferenceRequest, send: Send) -> None:
    def pieces() -> Iterator[str]:
        return generate(
            model,
            request.prompt or "",
            request.max_new_tokens,
            request.temperature,
            request.top_k,
            request.seed,
        )

    if not request.stream:
        # One hop to a thread and back: each costs a wake-up on a busy machine.
        text = await asyncio.to_thread(lambda: "".join(pieces()))
        await send(Done(result={"text": text}))
        return
    generated: list[str] = []
    stream = await asyncio.to_thread(pieces)
    while (piece := await asyncio.to_thread(next, stream, None)) is not None:
        generated.append(piece)
        await send(Piece(text=piece))
    await send(Done(result={"text": "".join(generated)}))
