"""Data-quality analysis of an uploaded dataset version: per-column statistics, duplicate rows,
the label distribution and the problems found, in plain sentences.

Pure (no database, no web) and streaming: files are read in chunks and batches of rows, so a
multi-GB file takes bounded memory, and per-value work runs in C where it can (Counter, map, set
operations) with Python only once per distinct value of a batch. The report is small and
msgspec-encodable: it is embedded in the DatasetQualityReported event and served as JSON.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice, product
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import msgspec

from aiplatform.datasets.formats import HEAD_BYTES, Format, sniff_delimiter

ColumnType = Literal["integer", "float", "boolean", "string", "empty"]

LABEL_COLUMN: Final = "label"
TOP_LABELS: Final = 50
MAX_COLUMNS: Final = 1_000
MISSING_SHARE_REPORTED: Final = 0.05
IMBALANCE_SHARE: Final = 0.8

_BATCH_ROWS = 20_000
_CHUNK_BYTES = 1 << 20
# A "line" longer than this is analysed in pieces rather than held whole in memory.
_LONGEST_LINE = 16 << 20
_DISTINCT_CAP = 100_000
# Distinct-value hashes kept over all columns (~70 bytes each), so wide tables get lower caps.
# Hashes are kept as the keys of dicts, not in sets: a dict of ints is untracked by the garbage
# collector, while every full collection walks all of a set's entries, which with millions of
# hashes took more time than the analysis itself.
_DISTINCT_BUDGET = 2_000_000
# Row hashes kept to find duplicates: about 150 MB at the cap.
_ROW_HASH_CAP = 2_000_000
_LABEL_CAP = 10_000
# msgspec encodes integers within int64 or uint64 only.
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1

T = TypeVar("T")


class ColumnReport(msgspec.Struct, frozen=True, kw_only=True):
    """One column. `missing_ratio` is over the rows analysed (for JSON Lines, the valid objects).
    `distinct` counts distinct non-missing values as written; above a per-column cap it is an
    estimate and `distinct_is_exact` is false. min, max and mean only for integer and float
    columns (None where not finite)."""

    name: str
    type: ColumnType
    missing: int
    missing_ratio: float
    distinct: int
    distinct_is_exact: bool
    min: int | float | None = None
    max: int | float | None = None
    mean: float | None = None


class TextStats(msgspec.Struct, frozen=True, kw_only=True):
    """Plain-text lines: `lines` includes the empty ones; lengths are in characters, over the
    non-empty lines (None when there are none)."""

    lines: int
    min_length: int | None
    max_length: int | None
    mean_length: float | None
    empty_lines: int


class QualityReport(msgspec.Struct, frozen=True, kw_only=True):
    """`rows`: data rows (CSV records after the header, Parquet rows, non-empty JSON Lines and
    text lines). `columns`: all columns, of which at most MAX_COLUMNS have a column report; 0 for
    plain text. `label_distribution`: the TOP_LABELS most frequent values of a `label` column."""

    format: Format
    rows: int
    columns: int
    column_reports: list[ColumnReport]
    duplicate_rows: int
    label_distribution: dict[str, int] | None
    text_stats: TextStats | None
    problems: list[str]


def analyze(path: Path, fmt: Format) -> QualityReport:
    """The quality report of a dataset file whose format detect_format found."""
    analyzers: dict[Format, Callable[[Path], QualityReport]] = {
        "csv": _analyze_csv,
        "jsonl": _analyze_jsonl,
        "parquet": _analyze_parquet,
        "text": _analyze_text,
    }
    return analyzers[fmt](path)


def _case_variants(words: Iterable[str]) -> frozenset[str]:
    """Every upper/lower-case spelling, so that matching is a C-level set intersection."""
    return frozenset(
        "".join(letters)
        for word in words
        for letters in product(*({char.lower(), char.upper()} for char in word))
    )


_MISSING = _case_variants(["", "na", "n/a", "null", "none", "nan"])
_BOOLEAN = _case_variants(["true", "false", "yes", "no", "t", "f", "y", "n", "1", "0"])

# Sorted keys, so that JSON objects differing only in key order or spacing are duplicates.
_CANONICAL_JSON = msgspec.json.Encoder(order="sorted")
_JSON = msgspec.json.Encoder(enc_hook=str)


# -- running statistics ------------------------------------------------------------------------


class _Distinct:
    """Distinct values counted by their (64-bit) hashes: exactly up to `cap`, then estimated by
    adaptive sampling (only hashes whose lowest `level` bits are zero are kept, and the count
    is scaled by 2**level), so memory stays bounded whatever the cardinality."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.level = 0
        self.hashes: dict[int, None] = {}

    def add(self, hashes: Iterable[int]) -> None:
        if self.level:
            mask = (1 << self.level) - 1
            hashes = [value for value in hashes if not value & mask]
        self.hashes.update(dict.fromkeys(hashes))
        while len(self.hashes) > self.cap:
            self.level += 1
            mask = (1 << self.level) - 1
            self.hashes = dict.fromkeys(value for value in self.hashes if not value & mask)

    @property
    def count(self) -> int:
        return len(self.hashes) << self.level

    @property
    def exact(self) -> bool:
        return self.level == 0


