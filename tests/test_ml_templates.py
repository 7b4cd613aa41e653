"""Templates: hyperparameter validation (property-based) and dataset checks against quality
reports, crafted and real."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiplatform.datasets.formats import Format
from aiplatform.datasets.quality import ColumnReport, ColumnType, QualityReport, TextStats, analyze
from aiplatform.ml.templates import (
    CHAR_LM,
    TABULAR_CLASSIFIER,
    TEMPLATES,
    TEXT_CLASSIFIER,
    Hyperparameter,
    HyperparameterError,
    Template,
    UnknownTemplateError,
    check_dataset,
    get_template,
    validate_hyperparameters,
)

templates = st.sampled_from(TEMPLATES)


def in_range(spec: Hyperparameter) -> st.SearchStrategy[Any]:
    if spec.type == "boolean":
        return st.booleans()
    if spec.type == "string":
        assert spec.choices
        return st.sampled_from(spec.choices)
    assert spec.minimum is not None
    assert spec.maximum is not None
    low, high = math.ceil(spec.minimum), math.floor(spec.maximum)
    if spec.type == "integer":
        return st.integers(low, high)
    floats = st.floats(spec.minimum, spec.maximum)
    # An integer is a fine number too.
    return st.integers(low, high) | floats if low <= high else floats


@st.composite
def valid_choices(draw: st.DrawFn) -> tuple[Template, dict[str, Any]]:
    """A template and some of its hyperparameters, all valid (n_heads dividing d_model)."""
    template = draw(templates)
    given = {
        spec.name: draw(in_range(spec)) for spec in template.hyperparameters if draw(st.booleans())
    }
    if "d_model" in given or "n_heads" in given:
        heads = given.setdefault("n_heads", 4)
        given["d_model"] = heads * draw(st.integers(max(1, -(-8 // heads)), 1_024 // heads))
    return template, given


@given(valid_choices())
def test_valid_hyperparameters_are_returned_with_the_defaults(
    choice: tuple[Template, dict[str, Any]],
) -> None:
    template, given_values = choice
    values = validate_hyperparameters(template, given_values)
    assert values.keys() == {spec.name for spec in template.hyperparameters}
    for spec in template.hyperparameters:
        assert values[spec.name] == given_values.get(spec.name, spec.default)
        if spec.type == "number":
            assert type(values[spec.name]) is float


@st.composite
def out_of_range(draw: st.DrawFn) -> tuple[Template, str, int | float]:
    template = draw(templates)
    spec = draw(
        st.sampled_from([h for h in template.hyperparameters if h.type in ("integer", "number")])
    )
    assert spec.minimum is not None
    assert spec.maximum is not None
    below = st.integers(max_value=int(spec.minimum) - 1) | st.floats(
        max_value=spec.minimum, exclude_max=True, allow_nan=False
    )
    above = st.integers(min_value=int(spec.maximum) + 1) | st.floats(
        min_value=spec.maximum, exclude_min=True, allow_nan=False
    )
    value = draw(below | above)
    if spec.type == "integer":
        value = int(value) if not isinstance(value, float) or value.is_integer() else value
    return template, spec.name, value


def refused_fields(template: Template, given_values: dict[str, object]) -> list[str]:
    with pytest.raises(HyperparameterError) as refused:
        validate_hyperparameters(template, given_values)
    return [field for field, _ in refused.value.problems]


@given(out_of_range())
def test_out_of_range_values_are_refused_naming_the_field(
    case: tuple[Template, str, int | float],
) -> None:
    template, name, value = case
    assert name in refused_fields(template, {name: value})


def wrong_type(spec: Hyperparameter) -> st.SearchStrategy[object]:
    anything = st.none() | st.lists(st.integers(), max_size=2) | st.text(max_size=5)
    if spec.type == "integer":
        # Strict: a boolean is no integer, nor is a float even with an integral value.
        return anything | st.booleans() | st.floats()
    if spec.type == "number":
        return anything | st.booleans() | st.just(float("nan")) | st.just(float("inf"))
    if spec.type == "boolean":
        return anything | st.integers() | st.floats()
    return st.none() | st.integers() | st.floats() | st.booleans()


@given(st.data())
def test_wrongly_typed_values_are_refused_naming_the_field(data: st.DataObject) -> None:
    template = data.draw(templates)
    spec = data.draw(st.sampled_from(template.hyperparameters))
    value = data.draw(wrong_type(spec))
    assert spec.name in refused_fields(template, {spec.name: value})


@given(templates, st.text(min_size=1, max_size=20))
def test_unknown_hyperparameters_are_refused(template: Template, name: str) -> None:
    if template.hyperparameter(name) is None:
        assert name in refused_fields(template, {name: 1})


def test_messages_are_specific_and_every_problem_is_listed() -> None:
    with pytest.raises(HyperparameterError) as refused:
        validate_hyperparameters(
            CHAR_LM,
            {"learning_rate": 5, "epochs": 2.0, "d_model": 100, "n_heads": 3, "colour": "red"},
        )
    problems = dict(refused.value.problems)
    assert problems["learning_rate"] == "`learning_rate` must be at most 1.0, got 5"
    assert problems["epochs"] == "`epochs` must be a whole number, got 2.0"
    assert "`n_heads` (3) must divide `d_model` (100)" in problems["n_heads"]
    assert problems["colour"].startswith("`colour` is not a hyperparameter of char-lm")
    assert "lr_schedule" in refused_fields(CHAR_LM, {"lr_schedule": "linear"})


def test_templates_are_found_by_name_and_encode_for_the_web_form() -> None:
    assert get_template("char-lm") is CHAR_LM
    with pytest.raises(UnknownTemplateError, match="tabular-classifier, text-classifier, char-lm"):
        get_template("gpt-5")
    encoded = msgspec.json.decode(msgspec.json.encode(TEMPLATES))
    assert [template["name"] for template in encoded] == [t.name for t in TEMPLATES]
    architecture = {h["name"] for h in encoded[2]["hyperparameters"] if h["architecture"]}
    assert architecture == {"d_model", "n_layers", "n_heads", "block_size"}
    for template in TEMPLATES:
        validate_hyperparameters(template, {})  # the defaults are valid


def test_the_api_process_can_import_templates_without_torch() -> None:
    code = "import sys, aiplatform.ml.templates; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- dataset checks ----------------------------------------------------------------------------


def column(name: str, kind: ColumnType = "float", distinct: int = 100) -> ColumnReport:
    return ColumnReport(
        name=name,
        type=kind,
        missing=0,
        missing_ratio=0.0,
        distinct=distinct,
        distinct_is_exact=True,
    )


def table(*columns: ColumnReport, fmt: Format = "csv", rows: int = 500) -> dict[str, Any]:
    report = QualityReport(
        format=fmt,
        rows=rows,
        columns=len(columns),
        column_reports=list(columns),
        duplicate_rows=0,
        label_distribution=None,
        text_stats=None,
        problems=[],
    )
    built: dict[str, Any] = msgspec.to_builtins(report)
    return built


def corpus(lines: int, mean_length: float) -> dict[str, Any]:
    report = QualityReport(
        format="text",
        rows=lines,
        columns=0,
        column_reports=[],
        duplicate_rows=0,
        label_distribution=None,
        text_stats=TextStats(
            lines=lines, min_length=1, max_length=80, mean_length=mean_length, empty_lines=0
        ),
        problems=[],
    )
    built: dict[str, Any] = msgspec.to_builtins(report)
    return built


LABEL = column("label", "string", distinct=2)


@pytest.mark.parametrize(
    ("template", "fmt", "report", "problems"),
    [
        (TABULAR_CLASSIFIER, "csv", table(column("x"), LABEL), []),
        (TABULAR_CLASSIFIER, "parquet", table(column("x", "boolean"), LABEL), []),
        (TABULAR_CLASSIFIER, "csv", table(column("x")), ["the dataset has no `label` column"]),
        (
            TABULAR_CLASSIFIER,
            "csv",
            table(column("name", "string"), LABEL),
            ["the tabular classifier needs at least one numeric column besides `label`"],
        ),
        (
            TABULAR_CLASSIFIER,
            "jsonl",
            table(column("x"), column("label", "integer", distinct=1)),
            ["`label` has only one class; a classifier needs at least two"],
        ),
        (
            TABULAR_CLASSIFIER,
            "csv",
            table(column("x"), LABEL, rows=5),
            ["the dataset has 5 rows; the tabular-classifier needs at least 20"],
        ),
        (
            TABULAR_CLASSIFIER,
            "text",
            corpus(100, 40),
            [
                "the tabular-classifier reads a table (CSV, JSON Lines or Parquet); "
                "this version is plain text"
            ],
        ),
        (TEXT_CLASSIFIER, "jsonl", table(column("text", "string"), LABEL), []),
        (TEXT_CLASSIFIER, "csv", table(LABEL), ["the dataset has no `text` column"]),
        (
            TEXT_CLASSIFIER,
            "csv",
            table(column("text", "empty"), column("label", "float", distinct=5_000)),
            [
                "`label` has 5,000 distinct values; a classifier handles at most 1,000 classes",
                "`text` has no values",
            ],
        ),
        (CHAR_LM, "text", corpus(500, 60), []),
        (
            CHAR_LM,
            "text",
            corpus(3, 10),
            ["the corpus has about 33 characters; the char-lm needs at least 256"],
        ),
        (CHAR_LM, "parquet", table(column("text", "string")), []),
        (
            CHAR_LM,
            "csv",
            table(column("x"), LABEL),
            [
                "the char-lm reads plain text, or the `text` column of JSON Lines/CSV/Parquet; "
                "this version is CSV without a `text` column"
            ],
        ),
        (
            CHAR_LM,
            "csv",
            None,
            ["the dataset's quality report is not ready yet; wait until its analysis has finished"],
        ),
    ],
)
def test_check_dataset_on_quality_reports(
    template: Template, fmt: str, report: dict[str, Any] | None, problems: list[str]
) -> None:
    assert check_dataset(template, fmt, report) == problems


def test_check_dataset_accepts_real_reports_of_usable_files(tmp_path: Path) -> None:
    rows = "\n".join(f"{i % 7},{i % 3 == 0},{'yes' if i % 2 else 'no'}" for i in range(40))
    (tmp_path / "table.csv").write_text(f"x,flag,label\n{rows}\n")
    (tmp_path / "corpus.txt").write_text("a line of text to learn from\n" * 20)
    table_report = msgspec.to_builtins(analyze(tmp_path / "table.csv", "csv"))
    text_report = msgspec.to_builtins(analyze(tmp_path / "corpus.txt", "text"))
    assert check_dataset(TABULAR_CLASSIFIER, "csv", table_report) == []
    assert check_dataset(CHAR_LM, "text", text_report) == []
    assert check_dataset(TEXT_CLASSIFIER, "csv", table_report) == [
        "the dataset has no `text` column"
    ]
