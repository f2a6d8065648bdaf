"""NGCF: embeddings propagated over the user-item graph with feature transforms and an interaction term, trained with BPR.

Wang et al. 2019, "Neural Graph Collaborative Filtering", SIGIR (https://arxiv.org/abs/1905.08108), and
the authors' official TensorFlow code (xiangwang1223/neural_graph_collaborative_filtering, ``NGCF.py``):

- ego embeddings ``E0`` of users then items, ``(n_users + n_items, dim)``;
- ``Â = D^-1/2 A D^-1/2``, the paper's Laplacian of ``A = [[0, R], [R^T, 0]]``
  (``recsys.interactions.normalized_adjacency``); per layer ``k = 1..K``, with ``S = Â E_{k-1}``::

      sum = LeakyReLU((S + E_{k-1}) W1_k + b1_k)          # the paper's (L + I) E W1
      bi  = LeakyReLU((E_{k-1} ⊙ S) W2_k + b2_k)          # the paper's (L E) ⊙ E W2
      E_k = message_dropout(sum + bi)

  LeakyReLU slope 0.2, ``W1_k, W2_k`` ``(dim, dim)`` and ``b1_k, b2_k`` ``(1, dim)`` Xavier-uniform (as the
  code initialises them); the activation is applied to each part and then summed, as the code does
  (the paper's eq. 7 has one activation over the sum);
- final embeddings ``E = [E0, n(E1), ..., n(EK)]`` of width ``dim * (K + 1)``, where ``n`` normalises
  each row to unit L2 norm: the official code does that to each layer's output before concatenating
  (the paper does not mention it), and so do we; the next layer still reads the unnormalised ``E_k``;
- score ``y(u, i) = e_u . e_i`` on the final embeddings; BPR loss and Adam through
  ``recsys.models.mf_bpr.train_bpr`` (every interaction once per epoch).

Dropout, only in train mode (``train_bpr`` switches to eval mode to score): message dropout on each
``E_k`` (zeroes entries with probability ``p``, scales the rest by ``1 / (1 - p)``); node dropout, as the
code's ``_dropout_sparse``, drops each nonzero of ``Â`` independently with probability ``p`` for every
forward pass and scales the kept ones by ``1 / (1 - p)`` (the paper describes dropping whole nodes; the
code drops entries, and so do we). The dropped matrix is no longer symmetric, so its transpose, needed
for the backward pass of ``Ã X``, is built from the same draw: ``Ã^T`` keeps entry ``(r, c)`` of ``Â``
when the draw kept ``(c, r)``, a gather through the precomputed permutation that maps each entry to
its mirror. Both are sparse CSR subsets of ``Â``; nothing is densified. Random draws come from a
generator seeded from the training seed, so a fit is deterministic for a seed on one thread.

Deviations from the official code: ``Â`` is the paper's symmetric ``D^-1/2 A D^-1/2`` with the self term
added as ``+ E`` (the code's default ``adj_type='norm'`` uses ``D^-1 (A + I)``, whose self term also
enters the bi-interaction); the ego embeddings start ``N(0, init_std^2)`` as the other BPR models'
(the code: Xavier); the L2 penalty is on the batch's ego embeddings, as MF-BPR's and LightGCN's
(the code puts it on the propagated embeddings); every interaction is one positive per epoch (see
``mf_bpr``). After training the final user and item embeddings are stored (``FactorModel``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from recsys.interactions import Interactions, normalized_adjacency
from recsys.models.base import TrainingInputs
from recsys.models.mf_bpr import FactorModel
from recsys.models.params import NGCFParams

LEAKY_SLOPE = 0.2  # the code's tf.nn.leaky_relu default


class _SparseMM(torch.autograd.Function):
    """``M @ X`` for a sparse ``M`` given with its transpose (no gradient for ``M``): grad of ``X`` is ``M^T @ G``.

    LightGCN's ``_SymmetricSparseMM`` is the case ``M^T = M``; node dropout breaks that symmetry."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, transpose: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.transpose = transpose
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, ctx.transpose @ grad


