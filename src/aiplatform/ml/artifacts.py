"""Recognising a model artifact from its first bytes, never from its file name."""

from __future__ import annotations

import json
import struct

from aiplatform.domain.models import Framework

_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_PROTOCOL_2 = b"\x80\x02"  # torch.save's legacy format


class UnsupportedArtifactError(ValueError):
    pass


def artifact_framework(head: bytes) -> Framework:
    if _is_safetensors(head):
        return "safetensors"
    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTOCOL_2):
        return "pytorch"
    if not head:
        raise UnsupportedArtifactError("the artifact is empty")
    raise UnsupportedArtifactError(
        "the artifact is neither safetensors nor a PyTorch state dict (torch.save)"
    )


def _is_safetensors(head: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then that many bytes of JSON."""
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    if not 2 <= length <= _MAX_SAFETENSORS_HEADER or head[8:9] != b"{":
        return False
    if len(head) >= 8 + length:
        try:
            return isinstance(json.loads(head[8 : 8 + length]), dict)
        except ValueError:
            return False
    return True  # the header runs past what we have seen; its start is right
