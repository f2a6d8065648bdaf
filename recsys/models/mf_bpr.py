"""Matrix factorisation trained with BPR, and the BPR training both user-to-item models share.

Rendle et al. 2009, "BPR: Bayesian Personalized Ranking from Implicit Feedback"
(https://arxiv.org/abs/1205.2618), in the form of LightGCN's MF baseline (He et al. 2020, and the
official LightGCN PyTorch code):

- score: ``y(u, i) = e_u . e_i`` with ``e_u, e_i`` in ``R^dim``, initialised ``N(0, init_std^2)``;
- loss of a batch ``B`` of triples ``(u, i, j)`` (``i`` a positive of ``u``, ``j`` a sampled negative):
  ``mean_B softplus(y(u, j) - y(u, i)) + l2 * (|e_u|^2 + |e_i|^2 + |e_j|^2) / (2 |B|)`` summed over ``B``,
  i.e. ``-ln sigmoid`` of the score margin plus L2 on the embeddings the batch touches;
- Adam on all embeddings; one epoch visits every interaction once (``recsys.interactions.bpr_triples``),
  each with one negative drawn uniformly from the user's non-interacted items.

``train_bpr`` is written once for both models: LightGCN is the same loop with the scores taken from
propagated embeddings while the L2 term stays on the ego (layer-0) embeddings. Scores of a user over all
items are one matrix-vector product (``user_scores``). Deviation from the official code: it draws a
user uniformly and then one of its positives, ``nnz`` times per epoch; here each interaction is used
exactly once per epoch (as RecBole does), so every positive is seen every epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recsys.ann import VectorSearch, top_n_for_users
from recsys.interactions import Interactions, bpr_triples
from recsys.models.base import TrainingInputs, UserModel, no_progress, read_meta, write_meta
from recsys.models.negative_sampling import torch_threads
from recsys.models.params import MFBPRParams
from recsys.models.user_curves import CURVE_METRIC, BestEpoch, RankingCurve, detached_state, mark_best, restore_state

log = logging.getLogger(__name__)

Propagate = Callable[[torch.Tensor], torch.Tensor]  # ego (n_users + n_items, dim) -> final, same shape


def bpr_loss(users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, ego_users: torch.Tensor,
             ego_positives: torch.Tensor, ego_negatives: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BPR loss of a batch: ``(total, bpr)``, where ``bpr = mean softplus(e_u . e_j - e_u . e_i)`` on the
    scoring embeddings (each ``(B, dim)``) and ``total = bpr + l2 * (|e0_u|^2 + |e0_i|^2 + |e0_j|^2) / (2 B)``
    on the ego embeddings (the official LightGCN code's ``reg_loss`` times ``decay``)."""
    margin = (users * positives).sum(1) - (users * negatives).sum(1)  # (B,)
    bpr = F.softplus(-margin).mean()
    reg = 0.5 * (ego_users.square().sum() + ego_positives.square().sum() + ego_negatives.square().sum()) / len(users)
    return bpr + l2 * reg, bpr


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]``, whose backward on the CPU is ``index_add_`` rather than indexing's slower ``index_put_``
    (a LightGCN step at 10M events: 0.5 s instead of 0.8 s for the batch's six row gathers)."""
    return x.index_select(0, index)


def batch_size_for(triples: int, params: MFBPRParams) -> int:
    """Triples per Adam step: ``batch_size``, or more when the epoch would need more than
    ``params.max_steps(triples)`` steps (then ``ceil(triples / max_steps)``, and the learning rate grows
    by the same factor: Goyal et al. 2017's linear scaling rule, https://arxiv.org/abs/1706.02677)."""
    cap = params.max_steps(triples)
    if cap is None or triples <= cap * params.batch_size:
        return params.batch_size
    return -(-triples // cap)


def train_bpr(interactions: Interactions, params: MFBPRParams, seed: int, propagate: Propagate | torch.nn.Module | None = None,
              progress: Callable[[int, int], None] = no_progress, curve: RankingCurve | None = None,
              device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Train ego embeddings of users then items ``(n_users + n_items, dim)`` with BPR and Adam.

    ``propagate`` maps the ego embeddings to the scoring embeddings (None: they are the same, MF); a
    ``torch.nn.Module`` there trains its own parameters too, in train mode during the epochs and in
    eval mode for scoring. After each epoch ``curve`` (when given) scores the validation users; with
    ``params.patience`` it stops early and keeps the best epoch. Returns the ego and final embeddings
    (detached, on the CPU) and one record per epoch: epoch, mean total loss, mean BPR part, triples, batch size,
    learning rate, seconds, the validation metrics, ``best``. Deterministic for a seed on one torch thread."""
    R, n_users = interactions, interactions.n_users
    generator = torch.Generator().manual_seed(seed)
    ego = torch.empty(n_users + R.n_items, params.dim).normal_(0.0, params.init_std, generator=generator).to(device)
    ego.requires_grad_()
    module = propagate if isinstance(propagate, torch.nn.Module) else None
    trained = [ego] + (list(module.parameters()) if module is not None else [])
    optimizer = torch.optim.Adam(trained, lr=params.lr)
    rng = np.random.default_rng(seed)
    forward = propagate or (lambda e: e)

    def final() -> torch.Tensor:
        if module is not None:
            module.eval()
        with torch.no_grad():
            out = forward(ego)
        if module is not None:
            module.train()
        return out

    def scorer(embeddings: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        items = embeddings[n_users:].T
        return lambda users: embeddings[users.to(device)] @ items

    parts = (ego,) + ((module,) if module is not None else ())
    best = BestEpoch(params.patience if curve is not None else 0, lambda: detached_state(*parts), params.min_gain)
    records = []
    for epoch in range(params.epochs):
        start = time.perf_counter()
        users, positives, negatives = bpr_triples(R, rng)  # one epoch: every interaction once, shuffled
        if not len(users):
            raise ValueError("no interaction has a negative to train on")
        u_all = torch.from_numpy(users).to(device)
        i_all, j_all = torch.from_numpy(positives + n_users).to(device), torch.from_numpy(negatives + n_users).to(device)
        total = bpr_total = 0.0
        batch = batch_size_for(len(users), params)
        lr = params.lr * batch / params.batch_size  # a batch k times larger takes a k times larger step (linear scaling)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for s in range(0, len(users), batch):
            u, i, j = u_all[s:s + batch], i_all[s:s + batch], j_all[s:s + batch]
            embeddings = forward(ego)  # (n_users + n_items, dim)
            loss, bpr = bpr_loss(_rows(embeddings, u), _rows(embeddings, i), _rows(embeddings, j), _rows(ego, u),
                                 _rows(ego, i), _rows(ego, j), params.l2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(u)
            bpr_total += bpr.item() * len(u)
        record = {"epoch": epoch + 1, "loss": round(total / len(users), 6), "bpr_loss": round(bpr_total / len(users), 6),
                  "triples": int(len(users)), "batch_size": batch, "lr": lr,
                  "seconds": round(time.perf_counter() - start, 3)}
        record.update(curve(scorer(final())) if curve is not None else {})  # one propagation for all the blocks
        records.append(record)
        log.info("BPR epoch %d/%d: %s", epoch + 1, params.epochs,
                 ", ".join(f"{k} {v}" for k, v in record.items() if k not in ("epoch", "triples", "batch_size", "lr")))
        progress(epoch + 1, params.epochs)
        if best.update(epoch + 1, record.get(f"validation_{CURVE_METRIC}")):
            log.info("BPR: validation %s not %.1f%% better for %d epoch(s): stopping, keeping epoch %d", CURVE_METRIC,
                     100 * params.min_gain, params.patience, best.best_epoch)
            break
    if best.state is not None and best.patience:
        restore_state(best.state, *parts)
    mark_best(records, best.best_epoch if best.patience else 0)
    return ego.detach().cpu(), final().detach().cpu(), records


def curve_of(inputs: TrainingInputs) -> RankingCurve | None:
    """The ranking validation curve of the inputs' held-out interactions, if any."""
    return RankingCurve.of(inputs.interactions, inputs.user_validation, inputs.seed)


def interactions_of(inputs: TrainingInputs) -> Interactions:
    if inputs.interactions is None:
        raise ValueError("this model trains on the user x item interactions, but none were given")
    return inputs.interactions


class FactorModel(UserModel):
    """A user-to-item model scored by the dot product of a user vector and an item vector."""

    name = "factors"

    def __init__(self, users: np.ndarray, items: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray, meta: dict):
        self.users = np.ascontiguousarray(users, dtype=np.float32)  # (n_users, dim)
        self.items = np.ascontiguousarray(items, dtype=np.float32)  # (n_items, dim)
        self.user_ids, self.item_ids = user_ids, item_ids  # object arrays: index -> id
        self.meta = meta
        self._search = None  # a recsys.ann.VectorSearch over the item vectors, once approximate_search chose one

    @classmethod
    def from_training(cls, interactions: Interactions, final: torch.Tensor, params: MFBPRParams, inputs: TrainingInputs,
                      curve: list[dict]) -> "FactorModel":
        n_users = interactions.n_users
        meta = {"params": params.model_dump(), "seed": inputs.seed, "threads": inputs.threads, "n_users": n_users,
                "n_items": interactions.n_items, "nnz": interactions.nnz, "curve": curve}
        embeddings = final.numpy()
        return cls(embeddings[:n_users], embeddings[n_users:], interactions.user_ids, interactions.item_ids, meta)

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return self.users[np.asarray(users, dtype=np.int64)] @ self.items.T  # (len(users), n_items)

    def approximate_search(self, min_items: int, threads: int = 1) -> VectorSearch | None:
        """From now on ``top_items`` searches an HNSW index over the item vectors (``recsys.ann``) when the
        model has at least ``min_items`` > 0 items; returns the index, or None (stays exact)."""
        if min_items <= 0 or len(self.items) < min_items:
            self._search = None
            return None
        self._search = VectorSearch(self.items, threads=threads)
        return self._search

    def top_items(self, users: np.ndarray, n: int, exclude: Interactions | None = None,
                  batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        if self._search is None:
            return self.exact_top_items(users, n, exclude, batch_size)
        exact = lambda heavy, k, seen: self.exact_top_items(heavy, k, seen, batch_size)  # noqa: E731
        return top_n_for_users(self._search, self.users, users, n, exclude, exact)

    def save(self, folder: Path) -> None:
        write_meta(folder, **{**self.meta, "name": self.name})
        np.save(folder / "users.npy", self.users)
        np.save(folder / "items.npy", self.items)
        np.save(folder / "user_ids.npy", self.user_ids.astype(str))  # unicode arrays: no pickle
        np.save(folder / "item_ids.npy", self.item_ids.astype(str))

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "FactorModel":
        def array(name: str) -> np.ndarray:
            return np.load(folder / name, allow_pickle=False)

        return cls(array("users.npy"), array("items.npy"), array("user_ids.npy").astype(object),
                   array("item_ids.npy").astype(object), read_meta(folder))


    @classmethod
    def fit_bpr(cls, inputs: TrainingInputs, params: MFBPRParams,
                propagation: Callable[[Interactions], Propagate | torch.nn.Module | None] = lambda _: None,
                ) -> tuple["FactorModel", torch.Tensor]:
        """Train with ``train_bpr`` on the inputs' interactions, the propagation built by ``propagation``
        from them (None: MF); returns the model and the trained ego embeddings."""
        interactions = interactions_of(inputs)
        with torch_threads(inputs.threads):
            ego, final, curve = train_bpr(interactions, params, inputs.seed, propagation(interactions), inputs.progress,
                                          curve_of(inputs), inputs.device)
        return cls.from_training(interactions, final, params, inputs, curve), ego


class MFBPRModel(FactorModel):
    name = "mf_bpr"

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: MFBPRParams) -> "MFBPRModel":
        return cls.fit_bpr(inputs, params)[0]
