"""The networks behind the built-in templates, in plain torch, and `build_network`, which makes
one from the configuration a model file stores (so the trainer and inference build it alike)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import torch
import torch.nn.functional as F
from torch import nn

BYTE_VOCABULARY: Final = 256
# The text classifier's extra tokens, after the 256 byte values: padding, and a start token that
# every text begins with, so that even an empty text has a position to attend to and average.
PAD_TOKEN: Final = 256
START_TOKEN: Final = 257


class MLPClassifier(nn.Module):
    def __init__(
        self, *, features: int, classes: int, hidden_size: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden_size), nn.GELU(), nn.Dropout(dropout)]
            width = hidden_size
        blocks.append(nn.Linear(width, classes))
        self.layers = nn.Sequential(*blocks)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, features) floats → (batch, classes) logits."""
        logits: torch.Tensor = self.layers(features)
        return logits


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, attend: torch.Tensor | None, causal: bool) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (
            part.view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)
            for part in self.qkv(x).split(width, dim=2)
        )
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attend,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )
        out: torch.Tensor = self.out(y.transpose(1, 2).reshape(batch, length, width))
        return out


class Block(nn.Module):
    """A pre-norm transformer block: attention, then a 4x-wide GELU feed-forward layer."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model)
        self.attention = SelfAttention(d_model, n_heads, dropout)
        self.feed_forward_norm = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, attend: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), attend, causal))
        out: torch.Tensor = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return out


class ByteTransformerClassifier(nn.Module):
    """Reads START_TOKEN + UTF-8 bytes, padded with PAD_TOKEN; classifies the mean of the
    non-padding positions' final vectors."""

    def __init__(
        self,
        *,
        classes: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        max_length: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(BYTE_VOCABULARY + 2, d_model)
        self.position_embedding = nn.Embedding(max_length, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch, length) token ids → (batch, classes) logits."""
        present = tokens != PAD_TOKEN
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))
        # (batch, 1 head, 1 query, keys): every position attends to the real tokens only.
        attend = present[:, None, None, :]
        for block in self.blocks:
            x = block(x, attend)
        weights = present.unsqueeze(-1).to(x.dtype)
        pooled = (self.norm(x) * weights).sum(1) / weights.sum(1)
        logits: torch.Tensor = self.head(pooled)
        return logits


class ByteGPT(nn.Module):
    """A decoder-only transformer over bytes: (batch, length ≤ block_size) byte ids →
    (batch, length, 256) logits of each next byte."""

    def __init__(
        self, *, d_model: int, n_layers: int, n_heads: int, block_size: int, dropout: float
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.token_embedding = nn.Embedding(BYTE_VOCABULARY, d_model)
        self.position_embedding = nn.Embedding(block_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        # Untied from the embedding: safetensors files cannot hold one tensor under two names.
        self.head = nn.Linear(d_model, BYTE_VOCABULARY, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x, causal=True)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits


def build_network(template: str, config: Mapping[str, Any]) -> nn.Module:
    """The untrained network of a template. `config`: the architecture hyperparameters, plus
    `features` and `labels` lists for the classifiers (their sizes shape the network)."""
    if template == "tabular-classifier":
        return MLPClassifier(
            features=len(config["features"]),
            classes=len(config["labels"]),
            hidden_size=config["hidden_size"],
            layers=config["layers"],
            dropout=config["dropout"],
        )
    if template == "text-classifier":
        return ByteTransformerClassifier(
            classes=len(config["labels"]),
            d_model=config["d_model"],
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            max_length=config["max_length"],
            dropout=config["dropout"],
        )
    if template == "char-lm":
        return ByteGPT(
            d_model=config["d_model"],
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            block_size=config["block_size"],
            dropout=config["dropout"],
        )
    raise ValueError(f"no network is defined for the template `{template}`")


def parameter_count(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())
