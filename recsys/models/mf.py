"""Matrix factorisation with biases on item pairs, trained two ways, both registered.

The logit of a pair is ``l_a . r_b + beta_a + gamma_b`` (a factorisation of the item co-occurrence
matrix with item biases, as in Koren et al. 2009, "Matrix Factorization Techniques for Recommender
Systems", fitted as logistic MF with sampled negatives, Johnson 2014, "Logistic Matrix Factorization
for Implicit Feedback Data"). ``mf_pairs`` draws its positive pairs from the graph's edges with
probability proportional to their weight; ``mf_walks`` takes the window pairs of the random walks,
as the skip-gram models do. Both draw negatives from the unigram^0.75 distribution and train with the
closed-form step of ``recsys.models.negative_sampling`` (for ``mf_pairs`` the negatives' weights are
the items' summed edge weights, for ``mf_walks`` their walk frequencies). Scores are the symmetric logit
``(l_a . r_b + l_b . r_a + b_a + b_b) / 2`` with ``b = beta + gamma``, stored as two matrices so that
top-N search is one product: ``[l, r, b, 1] . [r, l, 1, b] / 2``. An item without a vector scores the
mean logit of random pairs of trained items (``MFTrainer.fallback``), the logit's "unrelated". Nothing dense of size items x items
is ever formed.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.models.base import TrainingInputs
from recsys.models.curves import ValidationCurve, curve_json
from recsys.models.embedding import EmbeddingModel
from recsys.models.negative_sampling import (EdgePairs, PairSource, Trainable, UnigramNegatives, WalkPairs,
                                             negative_sampling_step, schedule_of, torch_threads, train_pairs, uniform_init)
from recsys.models.params import MFParams


class MFTrainer(Trainable):
    def __init__(self, n_items: int, dim: int, init_scale: float, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.left = uniform_init(n_items, dim, init_scale, generator)
        self.right = uniform_init(n_items, dim, init_scale, generator)
        self.left_bias = torch.zeros(n_items)
        self.right_bias = torch.zeros(n_items)

    def step(self, centres: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor, lr: float) -> float:
        dh, dbias, loss = negative_sampling_step(self.left[centres], contexts, negatives, self.right, lr,
                                                 self.right_bias, self.left_bias[centres])
        self.left.index_add_(0, centres, dh)
        self.left_bias.index_add_(0, centres, dbias)
        return loss

    def scoring_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        left, right = self.left.numpy(), self.right.numpy()
        bias = (self.left_bias + self.right_bias).numpy()[:, None]
        ones = np.ones_like(bias)
        return (np.hstack([left, right, bias, ones]) * 0.5).astype(np.float32), np.hstack([right, left, ones, bias]).astype(np.float32)

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        left, right = self.scoring_matrices()
        return np.einsum("ij,ij->i", left[a], right[b])

    def fallback(self, pairs: int = 10_000, seed: int = 0) -> float:
        """The score of an unrelated pair: the mean logit of random pairs of trained items. A logit
        has no natural zero (non-pairs mostly score below 0), so an item without a vector scores
        this instead of 0.0, or pairs with unseen items would outrank most seen non-pairs."""
        items = np.flatnonzero(self.trained) if self.trained is not None else np.arange(len(self.left))
        if len(items) < 2:
            return 0.0
        rng = np.random.default_rng(seed)
        return float(self.pair_scores(rng.choice(items, pairs), rng.choice(items, pairs)).mean())


def fit_mf(inputs: TrainingInputs, params: MFParams, on_walks: bool) -> tuple[MFTrainer, np.ndarray, dict]:
    table = inputs.table
    walks = WalkPairs(inputs.flat_walks, table.n_nodes, params.window, params.sample)
    source: PairSource
    if on_walks:
        source, counts, extra = walks, walks.counts, {}
    else:
        pairs = params.pairs_per_epoch or walks.pairs_per_epoch(inputs.seed)
        source, counts = EdgePairs(table.indptr, table.indices, table.weights, pairs), table.row_sums()
        extra = {"pairs_per_epoch": pairs}
    trained = counts > 0
    trainer = MFTrainer(table.n_nodes, params.vector_size, params.init_scale, inputs.seed)
    trainer.trained = trained
    with torch_threads(inputs.threads):
        records = train_pairs(trainer, source, UnigramNegatives(counts), schedule_of(params, int(trained.sum())),
                              inputs.seed, ValidationCurve.of(inputs.validation), params.patience, inputs.progress)
    meta = {"params": params.model_dump(), "threads": inputs.threads, "curve": curve_json(records), **extra,
            "fallback": trainer.fallback(seed=inputs.seed)}
    return trainer, trained, meta


class _MFModel(EmbeddingModel):
    on_walks: bool
    model_name: str

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: MFParams) -> "_MFModel":
        trainer, trained, meta = fit_mf(inputs, params, cls.on_walks)
        left, right = trainer.scoring_matrices()
        return cls(cls.model_name, left, trained, meta, right=right, fallback=meta.pop("fallback"))


class MFPairsModel(_MFModel):
    on_walks, model_name = False, "mf_pairs"


class MFWalksModel(_MFModel):
    on_walks, model_name = True, "mf_walks"
