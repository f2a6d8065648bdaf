"""Skip-gram with negative sampling in PyTorch, on the random walks (DeepWalk-style item vectors).

The model of Mikolov et al. 2013 ("Distributed Representations of Words and Phrases and their
Compositionality") on walks as sentences (Perozzi et al. 2014, "DeepWalk"): a centre and a context
table, subsampling of frequent items, unigram^0.75 negatives, a linearly decaying learning rate,
trained by the batched closed-form step of ``recsys.models.negative_sampling``. Initialised like
word2vec (centre vectors uniform in +-0.5/d, context vectors zero). Item vectors are the centre
vectors; scores are cosine similarities. One thread and a seed give the same vectors every run.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.models.base import TrainingInputs, no_progress
from recsys.models.curves import ValidationCurve, curve_json
from recsys.models.embedding import EmbeddingModel, unit_rows
from recsys.models.negative_sampling import (EpochRecord, FlatWalks, Trainable, UnigramNegatives, WalkPairs,
                                             negative_sampling_step, schedule_of, torch_threads, train_pairs)
from recsys.models.params import SkipGramParams


class SkipGramTrainer(Trainable):
    def __init__(self, n_items: int, dim: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.centre = (torch.rand(n_items, dim, generator=generator) - 0.5) / dim
        self.context = torch.zeros(n_items, dim)

    def step(self, centres: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor, lr: float) -> float:
        dh, _, loss = negative_sampling_step(self.centre[centres], contexts, negatives, self.context, lr)
        self.centre.index_add_(0, centres, dh)
        return loss

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        unit = unit_rows(self.centre.numpy())
        return np.einsum("ij,ij->i", unit[a], unit[b])


def train_skipgram(walks: FlatWalks, n_items: int, params: SkipGramParams, threads: int, seed: int,
                   curve: ValidationCurve | None = None, progress=no_progress,
                   ) -> tuple[SkipGramTrainer, WalkPairs, list[EpochRecord]]:
    source = WalkPairs(walks, n_items, params.window, params.sample)
    trainer = SkipGramTrainer(n_items, params.vector_size, seed)
    trainer.trained = source.counts > 0
    with torch_threads(threads):
        records = train_pairs(trainer, source, UnigramNegatives(source.counts), schedule_of(params, int((source.counts > 0).sum())),
                              seed, curve, params.patience, progress)
    return trainer, source, records


class SkipGramModel(EmbeddingModel):
    @classmethod
    def fit(cls, inputs: TrainingInputs, params: SkipGramParams) -> "SkipGramModel":
        trainer, source, records = train_skipgram(inputs.flat_walks, inputs.table.n_nodes, params, inputs.threads,
                                                  inputs.seed, ValidationCurve.of(inputs.validation), inputs.progress)
        return cls("skipgram", trainer.centre.numpy(), source.counts > 0,
                   {"params": params.model_dump(), "threads": inputs.threads, "curve": curve_json(records)})
