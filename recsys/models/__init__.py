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
    "skipgram": "recsys.models.skipgram:SkipGramModel",
    "side_info_avg": "recsys.models.side_info:SideInfoAvgModel",
    "eges": "recsys.models.side_info:EGESModel",
    "mf_pairs": "recsys.models.mf:MFPairsModel",
    "mf_walks": "recsys.models.mf:MFWalksModel",
}
BASELINES = ("popular", "item_knn")
# PyTorch models: they record a validation AUC after every epoch (the report's learning curves)
WITH_CURVES = ("skipgram", "side_info_avg", "eges", "mf_pairs", "mf_walks")


def model_class(name: str):
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
