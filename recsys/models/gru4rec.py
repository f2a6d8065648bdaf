"""GRU4Rec: a session-based next-item model, a GRU over the items of a session.

Hidasi, Karatzoglou, Baltrunas & Tikk 2016, "Session-based Recommendations with Recurrent Neural
Networks" (https://arxiv.org/abs/1511.06939), with the losses and sampling of Hidasi & Karatzoglou 2018,
"Recurrent Neural Networks with Top-k Gains for Session-based Recommendations"
(https://arxiv.org/abs/1706.03847); settings and defaults follow the authors' official PyTorch code
(``GRU4RecParams``).

- **Network.** The item ``x_t`` of a session enters as an embedding ``e(x_t)``: the output item
  embeddings ``W_y`` (``constrained_embedding``, default), a separate table of width ``embedding``, or
  one-hot (``embedding = 0``, unconstrained), where one-hot @ input weights is a row lookup in an
  ``(n_items, 3 x units)`` table. Each GRU layer (``layers``) updates its state as in the 2016 paper:
  ``r = sigma(W_r x + U_r h)``, ``z = sigma(W_z x + U_z h)``, ``h~ = tanh(W x + U (r * h))``,
  ``h' = (1 - z) h + z h~`` (one bias per gate on the input side); the next layer reads ``h'``.
- **Scores.** ``r_i = h_top . W_y[i] + b_y[i]``: over all items when serving, over the sampled outputs
  when training.
- **Session-parallel mini-batches** (2016, Figure 2; ``session_parallel_batches``): slot ``k`` of a
  batch of ``batch_size`` holds one session; each step feeds every slot's current item and predicts its
  next one; a slot whose session ends takes the next unused session (in ``inputs.sequences`` order, by
  start) and its hidden state is reset to zero. Sessions shorter than 2 give no step and are skipped.
  When no session is left for a slot the batch shrinks (the official behaviour) until all sessions are
  done; with ``n_sample = 0`` training stops once fewer than 2 slots are left (as official). The hidden
  state is carried between steps but detached: back-propagation goes through one step (as official).
- **Sampled outputs** (2018): the outputs of a step are the batch's targets plus ``n_sample`` items drawn
  (shared by the batch) with probability ``∝ count^sample_alpha``, from a seeded cache. Row ``i`` of the
  score matrix ``O`` (n x (n + n_sample)) has its target in column ``i``; every other column is a negative
  (another row's target equal to the row's own counts as a negative too, as official).
- **Losses** (summed over rows, divided by ``batch_size``, as official):
  cross-entropy ``-log softmax(O_i)_i`` (with ``logq > 0``: ``O_ij - logq log p_j`` first, ``p_j`` the
  target's count or the sample's count^sample_alpha, as official);
  BPR-max ``-log sum_j s_ij sigma(r_i - r_j) + bpreg sum_j s_ij r_j^2``;
  TOP1-max ``sum_j s_ij (sigma(r_j - r_i) + sigma(r_j^2))``,
  ``s_ij`` the softmax of the row's scores over its negatives ``j != i``. With ``elu_param > 0`` the two
  ranking losses see ``ELU(O)`` (official: bpr-max).
- **Optimiser**: Adagrad with momentum (official): ``a += g^2; m = momentum m - lr g / sqrt(a + 1e-6);
  w += m``; embedding tables get sparse gradients, and only their touched rows are updated.
- **Dropout** (training only): ``dropout_p_embed`` on the input embedding (one-hot input: on the first
  layer's output, which then plays the embedding's part), ``dropout_p_hidden`` on every other layer's
  output; the dropped state is the one carried to the next step (as official).

Deviations from the official code: all layers use the paper's GRU cell above (official uses it for the
one-hot first layer only and ``torch.nn.GRUCell`` for the others); sessions shorter than 2 are removed
before batching rather than each skipped in its slot; a run with fewer sessions than ``batch_size``
starts with fewer slots (official fails); the output scores of items never seen in a training sequence
are ``-inf`` (the model cannot recommend them; their vectors are untrained); negatives are drawn only
among items seen in training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from recsys.catalog import build_catalog
from recsys.models.base import SequenceModel, TrainingInputs, no_progress, read_meta, write_meta
from recsys.models.negative_sampling import torch_threads
from recsys.models.params import GRU4RecParams
from recsys.transition import TransitionTable

log = logging.getLogger(__name__)

ADAGRAD_EPS = 1e-6  # inside the square root, as official
SAMPLE_CACHE = 1 << 20  # negative samples drawn at once (official: a cache of 10M)


# -- session-parallel mini-batches ----------------------------------------------------------------

@dataclass(frozen=True)
class SessionStep:
    """One step of session-parallel training: row ``k`` is one active slot."""

    inputs: np.ndarray  # (n,) int64 positions (into the items array) of each row's current item
    targets: np.ndarray  # (n,) int64 positions of the item that follows it in the same session
    sessions: np.ndarray  # (n,) int64 the sequence each row holds
    slots: np.ndarray  # (n,) int64 the slot (0 .. batch_size - 1) of each row
    carry: np.ndarray  # (n,) int64 the row of the previous step whose hidden state each row continues
    reset: np.ndarray  # (n,) bool: the row's session starts here, so its hidden state is reset to zero


def session_parallel_batches(offsets: np.ndarray, batch_size: int) -> Iterator[SessionStep]:
    """The steps of one epoch of session-parallel mini-batches over sequences ``offsets`` (n + 1 bounds).

    Sequences are taken in their order; those shorter than 2 are skipped. Slots whose session ends take
    the next sequence, in slot order; when none is left the slot is dropped (the batch shrinks, later
    rows keep their order and ``carry`` says where each row's state was)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    queue = np.flatnonzero(np.diff(offsets) >= 2)
    n = min(batch_size, len(queue))
    if n == 0:
        return
    sessions, taken = queue[:n].copy(), n
    slots = np.arange(n, dtype=np.int64)
    position, end = offsets[sessions].copy(), offsets[sessions + 1].copy()
    carry, reset = np.arange(n, dtype=np.int64), np.ones(n, bool)
    while True:
        yield SessionStep(position.copy(), position + 1, sessions.copy(), slots.copy(), carry, reset)
        position = position + 1
        done = np.flatnonzero(position + 1 >= end)  # no next item to predict: the session has ended
        reset = np.zeros(len(position), bool)
        carry = np.arange(len(position), dtype=np.int64)
        if not len(done):
            continue
        refill = done[:len(queue) - taken]
        fresh = queue[taken:taken + len(refill)]
        taken += len(refill)
        sessions[refill], position[refill], end[refill] = fresh, offsets[fresh], offsets[fresh + 1]
        reset[refill] = True
        if len(refill) < len(done):  # sessions ran out: drop the slots left empty
            keep = np.ones(len(position), bool)
            keep[done[len(refill):]] = False
            if not keep.any():
                return
            carry = np.flatnonzero(keep)
            sessions, slots, position, end, reset = sessions[keep], slots[keep], position[keep], end[keep], reset[keep]


class NegativeSampler:
    """Batches of ``n_sample`` items drawn with probability ``∝ counts^alpha`` (items with a count only),
    pre-generated ``SAMPLE_CACHE`` at a time from ``rng``."""

    def __init__(self, counts: np.ndarray, alpha: float, n_sample: int, rng: np.random.Generator, device: str = "cpu"):
        weights = np.where(counts > 0, np.power(counts.astype(np.float64), alpha), 0.0)
        self.cdf = np.cumsum(weights)
        self.n_sample, self.rng, self.device = n_sample, rng, device
        self.rows = max(1, SAMPLE_CACHE // max(n_sample, 1))
        self.cache, self.next_row = None, self.rows

    def __call__(self) -> torch.Tensor:
        if self.next_row >= self.rows:
            u = self.rng.random((self.rows, self.n_sample)) * self.cdf[-1]
            drawn = np.minimum(np.searchsorted(self.cdf, u, side="right"), len(self.cdf) - 1)
            self.cache, self.next_row = torch.from_numpy(drawn.astype(np.int64)).to(self.device), 0
        self.next_row += 1
        return self.cache[self.next_row - 1]


# -- losses over a sampled score matrix (row i's target in column i) -------------------------------

def _negative_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax of each row's scores over its negatives (every column but the row's own target)."""
    n = scores.shape[0]
    diagonal = torch.zeros_like(scores, dtype=torch.bool)
    diagonal[torch.arange(n), torch.arange(n)] = True
    return torch.softmax(scores.masked_fill(diagonal, float("-inf")), dim=1)


def cross_entropy_loss(scores: torch.Tensor) -> torch.Tensor:
    """Per row: ``-log softmax(scores_i)_i``: shape ``(n,)``."""
    return -torch.log_softmax(scores, dim=1).diagonal()


def bpr_max_loss(scores: torch.Tensor, bpreg: float) -> torch.Tensor:
    """Per row: ``-log sum_j s_ij sigma(r_i - r_j) + bpreg sum_j s_ij r_j^2`` (2018 paper, eq. 7 with its
    score regularisation), ``s`` the softmax over the negatives."""
    weights = _negative_softmax(scores)
    target = scores.diagonal().unsqueeze(1)
    ranking = -torch.log((weights * torch.sigmoid(target - scores)).sum(1) + 1e-24)
    return ranking + bpreg * (weights * scores.square()).sum(1)


def top1_max_loss(scores: torch.Tensor) -> torch.Tensor:
    """Per row: ``sum_j s_ij (sigma(r_j - r_i) + sigma(r_j^2))`` (2018 paper, eq. 5)."""
    weights = _negative_softmax(scores)
    target = scores.diagonal().unsqueeze(1)
    return (weights * (torch.sigmoid(scores - target) + torch.sigmoid(scores.square()))).sum(1)


def sampled_loss(scores: torch.Tensor, params: GRU4RecParams) -> torch.Tensor:
    """The configured loss per row of a sampled score matrix (ELU first for the ranking losses)."""
    if params.loss == "cross-entropy":
        return cross_entropy_loss(scores)
    if params.elu_param > 0:
        scores = F.elu(scores, params.elu_param)
    return bpr_max_loss(scores, params.bpreg) if params.loss == "bpr-max" else top1_max_loss(scores)


# -- the network -----------------------------------------------------------------------------------

class GRU4RecNet(nn.Module):
    """Item input, stacked GRU layers (the paper's cell), item output embeddings and biases."""

    def __init__(self, n_items: int, params: GRU4RecParams):
        super().__init__()
        layers = list(params.layers)
        self.params, self.n_items = params, n_items
        self.one_hot = not params.constrained_embedding and params.embedding == 0
        self.Wy = nn.Parameter(torch.zeros(n_items, layers[-1]))  # output item embeddings
        self.By = nn.Parameter(torch.zeros(n_items, 1))  # output item biases (a table: sparse gradients)
        self.E = nn.Parameter(torch.zeros(n_items, params.embedding)) \
            if not params.constrained_embedding and params.embedding else None
        width = layers[-1] if params.constrained_embedding else (params.embedding or n_items)
        self.w_in, self.w_rz, self.w_h, self.bias = (nn.ParameterList() for _ in range(4))
        for units in layers:
            self.w_in.append(nn.Parameter(torch.zeros(width, 3 * units)))  # (in, [candidate | reset | update])
            self.w_rz.append(nn.Parameter(torch.zeros(units, 2 * units)))
            self.w_h.append(nn.Parameter(torch.zeros(units, units)))
            self.bias.append(nn.Parameter(torch.zeros(3 * units)))
            width = units

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Glorot-uniform per gate block (official), or normal(0, init_std); biases zero."""
        std = self.params.init_std

        def fill(weight: torch.Tensor, blocks: int) -> None:
            for block in weight.chunk(blocks, dim=1):
                if std > 0:
                    block.normal_(0.0, std, generator=generator)
                else:
                    bound = float(np.sqrt(6.0 / (block.shape[0] + block.shape[1])))
                    block.uniform_(-bound, bound, generator=generator)

        with torch.no_grad():
            fill(self.Wy, 1)
            if self.E is not None:
                fill(self.E, 1)
            for i in range(len(self.w_in)):
                fill(self.w_in[i], 3)
                fill(self.w_rz[i], 2)
                fill(self.w_h[i], 1)
            for p in [self.By, *self.bias]:
                p.zero_()

    def step(self, items: torch.Tensor, hidden: list[torch.Tensor],
             dropout: Callable[[torch.Tensor, float], torch.Tensor] | None = None) -> list[torch.Tensor]:
        """One event per row: the new hidden state of each layer (the last one is the scoring state)."""
        p_embed, p_hidden = self.params.dropout_p_embed, self.params.dropout_p_hidden
        x = None
        if not self.one_hot:
            x = F.embedding(items, self.Wy if self.E is None else self.E, sparse=True)
            if dropout is not None:
                x = dropout(x, p_embed)
        new = []
        for i, h in enumerate(hidden):
            projected = (F.embedding(items, self.w_in[i], sparse=True) if x is None else x @ self.w_in[i]) + self.bias[i]
            candidate_x, reset_x, update_x = projected.chunk(3, dim=1)
            reset_h, update_h = (h @ self.w_rz[i]).chunk(2, dim=1)
            r, z = torch.sigmoid(reset_x + reset_h), torch.sigmoid(update_x + update_h)
            h = (1 - z) * h + z * torch.tanh(candidate_x + (r * h) @ self.w_h[i])
            if dropout is not None:
                h = dropout(h, p_embed if self.one_hot and i == 0 else p_hidden)
            new.append(h)
            x = h
        return new

    def sampled_scores(self, state: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """Scores of each row's state over the output items: ``state @ W_y[outputs].T + b_y[outputs]``."""
        weights = F.embedding(outputs, self.Wy, sparse=True)
        bias = F.embedding(outputs, self.By, sparse=True).squeeze(1)
        return state @ weights.T + bias


class AdagradMomentum:
    """Adagrad with momentum as the official code: dense gradients update every entry, sparse ones
    (embedding tables) only the rows they touch."""

    def __init__(self, parameters: list[nn.Parameter], lr: float, momentum: float):
        self.parameters, self.lr, self.momentum = parameters, lr, momentum
        self.acc = [torch.zeros_like(p) for p in parameters]
        self.mom = [torch.zeros_like(p) for p in parameters] if momentum > 0 else None

    @torch.no_grad()
    def step(self) -> None:
        for k, p in enumerate(self.parameters):
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                grad = p.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                acc = self.acc[k][rows] + values.square()
                self.acc[k][rows] = acc
                update = -self.lr * values / (acc + ADAGRAD_EPS).sqrt()
                if self.mom is not None:
                    update = update + self.momentum * self.mom[k][rows]
                    self.mom[k][rows] = update
                p.index_add_(0, rows, update)
            else:
                self.acc[k].add_(p.grad.square())
                update = -self.lr * p.grad / (self.acc[k] + ADAGRAD_EPS).sqrt()
                if self.mom is not None:
                    update = self.mom[k].mul_(self.momentum).add_(update)
                p.add_(update)

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None


def _dropout(generator: torch.Generator) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """Inverted dropout drawn from ``generator`` (deterministic per seed)."""

    def drop(x: torch.Tensor, p: float) -> torch.Tensor:
        if p <= 0:
            return x
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
        return x * keep / (1.0 - p)

    return drop


def train_gru4rec(net: GRU4RecNet, items: np.ndarray, offsets: np.ndarray, params: GRU4RecParams, seed: int,
                  device: str = "cpu", progress: Callable[[int, int], None] = no_progress) -> list[dict]:
    """Train ``net`` in place on the sequences ``items[offsets[s]:offsets[s + 1]]``; one record per epoch."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    counts = np.bincount(items, minlength=net.n_items)
    sampler = NegativeSampler(counts, params.sample_alpha, params.n_sample, rng, device) if params.n_sample else None
    log_counts = torch.from_numpy(np.log(np.maximum(counts, 1)).astype(np.float32)).to(device)
    items_t = torch.from_numpy(np.asarray(items, dtype=np.int64)).to(device)
    optimizer = AdagradMomentum(list(net.parameters()), params.learning_rate, params.momentum)
    drop = _dropout(generator)
    records = []
    net.train()
    for epoch in range(params.n_epochs):
        start, cpu_start = time.perf_counter(), time.process_time()
        hidden = [torch.zeros(params.batch_size, units, device=device) for units in params.layers]
        total, events, steps = torch.zeros((), device=device), 0, 0
        for step in session_parallel_batches(offsets, params.batch_size):
            n = len(step.inputs)
            if sampler is None and n < 2:
                break  # the targets alone are the outputs: one row has no negative (official stops here)
            if n != hidden[0].shape[0]:
                carry = torch.from_numpy(step.carry).to(device)
                hidden = [h[carry] for h in hidden]
            if step.reset.any():
                reset = torch.from_numpy(step.reset).to(device).unsqueeze(1)
                hidden = [h.masked_fill(reset, 0.0) for h in hidden]
            inputs = items_t[torch.from_numpy(step.inputs).to(device)]
            targets = items_t[torch.from_numpy(step.targets).to(device)]
            outputs = targets if sampler is None else torch.cat([targets, sampler()])
            hidden = net.step(inputs, hidden, drop)
            scores = net.sampled_scores(hidden[-1], outputs)  # (n, n + n_sample)
            if params.logq > 0 and params.loss == "cross-entropy":
                scale = torch.ones(len(outputs), device=device)
                scale[n:] = params.sample_alpha
                scores = scores - params.logq * scale * log_counts[outputs]
            losses = sampled_loss(scores, params)
            optimizer.zero_grad()
            (losses.sum() / params.batch_size).backward()
            optimizer.step()
            hidden = [h.detach() for h in hidden]
            total += losses.detach().sum()
            events += n
            steps += 1
        loss = float(total) / max(events, 1)
        if not np.isfinite(loss):
            raise FloatingPointError(f"GRU4Rec: the loss became {loss} in epoch {epoch + 1}; lower learning_rate")
        records.append({"epoch": epoch + 1, "loss": round(loss, 6), "events": events, "steps": steps,
                        "seconds": round(time.perf_counter() - start, 3),
                        "cpu_seconds": round(time.process_time() - cpu_start, 3)})
        log.info("GRU4Rec epoch %d/%d: loss %.4f over %d events, %.1fs", epoch + 1, params.n_epochs, loss, events,
                 records[-1]["seconds"])
        progress(epoch + 1, params.n_epochs)
    net.eval()
    return records


# -- the model -------------------------------------------------------------------------------------

class GRU4RecModel(SequenceModel):
    name = "gru4rec"

    def __init__(self, net: GRU4RecNet, known: np.ndarray, meta: dict, recommend_seen: bool = True):
        self.net = net.eval()
        self.n_items = net.n_items
        self.known = np.asarray(known, dtype=np.int64)
        self.unknown = torch.ones(self.n_items, dtype=torch.bool)
        self.unknown[torch.from_numpy(self.known)] = False
        self.meta, self.recommend_seen = meta, recommend_seen

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: GRU4RecParams) -> "GRU4RecModel":
        sequences = inputs.sequences
        if sequences is None or not len(sequences) or not len(sequences.items):
            raise ValueError("gru4rec trains on sessions, but inputs.sequences is None or empty")
        if not (np.diff(sequences.offsets) >= 2).any():
            raise ValueError("gru4rec needs at least one training sequence of 2 or more items")
        n_items = len(inputs.catalog.item_ids)
        if sequences.items.min() < 0 or sequences.items.max() >= n_items:
            raise ValueError(f"sequence items must be catalogue indices in [0, {n_items})")
        with torch_threads(inputs.threads):
            net = GRU4RecNet(n_items, params)
            net.reset_parameters(torch.Generator().manual_seed(inputs.seed))
            net = net.to(inputs.device)
            curve = train_gru4rec(net, sequences.items, sequences.offsets, params, inputs.seed, inputs.device,
                                  inputs.progress)
        seconds = [r["seconds"] for r in curve]
        meta = {"params": params.model_dump(mode="json"), "seed": inputs.seed, "threads": inputs.threads,
                "n_items": n_items, "n_sequences": len(sequences), "epochs": len(curve), "curve": curve,
                "seconds_per_epoch": round(float(np.mean(seconds)), 3)}
        model = cls(net.cpu(), np.unique(sequences.items), meta, params.recommend_seen)
        return model.bind(inputs)

    def known_items(self) -> np.ndarray:
        return self.known

    @torch.no_grad()
    def _states(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        """The last layer's state after each position of each sequence: ``(len(items), layers[-1])``;
        sequences run together, longest first, each from a zero state."""
        items, offsets = np.asarray(items, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
        if len(items) and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(f"items must be catalogue indices in [0, {self.n_items})")
        lengths = np.diff(offsets)
        order = np.argsort(-lengths, kind="stable")
        first = offsets[order]
        items_t = torch.from_numpy(items)
        out = torch.zeros(len(items), self.net.params.layers[-1])
        hidden = [torch.zeros(int((lengths > 0).sum()), units) for units in self.net.params.layers]
        for t in range(int(lengths.max(initial=0))):
            active = int((lengths > t).sum())  # a prefix of ``order``
            positions = torch.from_numpy(first[:active] + t)
            hidden = self.net.step(items_t[positions], [h[:active] for h in hidden])
            out[positions] = hidden[-1]
        return out

    @torch.no_grad()
    def _scores(self, states: torch.Tensor) -> np.ndarray:
        scores = states @ self.net.Wy.T + self.net.By.T
        return scores.masked_fill(self.unknown, float("-inf")).numpy().astype(np.float32, copy=False)

    def position_scores(self, items: np.ndarray, offsets: np.ndarray, users: np.ndarray | None = None) -> np.ndarray:
        return self._scores(self._states(items, offsets))

    def last_scores(self, items: np.ndarray, offsets: np.ndarray, users: np.ndarray | None = None) -> np.ndarray:
        offsets = np.asarray(offsets, dtype=np.int64)
        return self._scores(self._states(items, offsets)[torch.from_numpy(offsets[1:] - 1)])

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {name: p.detach().cpu().numpy() for name, p in self.net.named_parameters()}
        np.savez(folder / "weights.npz", known=self.known, **arrays)
        write_meta(folder, **{**self.meta, "name": self.name, "recommend_seen": self.recommend_seen})

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "GRU4RecModel":
        meta = read_meta(folder)
        params = GRU4RecParams(**meta["params"])
        net = GRU4RecNet(int(meta["n_items"]), params)
        with np.load(folder / "weights.npz", allow_pickle=False) as weights:
            known = weights["known"]
            with torch.no_grad():
                for name, p in net.named_parameters():
                    p.copy_(torch.from_numpy(weights[name]))
        meta.pop("name", None)
        recommend_seen = bool(meta.pop("recommend_seen", params.recommend_seen))
        return cls(net, known, meta, recommend_seen).bind(inputs)


def inputs_for_sequences(sequences, n_items: int, seed: int = 0, threads: int = 1, device: str = "cpu") -> TrainingInputs:
    """A minimal ``TrainingInputs`` for sequence models outside the pipeline (tests, benchmarks): catalogue
    items ``"0" .. str(n_items - 1)``, an item graph without edges, event counts from ``sequences``."""
    ids = np.asarray([str(i) for i in range(n_items)], dtype=object)
    empty = np.zeros(0, dtype=np.int64)
    table = TransitionTable.from_edges(ids, empty, empty, np.zeros(0, np.float32))
    counts = np.bincount(sequences.items, minlength=n_items)[:n_items].astype(np.int64)
    stats = pa.table({"item_id": ids.tolist(), "events": counts, "users": counts, "purchases": np.zeros(n_items, np.int64)})
    return TrainingInputs(table=table, catalog=build_catalog(table, None), item_stats=stats, seed=seed, threads=threads,
                          device=device, sequences=sequences)
