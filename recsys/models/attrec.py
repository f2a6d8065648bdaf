"""AttRec: self-attention over the last items for short-term intent, metric learning for long-term preference.

Zhang, Tay, Yao & Sun 2018, "Next Item Recommendation with Self-Attention" (AttRec,
https://arxiv.org/abs/1808.06414), with the settings of the authors' TensorFlow code
(``cheungdaven/DeepRec``, ``models/seq_rec/AttRec.py``) where the paper leaves them open.

Three embedding tables of width ``dim``: users ``U`` (long-term), items ``V`` (long-term) and items ``X``
(short-term: the inputs of the attention and the targets of the short-term distance).

- Short-term intent of a user at time ``t`` from the last ``L`` items ``X_t`` (``(L, dim)``): the
  sinusoidal time signal ``TE`` of the Transformer (position ``l`` of the window, the newest item at
  ``L - 1``) is added to queries and keys only; both go through one shared transform
  ``Q' = K' = ReLU((X_t + TE) W)`` (no bias); the affinity ``softmax(Q' K'^T / sqrt(dim))`` has its
  diagonal masked before the softmax (an item matching itself says nothing); the values are the raw
  embeddings ``X_t``; ``m_u`` is the mean of the ``L`` attended outputs.
- Score of item ``i`` (a distance: lower is better)
  ``y(u, i) = omega * |U_u - V_i|^2 + (1 - omega) * |m_u - X_i|^2``. ``position_scores`` returns ``-y``
  so that higher is better, as every model here.
- Loss of a training example (user, ``L`` inputs, the next ``T`` items as targets, ``negatives`` items
  drawn uniformly for each target among the items that are not one of its targets, as the authors'
  code draws them): ``sum_{targets i} sum_{its negatives j} max(0, margin + y(u, i) - y(u, j))``
  (``hinge_loss``), averaged over the batch, plus ``l2`` times the mean over the batch of the squared
  norms of the embedding rows the example touches (its user, its inputs, its targets' and negatives'
  ``V`` and ``X`` rows); Adam.
- Training examples: each user's sequence (``Sequences.by_user``: the user's sessions, in time order)
  cut after every position ``e`` (``1 <= e < n``): the last up-to-``L`` items before the cut are the
  inputs, the next up-to-``T`` items the targets. Epochs visit the examples in a new random order.

Deviations, each deliberate:

- Windows shorter than ``L`` (the first ``L - 1`` cuts of a sequence) are left-padded with a padding
  index that the attention masks out entirely: no query or key on a pad, the mean taken over the real
  items only. The authors pad with item 0 and do not mask; they train only on full ``L + T`` windows
  (plus one padded window for a user shorter than that). Cutting at every position trains the model
  on the same prefixes ``position_scores`` is asked about (a short session's first items too); targets
  past the end of a sequence are masked out of the loss.
- A window holding a single real item cannot mask its diagonal (nothing else to attend to): its one
  query attends to itself, so ``m_u`` is that item's embedding.
- L2 on the rows a batch touches rather than the authors' L2 on whole tables; no L2 on ``W`` (the
  authors put 0.01 on it); Adam as the paper, where the code uses Adagrad.
- No norm clipping (the authors' code defines it but never runs it), no dropout (their code's last
  version has it commented out).

Scoring (``position_scores``): for each position, the last up-to-``L`` items of the prefix ending there
(only items up to the position: no row sees a later item) and, when ``users`` gives a user seen in
training, ``U_u``. A user unknown to the model (or ``users=None``: the item-to-item continuation of a
one-item sequence) is scored by the short-term part alone, ``-|m_u - X_i|^2``: dropping the long-term
term ranks items by the only evidence there is, whereas a mean user vector would add a popularity-like
bias the training never asked for. Distances to all items are one block of matrix products per call,
``|m|^2 - 2 m X^T + |X|^2``; never a users x items or items x items matrix. An item of the catalogue that no
training sequence holds scores ``-inf`` (as GRU4Rec's): its vectors were only ever pushed away as a negative.

On MovieLens 100K, leave-last-out, 30 epochs with these defaults, HR@50 0.5175 and MRR 0.1105 (the
authors' code on their split: 0.5313 and 0.0911); ``benchmarks/reproduce_attrec.py`` has the command.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recsys.models.base import SequenceModel, TrainingInputs, read_meta, write_meta
from recsys.models.negative_sampling import torch_threads
from recsys.models.params import AttRecParams
from recsys.sequences import Sequences

log = logging.getLogger(__name__)


# -- pure functions: the pieces the paper writes as equations ---------------------------------------------

def timing_signal(length: int, dim: int) -> torch.Tensor:
    """The Transformer's sinusoids ``(length, dim)``: ``dim // 2`` geometric timescales from 1 to 1e4,
    ``sin`` in the first half of the channels and ``cos`` in the second (a zero channel when ``dim`` is odd)."""
    n = dim // 2
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (length, 1)
    increment = math.log(1.0e4) / max(n - 1, 1)
    inverse = torch.exp(torch.arange(n, dtype=torch.float32) * -increment)[None, :]  # (1, n)
    scaled = position * inverse  # (length, n)
    return F.pad(torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1), (0, dim % 2))


def attention_weights(queries: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor,
                      mask_diagonal: bool = True) -> torch.Tensor:
    """Self-attention weights ``(B, L, L)`` of transformed queries and keys (each ``(B, L, d)``).

    ``valid`` (``(B, L)`` bool) marks the real items of each window; a padded key gets weight 0 in every
    row and a padded query a row of zeros. With ``mask_diagonal`` no query attends to its own key (the
    paper's mask) unless it is the window's only real item. Each real query's row sums to 1."""
    length = queries.shape[1]
    logits = queries @ keys.transpose(1, 2) / math.sqrt(queries.shape[-1])  # (B, L, L)
    allowed = valid[:, None, :] & valid[:, :, None]  # (B, L, L): both ends real
    if mask_diagonal:
        off_diagonal = allowed & ~torch.eye(length, dtype=torch.bool, device=queries.device)
        alone = ~off_diagonal.any(dim=2, keepdim=True)  # a real query with no other real key keeps itself
        allowed = off_diagonal | (allowed & alone)
    weights = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=2)
    return torch.where(allowed, weights, torch.zeros((), dtype=weights.dtype, device=weights.device))  # pad rows: 0, not NaN


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|a_p - b_i|^2`` for every row ``p`` of ``a`` ``(P, d)`` and ``i`` of ``b`` ``(N, d)``: ``(P, N)``, clamped at 0."""
    return (a.square().sum(1, keepdim=True) - 2.0 * a @ b.T + b.square().sum(1)[None, :]).clamp_min_(0.0)


def hinge_loss(positive: torch.Tensor, negative: torch.Tensor, target_mask: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over the batch of ``sum_t sum_k max(0, margin + positive[b, t] - negative[b, t, k])``.

    ``positive`` ``(B, T)`` and ``negative`` ``(B, T, K)`` are distances (lower = better); targets where
    ``target_mask`` ``(B, T)`` is False (past the end of a sequence) count nothing."""
    hinge = F.relu(margin + positive[:, :, None] - negative)  # (B, T, K)
    return (hinge * target_mask[:, :, None]).sum() / positive.shape[0]


