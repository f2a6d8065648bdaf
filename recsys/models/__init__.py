"""The model registry: a model is one file in this package, registered here by name.

Every entry has ``fit(inputs: TrainingInputs, config: TrainConfig) -> ItemModel`` and
``load(folder, inputs) -> ItemModel``; evaluation and publishing use only the ``ItemModel`` interface.
Imports are lazy so that validating a config does not import gensim or torch.
"""

from __future__ import annotations

import importlib

# name -> "module:Class"
REGISTRY: dict[str, str] = {
    "word2vec": "recsys.models.word2vec:Word2VecModel",
    "popular": "recsys.models.popular:PopularModel",
    "item_knn": "recsys.models.item_knn:ItemKNNModel",
}
BASELINES = ("popular", "item_knn")


def model_class(name: str):
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
