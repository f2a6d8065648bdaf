"""GMF: generalised matrix factorisation, the linear half of NCF.

He et al. 2017, "Neural Collaborative Filtering", WWW (https://arxiv.org/abs/1708.05031), section 3.2,
and the authors' Keras code (``GMF.py``):

- user and item embeddings ``p_u, q_i`` in ``R^dim`` (the predictive factors), ``N(0, init_std^2)``;
- logit ``x(u, i) = h . (p_u * q_i) + b``, prediction ``y(u, i) = sigmoid(x)`` (eq. 9, ``a_out`` the
  sigmoid; ``h`` is learned, LeCun-uniform at start);
- trained pointwise with the log loss on each positive and ``negatives`` sampled items
  (``recsys.models.pointwise``), Adam.

Scoring a batch of users against items is one product, ``(p_u * h) @ Q^T + b``.
Deviation: the paper's eq. 9 has no bias ``b``; the code's output layer (Keras ``Dense``) has one.
"""

from __future__ import annotations

import torch

from recsys.models.params import GMFParams
from recsys.models.pointwise import PointwiseModel, PointwiseNet


class GMFEmbeddings(torch.nn.Module):
    """The user and item embeddings of GMF and their element-wise product (shared with NeuMF)."""

    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user = torch.nn.Embedding(n_users, dim)
        self.item = torch.nn.Embedding(n_items, dim)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.user(users) * self.item(items)  # (B, dim)

    def block(self, users: torch.Tensor, items: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``h . (p_u * q_i)`` of every user against every item: ``(B, C)``, one product."""
        return (self.user(users) * h) @ self.item(items).T


class GMF(PointwiseNet):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.mf = GMFEmbeddings(n_users, n_items, dim)
        self.predict = torch.nn.Linear(dim, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.predict(self.mf(users, items)).squeeze(-1)  # (B,)

    def score_block(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.mf.block(users, items, self.predict.weight[0]) + self.predict.bias  # (B, C)

    def embedding_rows(self, users: torch.Tensor, items: torch.Tensor) -> list[torch.Tensor]:
        return [self.mf.user(users), self.mf.item(items)]


class GMFModel(PointwiseModel):
    name = "gmf"
    params_class = GMFParams

    @classmethod
    def build(cls, n_users: int, n_items: int, params: GMFParams) -> GMF:
        return GMF(n_users, n_items, params.dim)
