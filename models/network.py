"""The PyTorch modules: embedding -> stacked bidirectional RNN -> pooling -> dense."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bilstm.models.config import ModelConfig


def merge_directions(fwd: torch.Tensor, bwd: torch.Tensor, mode: str) -> torch.Tensor:
    """Combine forward and backward features (Keras' Bidirectional merge modes)."""
    if mode == "concat":
        return torch.cat([fwd, bwd], dim=-1)
    if mode == "sum":
        return fwd + bwd
    if mode == "mul":
        return fwd * bwd
    if mode == "ave":
        return (fwd + bwd) / 2
    raise ValueError(f"unknown merge mode {mode!r}")


class SpatialDropout(nn.Module):
    """Drops whole embedding channels for a sequence (Keras' SpatialDropout1D)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, time, channels]
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class BiRNNEncoder(nn.Module):
    """Stacked single-layer bidirectional RNNs over padded batches, lengths respected.

    One `nn.LSTM`/`nn.GRU` per layer (rather than `num_layers=N`) so that the directions can be
    merged between layers and each layer maps onto one fused ONNX node.
    """

    def __init__(self, cfg: ModelConfig, input_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        sizes = [input_size] + [cfg.output_size] * (cfg.num_layers - 1)
        layers: list[nn.Module] = []
        for size in sizes:
            if cfg.cell == "gru":
                layers.append(nn.GRU(size, cfg.hidden_size, batch_first=True, bidirectional=True))
            else:
                layers.append(
                    nn.LSTM(
                        size,
                        cfg.hidden_size,
                        batch_first=True,
                        bidirectional=True,
                        proj_size=cfg.proj_size,
                    )
                )
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [batch, time, input] -> (outputs [batch, time, out], final [batch, out]).

        Outputs at padded positions are zero; `final` holds the forward state after the last
        real token and the backward state after the first.
        """
        total = x.shape[1]
        lens = lengths.to("cpu", torch.int64)
        final = x.new_zeros(0)
        for i, rnn in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            packed = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
            out, state = rnn(packed)
            h_n = state[0] if isinstance(state, tuple) else state
            y, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
            h = self.cfg.direction_size
            x = merge_directions(y[..., :h], y[..., h:], self.cfg.merge)
            final = merge_directions(h_n[0], h_n[1], self.cfg.merge)
        return x, final


def time_mask(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """Bool [batch, time]: True at real (non-padded) positions."""
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]


class CharCNN(nn.Module):
    """Character features per word: embed chars, 1-D convolution, max over the word.

    Words are always padded/truncated to `max_word_length` characters, so a word's features
    never depend on the other words in the batch.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.char_vocab_size, cfg.char_dim, padding_idx=0)
        self.conv = nn.Conv1d(
            cfg.char_dim, cfg.char_filters, cfg.char_kernel, padding=cfg.char_kernel // 2
        )

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """char_ids [batch, time, chars] -> [batch, time, filters]."""
        b, t, w = char_ids.shape
        x = self.embedding(char_ids.reshape(b * t, w)).transpose(1, 2)  # [b*t, dim, chars]
        y = torch.relu(self.conv(x)).max(dim=2).values
        return y.reshape(b, t, -1)


class TokenEmbedder(nn.Module):
    """Word embedding (+ character CNN features) with spatial dropout."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim, padding_idx=0)
        self.chars = CharCNN(cfg) if cfg.char_vocab_size else None
        self.dropout = SpatialDropout(cfg.embedding_dropout)

    def forward(self, input_ids: torch.Tensor, char_ids: torch.Tensor | None) -> torch.Tensor:
        """-> [batch, time, embedding_dim (+ char_filters)]."""
        x = self.embedding(input_ids)
        if self.chars is not None:
            if char_ids is None:
                raise ValueError("this model uses character features: pass char_ids")
            x = torch.cat([x, self.chars(char_ids)], dim=-1)
        return self.dropout(x)


class BiLSTMClassifier(nn.Module):
    """Text classifier: returns logits [batch, classes]; softmax is applied in the export."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim, padding_idx=0)
        self.embedding_dropout = SpatialDropout(cfg.embedding_dropout)
        self.encoder = BiRNNEncoder(cfg, cfg.embedding_dim)
        width = cfg.output_size
        if cfg.pooling == "attention":
            self.attention = nn.Linear(width, cfg.attention_size)
            self.attention_score = nn.Linear(cfg.attention_size, 1, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(width, cfg.num_labels)

    def pool(self, y: torch.Tensor, final: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Sequence features [batch, time, d] -> one vector [batch, d] per sequence."""
        mode = self.cfg.pooling
        if mode == "last":
            return final
        mask = time_mask(lengths.to(y.device), y.shape[1]).unsqueeze(-1)
        if mode == "mean":
            return (y * mask).sum(dim=1) / lengths.to(y.device, y.dtype).unsqueeze(-1)
        if mode == "max":
            return y.masked_fill(~mask, float("-inf")).max(dim=1).values
        scores = self.attention_score(torch.tanh(self.attention(y)))
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        return (weights * y).sum(dim=1)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """input_ids [batch, time] int64, lengths [batch] (>= 1) -> logits [batch, classes]."""
        x = self.embedding_dropout(self.embedding(input_ids))
        y, final = self.encoder(x, lengths)
        return self.output(self.dropout(self.pool(y, final, lengths)))


class _TokenModel(nn.Module):
    """Embedder (+ character features) -> encoder -> dropout -> dense, shared by the
    per-token heads (tagging) and the blank head (cloze)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embedder = TokenEmbedder(cfg)
        self.encoder = BiRNNEncoder(cfg, cfg.input_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(cfg.output_size, cfg.num_labels)


class BiLSTMTagger(_TokenModel):
    """Sequence tagger: logits [batch, time, tags], one label per token."""

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, char_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """input_ids [batch, time], lengths [batch], char_ids [batch, time, chars] (optional)."""
        y, _ = self.encoder(self.embedder(input_ids, char_ids), lengths)
        return self.output(self.dropout(y))


class BiLSTMForecaster(nn.Module):
    """Forecaster: raw feature windows [batch, time, features] -> raw forecasts [batch, horizon].

    Scaling lives in the module (buffers fitted on training data), so the exported graph takes
    and returns values in the data's own units.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.register_buffer("feature_mean", torch.zeros(cfg.num_features))
        self.register_buffer("feature_std", torch.ones(cfg.num_features))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.encoder = BiRNNEncoder(cfg, cfg.num_features)
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(cfg.output_size, cfg.num_labels)

    def forward_scaled(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Forecasts in target-standardised units (what the loss sees)."""
        x = (features - self.feature_mean) / self.feature_std
        _, final = self.encoder(x, lengths)
        return self.output(self.dropout(final))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """features [batch, time, features] float32, lengths [batch] -> [batch, horizon]."""
        return self.forward_scaled(features, lengths) * self.target_std + self.target_mean


class BiLSTMCloze(_TokenModel):
    """Fill-in-the-blank: logits over the vocabulary for the word at `mask_positions`."""

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, mask_positions: torch.Tensor
    ) -> torch.Tensor:
        """input_ids [batch, time], lengths [batch], mask_positions [batch] -> [batch, vocab]."""
        y, _ = self.encoder(self.embedder(input_ids, None), lengths)
        picked = y[torch.arange(y.shape[0]), mask_positions.to(torch.int64)]
        return self.output(self.dropout(picked))


MODELS: dict[str, type[nn.Module]] = {
    "classify": BiLSTMClassifier,
    "tag": BiLSTMTagger,
    "forecast": BiLSTMForecaster,
    "cloze": BiLSTMCloze,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The module for `cfg.task`."""
    return MODELS[cfg.task](cfg)
