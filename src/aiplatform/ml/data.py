"""Dataset files into tensors for the built-in templates, and the same encoding for inference.

Reading follows the quality report's rules (datasets/quality.py), so that a column the report
calls numeric is a feature here: the same words mean "missing" and the same words are booleans.
Rows are numbered from 1, counting data rows only (not a CSV header or blank lines).
"""

from __future__ import annotations

import codecs
import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import torch
from torch.utils.data import Dataset, Sampler

from aiplatform.datasets.formats import HEAD_BYTES, Format, sniff_delimiter
from aiplatform.ml.networks import PAD_TOKEN, START_TOKEN
from aiplatform.ml.templates import LABEL_COLUMN, TEXT_COLUMN

_MISSING: Final = frozenset({"", "na", "n/a", "null", "none", "nan"})
_TRUE: Final = frozenset({"true", "yes", "t", "y"})
_FALSE: Final = frozenset({"false", "no", "f", "n"})

Record = Mapping[str, object]


class DatasetError(ValueError):
    """The dataset cannot train the template; the message says where and why."""


# -- batches -----------------------------------------------------------------------------------


class TensorRows(Dataset[tuple[torch.Tensor, ...]]):
    """Rows of equally long tensors. A DataLoader fetches a whole batch with one indexing
    operation per tensor (`__getitems__`), not one per row, when its collate_fn is
    `keep_batch`."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(tensor[index] for tensor in self.tensors)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        rows = torch.tensor(indices)
        return tuple(tensor[rows] for tensor in self.tensors)


class ByteWindows(Dataset[torch.Tensor]):
    """Windows of `length` consecutive bytes of a corpus, starting at `starts`; the corpus is
    held once, so windows may overlap without copies."""

    def __init__(self, corpus: torch.Tensor, starts: torch.Tensor, length: int) -> None:
        self.corpus = corpus
        self.starts = starts
        self.offsets = torch.arange(length)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.corpus[self.starts[index] + self.offsets]

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self.corpus[self.starts[torch.tensor(indices)][:, None] + self.offsets]


def keep_batch(batch: Any) -> Any:
    """The collate_fn for datasets that return whole batches from `__getitems__`."""
    return batch


class EpochShuffle(Sampler[int]):
    """A fresh order each epoch, a function of seed and epoch alone: a run resumed mid-epoch
    sees the batches the interrupted run would have, and every process of a distributed run
    the same order (which the Accelerator then shards)."""

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


@dataclass(frozen=True)
class TrainingData:
    """`config`: what the data adds to the model's configuration (labels, features and their
    normalisation); `class_counts`: training examples per label; `notes`: things worth telling
    the user, such as ignored columns."""

    train: Dataset[Any]
    validation: Dataset[Any]
    config: dict[str, Any]
    class_counts: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_training_data(
    template: str,
    path: Path,
    dataset_format: Format,
    hyperparameters: Mapping[str, Any],
    base_config: Mapping[str, Any] | None = None,
) -> TrainingData:
    """The train and validation splits of a dataset file. `base_config`: the configuration of a
    model being continued, whose labels, features and normalisation the data must then fit."""
    seed = int(hyperparameters["seed"])
    split = float(hyperparameters["validation_split"])
    if template == "char-lm":
        return _language_data(_corpus(path, dataset_format), hyperparameters, seed, split)
    records = read_records(path, dataset_format)
    if not records:
        raise DatasetError("the dataset has no rows")
    labels, targets = _labels(records, base_config)
    train_rows, validation_rows = _split(len(records), split, seed)
    if template == "tabular-classifier":
        features, config, notes = _tabular(records, train_rows, base_config)
    else:
        features = encode_texts(
            [_text(record, row) for row, record in enumerate(records, 1)],
            int(hyperparameters["max_length"]),
        )
        config, notes = {}, []
    return TrainingData(
        train=TensorRows(features[train_rows], targets[train_rows]),
        validation=TensorRows(features[validation_rows], targets[validation_rows]),
        config={**config, "labels": labels},
        class_counts=torch.bincount(targets[train_rows], minlength=len(labels)).tolist(),
        notes=notes,
    )


# -- reading files -----------------------------------------------------------------------------


def read_records(path: Path, dataset_format: Format) -> list[Record]:
    if dataset_format == "csv":
        return _csv_records(path)
    if dataset_format == "jsonl":
        return _jsonl_records(path)
    if dataset_format == "parquet":
        return _parquet_records(path)
    raise DatasetError(f"a {dataset_format} file holds no table")


def _csv_records(path: Path) -> list[Record]:
    with path.open("rb") as file:
        delimiter = sniff_delimiter(file.read(HEAD_BYTES)) or ","
    # utf-8-sig: a byte order mark must not become part of the first column's name.
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as file:
        try:
            return list(csv.DictReader(file, delimiter=delimiter))
        except csv.Error as error:
            raise DatasetError(f"the CSV could not be read: {error}") from error


def _jsonl_records(path: Path) -> list[Record]:
    records: list[Record] = []
    with path.open(encoding="utf-8-sig", errors="replace") as file:
        for line_number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                value = None
            if not isinstance(value, dict):
                raise DatasetError(f"line {line_number} is not a JSON object")
            records.append(value)
    return records


def _parquet_records(path: Path) -> list[Record]:
    # Imported here: pyarrow is slow to import and only Parquet needs it.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows: list[Record] = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as error:
        raise DatasetError(f"the Parquet file could not be read: {error}") from error
    return rows


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in _MISSING


def _as_text(value: object) -> str:
    """A cell as the quality report writes it, so labels read the same in both."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_number(value: object) -> float:
    """A cell as a number: NaN when missing, 1/0 for booleans; ValueError when it is text."""
    if _is_missing(value):
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else math.nan
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return 1.0
        if word in _FALSE:
            return 0.0
        number = float(word)
        return number if math.isfinite(number) else math.nan
    raise ValueError(f"{value!r} is not a number")


