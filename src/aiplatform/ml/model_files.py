"""The model file a training job produces, and using it: predicting with the classifiers,
generating text with the language model.

A model file is a safetensors file whose metadata key `aiplatform` holds JSON: the template, its
hyperparameters, the `config` that rebuilds the network (architecture, labels, features and
their normalisation), how inputs are encoded, the parameter count and the final metrics.
"""

from __future__ import annotations

import codecs
import json
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from aiplatform.ml.data import encode_texts, parse_number, standardise
from aiplatform.ml.networks import BYTE_VOCABULARY, PAD_TOKEN, START_TOKEN, build_network

FORMAT_VERSION: Final = 1
METADATA_KEY: Final = "aiplatform"
_PREDICT_BATCH = 256
# What a model generates from when the prompt is empty: the start of a line.
_EMPTY_PROMPT = b"\n"

_ENCODINGS: Final[dict[str, dict[str, Any]]] = {
    "tabular-classifier": {
        "inputs": "an object of feature values; missing ones take the training mean",
    },
    "text-classifier": {
        "inputs": "UTF-8 bytes, cut to max_length - 1, after a start token, then padding",
        "vocabulary_size": BYTE_VOCABULARY + 2,
        "pad_token": PAD_TOKEN,
        "start_token": START_TOKEN,
    },
    "char-lm": {"inputs": "UTF-8 bytes", "vocabulary_size": BYTE_VOCABULARY},
}


class ModelFileError(ValueError):
    """The file is not a model this platform trained, or not one of a known template."""


class ModelInputError(ValueError):
    """The inputs do not fit the model; the message says which and why."""


@dataclass(frozen=True)
class LoadedModel:
    template: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    network: nn.Module
    device: torch.device


def write_model(
    path: Path,
    network: nn.Module,
    *,
    template: str,
    hyperparameters: Mapping[str, Any],
    config: Mapping[str, Any],
    metrics: Mapping[str, float],
    parameters: int,
) -> None:
    """Writes the file atomically: a reader never sees half of it."""
    metadata = {
        "format_version": FORMAT_VERSION,
        "template": template,
        "hyperparameters": dict(hyperparameters),
        "config": dict(config),
        "encoding": _ENCODINGS[template],
        "parameters": parameters,
        "metrics": dict(metrics),
    }
    tensors = {
        name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()
    }
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={METADATA_KEY: json.dumps(metadata)})
    os.replace(partial, path)


def read_metadata(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as file:
            stored = (file.metadata() or {}).get(METADATA_KEY)
    except (OSError, RuntimeError, ValueError) as error:
        raise ModelFileError(f"{path.name} is not a readable safetensors file: {error}") from error
    if stored is None:
        raise ModelFileError(f"{path.name} was not written by a training job of this platform")
    metadata: dict[str, Any] = json.loads(stored)
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path.name} has model format {metadata.get('format_version')}; this version "
            f"reads format {FORMAT_VERSION}"
        )
    return metadata


