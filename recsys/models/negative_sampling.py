"""Skip-gram with negative sampling (SGNS) as batched, closed-form SGD: what every PyTorch embedding
model here trains with.

The objective and its tricks follow word2vec (Mikolov et al. 2013, "Distributed Representations of
Words and Phrases and their Compositionality", and the reference ``word2vec.c``): subsampling of
frequent items, negatives from the unigram distribution raised to 0.75, a dynamic window, and a
learning rate decayed linearly over the whole run. Pairs come from the walks in vectorised numpy
batches, never a per-pair Python loop.

The step writes the SGNS gradient in closed form and adds it (``index_add_``) to only the rows the
batch touches: the sparse gradient, without autograd's bookkeeping (``tests/recsys/test_embeddings.py``
checks it against autograd). Negatives are shared by groups of ``group`` consecutive pairs, so a
group scores its negatives with one matrix product, as BlazingText does (Gupta & Khare 2017,
"BlazingText: Scaling and Accelerating Word2Vec using Multiple GPUs"); ``group=1`` gives every pair
its own negatives, as word2vec does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from recsys.models.base import FlatWalks, no_progress

log = logging.getLogger(__name__)

CHUNK_TOKENS = 1 << 20  # walk tokens turned into pairs (and shuffled) at a time


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's subsampling: an item seen ``c`` times out of ``T`` is kept with probability
    ``(sqrt(c / (sample * T)) + 1) * sample * T / c`` (capped at 1); ``sample == 0`` keeps everything."""
    counts = counts.astype(np.float64)
    if sample <= 0:
        return np.ones(len(counts))
    threshold = sample * counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (np.sqrt(counts / threshold) + 1) * threshold / counts
    return np.where(counts > 0, np.minimum(keep, 1.0), 0.0)