# -- the network ---------------------------------------------------------------------------------------------

class AttRec(torch.nn.Module):
    """The three embedding tables and the shared query/key transform; ``X`` has one extra row, the padding."""

    def __init__(self, n_users: int, n_items: int, dim: int, window: int, init_std: float, generator: torch.Generator):
        super().__init__()
        self.n_items, self.window = n_items, window
        self.users = torch.nn.Parameter(torch.randn(n_users, dim, generator=generator) * init_std)  # U
        self.long = torch.nn.Parameter(torch.randn(n_items, dim, generator=generator) * init_std)  # V
        short = torch.randn(n_items + 1, dim, generator=generator) * init_std
        short[n_items] = 0.0
        self.short = torch.nn.Parameter(short)  # X; row n_items is the padding
        bound = math.sqrt(6.0 / (2 * dim))  # Xavier uniform, as the authors' dense layer
        self.project = torch.nn.Parameter((torch.rand(dim, dim, generator=generator) * 2 - 1) * bound)  # W
        self.register_buffer("signal", timing_signal(window, dim))  # (L, dim)

    @property
    def pad(self) -> int:
        return self.n_items

    def intent(self, windows: torch.Tensor) -> torch.Tensor:
        """Short-term intent ``m`` ``(B, dim)`` of left-padded windows ``(B, L)`` (pad = ``n_items``)."""
        valid = windows != self.pad  # (B, L)
        values = self.short[windows]  # (B, L, dim): the raw embeddings
        transformed = F.relu((values + self.signal[None]) @ self.project)  # (B, L, dim): queries = keys
        weights = attention_weights(transformed, transformed, valid)  # (B, L, L)
        attended = weights @ values  # (B, L, dim); pad rows are 0
        return attended.sum(1) / valid.sum(1, keepdim=True).clamp_min(1)

    def distances(self, users: torch.Tensor, intent: torch.Tensor, items: torch.Tensor, omega: float) -> torch.Tensor:
        """``y`` of each example's user ``(B,)`` and intent ``(B, dim)`` to its items ``(B, ...)``: shape of ``items``."""
        shape = (-1,) + (1,) * (items.dim() - 1) + (intent.shape[1],)
        long = (self.users[users].view(shape) - self.long[items]).square().sum(-1)
        short = (intent.view(shape) - self.short[items]).square().sum(-1)
        return omega * long + (1.0 - omega) * short