class _Duplicates:
    """Rows seen before, found by their hashes. Exact until `cap` distinct rows were seen; after
    that only repeats of those rows are found, and `partial` says the count may be low."""

    def __init__(self) -> None:
        self.cap = _ROW_HASH_CAP
        self.seen: dict[int, None] = {}
        self.count = 0
        self.partial = False

    def add(self, hashes: list[int]) -> None:
        if len(self.seen) < self.cap:
            before = len(self.seen)
            self.seen.update(dict.fromkeys(hashes))
            self.count += len(hashes) - (len(self.seen) - before)
            return
        repeats = sum(map(self.seen.__contains__, hashes))
        self.count += repeats
        self.partial = self.partial or repeats < len(hashes)

    def problems(self, unit: str) -> list[str]:
        problems = []
        if self.count:
            problems.append(f"{self.count:,} duplicate {unit}{'' if self.count == 1 else 's'}")
        if self.partial:
            problems.append(
                f"duplicate {unit}s were looked for among the first {len(self.seen):,} distinct "
                f"{unit}s only, so there may be more"
            )
        return problems


# (min, max, sum) of a column's numbers: Python ints (exact) while all are integers.
_Numbers = tuple[float, float, float]


class _Column:
    """Running statistics of one column, fed batches of cell texts. Without a declared type the
    type is inferred: integer, else float, else boolean, else string, as long as every
    non-missing value so far parses as such."""

    def __init__(
        self, name: str, *, distinct_cap: int, declared: ColumnType | None = None, missing: int = 0
    ) -> None:
        self.name = name
        self.missing = missing
        self.present = 0
        self.distinct = _Distinct(distinct_cap)
        self.maybe_integer = declared in (None, "integer")
        self.maybe_float = declared in (None, "integer", "float")
        self.maybe_boolean = declared in (None, "boolean")
        self.numbers: _Numbers | None = None
        self.labels: Counter[str] | None = Counter() if name == LABEL_COLUMN else None
        self.labels_capped = False

    def add(self, values: Sequence[str]) -> None:
        counts = Counter(values)
        missing = sum(counts.pop(token) for token in counts.keys() & _MISSING)
        self.missing += missing
        self.present += len(values) - missing
        if not counts:
            return
        self.distinct.add(map(hash, counts))
        if self.labels is not None:
            self._count_labels(self.labels, counts)
        self._infer(counts)

    def _infer(self, counts: Counter[str]) -> None:
        self.maybe_boolean = self.maybe_boolean and counts.keys() <= _BOOLEAN
        if self.maybe_integer:
            numbers = _summary(_parse_all(int, counts), counts.values())
            if numbers and numbers[0] >= _INT64_MIN and numbers[1] <= _UINT64_MAX:
                self.numbers = _merge(self.numbers, numbers)
                return
            self.maybe_integer = False
            if self.numbers:
                low, high, total = self.numbers
                self.numbers = (float(low), float(high), float(total))
        if self.maybe_float:
            numbers = _summary(_parse_all(float, counts), counts.values())
            if numbers:
                self.numbers = _merge(self.numbers, numbers)
                return
            self.maybe_float = False
        self.numbers = None

    def _count_labels(self, labels: Counter[str], counts: Counter[str]) -> None:
        if len(labels) < _LABEL_CAP:
            labels.update(counts)
            return
        known = counts.keys() & labels.keys()
        self.labels_capped = self.labels_capped or len(known) < len(counts)
        for label in known:
            labels[label] += counts[label]

    @property
    def type(self) -> ColumnType:
        if not self.present:
            return "empty"
        if self.maybe_integer:
            return "integer"
        if self.maybe_float:
            return "float"
        return "boolean" if self.maybe_boolean else "string"

    def report(self) -> ColumnReport:
        rows = self.missing + self.present
        numbers = self.numbers if self.type in ("integer", "float") else None
        return ColumnReport(
            name=self.name,
            type=self.type,
            missing=self.missing,
            missing_ratio=self.missing / rows if rows else 0.0,
            distinct=self.distinct.count,
            distinct_is_exact=self.distinct.exact,
            min=_finite(numbers[0]) if numbers else None,
            max=_finite(numbers[1]) if numbers else None,
            mean=_finite(numbers[2] / self.present) if numbers else None,
        )

    def problems(self) -> list[str]:
        rows = self.missing + self.present
        if not rows:
            return []
        if not self.present:
            return [f"column `{self.name}` has no values"]
        problems = []
        if self.missing / rows > MISSING_SHARE_REPORTED:
            problems.append(
                f"column `{self.name}` has {_percent(self.missing / rows)} missing values"
            )
        if self.present > 1 and self.distinct.count == 1:
            problems.append(f"column `{self.name}` is constant")
        return problems

    def label_problems(self) -> list[str]:
        if not self.labels:
            return []
        problems = []
        top, count = self.labels.most_common(1)[0]
        if len(self.labels) > 1 and count / self.present > IMBALANCE_SHARE:
            problems.append(
                f"the label column is imbalanced: `{top}` is {_percent(count / self.present)}"
                " of rows"
            )
        if self.labels_capped:
            problems.append(
                f"the label column has more than {_LABEL_CAP:,} distinct values; the label "
                f"distribution counts only the first {_LABEL_CAP:,}"
            )
        return problems