def window_pairs(tokens: np.ndarray, owner: np.ndarray, window: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) pairs within a dynamic window: each centre draws its window from 1..``window``
    (word2vec's ``reduced_window``), and pairs never cross from one walk into the next."""
    reach = rng.integers(1, window + 1, size=len(tokens))
    centres, contexts = [], []
    for d in range(1, window + 1):
        same_walk = owner[:-d] == owner[d:]
        forward = np.flatnonzero(same_walk & (reach[:-d] >= d))  # centre i, context i + d
        backward = np.flatnonzero(same_walk & (reach[d:] >= d))  # centre i + d, context i
        centres += [tokens[forward], tokens[backward + d]]
        contexts += [tokens[forward + d], tokens[backward]]
    return np.concatenate(centres), np.concatenate(contexts)


class PairSource:
    """Where a model's positive pairs come from, one epoch at a time.

    ``epoch`` yields shuffled ``(centres, contexts, work)`` chunks; ``work`` is the chunk's share of
    an epoch, which drives the learning-rate decay.
    """

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
        raise NotImplementedError


class WalkPairs(PairSource):
    """Window pairs of subsampled walks, the walks visited in a new random order every epoch."""

    def __init__(self, walks: FlatWalks, n_nodes: int, window: int, sample: float, chunk_tokens: int = CHUNK_TOKENS):
        self.walks, self.window, self.chunk_tokens = walks, window, chunk_tokens
        self.counts = walks.counts(n_nodes)
        self.keep = keep_probabilities(self.counts, sample)

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
        walks = self.walks
        order = rng.permutation(walks.n_walks)
        lengths = np.diff(walks.offsets)[order]
        total = max(int(lengths.sum()), 1)
        bounds = np.searchsorted(np.cumsum(lengths), np.arange(self.chunk_tokens, total, self.chunk_tokens), side="right")
        for chunk in np.split(order, bounds):
            if len(chunk) == 0:
                continue
            tokens, owner = walks.gather(chunk)
            kept = rng.random(len(tokens)) < self.keep[tokens]
            centres, contexts = window_pairs(tokens[kept], owner[kept], self.window, rng)
            shuffle = rng.permutation(len(centres))
            yield centres[shuffle], contexts[shuffle], len(tokens) / total

    def pairs_per_epoch(self, seed: int) -> int:
        """Pairs one epoch yields (a dry run with its own generator)."""
        return sum(len(c) for c, _, _ in self.epoch(np.random.default_rng(seed)))


class EdgePairs(PairSource):
    """Graph edges drawn with probability proportional to their weight, ``pairs_per_epoch`` per epoch."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray, pairs_per_epoch: int,
                 chunk_pairs: int = CHUNK_TOKENS):
        self.src = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        self.dst = np.asarray(indices, dtype=np.int64)
        cumulative = np.cumsum(np.asarray(weights, dtype=np.float64))
        self.cdf = cumulative / cumulative[-1] if len(cumulative) and cumulative[-1] > 0 else cumulative
        self.pairs_per_epoch, self.chunk_pairs = pairs_per_epoch, chunk_pairs

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
        if len(self.cdf) == 0:  # a graph without edges has no pairs to train on
            return
        for lo in range(0, self.pairs_per_epoch, self.chunk_pairs):
            size = min(self.chunk_pairs, self.pairs_per_epoch - lo)
            edges = np.minimum(np.searchsorted(self.cdf, rng.random(size), side="right"), len(self.cdf) - 1)
            yield self.src[edges], self.dst[edges], size / self.pairs_per_epoch


class UnigramNegatives:
    """Negatives drawn with probability proportional to ``count ** power`` (items never counted: never)."""

    def __init__(self, counts: np.ndarray, power: float = 0.75):
        weights = np.power(counts.astype(np.float64), power)
        self.cdf = np.cumsum(weights) / max(weights.sum(), 1e-300)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        drawn = np.searchsorted(self.cdf, rng.random(shape), side="right")
        return np.minimum(drawn, len(self.cdf) - 1)


@dataclass(frozen=True)
class LinearDecay:
    """Learning rate from ``start`` to ``end`` linearly over the whole run (``progress`` in [0, 1])."""

    start: float
    end: float

    def at(self, progress: float) -> float:
        return self.start - (self.start - self.end) * min(max(progress, 0.0), 1.0)


def negative_sampling_step(h: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor, out: torch.Tensor,
                           lr: float, out_bias: torch.Tensor | None = None, h_bias: torch.Tensor | None = None,
                           ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One SGD step of SGNS on the context side; returns what the centre side must add.

    ``h`` (B, d) are the centre vectors, ``contexts`` (B,) the positive context rows of ``out``,
    ``negatives`` (B / G, K) the negative rows shared by each group of G consecutive pairs. With
    ``out_bias`` and ``h_bias`` (B,), the logit gets both biases (matrix factorisation with biases).
    Updates ``out`` (and ``out_bias``) in place; returns ``(dh, dh_bias, loss)``: the centre vectors'
    and biases' step and the batch's mean loss ``-log s(pos) - sum log s(-neg)``.
    """
    batch, dim = h.shape
    groups, _ = negatives.shape
    grouped = h.view(groups, batch // groups, dim)
    u_pos, u_neg = out[contexts], out[negatives]  # (B, d), (groups, K, d)
    s_pos = (h * u_pos).sum(1)
    s_neg = torch.bmm(grouped, u_neg.transpose(1, 2))  # (groups, G, K)
    if out_bias is not None:
        s_pos = s_pos + out_bias[contexts] + h_bias
        s_neg = s_neg + out_bias[negatives][:, None, :] + h_bias.view(groups, -1, 1)
    g_pos = (1.0 - torch.sigmoid(s_pos)) * lr
    g_neg = -torch.sigmoid(s_neg) * lr
    dh = g_pos[:, None] * u_pos + torch.bmm(g_neg, u_neg).view(batch, dim)
    out.index_add_(0, contexts, g_pos[:, None] * h)
    out.index_add_(0, negatives.reshape(-1), torch.bmm(g_neg.transpose(1, 2), grouped).reshape(-1, dim))
    if out_bias is not None:
        out_bias.index_add_(0, contexts, g_pos)
        out_bias.index_add_(0, negatives.reshape(-1), g_neg.sum(1).reshape(-1))
    loss = -(F.logsigmoid(s_pos).sum() + F.logsigmoid(-s_neg).sum()).item() / batch
    return dh, g_pos + g_neg.sum(2).reshape(batch), loss


def uniform_init(rows: int, dim: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(rows, dim, generator=generator) - 0.5) * (2 * scale)


class Trainable:
    """A model's parameters and its step: ``step(centres, contexts, negatives, lr) -> loss``.

    ``trained`` marks the items that get pairs; the validation curve scores the others with the
    fallback, as the saved model will. The parameters are the instance's tensor attributes:
    ``snapshot``/``restore`` copy them, so early stopping can keep the best epoch.
    """

    trained: np.ndarray | None = None

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {name: value.clone() for name, value in vars(self).items() if isinstance(value, torch.Tensor)}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            getattr(self, name).copy_(value)

    def step(self, centres: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor, lr: float) -> float:
        raise NotImplementedError

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Current scores of node pairs, for the validation curve."""
        raise NotImplementedError

    def fallback(self) -> float:
        """The score of a pair with an untrained item (0.0: two unrelated cosine vectors)."""
        return 0.0


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    validation_auc: float | None
    learning_rate: float
    pairs: int
    seconds: float
    best: bool = False  # the epoch whose parameters the model keeps (the last one, or the best under early stopping)


@dataclass
class Schedule:
    epochs: int
    alpha: float
    min_alpha: float
    negative: int
    batch_size: int
    group: int
    records: list[EpochRecord] = field(default_factory=list)


def train_pairs(model: Trainable, source: PairSource, negatives: UnigramNegatives, schedule: Schedule, seed: int,
                validation: Callable[[Trainable], float | None] | None = None, patience: int = 0,
                progress: Callable[[int, int], None] = no_progress) -> list[EpochRecord]:
    """Run ``schedule.epochs`` epochs of ``source``'s pairs through ``model.step``.

    The learning rate decays over the whole run; after each epoch the mean loss and, when given,
    ``validation(model)`` are recorded. One numpy generator seeded with ``seed`` draws everything, so
    the same seed gives the same updates. With ``patience`` > 0 and a validation AUC, training stops
    after ``patience`` epochs without a better AUC, and the best epoch's parameters are restored.
    """
    stopper = EarlyStopping(model, patience) if patience and validation else None
    rng = np.random.default_rng(seed)
    decay = LinearDecay(schedule.alpha, schedule.min_alpha)
    batch, group, records = schedule.batch_size, schedule.group, []
    started, done = time.perf_counter(), 0.0
    for epoch in range(schedule.epochs):
        loss_sum, pairs, lr = 0.0, 0, schedule.alpha
        for centres, contexts, work in source.epoch(rng):
            centres_t, contexts_t = torch.from_numpy(centres), torch.from_numpy(contexts)
            n_batches = math.ceil(len(centres) / batch)
            for i, lo in enumerate(range(0, len(centres), batch)):
                size = min(batch, len(centres) - lo)
                shared = group if size % group == 0 else 1
                drawn = torch.from_numpy(negatives.draw(rng, (size // shared, schedule.negative)))
                lr = decay.at((epoch + done + work * i / n_batches) / schedule.epochs)
                loss_sum += model.step(centres_t[lo:lo + size], contexts_t[lo:lo + size], drawn, lr) * size
                pairs += size
            done += work
        done = 0.0
        auc = validation(model) if validation else None
        records.append(EpochRecord(epoch + 1, loss_sum / max(pairs, 1), auc, lr, pairs,
                                   round(time.perf_counter() - started, 3)))
        log.info("%s: epoch %d/%d, %d pairs, loss %.4f, validation AUC %s, lr %.5f", type(model).__name__, epoch + 1,
                 schedule.epochs, pairs, records[-1].loss, "n/a" if auc is None else f"{auc:.4f}", lr)
        progress(epoch + 1, schedule.epochs)
        if stopper is not None and stopper.should_stop(epoch + 1, auc):
            log.info("%s: no better validation AUC for %d epoch(s): stopping, keeping epoch %d", type(model).__name__,
                     patience, stopper.best_epoch)
            break
    best = (stopper.finish() if stopper is not None else None) or len(records)
    if records:
        records[best - 1].best = True
    return records


class EarlyStopping:
    """Keeps a copy of the parameters of the epoch with the best validation AUC so far."""

    def __init__(self, model: Trainable, patience: int):
        self.model, self.patience = model, patience
        self.best_auc, self.best_epoch, self.state = -math.inf, 0, None

    def should_stop(self, epoch: int, auc: float | None) -> bool:
        if auc is not None and not math.isnan(auc) and auc > self.best_auc:
            self.best_auc, self.best_epoch, self.state = auc, epoch, self.model.snapshot()
        return self.best_epoch > 0 and epoch - self.best_epoch >= self.patience

    def finish(self) -> int | None:
        """Restore the best epoch's parameters and return its number; None when no epoch had an AUC."""
        if self.state is None:
            return None
        self.model.restore(self.state)
        return self.best_epoch


def schedule_of(params, n_items: int) -> Schedule:
    """The training schedule of a parameter block; a batch never exceeds the items that train, so a
    small catalogue is not updated from stale vectors many times over within one batch."""
    batch = max(params.negatives_shared_by, min(params.batch_size, n_items))
    batch -= batch % params.negatives_shared_by
    return Schedule(params.epochs, params.alpha, params.min_alpha, params.negative, batch, params.negatives_shared_by)


class torch_threads:
    """Run torch on ``threads`` intra-op threads, restoring the setting afterwards."""

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(max(1, self.threads))

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)
