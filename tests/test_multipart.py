"""The incremental multipart/form-data parser (api/multipart.py): whatever the chunking, the
parts come back as they were sent, and a malformed body is refused with a message."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiplatform.api.multipart import PART_END, MultipartError, MultipartReader, PartStart

BOUNDARY = b"----formdata-4f2b9c"
DELIMITER = b"\r\n--" + BOUNDARY

# Data that comes close to the delimiter: line ends, dashes, pieces of the boundary itself.
_tricky = (
    st.lists(
        st.sampled_from(
            [b"\r", b"\n", b"\r\n", b"-", b"--", b"\r\n--", b"\r\n-", BOUNDARY, BOUNDARY[:7], b"x"]
        )
        | st.binary(max_size=40),
        max_size=30,
    )
    .map(b"".join)
    .filter(lambda data: DELIMITER not in data)
)  # a sender picks such a boundary

_name = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12)


def encode(parts: list[tuple[str, str | None, bytes]], *, preamble: bytes = b"") -> bytes:
    body = preamble + (b"\r\n" if preamble else b"")
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += b"--" + BOUNDARY + b"\r\n"
        body += f"Content-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + b"--" + BOUNDARY + b"--\r\n"


def decode(body: bytes, cuts: list[int]) -> tuple[list[tuple[str, str | None, bytes]], bool]:
    reader = MultipartReader(BOUNDARY)
    parts: list[tuple[str, str | None, bytes]] = []
    current: tuple[str, str | None, bytearray] | None = None
    edges = sorted({0, len(body), *(cut % (len(body) + 1) for cut in cuts)})
    for start, end in itertools.pairwise(edges):
        for event in reader.feed(body[start:end]):
            if isinstance(event, PartStart):
                assert current is None
                current = (event.name, event.filename, bytearray())
            elif event is PART_END:
                assert current is not None
                parts.append((current[0], current[1], bytes(current[2])))
                current = None
            else:
                assert current is not None
                assert len(event) > 0
                current[2].extend(event)
    assert current is None
    return parts, reader.finished


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.tuples(_name, st.none() | _name, _tricky), min_size=1, max_size=4),
    preamble=st.sampled_from([b"", b"a preamble to ignore", b"\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_parts_come_back_whole_however_the_body_is_cut(
    parts: list[tuple[str, str | None, bytes]], preamble: bytes, cuts: list[int]
) -> None:
    assert decode(encode(parts, preamble=preamble), cuts) == (parts, True)


@given(cut=st.integers(min_value=1, max_value=200))
def test_every_byte_cut_is_handled(cut: int) -> None:
    parts = [("name", None, b"v"), ("file", "a.csv", b"a,b\r\n1,2\r\n\r\n-\r\n--")]
    body = encode(parts)
    assert decode(body, list(range(0, len(body), cut))) == (parts, True)


def test_a_large_part_passes_through_as_the_chunks_themselves() -> None:
    # No copy on the event loop: a chunk that holds only file data is handed on as it is.
    reader = MultipartReader(BOUNDARY)
    reader.feed(b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"\r\n\r\n')
    chunk = b"1,2,3\n" * 50_000
    assert reader.feed(chunk) == [chunk]
    assert reader.feed(chunk)[0] is chunk


def test_a_body_cut_before_its_closing_boundary_is_unfinished() -> None:
    body = encode([("file", "a.csv", b"a,b\n1,2\n")])
    reader = MultipartReader(BOUNDARY)
    feed_in_pieces(reader, body[:-10])
    assert not reader.finished
    reader.feed(body[-10:])
    assert reader.finished


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"--" + BOUNDARY + b"\r\nno colon here\r\n\r\ndata", "malformed header line"),
        (b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\ndata", "Content-Disposition"),
        (b"--" + BOUNDARY + b"junk\r\n", "more than a line end"),
        (b"--" + BOUNDARY + b"\r\nX-Big: " + b"x" * 20_000, "headers are over"),
    ],
)
def test_malformed_bodies_are_refused_with_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        feed_in_pieces(MultipartReader(BOUNDARY), body)


def feed_in_pieces(reader: MultipartReader, body: bytes, size: int = 1000) -> None:
    for start in range(0, len(body), size):
        reader.feed(body[start : start + size])


@pytest.mark.parametrize("boundary", [b"", b"a\r\nb", b"x" * 201])
def test_unusable_boundaries_are_refused(boundary: bytes) -> None:
    with pytest.raises(MultipartError, match="boundary"):
        MultipartReader(boundary)
