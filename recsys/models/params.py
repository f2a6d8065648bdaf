"""The settings of each registered model: pydantic classes that import nothing heavy.

The registry (``recsys.models``) names one of these per model, and the pipeline config builds its
``train.<settings>`` blocks from them, so validating a config never imports torch or gensim. A
model's ``fit`` receives its own params instance, never the pipeline config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recsys.settings import Strict


class NoParams(Strict):
    """For models without settings (the baselines)."""


class SkipGramSettings(Strict):
    """Skip-gram with negative sampling settings, the same for gensim and the PyTorch models."""

    vector_size: int = Field(64, ge=2, description="embedding dimension")
    window: int = Field(5, ge=1, description="context window over a walk (dynamic, as word2vec's)")
    negative: int = Field(5, ge=1, description="negatives per positive pair, from the unigram^0.75 distribution")
    epochs: int = Field(5, ge=1, description="passes over the pairs")
    alpha: float = Field(0.025, gt=0, description="initial learning rate, decayed linearly over the whole run to min_alpha")
    min_alpha: float = Field(0.0001, gt=0, description="final learning rate")
    sample: float = Field(1e-3, ge=0, description="subsampling threshold for frequent items (word2vec's formula); 0 keeps all")


class Word2VecParams(SkipGramSettings):
    input_mode: Literal["corpus_file", "iterator"] = Field(
        "corpus_file", description="feed gensim from a text corpus file (faster, see docs/benchmarks.md) or a Python iterator"
    )


class NegativeSamplingParams(SkipGramSettings):
    """Settings of the PyTorch models trained with negative sampling (``recsys.models.negative_sampling``);
    a validation AUC is recorded after each epoch."""

    batch_size: int = Field(2048, ge=1, description="pairs per SGD step (capped at the number of items that train)")
    negatives_shared_by: int = Field(8, ge=1, description="consecutive pairs that share one draw of negatives (1 = word2vec's own draw per pair)")
    patience: int = Field(0, ge=0, description="stop after this many epochs without a better validation AUC and keep the best epoch's parameters; 0 trains every epoch")

    @model_validator(mode="after")
    def _batch_holds_groups(self):
        if self.batch_size % self.negatives_shared_by:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of negatives_shared_by ({self.negatives_shared_by})")
        return self


class SkipGramParams(NegativeSamplingParams):
    """PyTorch skip-gram on the walks (``recsys.models.skipgram``)."""


class SideInfoParams(NegativeSamplingParams):
    """Skip-gram with side information, averaged or EGES-weighted (``recsys.models.side_info``)."""

    price_buckets: int = Field(10, ge=1, description="price is side information as one of this many quantile buckets")


class MFParams(NegativeSamplingParams):
    """Matrix factorisation with biases (``recsys.models.mf``) on graph pairs (mf_pairs) or walk windows (mf_walks)."""

    alpha: float = Field(0.05, gt=0, description="initial learning rate, decayed linearly over the whole run")
    sample: float = Field(0.0, ge=0, description="subsampling threshold for mf_walks' walk tokens; 0 keeps all")
    init_scale: float = Field(0.1, gt=0, description="both factor matrices start uniform in +-init_scale")
    pairs_per_epoch: int | None = Field(None, ge=1, description="mf_pairs: edges drawn per epoch; None = as many pairs as an epoch of mf_walks")


class UserModelParams(Strict):
    """What every user-to-item model trained by epochs shares: its stopping rule on the ranking
    validation (each user's latest training item held out, ``recsys.models.user_curves``)."""

    patience: int = Field(5, ge=0, description="stop after this many epochs without a better validation NDCG@20 and keep the best epoch's parameters; 0 trains every epoch")


class MFBPRParams(UserModelParams):
    """Matrix factorisation trained with BPR on the user x item matrix (``recsys.models.mf_bpr``);
    the defaults are LightGCN's paper and official code, whose MF baseline this is."""

    dim: int = Field(64, ge=1, description="embedding dimension of users and items")
    lr: float = Field(0.001, gt=0, description="Adam learning rate")
    l2: float = Field(1e-4, ge=0, description="weight of the L2 penalty: half the squared norms of the batch's user, positive and negative embeddings, divided by the batch size (the official code's `decay`)")
    batch_size: int = Field(2048, ge=1, description="BPR triples per Adam step")
    epochs: int = Field(50, ge=1, description="passes over the interactions, each positive once per epoch with one fresh negative; early stopping may end sooner. The papers train up to 1000 on a GPU: raise it for large logs (docs/models.md)")
    init_std: float = Field(0.1, gt=0, description="embeddings start normal with this standard deviation (the official LightGCN code's initialiser)")


class LightGCNParams(MFBPRParams):
    """LightGCN (``recsys.models.lightgcn``): the same BPR training, on embeddings propagated over the
    normalised user-item graph; the defaults are the paper's."""

    layers: int = Field(3, ge=0, description="propagation layers K; the final embedding is the mean of layers 0..K (0 is MF-BPR)")


class NGCFParams(MFBPRParams):
    """NGCF (``recsys.models.ngcf``), BPR-trained like MF-BPR; the defaults are the NGCF paper's and its
    official code's (Wang et al. 2019): every layer as wide as the embedding."""

    lr: float = Field(0.0001, gt=0, description="Adam learning rate (NGCF code default)")
    l2: float = Field(1e-5, ge=0, description="weight of the L2 penalty on the batch's ego embeddings, as MF-BPR's")
    batch_size: int = Field(1024, ge=1, description="BPR triples per Adam step (NGCF code default)")
    layers: int = Field(3, ge=1, description="embedding propagation layers; the final embedding concatenates layers 0..K")
    message_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on each layer's output while training")
    node_dropout: float = Field(0.0, ge=0, lt=1, description="share of the normalised adjacency's entries dropped (and the rest rescaled) per batch while training; the NGCF code's default is off")


class PointwiseParams(UserModelParams):
    """The NCF family (He et al. 2017, ``recsys.models.gmf`` / ``mlp`` / ``neumf``): pointwise log loss
    on each positive and ``negatives`` sampled non-interacted items; defaults from the paper's code."""

    dim: int = Field(8, ge=1, description="predictive factors: GMF's embedding size and the MLP's last layer")
    lr: float = Field(0.001, gt=0, description="Adam learning rate")
    l2: float = Field(0.0, ge=0, description="weight decay on the parameters a batch touches")
    batch_size: int = Field(256, ge=1, description="labelled (user, item) instances per step")
    negatives: int = Field(4, ge=1, description="sampled non-interacted items per positive, drawn afresh each epoch")
    epochs: int = Field(20, ge=1, description="passes over the positives")
    init_std: float = Field(0.01, gt=0, description="embeddings start normal with this standard deviation (the paper's code)")


class GMFParams(PointwiseParams):
    """Generalised matrix factorisation: ``sigmoid(h . (p_u * q_i))``."""


class MLPParams(PointwiseParams):
    """The MLP of NCF: the concatenated user and item embeddings (each ``layers[0] / 2`` wide) through ReLU layers."""

    layers: tuple[int, ...] = Field((64, 32, 16, 8), min_length=1, description="widths: the concatenated embedding, then each hidden layer (the paper's tower halves each time)")

    @model_validator(mode="after")
    def _even_input(self):
        if self.layers[0] % 2:
            raise ValueError(f"layers[0] ({self.layers[0]}) is the concatenated user and item embedding: it must be even")
        return self


class NeuMFParams(MLPParams):
    """NeuMF: GMF and MLP side by side, their last layers concatenated into one prediction."""

    pretrain: bool = Field(True, description="initialise from a GMF and an MLP trained first with these settings (the paper's pre-training); false trains NeuMF from scratch")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the GMF half of the prediction layer after pre-training (1 - alpha for the MLP half)")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="optimiser of NeuMF after pre-training (the paper: vanilla SGD); without pre-training Adam is used")
