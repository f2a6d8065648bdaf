"""word2vec on random walks (DeepWalk-style item embeddings) with gensim.

Skip-gram with negative sampling (Mikolov et al. 2013, "Distributed Representations of Words and
Phrases and their Compositionality"), trained on the walks of ``recsys.walks`` as sentences whose
words are node indices (Perozzi et al. 2014, "DeepWalk"). Scores are cosine similarities
(``recsys.models.embedding``). gensim trains from a text corpus file or from a Python iterator;
``input_mode`` picks one (the corpus file is faster, see docs/benchmarks.md). With more than one
worker thread gensim's updates race (Hogwild), so only ``threads == 1`` gives identical vectors for
the same seed; the pipeline's default (``train.parallel_models``: each model one thread, the models
in parallel processes, ``recsys.train``) keeps that while using every core. ``max_trained_words``
(off by default) trades quality for time on large catalogues: fewer epochs over a large corpus.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from gensim.models import Word2Vec
from gensim.models.callbacks import CallbackAny2Vec

from recsys.models.base import TrainingInputs, no_progress
from recsys.models.embedding import EmbeddingModel
from recsys.models.params import Word2VecParams

log = logging.getLogger(__name__)


class WalkSentences:
    """Re-iterable walks as lists of token strings (gensim's iterator input)."""

    def __init__(self, walks: pa.ChunkedArray):
        self.walks = walks

    def __iter__(self) -> Iterator[list[str]]:
        for chunk in self.walks.chunks:
            tokens = pc.cast(chunk, pa.list_(pa.string()))
            yield from tokens.to_pylist()


def write_corpus(walks: pa.ChunkedArray, path: Path) -> Path:
    """One walk per line, node indices separated by spaces (gensim's ``corpus_file`` format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for chunk in walks.chunks:
            lines = pc.binary_join(pc.cast(chunk, pa.list_(pa.string())), " ")
            handle.write("\n".join(lines.to_pylist()))
            handle.write("\n")
    return path


class _EpochLog(CallbackAny2Vec):
    def __init__(self, epochs: int, progress=no_progress):
        self.epoch, self.epochs, self.started, self.progress = 0, epochs, time.perf_counter(), progress

    def on_epoch_end(self, model: Word2Vec) -> None:
        self.epoch += 1
        log.info("word2vec: epoch %d/%d done (%.1f s)", self.epoch, self.epochs, time.perf_counter() - self.started)
        self.progress(self.epoch, self.epochs)


def corpus_words(walks: pa.ChunkedArray | pa.ListArray) -> int:
    """The words of one epoch: the nodes of every walk."""
    return int(pc.sum(pc.list_value_length(walks)).as_py() or 0)


def train_word2vec(walks: pa.ChunkedArray | pa.ListArray, params: Word2VecParams, threads: int, seed: int,
                   progress=no_progress) -> Word2Vec:
    walks = walks if isinstance(walks, pa.ChunkedArray) else pa.chunked_array([walks])
    words = corpus_words(walks)
    epochs = params.epochs_for(words)
    if epochs < params.epochs:
        log.info("word2vec: %d epoch(s) instead of %d: %d words per epoch, max_trained_words %d", epochs, params.epochs,
                 words, params.max_trained_words)
    common = dict(vector_size=params.vector_size, window=params.window, sg=1, hs=0, negative=params.negative,
                  min_count=1, sample=params.sample, alpha=params.alpha, min_alpha=params.min_alpha,
                  epochs=epochs, workers=threads, seed=seed, callbacks=[_EpochLog(epochs, progress)])
    if params.input_mode == "iterator":
        return Word2Vec(sentences=WalkSentences(walks), **common)
    with tempfile.TemporaryDirectory(prefix="recsys-word2vec-") as scratch:  # gensim's corpus_file is a file
        return Word2Vec(corpus_file=str(write_corpus(walks, Path(scratch) / "walks.txt")), **common)


def vectors_by_node(model: Word2Vec, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.zeros((n_nodes, model.wv.vector_size), dtype=np.float32)
    has_vector = np.zeros(n_nodes, dtype=bool)
    nodes = np.array([int(key) for key in model.wv.index_to_key], dtype=np.int64)
    vectors[nodes] = model.wv.vectors
    has_vector[nodes] = True
    return vectors, has_vector


class Word2VecModel(EmbeddingModel):
    @classmethod
    def fit(cls, inputs: TrainingInputs, params: Word2VecParams) -> "Word2VecModel":
        if inputs.walks is None:
            raise ValueError("word2vec trains on walks, but none were given")
        model = train_word2vec(inputs.walks, params, inputs.threads, inputs.seed, inputs.progress)
        vectors, has_vector = vectors_by_node(model, inputs.table.n_nodes)
        return cls("word2vec", vectors, has_vector, {"params": params.model_dump(), "threads": inputs.threads,
                                                     "epochs_trained": model.epochs})
