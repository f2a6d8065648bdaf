"""Config validation names the field; presets and prefect-free imports."""

import ast

import pytest
from pydantic import ValidationError

from recsys.config import PipelineConfig
from tests.conftest import DATASETS, PROJECT_ROOT


def test_defaults_run_on_the_sample_shipped_in_the_package():
    config = PipelineConfig()
    assert config.ingest.input is None and config.ingest.source().name == "events.csv.gz"
    assert config.ingest.source().parent == PROJECT_ROOT / "recsys" / "sample_data"
    assert config.ingest.items_source().name == "items.csv.gz"
    config.check_files()
    assert config.ingest.column_mapping().time_format == "iso"


def test_no_default_reads_a_file_and_disk_checks_name_the_field(tmp_path, monkeypatch):
    """Validation never opens a file (a deployment's config validates on any machine); ``check_files``,
    which a run calls before any stage, does."""
    import builtins

    def no_open(*args, **kwargs):
        raise AssertionError(f"validation opened {args[0]}")

    with monkeypatch.context() as patched:
        patched.setattr(builtins, "open", no_open)
        missing = PipelineConfig.model_validate({"ingest": {"input": "/does/not/exist"}})
        PipelineConfig()
    with pytest.raises(ValueError, match="ingest.input: path does not exist: /does/not/exist"):
        missing.check_files()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="lake: not a directory"):
        PipelineConfig.model_validate({"lake": str(tmp_path / "file")}).check_files()


@pytest.mark.parametrize("override, field", [
    ({"walks": {"walk_length": 1}}, "walks.walk_length"),
    ({"train": {"models": ["nope"]}}, "train.models"),
    ({"ingest": {"preset": "nope"}}, "ingest.preset"),
    ({"train": {"skipgram": {"epochs": 0}}}, "train.skipgram.epochs"),
    ({"graph": {"decay": 2}}, "graph.decay"),
    ({"walks": {"partitions": 0}}, "walks.partitions"),
    ({"typo": 1}, "typo"),
])
def test_bad_config_names_the_field(override, field):
    with pytest.raises(ValidationError) as error:
        PipelineConfig.model_validate(override)
    assert field in str(error.value).replace("\n", ".").replace(" ", "")


def test_recsys_never_imports_prefect():
    for path in (PROJECT_ROOT / "recsys").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        bad = {n for n in names if n.split(".")[0] in {"prefect", "tasks", "flows"}}
        assert not bad, f"{path} imports {bad}"


def test_only_spark_facing_modules_import_pyspark():
    allowed = {"spark.py", "ingest.py", "graph.py", "walks.py", "holdout.py"}
    for path in (PROJECT_ROOT / "recsys").rglob("*.py"):
        if "pyspark" in path.read_text() and "import" in path.read_text():
            uses = [l for l in path.read_text().splitlines() if l.startswith(("import pyspark", "from pyspark"))]
            assert not uses or path.name in allowed, path
    for path in (PROJECT_ROOT / "recsys").rglob("*.py"):
        assert "SparkSession.builder" not in path.read_text() or path.name == "spark.py", path


@pytest.mark.parametrize("override, field", [
    ({"spark": {"driver_memory": "lots"}}, "spark.driver_memory"),
    ({"lake": "s3://bucket/lake"}, "lake"),
    ({"ingest": {"mapping": {"item_id": "product"}}}, "ingest"),
    ({"dataset": "../escape"}, "dataset"),
])
def test_more_bad_configs_fail_early(override, field):
    with pytest.raises(ValidationError) as error:
        PipelineConfig.model_validate(override)
    assert field in str(error.value).replace("\n", ".").replace(" ", "")


def test_paths_are_resolved_and_lake_kept_apart_from_the_inputs(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "day1.csv").write_text("timestamp,user_id,item_id,event_type\n")
    relative = PipelineConfig.model_validate({"lake": "some/../lake", "ingest": {"input": str(raw)}})
    assert relative.lake.is_absolute() and ".." not in relative.lake.parts
    with pytest.raises(ValidationError, match="inside ingest.input"):
        PipelineConfig.model_validate({"lake": str(raw / "lake"), "ingest": {"input": str(raw)}})
    with pytest.raises(ValidationError, match="inside the lake"):
        PipelineConfig.model_validate({"lake": str(tmp_path), "ingest": {"input": str(raw)}})


