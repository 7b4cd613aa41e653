"""How an inference request and its replies travel between the API and an inference worker.

The request is a Dramatiq message on the `inference` queue; the replies go back on a Redis list
named after the request, which the API waits on with BLPOP: a streamed generation arrives piece
by piece as the worker samples it, and the API learns of a reply the moment it is pushed
(no polling on this side). The list expires, so a reply nobody reads does not stay.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
from dramatiq import Message

from aiplatform.workers.expiry import expiring

RUN_INFERENCE: Final = "run_inference"
REPLY_TTL_S: Final = 120


class InferenceRequest(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    model_id: str
    artifact_key: str
    sha256: str
    kind: Literal["generate", "predict"]
    prompt: str | None = None
    inputs: list[Any] | None = None
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int | None = None
    seed: int | None = None
    stream: bool = False


class Piece(msgspec.Struct, frozen=True, tag="piece"):
    """Generated text, sent as it is sampled (streaming requests only)."""

    text: str


class Done(msgspec.Struct, frozen=True, tag="done"):
    result: dict[str, Any]


class Failed(msgspec.Struct, frozen=True, tag="failed"):
    """`status`: what the API answers (422 for inputs that do not fit the model, 503 when the
    worker could not serve it)."""

    status: int
    message: str


Reply = Piece | Done | Failed
encode_reply = msgspec.json.Encoder().encode
decode_reply = msgspec.json.Decoder(Reply).decode


def reply_key(prefix_key: str, request_id: str) -> str:
    return f"{prefix_key}:{request_id}"


def inference_message(request: InferenceRequest, max_age_ms: int) -> Message[None]:
    """A request nobody picked up within `max_age_ms` is dropped: its caller has given up."""
    return Message(
        queue_name="inference",
        actor_name=RUN_INFERENCE,
        args=(msgspec.to_builtins(request),),
        kwargs={},
        options=expiring(max_age_ms),
    )
