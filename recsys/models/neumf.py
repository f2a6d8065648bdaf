"""NeuMF: GMF and the MLP side by side, fused in one prediction layer.

He et al. 2017, "Neural Collaborative Filtering", WWW (https://arxiv.org/abs/1708.05031), section 3.4,
and the authors' Keras code (``NeuMF.py``):

- a GMF part with its own embeddings of width ``dim``: ``phi_GMF = p_u * q_i``;
- an MLP part with its own embeddings and tower of widths ``layers`` (``recsys.models.mlp``): ``phi_MLP = z_L``;
- logit ``x(u, i) = h . [phi_GMF, phi_MLP] + b``, prediction ``sigmoid(x)`` (eq. 11);
- pre-training (``pretrain``, eq. 12): a GMF and an MLP are first trained alone with the same settings
  (epochs, lr, negatives, ...; Adam), NeuMF's embeddings and hidden layers are copied from them, and its
  prediction layer becomes ``h = [alpha h_GMF, (1 - alpha) h_MLP]``, ``b = alpha b_GMF + (1 - alpha) b_MLP``
  (the code's bias rule), so at that point NeuMF's logit is ``alpha x_GMF + (1 - alpha) x_MLP``; then
  NeuMF is trained with ``optimizer`` (the paper: vanilla SGD with ``lr``; "adam" as the code allows).
  Without pre-training NeuMF is initialised as GMF and MLP are and trained with Adam.

The pre-training's curves are kept in ``meta["pretrain_curves"]``. Deviation: the biases are the code's
(the paper's equations have none).
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.interactions import Interactions
from recsys.models.base import TrainingInputs
from recsys.models.gmf import GMF, GMFEmbeddings, GMFModel
from recsys.models.mf_bpr import curve_of, interactions_of
from recsys.models.mlp import MLP, MLPModel, MLPTower
from recsys.models.negative_sampling import torch_threads
from recsys.models.params import GMFParams, MLPParams, NeuMFParams, PointwiseParams
from recsys.models.pointwise import PointwiseModel, PointwiseNet, train_pointwise, training_meta
from recsys.models.user_curves import RankingCurve


class NeuMF(PointwiseNet):
    def __init__(self, n_users: int, n_items: int, dim: int, layers: tuple[int, ...]):
        super().__init__()
        self.dim = dim
        self.mf = GMFEmbeddings(n_users, n_items, dim)
        self.tower = MLPTower(n_users, n_items, layers)
        self.predict = torch.nn.Linear(dim + self.tower.width, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        fused = torch.cat([self.mf(users, items), self.tower(users, items)], dim=1)  # (B, dim + width)
        return self.predict(fused).squeeze(-1)  # (B,)

    def score_block(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        h = self.predict.weight[0]
        gmf = self.mf.block(users, items, h[:self.dim])  # (B, C)
        mlp = self.tower.block(users, items) @ h[self.dim:]  # (B, C)
        return gmf + mlp + self.predict.bias

    def embedding_rows(self, users: torch.Tensor, items: torch.Tensor) -> list[torch.Tensor]:
        return [self.mf.user(users), self.mf.item(items), self.tower.user(users), self.tower.item(items)]


def tower_layers(tower: MLPTower) -> tuple[int, ...]:
    return (2 * tower.half,) + tuple(layer.out_features for layer in tower.hidden)


def neumf_from_pretrained(gmf: GMF, mlp: MLP, alpha: float) -> NeuMF:
    """NeuMF initialised from a trained GMF and MLP (eq. 12): copies of their embeddings and hidden
    layers, and the prediction layer ``[alpha h_GMF, (1 - alpha) h_MLP]``, ``alpha b_GMF + (1 - alpha) b_MLP``."""
    n_users, dim = gmf.mf.user.weight.shape
    neumf = NeuMF(n_users, gmf.mf.item.weight.shape[0], dim, tower_layers(mlp.tower))
    neumf.mf.load_state_dict(gmf.mf.state_dict())
    neumf.tower.load_state_dict(mlp.tower.state_dict())
    with torch.no_grad():
        neumf.predict.weight.copy_(torch.cat([alpha * gmf.predict.weight, (1 - alpha) * mlp.predict.weight], dim=1))
        neumf.predict.bias.copy_(alpha * gmf.predict.bias + (1 - alpha) * mlp.predict.bias)
    return neumf.to(gmf.predict.weight.device)


def part_params(params: NeuMFParams) -> tuple[GMFParams, MLPParams]:
    """The GMF's and the MLP's params for pre-training: NeuMF's shared settings."""
    shared = {name: getattr(params, name) for name in PointwiseParams.model_fields}
    return GMFParams(**shared), MLPParams(**shared, layers=params.layers)


def neumf_seed(seed: int) -> int:
    """NeuMF's own stream after pre-training (the GMF and the MLP use ``seed`` itself, as when trained alone)."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


class NeuMFModel(PointwiseModel):
    name = "neumf"
    params_class = NeuMFParams

    @classmethod
    def build(cls, n_users: int, n_items: int, params: NeuMFParams) -> NeuMF:
        return NeuMF(n_users, n_items, params.dim, tuple(params.layers))

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: NeuMFParams) -> "NeuMFModel":
        R, curve = interactions_of(inputs), curve_of(inputs)
        phases = 3 if params.pretrain else 1

        def progress_of(phase: int):
            return lambda done, total: inputs.progress(phase * total + done, phases * total)

        with torch_threads(inputs.threads):
            if params.pretrain:
                module, pretrain_curves = pretrained(R, params, inputs, curve, progress_of)
                records = train_pointwise(module, R, params, neumf_seed(inputs.seed), params.optimizer,
                                          progress_of(2), curve, inputs.device)
            else:
                module, pretrain_curves = cls.initialised(R.n_users, R.n_items, params, inputs.seed), None
                records = train_pointwise(module, R, params, inputs.seed, "adam", progress_of(0), curve, inputs.device)
        meta = training_meta(R, params, inputs, records)
        if pretrain_curves is not None:
            meta["pretrain_curves"] = pretrain_curves
        return cls(module, R.user_ids, R.item_ids, meta)


def pretrained(R: Interactions, params: NeuMFParams, inputs: TrainingInputs, curve: RankingCurve | None,
               progress_of) -> tuple[NeuMF, dict[str, list[dict]]]:
    """Train a GMF and an MLP with NeuMF's settings and fuse them (``neumf_from_pretrained``)."""
    gmf_params, mlp_params = part_params(params)
    gmf = GMFModel.initialised(R.n_users, R.n_items, gmf_params, inputs.seed)
    gmf_curve = train_pointwise(gmf, R, gmf_params, inputs.seed, "adam", progress_of(0), curve, inputs.device)
    mlp = MLPModel.initialised(R.n_users, R.n_items, mlp_params, inputs.seed)
    mlp_curve = train_pointwise(mlp, R, mlp_params, inputs.seed, "adam", progress_of(1), curve, inputs.device)
    return neumf_from_pretrained(gmf, mlp, params.alpha), {"gmf": gmf_curve, "mlp": mlp_curve}
