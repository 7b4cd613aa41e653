"""Format detection, streaming row counts and the data-quality report of dataset files."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiplatform.datasets import quality
from aiplatform.datasets.formats import (
    HEAD_BYTES,
    Format,
    RowCounter,
    UnsupportedFormatError,
    detect_format,
    parquet_row_count,
    sniff_delimiter,
)
from aiplatform.datasets.quality import ColumnReport, QualityReport, TextStats, analyze

MiB = 1 << 20

SHOP_CSV = (
    b"id,price,active,city,label,source\n"
    b"1,9.5,yes,Paris,spam,web\n"
    b"2,,no,Berlin,ham,web\n"
    b"3,10.5,yes,,spam,web\n"
    b"4,NA,true,Paris,spam,web\n"
    b"5,12,no,Rome,spam,web\n"
    b"5,12,no,Rome,spam,web\n"
)

JSON_LINES = (
    b'{"text": "hello", "label": "greet", "score": 1}\n'
    b'{"text": "bye", "label": "leave", "score": 2.5, "meta": {"lang": "en"}}\n'
    b"\n"
    b'{"label": "greet", "text": "hello", "score": 1}\n'
    b"not json\n"
    b"[1, 2]\n"
    b'{"text": null, "label": "greet", "score": 3, "flag": true}\n'
)

TEXT = b"first line\r\n\r\nsecond\nfirst line\n\n  \nlast"

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _column(name: str, type_: quality.ColumnType, **stats: object) -> ColumnReport:
    defaults: dict[str, object] = {"missing": 0, "missing_ratio": 0.0, "distinct_is_exact": True}
    return msgspec.convert({"name": name, "type": type_, **defaults, **stats}, ColumnReport)


# -- the report --------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_rows", [2, 20_000])
def test_csv_report_matches_hand_computed_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_rows: int
) -> None:
    # Batches of 2 rows check that statistics merge across batches.
    monkeypatch.setattr(quality, "_BATCH_ROWS", batch_rows)
    report = analyze(_write(tmp_path, "shop.csv", SHOP_CSV), "csv")

    assert report == QualityReport(
        format="csv",
        rows=6,
        columns=6,
        column_reports=[
            _column("id", "integer", distinct=5, min=1, max=5, mean=20 / 6),
            _column(
                "price",
                "float",
                missing=2,
                missing_ratio=2 / 6,
                distinct=3,
                min=9.5,
                max=12.0,
                mean=11.0,
            ),
            _column("active", "boolean", distinct=3),
            _column("city", "string", missing=1, missing_ratio=1 / 6, distinct=3),
            _column("label", "string", distinct=2),
            _column("source", "string", distinct=1),
        ],
        duplicate_rows=1,
        label_distribution={"spam": 5, "ham": 1},
        text_stats=None,
        problems=[
            "1 duplicate row",
            "column `price` has 33% missing values",
            "column `city` has 17% missing values",
            "column `source` is constant",
            "the label column is imbalanced: `spam` is 83% of rows",
        ],
    )


def test_report_survives_a_json_round_trip(tmp_path: Path) -> None:
    report = analyze(_write(tmp_path, "shop.csv", SHOP_CSV), "csv")

    assert msgspec.json.decode(msgspec.json.encode(report), type=QualityReport) == report


@pytest.mark.parametrize("chunk_bytes", [16, 1 << 20])
def test_json_lines_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    # Chunks of 16 bytes check that lines are put together across chunks.
    monkeypatch.setattr(quality, "_CHUNK_BYTES", chunk_bytes)
    report = analyze(_write(tmp_path, "data.jsonl", JSON_LINES), "jsonl")

    assert report == QualityReport(
        format="jsonl",
        rows=6,
        columns=5,
        column_reports=[
            _column("text", "string", missing=1, missing_ratio=0.25, distinct=2),
            _column("label", "string", distinct=2),
            _column("score", "float", distinct=3, min=1.0, max=3.0, mean=1.875),
            _column("meta", "string", missing=3, missing_ratio=0.75, distinct=1),
            _column("flag", "boolean", missing=3, missing_ratio=0.75, distinct=1),
        ],
        duplicate_rows=1,
        label_distribution={"greet": 3, "leave": 1},
        text_stats=None,
        problems=[
            "JSON Lines: 2 lines are not valid JSON objects",
            "1 duplicate row",
            "column `text` has 25% missing values",
            "column `meta` has 75% missing values",
            "column `flag` has 75% missing values",
        ],
    )


def test_text_report(tmp_path: Path) -> None:
    report = analyze(_write(tmp_path, "notes.txt", TEXT), "text")

    assert report == QualityReport(
        format="text",
        rows=5,
        columns=0,
        column_reports=[],
        duplicate_rows=1,
        label_distribution=None,
        text_stats=TextStats(lines=7, min_length=2, max_length=10, mean_length=6.4, empty_lines=2),
        problems=["1 duplicate line"],
    )


def test_parquet_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quality, "_BATCH_ROWS", 3)
    table = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "price": pa.array([1.5, float("nan"), None, 2.5], pa.float64()),
            "name": ["a", "NA", None, "b"],
            "ok": [True, False, None, True],
            "label": ["x", "y", "x", "x"],
            "tags": [[1], [2], [1], None],
        }
    )
    path = tmp_path / "data.parquet"
    pq.write_table(table, path, row_group_size=2)

    report = analyze(path, "parquet")

    assert parquet_row_count(path) == 4
    assert report == QualityReport(
        format="parquet",
        rows=4,
        columns=6,
        column_reports=[
            _column("id", "integer", distinct=4, min=1, max=4, mean=2.5),
            _column(
                "price",
                "float",
                missing=2,
                missing_ratio=0.5,
                distinct=2,
                min=1.5,
                max=2.5,
                mean=2.0,
            ),
            _column("name", "string", missing=2, missing_ratio=0.5, distinct=2),
            _column("ok", "boolean", missing=1, missing_ratio=0.25, distinct=2),
            _column("label", "string", distinct=2),
            _column("tags", "string", missing=1, missing_ratio=0.25, distinct=2),
        ],
        duplicate_rows=0,
        label_distribution={"x": 3, "y": 1},
        text_stats=None,
        problems=[
            "column `price` has 50% missing values",
            "column `name` has 50% missing values",
            "column `ok` has 25% missing values",
            "column `tags` has 25% missing values",
        ],
    )


def test_broken_encoding_is_a_problem_not_an_error(tmp_path: Path) -> None:
    data = b"name,city\ncaf\xe9,Paris\nna\xefve,Lyon\nbob,Rome\n"

    assert detect_format(data) == "csv"
    report = analyze(_write(tmp_path, "latin1.csv", data), "csv")

    assert report.rows == 3
    assert report.problems == ["the file has 2 lines that are not valid UTF-8"]


def test_ragged_rows_are_counted_and_padded(tmp_path: Path) -> None:
    rows = ["a,b,c", *[f"{n},{n},{n}" for n in range(8)], "8,8", "9,9,9,9"]
    data = "\n".join(rows).encode()

    assert detect_format(data) == "csv"
    report = analyze(_write(tmp_path, "ragged.csv", data), "csv")

    assert report.rows == 10
    assert report.problems[0] == "2 rows have a different number of fields than the header (3)"
    assert [column.missing for column in report.column_reports] == [0, 0, 1]


def test_overlong_lines_are_read_in_pieces_between_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quality, "_CHUNK_BYTES", 5)
    monkeypatch.setattr(quality, "_LONGEST_LINE", 16)
    long_line = "".join(map(chr, range(0xE0, 0xF4)))  # 20 two-byte characters
    data = (long_line + "\nshort\n").encode()

    report = analyze(_write(tmp_path, "long.txt", data), "text")

    # Cut between characters, the pieces decode cleanly.
    assert report.problems == []
    assert report.text_stats is not None
    assert report.text_stats.max_length < len(long_line)
    assert report.rows > 2


def test_csv_error_ends_the_file_with_a_problem(tmp_path: Path) -> None:
    huge = "x" * 200_000
    data = f'a,b\n1,2\n3,4\n5,"{huge}"\n7,8\n'.encode()

    report = analyze(_write(tmp_path, "huge.csv", data), "csv")

    assert report.rows == 2
    assert report.problems[0].startswith("the CSV could not be read past line 4: field larger")


def test_caps_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quality, "MAX_COLUMNS", 2)
    monkeypatch.setattr(quality, "_ROW_HASH_CAP", 3)
    monkeypatch.setattr(quality, "_BATCH_ROWS", 2)
    data = b"x,y,z\n1,a,0\n2,b,0\n3,c,0\n4,d,0\n1,a,0\n5,e,0\n"

    report = analyze(_write(tmp_path, "capped.csv", data), "csv")

    assert report.columns == 3
    assert [column.name for column in report.column_reports] == ["x", "y"]
    assert report.duplicate_rows == 1
    assert report.problems[:3] == [
        "only the first 2 of 3 columns are analysed",
        "1 duplicate row",
        "duplicate rows were looked for among the first 3 distinct rows only, so there may be more",
    ]


def test_distinct_counts_are_estimated_above_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quality, "_DISTINCT_CAP", 1_000)
    data = "n\n" + "".join(f"{n}\n" for n in range(20_000))

    (column,) = analyze(_write(tmp_path, "many.csv", data.encode()), "csv").column_reports

    assert not column.distinct_is_exact
    # Adaptive sampling keeps ~600-1,000 hashes here: a standard error of about 4%.
    assert 15_000 < column.distinct < 25_000


# -- format detection --------------------------------------------------------------------------


def test_format_comes_from_content_not_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.csv", JSON_LINES)

    assert detect_format(path.read_bytes()[:HEAD_BYTES]) == "jsonl"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (SHOP_CSV, "csv"),
        (b"a\tb\n1\t2\n", "csv"),
        (b"price;weight\n1,5;2,25\n3,0;4,5\n", "csv"),
        (JSON_LINES, "jsonl"),
        (TEXT, "text"),
        (b"Hello, world.\nThis is prose, with commas, and more, commas.\n", "text"),
        (b"PAR1\x15\x04\x15\x00", "parquet"),
    ],
)
def test_detects_formats(data: bytes, expected: str) -> None:
    assert detect_format(data) == expected


def test_sniffed_delimiter() -> None:
    assert sniff_delimiter(b"price;weight\n1,5;2,25\n3,0;4,5\n") == ";"
    assert sniff_delimiter(b"just one column\nhere\n") is None


def test_a_head_cut_mid_line_and_mid_character_is_judged_by_its_complete_lines() -> None:
    line = json.dumps({"txt": "é" * 15_000}, ensure_ascii=False) + "\n"
    head = (line * 5).encode()[:HEAD_BYTES]
    with pytest.raises(UnicodeDecodeError):
        head.decode()

    # Two complete lines and a third cut short: judged by the two, it is JSON Lines.
    assert detect_format(head) == "jsonl"


@pytest.mark.parametrize("data", [PNG, bytes(range(1, 256)) * 4])
def test_binary_files_are_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedFormatError) as error:
        detect_format(data)

    assert str(error.value) == (
        "the file is binary and not Parquet; supported: CSV, JSON Lines, Parquet, plain text"
    )


@pytest.mark.parametrize("data", [b"", b"\n\n  \n"])
def test_empty_files_are_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"^the file is empty$"):
        detect_format(data)


# -- row counts --------------------------------------------------------------------------------


def _count(data: bytes, chunk_size: int) -> RowCounter:
    counter = RowCounter()
    for start in range(0, len(data), chunk_size):
        counter.feed(data[start : start + chunk_size])
    return counter


@pytest.mark.parametrize(
    ("data", "fmt"),
    [(SHOP_CSV, "csv"), (SHOP_CSV.rstrip(b"\n"), "csv"), (JSON_LINES, "jsonl"), (TEXT, "text")],
)
@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_row_counter_agrees_with_the_report(
    tmp_path: Path, data: bytes, fmt: Format, chunk_size: int
) -> None:
    expected = analyze(_write(tmp_path, "data", data), fmt).rows

    assert _count(data, chunk_size).rows(fmt) == expected


def test_row_counter_leaves_parquet_to_its_footer() -> None:
    assert _count(b"PAR1...", 3).rows("parquet") is None


@settings(deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b","]), max_size=40).map(b"".join),
    chunk_size=st.integers(1, 9),
)
def test_row_counter_counts_non_blank_lines(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, chunk_size: int
) -> None:
    *complete, last = data.split(b"\n")
    non_blank = sum(line not in (b"", b"\r") for line in [*complete, last])
    path = tmp_path_factory.getbasetemp() / "lines.txt"
    path.write_bytes(data)

    counter = _count(data, chunk_size)

    assert counter.rows("text") == non_blank == analyze(path, "text").rows
    assert counter.rows("csv") == max(non_blank - 1, 0)


@pytest.mark.parametrize("chunk_size", [4_099, 65_537, 1 << 20])
@pytest.mark.parametrize("seed", range(3))
def test_row_counter_counts_non_blank_lines_of_large_chunks(chunk_size: int, seed: int) -> None:
    # Long chunks: blank lines at many offsets and across chunk ends.
    rng = random.Random(seed)
    data = b"".join(rng.choices([b"a", b"\r", b"\n", b"\r\n", b","], k=200_000))
    *complete, last = data.split(b"\n")
    non_blank = sum(line not in (b"", b"\r") for line in [*complete, last])

    assert _count(data, chunk_size).rows("text") == non_blank


# Measured in a process of its own: tracemalloc counts every thread's allocations, and the
# run's background threads (its Dramatiq worker, the projector's ticks) allocate meanwhile.
_ALLOCATIONS_PER_CHUNK = """
import tracemalloc
from aiplatform.datasets.formats import RowCounter

