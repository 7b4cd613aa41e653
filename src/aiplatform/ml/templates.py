"""The built-in training templates: what each trains, the datasets it reads, its hyperparameters,
and the checks that a submission is usable before a job is queued.

Imported by the API process, so it must stay light: no torch here (see ml/trainer.py for that).
A template and its hyperparameters are msgspec Structs, so the web UI builds its form from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Literal

import msgspec

from aiplatform.datasets.formats import Format

Task = Literal["classification", "language-modeling"]
HyperparameterType = Literal["integer", "number", "boolean", "string"]
HyperparameterValue = int | float | bool | str

LABEL_COLUMN: Final = "label"
TEXT_COLUMN: Final = "text"
# Below this, a validation split of a few rows says nothing and training barely starts.
MIN_CLASSIFIER_ROWS: Final = 20
# A `label` with more distinct values than this is more likely a measurement than a class.
MAX_CLASSES: Final = 1_000
MIN_CORPUS_CHARACTERS: Final = 256
_NUMERIC_TYPES: Final = frozenset({"integer", "float", "boolean"})
_FORMAT_NAMES: Final[dict[str, str]] = {
    "csv": "CSV",
    "jsonl": "JSON Lines",
    "parquet": "Parquet",
    "text": "plain text",
}


class Hyperparameter(msgspec.Struct, frozen=True, kw_only=True):
    """One setting of a template. `minimum`/`maximum` are inclusive and only for numbers;
    `choices` only for strings. `architecture`: it shapes the network's weights, so a base
    model trained with another value cannot be continued from."""

    name: str
    type: HyperparameterType
    default: HyperparameterValue
    description: str
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: tuple[str, ...] | None = None
    architecture: bool = False


class Template(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    title: str
    description: str
    task: Task
    dataset_formats: tuple[Format, ...]
    dataset_requirements: str
    hyperparameters: tuple[Hyperparameter, ...]

    def hyperparameter(self, name: str) -> Hyperparameter | None:
        return next((h for h in self.hyperparameters if h.name == name), None)

    @property
    def architecture_hyperparameters(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hyperparameters if h.architecture)


class UnknownTemplateError(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"there is no template `{name}`; the templates are {', '.join(known)}")
        self.name = name
        self.known = known


class HyperparameterError(ValueError):
    """`problems`: (hyperparameter name, message) pairs, every problem found, not just the
    first, so that a form can mark all its wrong fields at once."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def _integer(
    name: str,
    default: int,
    minimum: int,
    maximum: int,
    description: str,
    *,
    architecture: bool = False,
) -> Hyperparameter:
    return Hyperparameter(
        name=name,
        type="integer",
        default=default,
        minimum=minimum,
        maximum=maximum,
        description=description,
        architecture=architecture,
    )


def _number(
    name: str, default: float, minimum: float, maximum: float, description: str
) -> Hyperparameter:
    return Hyperparameter(
        name=name,
        type="number",
        default=default,
        minimum=minimum,
        maximum=maximum,
        description=description,
    )


def _training(
    *, epochs: int, batch_size: int, learning_rate: float, validation_split: float
) -> tuple[Hyperparameter, ...]:
    """The hyperparameters every template has, with that template's defaults."""
    return (
        _integer("epochs", epochs, 1, 1_000, "Passes over the training data."),
        _integer("batch_size", batch_size, 1, 4_096, "Examples per optimizer step (per device)."),
        _number(
            "learning_rate", learning_rate, 1e-6, 1.0, "Peak step size of the AdamW optimizer."
        ),
        Hyperparameter(
            name="lr_schedule",
            type="string",
            default="cosine",
            choices=("cosine", "constant"),
            description=(
                "How the learning rate changes after a short warm-up: `cosine` decays it to a "
                "tenth of its peak by the last step, `constant` keeps it."
            ),
        ),
        _number(
            "validation_split",
            validation_split,
            0.05,
            0.5,
            "Share of the data held out to measure the model after every epoch.",
        ),
        _integer(
            "seed", 0, 0, 2**31 - 1, "Seeds the split, the shuffling and the initial weights."
        ),
        _integer(
            "checkpoint_every",
            0,
            0,
            10_000_000,
            "Save a resumable checkpoint every this many optimizer steps; 0 saves one only at "
            "the end.",
        ),
    )


def _classification() -> tuple[Hyperparameter, ...]:
    return (
        Hyperparameter(
            name="balance_classes",
            type="boolean",
            default=False,
            description="Weigh each class's loss by its inverse frequency in the training split.",
        ),
    )


def _dropout(default: float) -> Hyperparameter:
    return _number("dropout", default, 0.0, 0.9, "Share of activations zeroed while training.")


