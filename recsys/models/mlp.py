"""The MLP of NCF: a ReLU tower over the concatenated user and item embeddings.

He et al. 2017, "Neural Collaborative Filtering", WWW (https://arxiv.org/abs/1708.05031), section 3.3,
and the authors' Keras code (``MLP.py``):

- user and item embeddings ``p_u, q_i``, each ``layers[0] / 2`` wide, ``N(0, init_std^2)``;
- ``z_1 = [p_u, q_i]``, then ``z_{l+1} = ReLU(W_l z_l + b_l)`` with widths ``layers[1:]`` (the paper's
  tower halves each time: 64 -> 32 -> 16 -> 8), Glorot-uniform weights;
- logit ``x(u, i) = h . z_L + b`` (LeCun-uniform ``h``), prediction ``sigmoid(x)`` (eq. 10);
- trained pointwise with the log loss on each positive and ``negatives`` sampled items
  (``recsys.models.pointwise``), Adam.

Scoring users against all items evaluates the tower on ``users x items`` rows in blocks
(``recsys.models.pointwise.score_all``); the first layer is split as ``W [p; q] = W_p p + W_q q``, so the
user and item halves are computed once per block and only added per pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys.models.params import MLPParams
from recsys.models.pointwise import PointwiseModel, PointwiseNet


class MLPTower(torch.nn.Module):
    """The embeddings and hidden layers of the MLP: ``z_L`` of pairs (shared with NeuMF)."""

    def __init__(self, n_users: int, n_items: int, layers: tuple[int, ...]):
        super().__init__()
        self.half = layers[0] // 2
        self.user = torch.nn.Embedding(n_users, self.half)
        self.item = torch.nn.Embedding(n_items, self.half)
        self.hidden = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(layers[:-1], layers[1:]))
        self.width = layers[-1]

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        z = torch.cat([self.user(users), self.item(items)], dim=1)  # (B, layers[0])
        for layer in self.hidden:
            z = F.relu(layer(z))
        return z  # (B, width)

    def block(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``z_L`` of every user against every item: ``(B, C, width)``."""
        p, q = self.user(users), self.item(items)  # (B, half), (C, half)
        if not len(self.hidden):
            return torch.cat([p[:, None, :].expand(-1, len(q), -1), q[None, :, :].expand(len(p), -1, -1)], dim=2)
        first = self.hidden[0]
        user_part = p @ first.weight[:, :self.half].T + first.bias  # (B, layers[1])
        item_part = q @ first.weight[:, self.half:].T  # (C, layers[1])
        z = F.relu(user_part[:, None, :] + item_part[None, :, :])  # (B, C, layers[1])
        for layer in self.hidden[1:]:
            z = F.relu(layer(z))
        return z


class MLP(PointwiseNet):
    def __init__(self, n_users: int, n_items: int, layers: tuple[int, ...]):
        super().__init__()
        self.tower = MLPTower(n_users, n_items, layers)
        self.predict = torch.nn.Linear(self.tower.width, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.predict(self.tower(users, items)).squeeze(-1)  # (B,)

    def score_block(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.predict(self.tower.block(users, items)).squeeze(-1)  # (B, C)

    def embedding_rows(self, users: torch.Tensor, items: torch.Tensor) -> list[torch.Tensor]:
        return [self.tower.user(users), self.tower.item(items)]


class MLPModel(PointwiseModel):
    name = "mlp"
    params_class = MLPParams

    @classmethod
    def build(cls, n_users: int, n_items: int, params: MLPParams) -> MLP:
        return MLP(n_users, n_items, tuple(params.layers))