def _parse_all(parse: Callable[[str], T], texts: Iterable[str]) -> list[T] | None:
    try:
        return list(map(parse, texts))
    except ValueError:
        return None


def _summary(values: Sequence[float] | None, weights: Iterable[int]) -> _Numbers | None:
    if not values:
        return None
    return (min(values), max(values), sum(map(operator.mul, values, weights)))


def _merge(old: _Numbers | None, new: _Numbers) -> _Numbers:
    if old is None:
        return new
    return (min(old[0], new[0]), max(old[1], new[1]), old[2] + new[2])


def _finite(value: float) -> float | None:
    # JSON has no infinity or NaN; an event holding one could not be decoded again.
    return value if isinstance(value, int) or math.isfinite(value) else None


def _percent(share: float) -> str:
    # Rounding must not claim that all rows are alike when some are not.
    text = f"{share:.0%}"
    return ">99%" if text == "100%" and share < 1 else text


class _Table:
    """The columns, rows and duplicates of a tabular file, fed in batches."""

    def __init__(
        self, names: Sequence[str], declared: Sequence[ColumnType | None] | None = None
    ) -> None:
        self.total_columns = len(names)
        self.more_columns = False
        self.rows = 0
        self.duplicates = _Duplicates()
        cap = _distinct_cap(min(len(names), MAX_COLUMNS))
        kinds = declared or [None] * len(names)
        self.columns = [
            _Column(name, distinct_cap=cap, declared=kind)
            for name, kind in zip(names[:MAX_COLUMNS], kinds, strict=False)
        ]

    def add_columns(self, names: Iterable[str]) -> None:
        """Columns first seen now: the rows before had no value for them."""
        known = {column.name for column in self.columns}
        for name in names:
            if name in known:
                continue
            if len(self.columns) == MAX_COLUMNS:
                self.more_columns = True
                break
            cap = _distinct_cap(len(self.columns) + 1)
            self.columns.append(_Column(name, distinct_cap=cap, missing=self.rows))
        self.total_columns = len(self.columns)

    def add(self, columns: Iterable[Sequence[str]], rows: int, row_hashes: list[int]) -> None:
        # A file may have more columns than are analysed.
        for column, values in zip(self.columns, columns, strict=False):
            column.add(values)
        self.rows += rows
        self.duplicates.add(row_hashes)

    def report(self, fmt: Format, problems: list[str], rows: int | None = None) -> QualityReport:
        """`problems`: those found while reading, reported first."""
        label = next((column for column in self.columns if column.labels is not None), None)
        labels = label.labels if label else None
        rows = self.rows if rows is None else rows
        return QualityReport(
            format=fmt,
            rows=rows,
            columns=self.total_columns,
            column_reports=[column.report() for column in self.columns],
            duplicate_rows=self.duplicates.count,
            label_distribution=dict(labels.most_common(TOP_LABELS)) if labels is not None else None,
            text_stats=None,
            problems=[*problems, *self._problems(rows), *(label.label_problems() if label else [])],
        )

    def _problems(self, rows: int) -> list[str]:
        problems = []
        if self.more_columns:
            problems.append(
                f"the file has more than {MAX_COLUMNS:,} keys; only the first are analysed"
            )
        elif self.total_columns > len(self.columns):
            problems.append(
                f"only the first {len(self.columns):,} of {self.total_columns:,} columns "
                "are analysed"
            )
        if not rows:
            problems.append("the file has no data rows")
        problems += self.duplicates.problems("row")
        for column in self.columns:
            problems += column.problems()
        return problems