def _transformer(
    *, length_name: str, length: int, length_description: str
) -> tuple[Hyperparameter, ...]:
    return (
        _integer("d_model", 64, 8, 1_024, "Width of the token vectors.", architecture=True),
        _integer("n_layers", 2, 1, 12, "Transformer blocks.", architecture=True),
        _integer("n_heads", 4, 1, 16, "Attention heads; must divide `d_model`.", architecture=True),
        _integer(length_name, length, 8, 2_048, length_description, architecture=True),
    )


TABULAR_CLASSIFIER: Final = Template(
    name="tabular-classifier",
    title="Tabular classifier",
    description=(
        "A multi-layer perceptron that predicts the `label` column of a table from its numeric "
        "and boolean columns, standardised with the training split's mean and spread."
    ),
    task="classification",
    dataset_formats=("csv", "jsonl", "parquet"),
    dataset_requirements=(
        f"A table (CSV, JSON Lines or Parquet) with a `label` column of at least two classes, "
        f"at least one numeric or boolean column besides it, and at least "
        f"{MIN_CLASSIFIER_ROWS} rows. Text columns are ignored; missing numbers are filled in "
        "with the column's mean."
    ),
    hyperparameters=(
        *_training(epochs=20, batch_size=64, learning_rate=3e-3, validation_split=0.2),
        *_classification(),
        _integer("hidden_size", 64, 2, 4_096, "Units in each hidden layer.", architecture=True),
        _integer("layers", 2, 1, 16, "Hidden layers.", architecture=True),
        _dropout(0.1),
    ),
)

TEXT_CLASSIFIER: Final = Template(
    name="text-classifier",
    title="Text classifier",
    description=(
        "A small transformer encoder over the UTF-8 bytes of the `text` column (so any language "
        "works without a vocabulary), averaged over the text, that predicts the `label` column."
    ),
    task="classification",
    dataset_formats=("csv", "jsonl", "parquet"),
    dataset_requirements=(
        f"A table (CSV, JSON Lines or Parquet) with a `text` column and a `label` column of at "
        f"least two classes, and at least {MIN_CLASSIFIER_ROWS} rows. Texts longer than "
        "`max_length` bytes are cut."
    ),
    hyperparameters=(
        *_training(epochs=3, batch_size=32, learning_rate=1e-3, validation_split=0.2),
        *_classification(),
        *_transformer(
            length_name="max_length",
            length=64,
            length_description="Bytes of each text the model reads; the rest is cut.",
        ),
        _dropout(0.1),
    ),
)

CHAR_LM: Final = Template(
    name="char-lm",
    title="Byte-level language model",
    description=(
        "A small GPT that learns to continue text one UTF-8 byte at a time; a trained model "
        "generates text from a prompt."
    ),
    task="language-modeling",
    dataset_formats=("text", "jsonl", "csv", "parquet"),
    dataset_requirements=(
        f"A plain-text corpus, or a table (JSON Lines, CSV or Parquet) with a `text` column, whose "
        f"texts are joined with line breaks; at least {MIN_CORPUS_CHARACTERS} characters."
    ),
    hyperparameters=(
        *_training(epochs=8, batch_size=32, learning_rate=3e-3, validation_split=0.1),
        *_transformer(
            length_name="block_size",
            length=64,
            length_description="Bytes of context the model sees to predict the next one.",
        ),
        _dropout(0.0),
    ),
)

TEMPLATES: Final = (TABULAR_CLASSIFIER, TEXT_CLASSIFIER, CHAR_LM)


def get_template(name: str) -> Template:
    for template in TEMPLATES:
        if template.name == name:
            return template
    raise UnknownTemplateError(name, [template.name for template in TEMPLATES])


# -- hyperparameters ---------------------------------------------------------------------------


def validate_hyperparameters(
    template: Template, given: Mapping[str, object]
) -> dict[str, HyperparameterValue]:
    """The complete hyperparameters (defaults filled in, numbers as floats), or
    HyperparameterError listing every problem. Strict on types, since these come from JSON
    forms: a boolean is not an integer and 3.0 is not an integer either."""
    problems: list[tuple[str, str]] = []
    known = [h.name for h in template.hyperparameters]
    for name in given:
        if name not in known:
            problems.append(
                (
                    name,
                    f"`{name}` is not a hyperparameter of {template.name}; "
                    f"it has {', '.join(known)}",
                )
            )
    values: dict[str, HyperparameterValue] = {}
    for spec in template.hyperparameters:
        try:
            values[spec.name] = _checked_value(spec, given.get(spec.name, spec.default))
        except ValueError as problem:
            problems.append((spec.name, str(problem)))
    problems.extend(_relation_problems(values))
    if problems:
        raise HyperparameterError(problems)
    return values


