"""Dataset files into tensors, and model files: reading, encoding and checking inputs, without
training anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from aiplatform.ml.data import (
    ByteWindows,
    DatasetError,
    EpochShuffle,
    TensorRows,
    encode_texts,
    load_training_data,
)
from aiplatform.ml.model_files import (
    LoadedModel,
    ModelFileError,
    ModelInputError,
    generate,
    load_model,
    predict,
    write_model,
)
from aiplatform.ml.networks import PAD_TOKEN, START_TOKEN, build_network
from aiplatform.ml.templates import CHAR_LM, TABULAR_CLASSIFIER, validate_hyperparameters

TABULAR = validate_hyperparameters(TABULAR_CLASSIFIER, {"validation_split": 0.25})


def tabular(path: Path, text: str, fmt: Any = "csv", **overrides: Any) -> Any:
    path.write_text(text)
    return load_training_data("tabular-classifier", path, fmt, {**TABULAR, **overrides})


def test_numeric_and_boolean_columns_are_features_standardised_on_the_train_split(
    tmp_path: Path,
) -> None:
    rows = "\n".join(
        f"{i},{'yes' if i % 2 else 'no'},n{i},{'b' if i % 3 else 'a'}" for i in range(8)
    )
    data = tabular(tmp_path / "t.csv", f"size,flag,name,label\n{rows}\nNA,true,x,b\n")

    assert data.config["features"] == ["size", "flag"]
    assert data.config["labels"] == ["a", "b"]
    assert data.notes == ["columns ignored as not numeric: name"]
    assert (len(data.train), len(data.validation)) == (7, 2)
    train_features, _ = data.train.tensors
    # Standardised with the train split's statistics: mean 0 and spread 1 there.
    assert train_features.mean(0) == pytest.approx(torch.zeros(2), abs=1e-5)
    features = torch.cat([train_features, data.validation.tensors[0]])
    means = torch.tensor(data.config["feature_means"])
    scales = torch.tensor(data.config["feature_scales"])
    assert sorted((features * scales + means)[:, 1].tolist()) == [0.0] * 4 + [1.0] * 5
    # The missing size became the train mean: 0 once standardised.
    assert 0.0 in features[:, 0].tolist()


def test_the_split_follows_the_seed(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i % 2}" for i in range(40))

    def validation_rows(seed: int) -> list[float]:
        data = tabular(tmp_path / "t.csv", f"x,label\n{rows}\n", seed=seed)
        return sorted(data.validation.tensors[0][:, 0].tolist())

    assert validation_rows(1) == validation_rows(1)
    assert validation_rows(1) != validation_rows(2)


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("csv", "x,label\n1,a\n2,\n", "row 2: `label` is missing"),
        ("csv", "x,label\n1,a\n2,a\n", r"`label` has only one class \(a\)"),
        ("csv", "name,label\nx,a\ny,b\n", "no numeric column besides `label`"),
        ("jsonl", '{"x": 1, "label": "a"}\n[1, 2]\n', "line 2 is not a JSON object"),
    ],
)
def test_bad_data_is_refused_saying_where(
    tmp_path: Path, fmt: str, text: str, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        tabular(tmp_path / "data", text, fmt)


def test_json_lines_and_parquet_read_like_csv(tmp_path: Path) -> None:
    records = [{"x": i * 1.5, "on": i % 2 == 0, "label": i % 3} for i in range(12)]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "t.parquet")
    rows = "\n".join(f"{r['x']},{str(r['on']).lower()},{r['label']}" for r in records)
    loaded = [
        tabular(tmp_path / "t.csv", f"x,on,label\n{rows}\n"),
        load_training_data("tabular-classifier", tmp_path / "t.jsonl", "jsonl", TABULAR),
        load_training_data("tabular-classifier", tmp_path / "t.parquet", "parquet", TABULAR),
    ]
    for data in loaded[1:]:
        assert data.config == loaded[0].config
        assert torch.equal(data.train.tensors[0], loaded[0].train.tensors[0])
    assert loaded[0].config["labels"] == ["0", "1", "2"]


def test_texts_are_start_token_then_bytes_cut_or_padded() -> None:
    tokens = encode_texts(["hé", "", "abcdefgh"], max_length=5)
    assert tokens.tolist() == [
        [START_TOKEN, ord("h"), 0xC3, 0xA9, PAD_TOKEN],
        [START_TOKEN, PAD_TOKEN, PAD_TOKEN, PAD_TOKEN, PAD_TOKEN],
        [START_TOKEN, *b"abcd"],
    ]


def test_a_corpus_holds_out_a_seeded_span_that_no_training_window_touches(
    tmp_path: Path,
) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": f"line {i} " * 5}) + "\n" for i in range(60)))
    settings = validate_hyperparameters(CHAR_LM, {"block_size": 16, "seed": 5})
    data = load_training_data("char-lm", path, "jsonl", settings)

    assert isinstance(data.train, ByteWindows)
    assert isinstance(data.validation, ByteWindows)
    assert data.train[0].shape == (17,)
    held_out = data.validation.starts
    low, high = int(held_out.min()), int(held_out.max()) + 17
    for start in data.train.starts.tolist():
        assert start + 17 <= low or start >= high
    assert data.train.__getitems__([0, 3]).tolist() == [
        data.train[0].tolist(),
        data.train[3].tolist(),
    ]

    (tmp_path / "short.txt").write_text("too short")
    with pytest.raises(DatasetError, match="the corpus has 9 bytes"):
        load_training_data("char-lm", tmp_path / "short.txt", "text", settings)


def test_the_shuffle_is_a_function_of_seed_and_epoch() -> None:
    sampler = EpochShuffle(50, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == list(range(50))
    assert first != second
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert TensorRows(torch.arange(5)).__getitems__([4, 1])[0].tolist() == [4, 1]


# -- model files -------------------------------------------------------------------------------


class ScriptedBytes(nn.Module):
    """A stand-in language model whose most likely next byte spells out `script`."""

    def __init__(self, script: bytes, prompt_length: int) -> None:
        super().__init__()
        self.script = script
        self.prompt_length = prompt_length

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(1, tokens.shape[1], 256)
        logits[0, -1, self.script[tokens.shape[1] - self.prompt_length]] = 10.0
        return logits


def test_generation_yields_whole_characters_even_when_their_bytes_come_apart() -> None:
    script = "héllo 😀".encode()
    model = LoadedModel(
        template="char-lm",
        config={"block_size": 64},
        metadata={},
        network=ScriptedBytes(script, prompt_length=2),
        device=torch.device("cpu"),
    )
    pieces = list(generate(model, "hi", max_new_tokens=len(script), temperature=0))
    assert pieces == ["h", "é", "l", "l", "o", " ", "😀"]
    cut = list(generate(model, "hi", max_new_tokens=2, temperature=0))
    assert cut == ["h", "\N{REPLACEMENT CHARACTER}"]  # half a character, at the very end


def test_model_files_refuse_foreign_files_and_wrong_inputs(tmp_path: Path) -> None:
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ModelFileError, match="not written by a training job"):
        load_model(tmp_path / "foreign.safetensors")

    config = {"features": ["a", "b"], "feature_means": [0.0, 1.0], "feature_scales": [1.0, 2.0]}
    config |= {"labels": ["no", "yes"], "hidden_size": 4, "layers": 1, "dropout": 0.0}
    network = build_network("tabular-classifier", config)
    write_model(
        tmp_path / "model.safetensors",
        network,
        template="tabular-classifier",
        hyperparameters=TABULAR,
        config=config,
        metrics={},
        parameters=0,
    )
    model = load_model(tmp_path / "model.safetensors")
    assert not model.network.training
    assert (
        len(predict(model, [{"a": 1, "b": "2.5", "extra": "ignored"}, {"a": None, "b": True}])) == 2
    )
    assert predict(model, []) == []
    with pytest.raises(ModelInputError, match="input 0 must be an object of feature values"):
        predict(model, ["a text"])
    with pytest.raises(ModelInputError, match="input 1: `b` must be a number, got 'many'"):
        predict(model, [{"a": 1, "b": 2}, {"a": 1, "b": "many"}])
    with pytest.raises(ModelInputError, match="only a char-lm model generates"):
        generate(model, "hello")
