"""The pointwise training and the user model shared by the NCF family (GMF, MLP, NeuMF).

He et al. 2017, "Neural Collaborative Filtering", WWW (https://arxiv.org/abs/1708.05031), and the
authors' Keras code (hexiangnan/neural_collaborative_filtering):

- instances: every positive ``(u, i)`` of the training matrix with label 1, plus ``negatives`` items
  per positive with label 0, each uniform over the items ``u`` has not interacted with
  (``recsys.interactions.sample_negatives``), drawn afresh every epoch as one array and shuffled;
- loss: the log loss ``-mean[y log s(x) + (1 - y) log(1 - s(x))]`` of the logits ``x`` (binary
  cross-entropy, the paper's eq. 7), plus an explicit L2 term (not Adam's weight decay, which would
  shrink every embedding row each step) ``l2 * (sum of the squared embedding rows of the batch's
  instances / B + sum of the squared weights of the linear layers)``: the rows the batch touches and
  the dense layers (which every batch touches), biases excluded; ``l2 = 0`` (the code's default) drops it;
- Adam with ``lr`` on mini-batches of ``batch_size`` instances (NeuMF after pre-training may use SGD);
- after each epoch the ranking curve (``recsys.models.user_curves``) and early stopping on it.

Initialisation follows the Keras code: embeddings ``N(0, init_std^2)``, hidden layers Glorot-uniform,
the prediction layer LeCun-uniform, biases zero. Scores are logits (the sigmoid does not change the
ranking). ``score_all`` scores a batch of users against all items in blocks of at most ``MAX_PAIRS``
user-item pairs, so the MLP tower never sees more rows than that at once.
Deviation: the paper's GMF has no output bias; the code's (Keras ``Dense``) does, and so does this one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from recsys.interactions import Interactions, sample_negatives
from recsys.models.base import TrainingInputs, UserModel, no_progress, read_meta, write_meta
from recsys.models.mf_bpr import curve_of, interactions_of
from recsys.models.negative_sampling import torch_threads
from recsys.models.params import PointwiseParams
from recsys.models.user_curves import CURVE_METRIC, BestEpoch, RankingCurve, detached_state, mark_best, restore_state

log = logging.getLogger(__name__)

MAX_PAIRS = 1 << 18  # user-item pairs scored at once by ``score_all`` (the MLP tower's rows)


# -- the networks -------------------------------------------------------------------------------

class PointwiseNet(torch.nn.Module):
    """A network scoring (user, item) pairs: ``forward(users, items) -> logits (B,)``, and the same
    logits for every user of a batch against a block of items, ``score_block -> (B, C)``.
    ``predict`` is its output layer (one logit)."""

    predict: torch.nn.Linear

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_block(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embedding_rows(self, users: torch.Tensor, items: torch.Tensor) -> list[torch.Tensor]:
        """The embedding rows the instances ``(users[k], items[k])`` read, each ``(B, width)``: the L2 term's."""
        raise NotImplementedError

    def dense_weights(self) -> list[torch.Tensor]:
        return [m.weight for m in self.modules() if isinstance(m, torch.nn.Linear)]

    def reset_parameters(self, init_std: float, generator: torch.Generator) -> "PointwiseNet":
        """The Keras code's initialisers, drawn from ``generator`` in module order (deterministic)."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, torch.nn.Embedding):
                    module.weight.normal_(0.0, init_std, generator=generator)
                elif isinstance(module, torch.nn.Linear):
                    if module is self.predict:  # LeCun uniform: U(+-sqrt(3 / fan_in))
                        bound = math.sqrt(3.0 / module.in_features)
                        module.weight.uniform_(-bound, bound, generator=generator)
                    else:
                        torch.nn.init.xavier_uniform_(module.weight, generator=generator)
                    module.bias.zero_()
        return self


def score_all(module: PointwiseNet, users: torch.Tensor, n_items: int, max_pairs: int = MAX_PAIRS) -> torch.Tensor:
    """Logits of ``users`` (B,) against all items, ``(B, n_items)``, in item blocks of at most
    ``max_pairs`` user-item pairs; the tensors stay on the module's device."""
    device = next(module.parameters()).device
    users = users.to(device)
    step = max(1, max_pairs // max(len(users), 1))
    blocks = [module.score_block(users, torch.arange(lo, min(lo + step, n_items), device=device))
              for lo in range(0, n_items, step)]
    return torch.cat(blocks, dim=1) if blocks else torch.zeros(len(users), 0, device=device)


# -- instances and loss -------------------------------------------------------------------------

def pointwise_instances(interactions: Interactions, negatives: int, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epoch's ``(users, items, labels)``, shuffled: every positive once with label 1 and
    ``negatives`` sampled non-interacted items per positive with label 0. Positives of users who
    have every item are left out (they have no negative)."""
    R = interactions
    keep = np.flatnonzero(R.user_degrees()[R.rows] < R.n_items)
    if len(keep) < R.nnz:
        log.warning("%d positives of users who have every item have no negative; left out", R.nnz - len(keep))
    users, positives = R.rows[keep], R.indices[keep]
    negative_users = np.repeat(users, negatives)
    drawn = sample_negatives(R, negative_users, rng) if len(negative_users) else negative_users
    all_users = np.concatenate([users, negative_users])
    all_items = np.concatenate([positives, drawn])
    labels = np.concatenate([np.ones(len(users), np.float32), np.zeros(len(drawn), np.float32)])
    order = rng.permutation(len(all_users))
    return all_users[order], all_items[order], labels[order]


def pointwise_loss(logits: torch.Tensor, labels: torch.Tensor, rows: list[torch.Tensor], weights: list[torch.Tensor],
                   l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(total, log_loss)``: the mean log loss of the logits (B,) against the labels (B,), and
    ``total = log_loss + l2 * (sum |rows|^2 / B + sum |weights|^2)`` (see the module docstring)."""
    log_loss = F.binary_cross_entropy_with_logits(logits, labels)
    if not l2:
        return log_loss, log_loss
    penalty = sum(r.square().sum() for r in rows) / len(logits) + sum(w.square().sum() for w in weights)
    return log_loss + l2 * penalty, log_loss


# -- training -----------------------------------------------------------------------------------

def make_optimizer(module: torch.nn.Module, name: str, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(module.parameters(), lr=lr)
    return torch.optim.Adam(module.parameters(), lr=lr)


def train_pointwise(module: PointwiseNet, interactions: Interactions, params: PointwiseParams, seed: int,
                    optimizer: str = "adam", progress: Callable[[int, int], None] = no_progress,
                    curve: RankingCurve | None = None, device: str = "cpu") -> list[dict]:
    """Train ``module`` in place with the pointwise log loss (module docstring); return one record per
    epoch (epoch, mean total loss, mean log loss, instances, seconds, the curve's metrics, ``best``).

    With ``curve`` and ``params.patience`` it stops after that many epochs without a better validation
    NDCG and restores the best epoch's parameters. The module ends on the CPU in eval mode.
    Deterministic for a seed on one torch thread (negatives and order come from a numpy generator)."""
    R = interactions
    module.to(device).train()
    opt = make_optimizer(module, optimizer, params.lr)
    rng = np.random.default_rng(seed)

    def scores(users: torch.Tensor) -> torch.Tensor:
        module.eval()
        with torch.no_grad():
            out = score_all(module, users, R.n_items)
        module.train()
        return out

    best = BestEpoch(params.patience if curve is not None else 0, lambda: detached_state(module), params.min_gain)
    records = []
    for epoch in range(params.epochs):
        start = time.perf_counter()
        users, items, labels = pointwise_instances(R, params.negatives, rng)  # (N,) each, shuffled
        if not len(users):
            raise ValueError("no positive has a negative to train on")
        u_all, i_all = torch.from_numpy(users).to(device), torch.from_numpy(items).to(device)
        y_all = torch.from_numpy(labels).to(device)
        total = log_total = 0.0
        for s in range(0, len(users), params.batch_size):
            u, i, y = u_all[s:s + params.batch_size], i_all[s:s + params.batch_size], y_all[s:s + params.batch_size]
            loss, log_loss = pointwise_loss(module(u, i), y, module.embedding_rows(u, i), module.dense_weights(),
                                            params.l2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(u)
            log_total += log_loss.item() * len(u)
        record = {"epoch": epoch + 1, "loss": round(total / len(users), 6), "log_loss": round(log_total / len(users), 6),
                  "instances": int(len(users)), "seconds": round(time.perf_counter() - start, 3)}
        record.update(curve(scores) if curve is not None else {})
        records.append(record)
        log.info("%s epoch %d/%d: %s", type(module).__name__, epoch + 1, params.epochs,
                 ", ".join(f"{k} {v}" for k, v in record.items() if k not in ("epoch", "instances")))
        progress(epoch + 1, params.epochs)
        if best.update(epoch + 1, record.get(f"validation_{CURVE_METRIC}")):
            log.info("%s: validation %s not %.1f%% better for %d epoch(s): stopping, keeping epoch %d",
                     type(module).__name__, CURVE_METRIC, 100 * params.min_gain, params.patience, best.best_epoch)
            break
    if best.state is not None and best.patience:
        restore_state(best.state, module)
    mark_best(records, best.best_epoch if best.patience else 0)
    module.cpu().eval()
    return records


# -- the user model -----------------------------------------------------------------------------

class PointwiseModel(UserModel):
    """A trained ``PointwiseNet`` with the ids of its interactions. Subclasses name the params class
    and build the network (``build``); saved as one .npy file per ``state_dict`` tensor + model.json."""

    name = "pointwise"
    params_class: ClassVar[type[PointwiseParams]] = PointwiseParams

    def __init__(self, module: PointwiseNet, user_ids: np.ndarray, item_ids: np.ndarray, meta: dict):
        self.module = module.cpu().eval()
        self.user_ids, self.item_ids = user_ids, item_ids  # object arrays: index -> id
        self.meta = meta

    @classmethod
    def build(cls, n_users: int, n_items: int, params: PointwiseParams) -> PointwiseNet:
        """The untrained network (parameters not yet initialised)."""
        raise NotImplementedError

    @classmethod
    def initialised(cls, n_users: int, n_items: int, params: PointwiseParams, seed: int) -> PointwiseNet:
        return cls.build(n_users, n_items, params).reset_parameters(params.init_std, torch.Generator().manual_seed(seed))

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: PointwiseParams) -> "PointwiseModel":
        interactions = interactions_of(inputs)
        with torch_threads(inputs.threads):
            module = cls.initialised(interactions.n_users, interactions.n_items, params, inputs.seed)
            curve = train_pointwise(module, interactions, params, inputs.seed, "adam", inputs.progress,
                                    curve_of(inputs), inputs.device)
        return cls(module, interactions.user_ids, interactions.item_ids, training_meta(interactions, params, inputs, curve))

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        users_t = torch.from_numpy(np.asarray(users, dtype=np.int64))
        with torch.no_grad():
            return score_all(self.module, users_t, self.n_items).numpy().astype(np.float32, copy=False)

    def save(self, folder: Path) -> None:
        write_meta(folder, **{**self.meta, "name": self.name})
        for key, tensor in self.module.state_dict().items():
            np.save(folder / f"{key}.npy", tensor.detach().cpu().numpy())
        np.save(folder / "user_ids.npy", self.user_ids.astype(str))  # unicode arrays: no pickle
        np.save(folder / "item_ids.npy", self.item_ids.astype(str))

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "PointwiseModel":
        meta = read_meta(folder)
        user_ids = np.load(folder / "user_ids.npy", allow_pickle=False).astype(object)
        item_ids = np.load(folder / "item_ids.npy", allow_pickle=False).astype(object)
        module = cls.build(len(user_ids), len(item_ids), cls.params_class.model_validate(meta["params"]))
        state = {key: torch.from_numpy(np.load(folder / f"{key}.npy", allow_pickle=False))
                 for key in module.state_dict()}
        module.load_state_dict(state, strict=True)
        return cls(module, user_ids, item_ids, meta)


def training_meta(interactions: Interactions, params: PointwiseParams, inputs: TrainingInputs, curve: list[dict]) -> dict:
    return {"params": params.model_dump(mode="json"), "seed": inputs.seed, "threads": inputs.threads,
            "n_users": interactions.n_users, "n_items": interactions.n_items, "nnz": interactions.nnz, "curve": curve}
