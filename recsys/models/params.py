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


class MFBPRParams(Strict):
    """Matrix factorisation trained with BPR on the user x item matrix (``recsys.models.mf_bpr``);
    the defaults are LightGCN's paper and official code, whose MF baseline this is."""

    dim: int = Field(64, ge=1, description="embedding dimension of users and items")
    lr: float = Field(0.001, gt=0, description="Adam learning rate")
    l2: float = Field(1e-4, ge=0, description="weight of the L2 penalty: half the squared norms of the batch's user, positive and negative embeddings, divided by the batch size (the official code's `decay`)")
    batch_size: int = Field(2048, ge=1, description="BPR triples per Adam step")
    epochs: int = Field(1000, ge=1, description="passes over the interactions, each positive once per epoch with one fresh negative (the official code's default; far fewer fit a nightly CPU budget)")
    init_std: float = Field(0.1, gt=0, description="embeddings start normal with this standard deviation (the official LightGCN code's initialiser)")


class LightGCNParams(MFBPRParams):
    """LightGCN (``recsys.models.lightgcn``): the same BPR training, on embeddings propagated over the
    normalised user-item graph; the defaults are the paper's."""

    layers: int = Field(3, ge=0, description="propagation layers K; the final embedding is the mean of layers 0..K (0 is MF-BPR)")
