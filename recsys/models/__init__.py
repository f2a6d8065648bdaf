"""The model registry: a model is one file in this package and one ``ModelSpec`` line below.

A spec names the model class (imported only when the model is trained or loaded, so validating a
config imports neither torch nor gensim), its params class (``recsys.models.params``), the
``train.<settings>`` block of the config that holds those params (models may share one), and
whether the model is a baseline and records learning curves. Evaluation and publishing use only
the interface of ``recsys.models.base``; a model declares there which tables it can serve.
``register`` adds a model from outside this file (a plugin, a test).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pydantic import BaseModel

from recsys.models.params import AttRecParams, GMFParams, GRU4RecParams, LightGCNParams, MFBPRParams, MFParams, MLPParams, NeuMFParams, NGCFParams, \
    NoParams, SideInfoParams, SKNNParams, SkipGramParams, Word2VecParams

ITEMS, USERS, BOTH = frozenset({"item_to_item"}), frozenset({"user_to_item"}), frozenset({"item_to_item", "user_to_item"})


@dataclass(frozen=True)
class ModelSpec:
    name: str
    target: str  # "module:Class"
    params: type[BaseModel] = NoParams
    settings: str | None = None  # the config block train.<settings>; None: the model has no settings
    baseline: bool = False  # a floor the other models are compared with in the report
    curves: bool = False  # records a validation AUC per epoch: wants validation pairs held out of training
    tables: frozenset[str] = ITEMS  # the published tables it can fill (its class's ``serves``, known without importing it)
    sequences: bool = False  # a next-item model (``SequenceModel``): trains on the run's sequences, answers from a prefix


REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("word2vec", "recsys.models.word2vec:Word2VecModel", Word2VecParams, "word2vec"),
    ModelSpec("skipgram", "recsys.models.skipgram:SkipGramModel", SkipGramParams, "skipgram", curves=True),
    ModelSpec("side_info_avg", "recsys.models.side_info:SideInfoAvgModel", SideInfoParams, "side_info", curves=True),
    ModelSpec("eges", "recsys.models.side_info:EGESModel", SideInfoParams, "side_info", curves=True),
    ModelSpec("mf_pairs", "recsys.models.mf:MFPairsModel", MFParams, "mf", curves=True),
    ModelSpec("mf_walks", "recsys.models.mf:MFWalksModel", MFParams, "mf", curves=True),
    ModelSpec("popular", "recsys.models.popular:PopularModel", baseline=True, tables=BOTH),
    ModelSpec("item_knn", "recsys.models.item_knn:ItemKNNModel", baseline=True, tables=BOTH),
    ModelSpec("mf_bpr", "recsys.models.mf_bpr:MFBPRModel", MFBPRParams, "mf_bpr", tables=USERS),
    ModelSpec("lightgcn", "recsys.models.lightgcn:LightGCNModel", LightGCNParams, "lightgcn", tables=USERS),
    ModelSpec("ngcf", "recsys.models.ngcf:NGCFModel", NGCFParams, "ngcf", tables=USERS),
    ModelSpec("gmf", "recsys.models.gmf:GMFModel", GMFParams, "gmf", tables=USERS),
    ModelSpec("mlp", "recsys.models.mlp:MLPModel", MLPParams, "mlp", tables=USERS),
    ModelSpec("neumf", "recsys.models.neumf:NeuMFModel", NeuMFParams, "neumf", tables=USERS),
    ModelSpec("gru4rec", "recsys.models.gru4rec:GRU4RecModel", GRU4RecParams, "gru4rec", tables=BOTH, sequences=True),
    ModelSpec("attrec", "recsys.models.attrec:AttRecModel", AttRecParams, "attrec", tables=BOTH, sequences=True),
    ModelSpec("sknn", "recsys.models.sknn:SKNNModel", SKNNParams, "sknn", baseline=True, tables=BOTH, sequences=True),
)}


def register(spec: ModelSpec) -> None:
    """Add (or replace) a model; ``train.models`` may name it from then on."""
    REGISTRY[spec.name] = spec


def spec_of(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]


def model_class(name: str):
    module, cls = spec_of(name).target.split(":")
    return getattr(importlib.import_module(module), cls)


def baselines() -> tuple[str, ...]:
    return tuple(name for name, spec in REGISTRY.items() if spec.baseline)


def serving(table: str, names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The models (of ``names``, else all registered) that can fill ``table``."""
    return tuple(n for n in (REGISTRY if names is None else names) if table in REGISTRY[n].tables)


def sequence_models(names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The next-item models (of ``names``, else all registered): they read the run's sequences."""
    return tuple(n for n in (REGISTRY if names is None else names) if REGISTRY[n].sequences)


def with_curves() -> tuple[str, ...]:
    return tuple(name for name, spec in REGISTRY.items() if spec.curves)
