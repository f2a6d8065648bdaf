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
    max_trained_words: int | None = Field(None, ge=1, description="at most this many words (nodes of the walks) trained over all epochs: a corpus of more than max_trained_words / epochs words trains floor(max_trained_words / words) epochs instead (at least 1); one thread trains about 100,000 words a second at 180,000 items. A trade of quality for time: at 10M events 40,000,000 gives 2 epochs instead of 5, 7 minutes instead of 17, and next Recall@20 0.310 instead of 0.392 (0.355 with alpha 0.05; docs/benchmarks.md). None: always epochs")

    def epochs_for(self, words: int) -> int:
        """The epochs to train over a corpus of ``words`` words (see ``max_trained_words``)."""
        if self.max_trained_words is None or words * self.epochs <= self.max_trained_words:
            return self.epochs
        return max(1, self.max_trained_words // max(words, 1))


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

    patience: int = Field(5, ge=0, description="stop after this many epochs without a better validation NDCG@20 (by more than min_gain) and keep the best epoch's parameters; 0 trains every epoch")
    min_gain: float = Field(0.002, ge=0, description="an epoch restarts the patience only when its validation NDCG@20 is more than this share above that of the last epoch that did (0.002: 0.2%); smaller gains still make it the kept best epoch. 0: any gain counts")


class MFBPRParams(UserModelParams):
    """Matrix factorisation trained with BPR on the user x item matrix (``recsys.models.mf_bpr``);
    the defaults are LightGCN's paper and official code, whose MF baseline this is."""

    dim: int = Field(64, ge=1, description="embedding dimension of users and items")
    lr: float = Field(0.001, gt=0, description="Adam learning rate")
    l2: float = Field(1e-4, ge=0, description="weight of the L2 penalty: half the squared norms of the batch's user, positive and negative embeddings, divided by the batch size (the official code's `decay`)")
    batch_size: int = Field(2048, ge=1, description="BPR triples per Adam step")
    epochs: int = Field(50, ge=1, description="passes over the interactions, each positive once per epoch with one fresh negative; early stopping may end sooner. The papers train up to 1000 on a GPU: raise it for large logs (docs/models.md)")
    init_std: float = Field(0.1, gt=0, description="embeddings start normal with this standard deviation (the official LightGCN code's initialiser)")
    max_batches_per_epoch: int | None = Field(None, ge=1, description="at most this many Adam steps per epoch: when the epoch's triples need more batches of batch_size, each batch grows to ceil(triples / this) instead and the learning rate grows by the same factor; None keeps batch_size for any log")

    def max_steps(self, triples: int) -> int | None:
        """The most Adam steps an epoch of ``triples`` may take (None: as many as batch_size needs)."""
        return self.max_batches_per_epoch


class LightGCNParams(MFBPRParams):
    """LightGCN (``recsys.models.lightgcn``): the same BPR training, on embeddings propagated over the
    normalised user-item graph; the defaults are the paper's, with a cap on the steps per epoch for large logs."""

    layers: int = Field(3, ge=0, description="propagation layers K; the final embedding is the mean of layers 0..K (0 is MF-BPR)")
    max_batches_per_epoch: int | None = Field(256, ge=1, description="at most this many Adam steps per epoch (each propagates the whole graph, so without a cap an epoch costs the square of the interactions): above 256 x batch_size triples each batch grows to ceil(triples / 256) and lr by the same factor; None (with max_propagated_per_epoch None) keeps batch_size for any log (the paper's schedule)")
    max_propagated_per_epoch: int | None = Field(64_000_000, ge=1, description="at most this many triples x steps per epoch: a step propagates the whole graph, so an epoch takes at most ceil(this / triples) steps, which bites above about 362,000 triples (800,000 events), and costs about the same on any log (4.1M triples, a 10M-event log: 16 steps of 257,004 triples, lr x125); the smaller of the two caps wins; None: only max_batches_per_epoch")

    def max_steps(self, triples: int) -> int | None:
        steps = super().max_steps(triples)
        if self.max_propagated_per_epoch is None:
            return steps
        budget = -(-self.max_propagated_per_epoch // max(triples, 1))
        return budget if steps is None else min(steps, budget)


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


class SequenceParams(Strict):
    """What every sequence model (``recsys.models.base.SequenceModel``) shares."""

    recommend_seen: bool = Field(True, description="whether a user's published user-to-item rows may repeat items the user already had (sessions repeat items; publish.exclude_seen applies only when this is false)")


class GRU4RecParams(SequenceParams):
    """GRU4Rec (``recsys.models.gru4rec``): Hidasi et al. 2016 with the 2018 "Top-k Gains" losses and
    sampling. Names and defaults follow the official PyTorch implementation (its ``GRU4Rec`` class)."""

    layers: tuple[int, ...] = Field((100,), min_length=1, description="hidden units of each GRU layer")
    embedding: int = Field(0, ge=0, description="input embedding size when not constrained; 0 feeds the items one-hot (the first layer's input weights as a table, as wide as 3 x its units)")
    constrained_embedding: bool = Field(True, description="the input item embeddings are the output ones, as wide as the last layer (official default)")
    loss: Literal["cross-entropy", "bpr-max", "top1-max"] = Field("cross-entropy", description="loss over the sampled outputs (2018 paper)")
    batch_size: int = Field(64, ge=1, description="parallel sessions per mini-batch (session-parallel, the 2016 paper's Figure 2)")
    n_sample: int = Field(2048, ge=0, description="extra negatives per mini-batch, shared by the batch, drawn by popularity^sample_alpha")
    sample_alpha: float = Field(0.5, ge=0, le=1, description="exponent of popularity in the negative sampling distribution (0 uniform, 1 popularity)")
    bpreg: float = Field(1.0, ge=0, description="score regularisation weight of bpr-max (2018 paper); top1-max has its own fixed one")
    elu_param: float = Field(0.5, ge=0, description="ELU(alpha=elu_param) on the scores before bpr-max / top1-max (official applies it to bpr-max only, never to cross-entropy); 0 turns it off")
    logq: float = Field(0.0, ge=0, description="cross-entropy only: subtract logq * log(sampling probability) from each output score (official; its tuned YooChoose settings use 1)")
    dropout_p_embed: float = Field(0.0, ge=0, lt=1, description="dropout on the input embedding (one-hot input: on the first layer's output)")
    dropout_p_hidden: float = Field(0.0, ge=0, lt=1, description="dropout on the hidden state of each GRU layer")
    learning_rate: float = Field(0.05, gt=0, description="Adagrad learning rate")
    momentum: float = Field(0.0, ge=0, lt=1, description="momentum of Adagrad (official: Adagrad with momentum)")
    n_epochs: int = Field(10, ge=1, description="passes over the training sessions")
    init_std: float = Field(0.0, ge=0, description="weights start uniform in +-sqrt(6/(fan_in+fan_out)) per gate when 0 (official), else normal with this deviation")


class AttRecParams(SequenceParams):
    """AttRec (``recsys.models.attrec``): Zhang et al. 2018, "Next Item Recommendation with
    Self-Attention": self-attention over the last ``L`` items (short-term intent) plus a user embedding
    (long-term preference), Euclidean scores, hinge loss against sampled negatives on the next ``T`` items.
    Defaults: the paper's and its authors' code's (DeepRec ``AttRec.py`` and ``test/testSeqRec.py``) for ML-100K."""

    L: int = Field(5, ge=1, description="the last L items form the short-term sequence (authors' ML-100K run: 5)")
    T: int = Field(3, ge=1, description="the next T items are the targets of each training example (authors: 3)")
    omega: float = Field(0.2, ge=0, le=1, description="weight of the long-term (user) distance, 1 - omega the short-term one (authors' code: 0.2)")
    dim: int = Field(100, ge=2, description="embedding dimension (authors' code: 100)")
    margin: float = Field(0.5, gt=0, description="hinge loss margin (authors' code: 0.5)")
    negatives: int = Field(1, ge=1, description="sampled negative items per target (authors' code: 1)")
    lr: float = Field(0.001, gt=0, description="Adam learning rate")
    l2: float = Field(0.001, ge=0, description="L2 weight on the squared norms of the embedding rows each example touches, averaged over the batch")
    init_std: float = Field(0.001, gt=0, description="embeddings start normal with this deviation (authors: truncated normal, 0.001)")
    batch_size: int = Field(1000, ge=1, description="training examples per Adam step (authors: 1000)")
    epochs: int = Field(20, ge=1, description="passes over the training examples")


class SKNNParams(SequenceParams):
    """Session-kNN (``recsys.models.sknn``, Ludewig & Jannach 2018): neighbour sessions of the current one
    among recent training sessions; V-SKNN weighs the current session's later items more."""

    variant: Literal["vsknn", "sknn"] = Field("vsknn", description="vsknn: the current session's item at click i of n weighs i/n (session-rec's 'div'), dot product over its distinct items; sknn: cosine of binary sessions")
    k: int = Field(100, ge=1, description="neighbour sessions whose items are scored")
    sample_size: int = Field(500, ge=1, description="most recent training sessions sharing an item with the current one that are compared")
    score_weighting: Literal["div", "same"] = Field("div", description="vsknn only: a neighbour's vote is divided by how many clicks back the current session last had one of its items (session-rec's default 'div'); same: no division")
