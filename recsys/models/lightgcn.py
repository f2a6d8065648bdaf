"""LightGCN: embeddings propagated linearly over the user-item graph, trained with BPR.

He et al. 2020, "LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation"
(https://arxiv.org/abs/2002.02126), as in the authors' official PyTorch code:

- ego embeddings ``E0`` of users then items, ``(n_users + n_items, dim)``, initialised ``N(0, 0.1^2)``;
- ``K`` layers of ``E_{k+1} = Â E_k`` with ``Â = D^-1/2 A D^-1/2`` the symmetric normalisation of the
  bipartite adjacency ``A = [[0, R], [R^T, 0]]`` (``recsys.interactions.normalized_adjacency``): no
  feature transform, no non-linearity, no self-loop;
- final embeddings ``E = (E0 + E1 + ... + EK) / (K + 1)`` (layer weights ``1 / (K + 1)``);
- score ``y(u, i) = e_u . e_i`` on the final embeddings;
- loss: BPR on the final embeddings plus ``l2 * (|e0_u|^2 + |e0_i|^2 + |e0_j|^2) / (2 B)`` on the EGO
  embeddings of the batch (``recsys.models.mf_bpr.bpr_loss``); Adam, lr 0.001, batch 2048, dim 64,
  3 layers, l2 1e-4 (``LightGCNParams``' defaults).

The whole graph is propagated for every batch (as the official code does), with sparse matrix
products; the backward pass of ``Â X`` is ``Â^T G = Â G`` since ``Â`` is symmetric, so it reuses the
same CSR matrix instead of transposing it. After training the final user and item embeddings are
stored; ``user_scores`` is one product with all item vectors. Deviations: no node dropout (the paper
does not use it for LightGCN); each interaction is one positive per epoch (see ``mf_bpr``); an epoch
takes at most ``max_batches_per_epoch`` (256) steps and at most ``max_propagated_per_epoch`` (64M) triples
x steps: where the triples need more steps of 2048, the batch grows instead, and the learning rate with it
(linear scaling), so an epoch costs about the same on any large log rather than O(interactions^2), at the
same validation NDCG (``benchmarks/bpr_batches.py``; Gowalla and the 10M-event log in docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.interactions import Interactions, normalized_adjacency
from recsys.models.base import TrainingInputs
from recsys.models.mf_bpr import FactorModel
from recsys.models.params import LightGCNParams


class _SymmetricSparseMM(torch.autograd.Function):
    """``Â @ X`` for a symmetric sparse ``Â`` (no gradient for ``Â``): the gradient of ``X`` is ``Â @ G``."""

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adjacency @ grad


def propagate(adjacency: torch.Tensor, ego: torch.Tensor, layers: int) -> torch.Tensor:
    """LightGCN's final embeddings: the mean of ``E0 = ego`` and ``E_{k+1} = Â E_k`` for k < ``layers``."""
    total, layer = ego, ego
    for _ in range(layers):
        layer = _SymmetricSparseMM.apply(adjacency, layer)  # (n_nodes, dim)
        total = total + layer
    return total / (layers + 1)


class LightGCNModel(FactorModel):
    name = "lightgcn"
    ego: np.ndarray | None = None  # the trained layer-0 embeddings, users then items (after fit only; not saved)

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: LightGCNParams) -> "LightGCNModel":
        def propagation(interactions: Interactions):
            adjacency = normalized_adjacency(interactions).to(inputs.device)
            return lambda ego: propagate(adjacency, ego, params.layers)

        model, ego = cls.fit_bpr(inputs, params, propagation)
        model.ego = ego.numpy()
        return model