def load_model(path: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The network of a model file, in eval mode on `device`."""
    metadata = read_metadata(path)
    try:
        network = build_network(metadata["template"], metadata["config"])
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"{path.name} cannot be rebuilt: {error}") from error
    network.load_state_dict(load_file(str(path)))
    target = torch.device(device)
    return LoadedModel(
        template=metadata["template"],
        config=metadata["config"],
        metadata=metadata,
        network=network.to(target).eval(),
        device=target,
    )


# -- classifiers -------------------------------------------------------------------------------


def predict(
    loaded: LoadedModel, inputs: Sequence[Mapping[str, object] | str]
) -> list[dict[str, Any]]:
    """For each input, the most likely label and every label's probability. Tabular inputs are
    objects of feature values; text inputs are strings (or objects with a `text`)."""
    if loaded.template == "tabular-classifier":
        batch = _tabular_inputs(loaded.config, inputs)
    elif loaded.template == "text-classifier":
        batch = encode_texts(_text_inputs(inputs), loaded.config["max_length"])
    else:
        raise ModelInputError(
            f"a {loaded.template} model generates text from a prompt; it does not classify"
        )
    labels: list[str] = loaded.config["labels"]
    results = []
    with torch.inference_mode():
        for chunk in torch.split(batch, _PREDICT_BATCH):
            probabilities = loaded.network(chunk.to(loaded.device)).softmax(-1).cpu()
            for row in probabilities.tolist():
                best = max(range(len(labels)), key=row.__getitem__)
                results.append(
                    {"label": labels[best], "probabilities": dict(zip(labels, row, strict=True))}
                )
    return results


def _tabular_inputs(
    config: Mapping[str, Any], inputs: Sequence[Mapping[str, object] | str]
) -> torch.Tensor:
    features: list[str] = config["features"]
    rows = []
    for position, item in enumerate(inputs):
        if not isinstance(item, Mapping):
            raise ModelInputError(
                f"input {position} must be an object of feature values "
                f"({', '.join(features)}), got {type(item).__name__}"
            )
        absent = [name for name in features if name not in item]
        if absent:
            raise ModelInputError(f"input {position} has no value for {', '.join(absent)}")
        row = []
        for name in features:
            try:
                row.append(parse_number(item[name]))
            except ValueError:
                raise ModelInputError(
                    f"input {position}: `{name}` must be a number, got {item[name]!r}"
                ) from None
        rows.append(row)
    matrix = torch.tensor(rows, dtype=torch.float32).view(len(rows), len(features))
    return standardise(
        matrix, torch.tensor(config["feature_means"]), torch.tensor(config["feature_scales"])
    )


def _text_inputs(inputs: Sequence[Mapping[str, object] | str]) -> list[str]:
    texts = []
    for position, item in enumerate(inputs):
        text = item.get("text") if isinstance(item, Mapping) else item
        if not isinstance(text, str):
            raise ModelInputError(
                f"input {position} must be a string (or an object with a `text` string)"
            )
        texts.append(text)
    return texts


# -- language model ----------------------------------------------------------------------------


def generate(
    loaded: LoadedModel,
    prompt: str,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> Iterator[str]:
    """The continuation of `prompt`, in pieces as they are sampled: one byte per token, decoded
    incrementally so that a character whose bytes come over several tokens appears whole (an
    invalid sequence becomes U+FFFD). The same seed gives the same text on the same device;
    temperature 0 always takes the most likely byte."""
    if loaded.template != "char-lm":
        raise ModelInputError(
            f"a {loaded.template} model classifies its inputs; only a char-lm model generates"
        )
    if max_new_tokens < 0:
        raise ModelInputError(f"max_new_tokens must be 0 or more, got {max_new_tokens}")
    if temperature < 0:
        raise ModelInputError(f"temperature must be 0 or more, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ModelInputError(f"top_k must be at least 1, got {top_k}")
    generator = torch.Generator(device=loaded.device)
    generator.manual_seed(secrets.randbits(63) if seed is None else seed)
    return _sample(
        loaded,
        prompt.encode("utf-8") or _EMPTY_PROMPT,
        max_new_tokens,
        temperature,
        top_k,
        generator,
    )


def _sample(
    loaded: LoadedModel,
    prompt: bytes,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator,
) -> Iterator[str]:
    block_size: int = loaded.config["block_size"]
    tokens = torch.tensor([list(prompt)], device=loaded.device)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for _ in range(max_new_tokens):
        with torch.inference_mode():
            logits = loaded.network(tokens[:, -block_size:])[0, -1].float()
            token = _choose(logits, temperature, top_k, generator)
        tokens = torch.cat([tokens[:, -block_size:], token.view(1, 1)], dim=1)
        piece = decoder.decode(bytes([int(token)]))
        if piece:
            yield piece
    rest = decoder.decode(b"", final=True)
    if rest:
        yield rest


def _choose(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator
) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax()
    logits = logits / temperature
    if top_k is not None and top_k < len(logits):
        threshold = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < threshold, -torch.inf)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[0]