# -- training examples -----------------------------------------------------------------------------------------

def training_windows(sequences: Sequences, window: int, targets: int, pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cut of every sequence: ``(owner (E,), inputs (E, window), targets (E, targets))``.

    A sequence of length ``n`` is cut after each position ``e`` in ``1 .. n - 1``; the inputs are its last
    ``window`` items before the cut (left-padded with ``pad``), the targets the next ``targets`` items
    (right-padded with -1 past the sequence's end). ``owner`` is the index of the sequence."""
    lengths = sequences.lengths
    cuts_per = np.maximum(lengths - 1, 0)
    owner = np.repeat(np.arange(len(sequences)), cuts_per)
    first = np.repeat(sequences.offsets[:-1], cuts_per)
    end = np.repeat(sequences.offsets[1:], cuts_per)
    cut = first + 1 + np.arange(cuts_per.sum()) - np.repeat(np.r_[0, np.cumsum(cuts_per)[:-1]], cuts_per)  # items[first:cut] is the prefix
    before = cut[:, None] - window + np.arange(window)[None, :]  # (E, L)
    inputs = np.where(before >= first[:, None], sequences.items[np.maximum(before, 0)], pad)
    after = cut[:, None] + np.arange(targets)[None, :]  # (E, T)
    goals = np.where(after < end[:, None], sequences.items[np.minimum(after, len(sequences.items) - 1)], -1)
    return owner.astype(np.int64), inputs.astype(np.int64), goals.astype(np.int64)


def prefix_windows(items: np.ndarray, offsets: np.ndarray, window: int, pad: int) -> np.ndarray:
    """For every position ``p`` of ``items``, the last ``window`` items of its sequence up to and including
    ``p``, left-padded with ``pad``: ``(len(items), window)``, the newest in the last column."""
    lengths = np.diff(offsets)
    first = np.repeat(offsets[:-1], lengths)  # (P,): start of each position's sequence
    positions = np.arange(len(items))
    before = positions[:, None] - window + 1 + np.arange(window)[None, :]
    return np.where(before >= first[:, None], items[np.maximum(before, 0)], pad).astype(np.int64)


def _last_windows(items: np.ndarray, offsets: np.ndarray, window: int, pad: int) -> np.ndarray:
    """``prefix_windows`` of only the last position of each (non-empty) sequence: ``(n_sequences, window)``."""
    last = offsets[1:] - 1
    before = last[:, None] - window + 1 + np.arange(window)[None, :]
    return np.where(before >= offsets[:-1, None], items[np.maximum(before, 0)], pad).astype(np.int64)


def draw_negatives(goals: np.ndarray, n_items: int, k: int, rng: np.random.Generator, tries: int = 20) -> np.ndarray:
    """``(E, T, k)`` items drawn uniformly, none equal to one of its example's targets (redrawn up to ``tries``
    times; with a catalogue hardly larger than ``T`` a leftover clash is kept)."""
    negatives = rng.integers(0, n_items, size=goals.shape + (k,))
    for _ in range(tries):
        clash = (negatives[:, :, :, None] == goals[:, None, None, :]).any(axis=3)
        if not clash.any():
            break
        negatives[clash] = rng.integers(0, n_items, size=int(clash.sum()))
    return negatives


# -- the model ---------------------------------------------------------------------------------------------------

class AttRecModel(SequenceModel):
    name = "attrec"

    def __init__(self, net: AttRec, user_ids: np.ndarray, known: np.ndarray, params: AttRecParams, meta: dict,
                 device: str = "cpu"):
        self.net = net.to(device).eval()
        self.device = device
        self.params = params
        self.n_items = net.n_items
        self.recommend_seen = params.recommend_seen
        self.trained_users = np.asarray(user_ids, dtype=object)  # row of U -> user id (``user_ids`` is the run's matrix's)
        self._user_index = {str(u): i for i, u in enumerate(self.trained_users.tolist())}
        self._known = np.asarray(known, dtype=np.int64)
        self._unknown = np.ones(self.n_items, bool)
        self._unknown[self._known] = False
        self.meta = meta

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: AttRecParams) -> "AttRecModel":
        if inputs.sequences is None or not len(inputs.sequences) or not len(inputs.sequences.items):
            raise ValueError("attrec trains on sequences, but inputs.sequences is None or empty")
        n_items = len(inputs.catalog.item_ids)
        by_user = inputs.sequences.by_user()
        if (by_user.items < 0).any() or (by_user.items >= n_items).any():
            raise ValueError(f"attrec: sequence items must be catalogue indices in [0, {n_items})")
        users = by_user.users.astype(str)
        owner, windows, goals = training_windows(by_user, params.L, params.T, pad=n_items)
        if not len(owner):
            raise ValueError("attrec: no sequence has two items, so there is no next item to train on")
        generator = torch.Generator().manual_seed(inputs.seed)
        rng = np.random.default_rng(inputs.seed)
        with torch_threads(inputs.threads):
            net = AttRec(len(users), n_items, params.dim, params.L, params.init_std, generator).to(inputs.device)
            curve = train(net, owner, windows, goals, params, rng, inputs.progress, inputs.device)
        known = np.unique(by_user.items)
        meta = {"params": params.model_dump(), "seed": inputs.seed, "threads": inputs.threads, "n_users": len(users),
                "n_items": n_items, "examples": int(len(owner)), "epochs": len(curve), "curve": curve,
                "seconds_per_epoch": round(float(np.mean([c["seconds"] for c in curve])), 3)}
        return cls(net, users.astype(object), known, params, meta, inputs.device).bind(inputs)

    def known_items(self) -> np.ndarray:
        return self._known

    # -- scoring ---------------------------------------------------------------------------------------------

    def _user_rows(self, offsets: np.ndarray, users: np.ndarray | None) -> np.ndarray:
        """Each position's user index, -1 where the user is unknown (or not given)."""
        lengths = np.diff(offsets)
        if users is None:
            return np.full(int(lengths.sum()), -1, np.int64)
        per_sequence = np.array([self._user_index.get(str(u), -1) for u in users], dtype=np.int64)
        return np.repeat(per_sequence, lengths)

    def position_scores(self, items: np.ndarray, offsets: np.ndarray, users: np.ndarray | None = None) -> np.ndarray:
        items, offsets = np.asarray(items, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
        windows = prefix_windows(items, offsets, self.params.L, self.net.pad)  # row p: items up to p only
        return self._window_scores(windows, self._user_rows(offsets, users))

    def last_scores(self, items: np.ndarray, offsets: np.ndarray, users: np.ndarray | None = None) -> np.ndarray:
        """Only the last position's window of each sequence: the same rows as ``position_scores``, cheaper."""
        items, offsets = np.asarray(items, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
        last = offsets[1:] - 1
        windows = _last_windows(items, offsets, self.params.L, self.net.pad)
        return self._window_scores(windows, self._user_rows(offsets, users)[last])

    @torch.no_grad()
    def _window_scores(self, windows: np.ndarray, user_rows: np.ndarray) -> np.ndarray:
        """``-y`` over all items ``(len(windows), n_items)`` of left-padded windows and their users (-1: unknown)."""
        net, omega = self.net.eval(), self.params.omega
        windows = windows.copy()
        windows[(windows < 0) | (windows > net.pad)] = net.pad  # an index outside the catalogue is no evidence
        intent = net.intent(torch.from_numpy(windows).to(self.device))  # (P, dim)
        scores = squared_distances(intent, net.short[:net.n_items])  # (P, n_items)
        known = np.flatnonzero(user_rows >= 0)
        if len(known):
            at = torch.from_numpy(known).to(self.device)
            long = squared_distances(net.users[torch.from_numpy(user_rows[known]).to(self.device)], net.long)
            scores[at] = omega * long + (1.0 - omega) * scores[at]
        out = (-scores).cpu().numpy().astype(np.float32, copy=False)
        out[:, self._unknown] = -np.inf  # never in a training sequence: nothing was learnt about it
        return out

    # -- persistence -------------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {name: p.detach().cpu().numpy() for name, p in self.net.named_parameters()}
        np.savez(folder / "weights.npz", known=self._known, user_ids=self.trained_users.astype(str), **state)
        write_meta(folder, **{**self.meta, "name": self.name})

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "AttRecModel":
        folder = Path(folder)
        meta = read_meta(folder)
        params = AttRecParams(**meta["params"])
        with np.load(folder / "weights.npz", allow_pickle=False) as arrays:
            state = {name: torch.from_numpy(arrays[name]) for name in ("users", "long", "short", "project")}
            known, user_ids = arrays["known"], arrays["user_ids"].astype(object)
        net = AttRec(state["users"].shape[0], state["long"].shape[0], params.dim, params.L, params.init_std,
                     torch.Generator().manual_seed(0))
        with torch.no_grad():
            for name, value in state.items():
                getattr(net, name).copy_(value)
        return cls(net, user_ids, known, params, meta, inputs.device).bind(inputs)


def train(net: AttRec, owner: np.ndarray, windows: np.ndarray, goals: np.ndarray, params: AttRecParams,
          rng: np.random.Generator, progress, device: str) -> list[dict]:
    """Adam on the hinge loss over the examples, ``params.epochs`` passes; one record per epoch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=params.lr)
    n_items, records = net.n_items, []
    owner_t, windows_t, goals_t = (torch.from_numpy(a).to(device) for a in (owner, windows, goals))
    net.train()
    for epoch in range(params.epochs):
        started = time.perf_counter()
        order_np = rng.permutation(len(owner))
        order = torch.from_numpy(order_np).to(device)
        total = 0.0
        for s in range(0, len(owner), params.batch_size):
            batch = order[s:s + params.batch_size]
            users, inputs, targets = owner_t[batch], windows_t[batch], goals_t[batch]
            negatives = torch.from_numpy(draw_negatives(goals[order_np[s:s + params.batch_size]], n_items,
                                                        params.negatives, rng)).to(device)  # (B, T, K)
            mask = targets >= 0  # (B, T)
            targets = targets.clamp_min(0)
            intent = net.intent(inputs)
            positive = net.distances(users, intent, targets, params.omega)  # (B, T)
            negative = net.distances(users, intent, negatives, params.omega)  # (B, T, K)
            loss = hinge_loss(positive, negative, mask, params.margin)
            if params.l2:
                loss = loss + params.l2 * touched_norms(net, users, inputs, targets, mask, negatives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                net.short[net.pad] = 0.0  # the padding row never moves (it only meets masked weights anyway)
            total += loss.item() * len(batch)
        record = {"epoch": epoch + 1, "loss": round(total / len(owner), 6), "seconds": round(time.perf_counter() - started, 3)}
        records.append(record)
        log.info("attrec epoch %d/%d: loss %.5f, %.1f s", epoch + 1, params.epochs, record["loss"], record["seconds"])
        progress(epoch + 1, params.epochs)
    net.eval()
    return records


def touched_norms(net: AttRec, users: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                  negatives: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the squared norms of the rows each example touches: its user's ``U``, its
    inputs' ``X`` (the padding row is zero), its targets' and negatives' ``V`` and ``X``."""
    total = net.users[users].square().sum() + net.short[inputs].square().sum()
    items = torch.cat([targets[mask], negatives.reshape(-1)])
    total = total + net.long[items].square().sum() + net.short[items].square().sum()
    return total / users.shape[0]