def test_late_row_limit_shorter_than_the_window_fails_early():
    with pytest.raises(ValidationError, match="max_late_days"):
        PipelineConfig.model_validate({"ingest": {"max_late_days": 10}, "window": {"train_days": 30}})


def test_items_input_without_item_id_fails_early(tmp_path):
    (tmp_path / "items.csv").write_text("sku,category\n1,a\n")
    with pytest.raises(ValueError, match=r"ingest.items_input: .* no column\(s\) \['item_id'\]"):
        PipelineConfig.model_validate({"ingest": {"items_input": str(tmp_path / "items.csv")}}).check_files()


def test_items_mapping_names_the_columns_of_another_layout(tmp_path):
    (tmp_path / "items.csv").write_text("sku;group\n1;a\n")
    mapping = {"delimiter": ";", "item_id": "sku", "category": "group", "brand": None, "price": None}
    config = PipelineConfig.model_validate({"ingest": {"items_input": str(tmp_path / "items.csv"), "items_mapping": mapping}})
    config.check_files()
    assert config.ingest.items_columns().category == "group"
    with pytest.raises(ValueError, match=r"no column\(s\) \['colour'\]"):
        PipelineConfig.model_validate({"ingest": {"items_input": str(tmp_path / "items.csv"),
                                                  "items_mapping": {**mapping, "brand": "colour"}}}).check_files()


def test_diginetica_preset_reads_its_items_file():
    items = DATASETS / "diginetica" / "product-categories.csv"
    if not items.exists():
        pytest.skip(f"real dataset not present: {items}")
    config = PipelineConfig.model_validate({"dataset": "diginetica", "ingest": {
        "preset": "diginetica", "input": str(DATASETS / "diginetica" / "sample_train-item-views.csv"), "items_input": str(items)}})
    assert config.ingest.items_columns().item_id == "itemId"


def test_batch_must_hold_whole_groups_of_shared_negatives():
    with pytest.raises(ValidationError, match="multiple of negatives_shared_by"):
        PipelineConfig.model_validate({"train": {"skipgram": {"batch_size": 100, "negatives_shared_by": 8}}})


def test_each_dataset_gets_its_own_default_lake():
    assert PipelineConfig().lake.name == "sample"
    taobao = PipelineConfig.model_validate({"dataset": "taobao"})
    assert taobao.lake.name == "taobao" and taobao.lake.parent == PipelineConfig().lake.parent


@pytest.mark.slow
def test_readers_and_models_do_not_load_pyspark():
    import subprocess
    import sys

    code = ("import sys, recsys.publish, recsys.evaluate, recsys.models.word2vec, recsys.models.item_knn, "
            "recsys.models.popular, recsys.models.skipgram, recsys.models.side_info, recsys.models.mf, recsys.catalog; print('pyspark' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flows_import_only_tasks_and_recsys_config():
    for path in (PROJECT_ROOT / "flows").rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        bad = {m for m in modules if m.startswith("recsys") and m != "recsys.config"}
        assert not bad, f"{path} imports {bad}"


def test_nothing_loaded_from_the_lake_is_unpickled():
    """Loaders never unpickle: numpy with allow_pickle=False, torch with weights_only=True, no pickle module."""
    for path in (PROJECT_ROOT / "recsys").rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "allow_pickle=True" not in text, path
        for call in text.split("np.load(")[1:]:
            assert "allow_pickle=False" in call.split(")")[0], f"{path}: np.load without allow_pickle=False"
        for call in text.split("torch.load(")[1:]:
            assert "weights_only=True" in call.split(")")[0], f"{path}: torch.load without weights_only=True"
        assert ".wv.save(" not in text and "Word2Vec.load(" not in text, f"{path}: gensim's pickle-based save/load"


def test_models_receive_params_and_data_and_import_neither_config_nor_lake():
    for path in (PROJECT_ROOT / "recsys" / "models").glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not modules & {"recsys.config", "recsys.lake", "recsys.presets"}, path


def test_validating_a_config_imports_neither_torch_nor_gensim_and_has_no_import_cycle():
    import subprocess
    import sys

    code = ("import sys, recsys.presets, recsys.config; c = recsys.config.PipelineConfig.model_validate("
            "{'train': {'models': ['skipgram', 'eges'], 'skipgram': {'epochs': 2}}}); "
            "print(c.train.params_for('skipgram').epochs, 'torch' in sys.modules, 'gensim' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False", "False"]