def _checked_value(spec: Hyperparameter, value: object) -> HyperparameterValue:
    """The value as the trainer takes it; ValueError saying what is wrong with it."""
    name = f"`{spec.name}`"
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if spec.type == "string":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise ValueError(f"{name} must be one of {', '.join(spec.choices)}, got {value!r}")
        return value
    number: int | float
    if spec.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        number = value
    else:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        number = float(value)
    if spec.minimum is not None and number < spec.minimum:
        raise ValueError(f"{name} must be at least {spec.minimum}, got {value!r}")
    if spec.maximum is not None and number > spec.maximum:
        raise ValueError(f"{name} must be at most {spec.maximum}, got {value!r}")
    return number


def _relation_problems(values: Mapping[str, HyperparameterValue]) -> list[tuple[str, str]]:
    d_model, n_heads = values.get("d_model"), values.get("n_heads")
    if isinstance(d_model, int) and isinstance(n_heads, int) and d_model % n_heads:
        return [
            (
                "n_heads",
                f"`n_heads` ({n_heads}) must divide `d_model` ({d_model}) so that every head "
                "gets an equal share",
            )
        ]
    return []


# -- datasets ----------------------------------------------------------------------------------


def check_dataset(
    template: Template, dataset_format: str, report: Mapping[str, Any] | None
) -> list[str]:
    """Why a dataset version cannot train this template, in plain words; empty when it can.
    `report` is the version's quality report as plain data (msgspec.to_builtins of a
    QualityReport), or None while the analysis is still running."""
    if report is None:
        return [
            "the dataset's quality report is not ready yet; wait until its analysis has finished"
        ]
    columns = {column["name"]: column for column in report.get("column_reports", [])}
    if template.task == "language-modeling":
        return _corpus_problems(template, dataset_format, report, columns)
    if dataset_format not in template.dataset_formats:
        return [
            f"the {template.name} reads a table (CSV, JSON Lines or Parquet); this version is "
            f"{_FORMAT_NAMES.get(dataset_format, dataset_format)}"
        ]
    problems = _label_problems(columns)
    if template.name == TEXT_CLASSIFIER.name:
        problems.extend(_text_column_problems(columns))
    else:
        problems.extend(_feature_problems(columns))
    rows = int(report.get("rows", 0))
    if rows < MIN_CLASSIFIER_ROWS:
        problems.append(
            f"the dataset has {rows} rows; the {template.name} needs at least {MIN_CLASSIFIER_ROWS}"
        )
    return problems


def _label_problems(columns: Mapping[str, Mapping[str, Any]]) -> list[str]:
    label = columns.get(LABEL_COLUMN)
    if label is None:
        return [f"the dataset has no `{LABEL_COLUMN}` column"]
    if label["type"] == "empty":
        return [f"`{LABEL_COLUMN}` has no values"]
    classes = int(label["distinct"])
    if classes < 2:
        return [f"`{LABEL_COLUMN}` has only one class; a classifier needs at least two"]
    if classes > MAX_CLASSES:
        return [
            f"`{LABEL_COLUMN}` has {classes:,} distinct values; a classifier handles at most "
            f"{MAX_CLASSES:,} classes"
        ]
    return []


def _feature_problems(columns: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if any(
        name != LABEL_COLUMN and column["type"] in _NUMERIC_TYPES
        for name, column in columns.items()
    ):
        return []
    return [f"the tabular classifier needs at least one numeric column besides `{LABEL_COLUMN}`"]


def _text_column_problems(columns: Mapping[str, Mapping[str, Any]]) -> list[str]:
    text = columns.get(TEXT_COLUMN)
    if text is None:
        return [f"the dataset has no `{TEXT_COLUMN}` column"]
    if text["type"] == "empty":
        return [f"`{TEXT_COLUMN}` has no values"]
    return []


def _corpus_problems(
    template: Template,
    dataset_format: str,
    report: Mapping[str, Any],
    columns: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    if dataset_format == "text":
        stats = report.get("text_stats") or {}
        characters = int(stats.get("lines", 0)) + round(
            (stats.get("mean_length") or 0) * int(report.get("rows", 0))
        )
        if characters < MIN_CORPUS_CHARACTERS:
            return [
                f"the corpus has about {characters} characters; the {template.name} needs at "
                f"least {MIN_CORPUS_CHARACTERS}"
            ]
        return []
    reads = (
        f"the {template.name} reads plain text, or the `{TEXT_COLUMN}` column of JSON "
        f"Lines/CSV/Parquet; this version is {_FORMAT_NAMES.get(dataset_format, dataset_format)}"
    )
    if dataset_format not in template.dataset_formats:
        return [reads]
    if TEXT_COLUMN not in columns:
        return [f"{reads} without a `{TEXT_COLUMN}` column"]
    return _text_column_problems(columns)