# -- classifiers -------------------------------------------------------------------------------


def _labels(
    records: Sequence[Record], base_config: Mapping[str, Any] | None
) -> tuple[list[str], torch.Tensor]:
    """The class names (sorted, or the base model's) and each row's class index."""
    texts = []
    for row, record in enumerate(records, 1):
        value = record.get(LABEL_COLUMN)
        if _is_missing(value):
            raise DatasetError(f"row {row}: `{LABEL_COLUMN}` is missing")
        texts.append(_as_text(value))
    labels = sorted(set(texts))
    if base_config is not None:
        unknown = sorted(set(labels) - set(base_config["labels"]))
        if unknown:
            raise DatasetError(
                f"the base model knows the labels {', '.join(base_config['labels'])}; this "
                f"dataset also has {', '.join(unknown)}"
            )
        labels = list(base_config["labels"])
    elif len(labels) < 2:
        raise DatasetError(f"`{LABEL_COLUMN}` has only one class ({labels[0]})")
    index = {label: position for position, label in enumerate(labels)}
    return labels, torch.tensor([index[text] for text in texts])


def _split(rows: int, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of the train and validation splits: a seeded shuffle, at least one row in
    each when there are two rows or more."""
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed))
    held_out = min(max(round(rows * share), 1), rows - 1) if rows > 1 else 0
    return order[held_out:], order[:held_out]


def _tabular(
    records: Sequence[Record], train_rows: torch.Tensor, base_config: Mapping[str, Any] | None
) -> tuple[torch.Tensor, dict[str, Any], list[str]]:
    """Standardised features, their configuration and notes about columns left out."""
    # A CSV row with more fields than the header puts the rest under the key None.
    columns = [
        name
        for name in dict.fromkeys(name for record in records for name in record)
        if isinstance(name, str)
    ]
    numbers: dict[str, list[float]] = {}
    ignored = []
    for column in columns:
        if column == LABEL_COLUMN:
            continue
        try:
            numbers[column] = [parse_number(record.get(column)) for record in records]
        except ValueError:
            ignored.append(column)
    features = [name for name, values in numbers.items() if not all(map(math.isnan, values))]
    if base_config is not None:
        missing = [name for name in base_config["features"] if name not in features]
        if missing:
            raise DatasetError(
                f"the base model reads the numeric columns {', '.join(base_config['features'])}; "
                f"this dataset lacks {', '.join(missing)}"
            )
        features = list(base_config["features"])
    if not features:
        raise DatasetError(
            f"the dataset has no numeric column besides `{LABEL_COLUMN}` to learn from"
        )
    matrix = torch.tensor([numbers[name] for name in features], dtype=torch.float32).T
    if base_config is not None:
        means = torch.tensor(base_config["feature_means"])
        scales = torch.tensor(base_config["feature_scales"])
    else:
        means, scales = _normalisation(matrix[train_rows])
    notes = [f"columns ignored as not numeric: {', '.join(ignored)}"] if ignored else []
    config = {
        "features": features,
        "feature_means": means.tolist(),
        "feature_scales": scales.tolist(),
    }
    return standardise(matrix, means, scales), config, notes


def _normalisation(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and standard deviation over the present values (1 where constant)."""
    means = torch.nan_to_num(train.nanmean(0))
    deviations = torch.where(train.isnan(), 0.0, train - means)
    counts = (~train.isnan()).sum(0).clamp(min=1)
    scales = (deviations.square().sum(0) / counts).sqrt()
    return means, torch.where(scales > 1e-12, scales, 1.0)


def standardise(matrix: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Missing values (NaN) become the mean, that is 0 after standardising."""
    return torch.nan_to_num((matrix - means) / scales)


def _text(record: Record, row: int) -> str:
    value = record.get(TEXT_COLUMN)
    if value is None:
        raise DatasetError(f"row {row}: `{TEXT_COLUMN}` is missing")
    return value if isinstance(value, str) else _as_text(value)


def encode_texts(texts: Sequence[str], max_length: int) -> torch.Tensor:
    """(texts, max_length) token ids: START_TOKEN, the UTF-8 bytes cut to fit, then padding."""
    room = max_length - 1
    buffer = bytearray(len(texts) * room)
    lengths = []
    for row, text in enumerate(texts):
        encoded = text.encode("utf-8")[:room]
        buffer[row * room : row * room + len(encoded)] = encoded
        lengths.append(len(encoded))
    tokens = torch.frombuffer(buffer, dtype=torch.uint8).view(len(texts), room).long()
    padding = torch.arange(room) >= torch.tensor(lengths)[:, None]
    tokens[padding] = PAD_TOKEN
    starts = torch.full((len(texts), 1), START_TOKEN)
    return torch.cat([starts, tokens], dim=1)


# -- language model ----------------------------------------------------------------------------


def _corpus(path: Path, dataset_format: Format) -> bytes:
    """A plain-text file's bytes, or a table's `text` column joined with line breaks."""
    if dataset_format == "text":
        return path.read_bytes().removeprefix(codecs.BOM_UTF8)
    records = read_records(path, dataset_format)
    if not any(TEXT_COLUMN in record for record in records):
        raise DatasetError(f"the dataset has no `{TEXT_COLUMN}` column")
    texts = (record.get(TEXT_COLUMN) for record in records)
    return "\n".join(_as_text(text) for text in texts if not _is_missing(text)).encode("utf-8")


def _language_data(
    corpus: bytes, hyperparameters: Mapping[str, Any], seed: int, share: float
) -> TrainingData:
    """Windows of block_size + 1 bytes (inputs and the next byte of each). A seeded span of
    the corpus is held out whole, so that no validation byte is ever trained on."""
    block_size = int(hyperparameters["block_size"])
    window = block_size + 1
    held_out = max(round(len(corpus) * share), window)
    if len(corpus) - held_out < window:
        raise DatasetError(
            f"the corpus has {len(corpus):,} bytes; with a block_size of {block_size} it needs "
            f"at least {2 * window:,} (or a smaller block_size)"
        )
    generator = torch.Generator().manual_seed(seed)
    start = int(torch.randint(len(corpus) - held_out + 1, (1,), generator=generator))
    if max(start, len(corpus) - held_out - start) < window:
        start = len(corpus) - held_out  # neither side could hold a window: hold out the end
    tensor = torch.frombuffer(bytearray(corpus), dtype=torch.uint8)
    # Overlapping training windows: each byte is seen at two positions in its context.
    train_step = max(block_size // 2, 1)
    train_starts = [
        *_window_starts(0, start, window, train_step),
        *_window_starts(start + held_out, len(corpus), window, train_step),
    ]
    validation_starts = _window_starts(start, start + held_out, window, block_size)
    return TrainingData(
        train=ByteWindows(tensor, torch.tensor(train_starts), window),
        validation=ByteWindows(tensor, torch.tensor(validation_starts), window),
        config={},
        notes=[f"the corpus has {len(corpus):,} bytes, {held_out:,} held out for validation"],
    )


def _window_starts(begin: int, end: int, window: int, step: int) -> list[int]:
    return list(range(begin, end - window + 1, step))