def _distinct_cap(columns: int) -> int:
    return min(_DISTINCT_CAP, _DISTINCT_BUDGET // max(columns, 1))


# -- reading text ------------------------------------------------------------------------------


class _Decoding:
    """Decodes chunks of whole lines as UTF-8, replacing what is invalid and counting the lines
    that were, so that a broken encoding is a problem in the report rather than an error."""

    def __init__(self) -> None:
        self.bad_lines = 0

    def decode(self, block: bytes) -> str:
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError:
            self.bad_lines += sum(not _is_utf8(line) for line in block.split(b"\n"))
            return block.decode("utf-8", errors="replace")

    def problems(self) -> list[str]:
        if not self.bad_lines:
            return []
        if self.bad_lines == 1:
            return ["the file has 1 line that is not valid UTF-8"]
        return [f"the file has {self.bad_lines:,} lines that are not valid UTF-8"]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text_chunks(path: Path, decoding: _Decoding) -> Iterator[str]:
    """The file decoded, in chunks that end at a line end (or, inside an overlong line, at a
    character boundary)."""
    with path.open("rb") as file:
        start = file.read(len(codecs.BOM_UTF8))
        carry = b"" if start == codecs.BOM_UTF8 else start
        while block := file.read(_CHUNK_BYTES):
            carry += block
            end = _chunk_end(carry)
            if end:
                yield decoding.decode(carry[:end])
                carry = carry[end:]
        if carry:
            yield decoding.decode(carry)


def _chunk_end(data: bytes) -> int:
    """After the last newline; 0 (read on) when there is none, unless the line is overlong."""
    end = data.rfind(b"\n") + 1
    if end or len(data) < _LONGEST_LINE:
        return end
    end = len(data) - 1
    # Back up over UTF-8 continuation bytes to the start of the last, maybe incomplete character.
    while end > len(data) - 4 and data[end] & 0xC0 == 0x80:
        end -= 1
    return end


def _line_batches(chunks: Iterable[str]) -> Iterator[list[str]]:
    """The lines of each chunk, without their line ends. A last "\\r" with no newline after it
    is no line (as for RowCounter)."""
    for chunk in chunks:
        lines = chunk.replace("\r\n", "\n").split("\n")
        if lines[-1] in ("", "\r"):
            lines.pop()
        yield lines


# -- the formats -------------------------------------------------------------------------------


def _analyze_csv(path: Path) -> QualityReport:
    with path.open("rb") as file:
        delimiter = sniff_delimiter(file.read(HEAD_BYTES)) or ","
    decoding = _Decoding()
    read_problems: list[str] = []
    batches = _csv_batches(_text_chunks(path, decoding), delimiter, read_problems)
    first: list[list[str]] = next(batches, [[]])
    header = first.pop(0)
    table = _Table(header)
    ragged = 0
    for batch in filter(None, chain([first], batches)):
        hashes = list(map(hash, map(tuple, batch)))
        ragged += _fit(batch, len(header))
        table.add(_columns(batch, len(table.columns)), len(batch), hashes)
    problems = [*decoding.problems(), *read_problems]
    if ragged == 1:
        problems.append(f"1 row has a different number of fields than the header ({len(header)})")
    elif ragged:
        problems.append(
            f"{ragged:,} rows have a different number of fields than the header ({len(header)})"
        )
    return table.report("csv", problems)


def _csv_batches(
    chunks: Iterable[str], delimiter: str, problems: list[str]
) -> Iterator[list[list[str]]]:
    """The non-blank records in batches; a record the csv module refuses (such as a field above
    its size limit, typical of an unclosed quote) ends the file with a problem."""
    # newline="" lets the csv module see the line ends, as it needs for quoted newlines.
    lines = chain.from_iterable(io.StringIO(chunk, newline="") for chunk in chunks)
    reader = csv.reader(lines, delimiter=delimiter)
    records = filter(None, reader)
    while True:
        batch: list[list[str]] = []
        try:
            # extend() keeps the records it got before an error; batching in C like this
            # avoids a generator step per record.
            batch.extend(islice(records, _BATCH_ROWS))
        except csv.Error as error:
            problems.append(f"the CSV could not be read past line {reader.line_num:,}: {error}")
            yield batch
            return
        if not batch:
            return
        yield batch


def _columns(rows: list[list[str]], width: int) -> Iterator[list[str]]:
    """The first `width` columns, one at a time. (zip(*rows) would make an iterator per row,
    which the garbage collector then has to walk.)"""
    return (list(map(operator.itemgetter(index), rows)) for index in range(width))


def _fit(rows: list[list[str]], width: int) -> int:
    """Pads short rows with missing values and cuts long ones, in place; returns how many rows
    did not have `width` fields."""
    if set(map(len, rows)) == {width}:
        return 0
    ragged = 0
    for index, row in enumerate(rows):
        if len(row) != width:
            rows[index] = (row + [""] * width)[:width]
            ragged += 1
    return ragged


def _analyze_jsonl(path: Path) -> QualityReport:
    decoding = _Decoding()
    table = _Table([])
    invalid = 0
    for lines in _line_batches(_text_chunks(path, decoding)):
        objects, not_objects = _json_objects(filter(None, lines))
        invalid += not_objects
        table.add_columns(dict.fromkeys(chain.from_iterable(objects)))
        table.add(
            ([_cell(row.get(column.name)) for row in objects] for column in table.columns),
            len(objects),
            [hash(_CANONICAL_JSON.encode(row)) for row in objects],
        )
    problems = decoding.problems()
    if invalid == 1:
        problems.append("JSON Lines: 1 line is not a valid JSON object")
    elif invalid:
        problems.append(f"JSON Lines: {invalid:,} lines are not valid JSON objects")
    return table.report("jsonl", problems, rows=table.rows + invalid)


def _json_objects(lines: Iterable[str]) -> tuple[list[dict[str, Any]], int]:
    """The lines that are JSON objects, decoded, and how many lines were not."""
    objects = []
    invalid = 0
    for line in lines:
        try:
            value = msgspec.json.decode(line)
        except msgspec.DecodeError:
            value = None
        if isinstance(value, dict):
            objects.append(value)
        else:
            invalid += 1
    return objects, invalid


def _cell(value: object) -> str:
    """A JSON value as the text a CSV would hold, so that every format shares type inference."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _JSON.encode(value).decode()


def _analyze_parquet(path: Path) -> QualityReport:
    # Imported here: only Parquet needs pyarrow, and it is slow to import.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        return _Table([]).report("parquet", [f"the Parquet file could not be read: {error}"])
    schema = parquet.schema_arrow
    table = _Table(schema.names, [_arrow_type(field.type) for field in schema])
    problems = []
    try:
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
            columns = [_arrow_texts(column) for column in batch.columns]
            table.add(columns, batch.num_rows, list(map(hash, zip(*columns, strict=True))))
    except (pa.ArrowException, OSError) as error:
        problems.append(f"the Parquet file could not be read past row {table.rows:,}: {error}")
    return table.report("parquet", problems)


def _arrow_type(arrow_type: Any) -> ColumnType:
    """The column type that a Parquet column's schema declares."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    return "string"


def _arrow_texts(column: Any) -> list[str]:
    """A column's values as text, nulls as "" (missing) and NaN as "nan" (missing too)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        texts = pc.cast(column, pa.large_string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        # Nested, binary and other types that Arrow cannot cast to text: their JSON.
        return [_cell(value) for value in column.to_pylist()]
    return list(pc.fill_null(texts, "").to_pylist())


def _analyze_text(path: Path) -> QualityReport:
    decoding = _Decoding()
    duplicates = _Duplicates()
    lines = empty = total_length = 0
    shortest: int | None = None
    longest: int | None = None
    for batch in _line_batches(_text_chunks(path, decoding)):
        lengths = list(map(len, batch))
        lines += len(batch)
        empty += lengths.count(0)
        total_length += sum(lengths)
        filled = list(filter(None, lengths))
        if filled:
            shortest = min(filled) if shortest is None else min(shortest, min(filled))
            longest = max(filled) if longest is None else max(longest, max(filled))
        duplicates.add(list(map(hash, filter(None, batch))))
    rows = lines - empty
    stats = TextStats(
        lines=lines,
        min_length=shortest,
        max_length=longest,
        mean_length=total_length / rows if rows else None,
        empty_lines=empty,
    )
    problems = [
        *decoding.problems(),
        *([] if rows else ["the file has no data rows"]),
        *duplicates.problems("line"),
    ]
    return QualityReport(
        format="text",
        rows=rows,
        columns=0,
        column_reports=[],
        duplicate_rows=duplicates.count,
        label_distribution=None,
        text_stats=stats,
        problems=problems,
    )