MiB = 1024 * 1024
chunk = b"1,a\\r\\n\\r\\n2,b\\n\\n" * (4 * MiB // 14)
counter = RowCounter()
counter.feed(chunk)  # the counter's scratch space is made once, by the first chunk
tracemalloc.start()
for _ in range(3):
    counter.feed(chunk)
_, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
assert counter.rows("text") == 4 * 2 * (4 * MiB // 14), counter.rows("text")
print(peak)
"""


def test_row_counter_allocates_nothing_per_chunk() -> None:
    # Temporaries as long as each chunk were fresh memory on every call: mapping and zeroing
    # it cost the count more than its scans, and more than doubled an upload's CPU.
    measured = subprocess.run(
        [sys.executable, "-c", _ALLOCATIONS_PER_CHUNK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert measured.returncode == 0, measured.stderr
    assert int(measured.stdout) < 64 * 1024


# -- against a straightforward in-memory computation -------------------------------------------

MISSING = {"", "na", "n/a", "null", "none", "nan"}
cells = st.one_of(
    st.integers(-1_000, 1_000).map(str),
    st.text(alphabet='ab ,"\n', max_size=4),
    st.sampled_from(["", "NA", "n/a", "null", "None", "NaN"]),
)
tables = st.integers(1, 4).flatmap(
    lambda width: st.lists(st.lists(cells, min_size=width, max_size=width), max_size=12)
)


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(table=tables)
def test_analyze_agrees_with_in_memory_computation(
    tmp_path_factory: pytest.TempPathFactory, table: list[list[str]]
) -> None:
    width = len(table[0]) if table else 1
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[f"c{n}" for n in range(width)], *table])
    path = tmp_path_factory.getbasetemp() / "hypothesis.csv"
    path.write_text(out.getvalue())

    report = analyze(path, "csv")

    assert report.rows == len(table)
    assert report.duplicate_rows == len(table) - len({tuple(row) for row in table})
    for index, column in enumerate(report.column_reports):
        values = [row[index] for row in table]
        present = [value for value in values if value.lower() not in MISSING]
        assert column.missing == len(values) - len(present)
        assert column.distinct == len(set(present))
        assert column.distinct_is_exact
        if present and all(map(_is_int, present)):
            numbers = [int(value) for value in present]
            assert (column.type, column.min, column.max) == ("integer", min(numbers), max(numbers))
        else:
            assert (column.min, column.max) == (None, None)