class DroppableAdjacency:
    """A sparse CSR matrix with a symmetric pattern, and random subsets of its entries with their transposes."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix = matrix
        self.size = matrix.shape
        self.crow, self.col, self.values = matrix.crow_indices(), matrix.col_indices(), matrix.values()
        self.rows = torch.repeat_interleave(torch.arange(self.size[0], device=matrix.device), self.crow.diff())
        self.mirror = mirror_positions(self.crow.cpu().numpy(), self.col.cpu().numpy()).to(matrix.device)

    def dropped(self, p: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Ã, Ã^T)``: each entry kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``."""
        keep = torch.rand(len(self.values), generator=generator, device=self.values.device) >= p  # (nnz,)
        scale = 1.0 / (1.0 - p)
        return self._subset(keep, self.values * scale), self._subset(keep[self.mirror], self.values[self.mirror] * scale)

    def _subset(self, keep: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        counts = torch.bincount(self.rows[keep], minlength=self.size[0])
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return torch.sparse_csr_tensor(crow, self.col[keep], values[keep], size=self.size,
                                       check_invariants=False)  # a subset of a valid CSR: valid


def mirror_positions(crow: np.ndarray, col: np.ndarray) -> torch.Tensor:
    """For each entry ``(r, c)`` of a CSR pattern, the position of entry ``(c, r)``; the pattern must be symmetric."""
    n = len(crow) - 1
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(crow))
    keys = rows * n + col  # ascending: CSR order with sorted columns
    if len(keys) and not (np.diff(keys) > 0).all():
        raise ValueError("the CSR matrix must have sorted, distinct columns in each row")
    mirrored = col.astype(np.int64) * n + rows
    positions = np.searchsorted(keys, mirrored)
    if len(keys) and not np.array_equal(keys[np.minimum(positions, len(keys) - 1)], mirrored):
        raise ValueError("the sparse pattern is not symmetric")
    return torch.from_numpy(positions)


def dropout(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout drawing from ``generator`` (``F.dropout`` would draw from torch's global one)."""
    if p == 0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep / (1.0 - p)


def _xavier(shape: tuple[int, int], generator: torch.Generator) -> torch.nn.Parameter:
    """Glorot-uniform on a ``(fan_in, fan_out)`` matrix, as ``tf.contrib.layers.xavier_initializer``."""
    bound = math.sqrt(6.0 / (shape[0] + shape[1]))
    return torch.nn.Parameter(torch.empty(shape).uniform_(-bound, bound, generator=generator))


class NGCFLayer(torch.nn.Module):
    """One embedding propagation layer: ``LeakyReLU((S + E) W1 + b1) + LeakyReLU((E ⊙ S) W2 + b2)``, ``S = Â E``."""

    def __init__(self, dim: int, generator: torch.Generator):
        super().__init__()
        self.w_sum, self.b_sum = _xavier((dim, dim), generator), _xavier((1, dim), generator)
        self.w_bi, self.b_bi = _xavier((dim, dim), generator), _xavier((1, dim), generator)

    def forward(self, ego: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        summed = F.leaky_relu((side + ego) @ self.w_sum + self.b_sum, LEAKY_SLOPE)  # (n_nodes, dim)
        bi = F.leaky_relu((ego * side) @ self.w_bi + self.b_bi, LEAKY_SLOPE)  # (n_nodes, dim)
        return summed + bi


class NGCFPropagation(torch.nn.Module):
    """Ego embeddings ``(n_nodes, dim)`` -> NGCF's final embeddings ``(n_nodes, dim * (layers + 1))``."""

    def __init__(self, adjacency: torch.Tensor, dim: int, layers: int, message_dropout: float = 0.0,
                 node_dropout: float = 0.0, seed: int = 0):
        super().__init__()
        init_seed, dropout_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
        init = torch.Generator().manual_seed(init_seed)
        self.layers = torch.nn.ModuleList(NGCFLayer(dim, init) for _ in range(layers))
        self.adjacency = DroppableAdjacency(adjacency)
        self.message_dropout, self.node_dropout = message_dropout, node_dropout
        self.generator = torch.Generator(device=adjacency.device).manual_seed(dropout_seed)

    def graph(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``Â`` and its transpose for this forward pass: with node dropout while training, a fresh draw."""
        if self.training and self.node_dropout > 0:
            return self.adjacency.dropped(self.node_dropout, self.generator)
        return self.adjacency.matrix, self.adjacency.matrix

    def forward(self, ego: torch.Tensor) -> torch.Tensor:
        matrix, transpose = self.graph()
        p = self.message_dropout if self.training else 0.0
        outputs, layer = [ego], ego
        for propagation in self.layers:
            side = _SparseMM.apply(matrix, transpose, layer)  # (n_nodes, dim)
            layer = dropout(propagation(layer, side), p, self.generator)
            outputs.append(F.normalize(layer, dim=1))
        return torch.cat(outputs, dim=1)  # (n_nodes, dim * (layers + 1))


def ngcf_propagation(interactions: Interactions, params: NGCFParams, seed: int, device: str = "cpu") -> NGCFPropagation:
    """The propagation module ``NGCFModel.fit`` trains: weights seeded from ``seed``, on ``device``."""
    adjacency = normalized_adjacency(interactions).to(device)
    module = NGCFPropagation(adjacency, params.dim, params.layers, params.message_dropout, params.node_dropout, seed)
    return module.to(device)


class NGCFModel(FactorModel):
    name = "ngcf"

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: NGCFParams) -> "NGCFModel":
        return cls.fit_bpr(inputs, params, lambda R: ngcf_propagation(R, params, inputs.seed, inputs.device))[0]
