"""The README's "Run it on your own logs" followed literally (issue 13, acceptance): its preset command
and its hand-mapping command, run by ``recsys run`` from a fresh folder, each land in the lake of their
own dataset, and the report names it; and a log too small for a meaningful holdout publishes nothing,
ends ``NotPublished`` and exits 4.

The commands are read from README.md; only their inputs are made here (small files in the layouts the
commands name, under the paths they name, relative to a fresh working folder), and every command gets
``train.models=[popular]`` and short walks to keep it fast.
"""

from __future__ import annotations

import random
import re
import shlex
from pathlib import Path

import pytest

from flows.cli import main
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

README = PROJECT_ROOT / "README.md"
FAST = ["--set", "train.models=[popular]", "--set", "walks.walks_per_node=1", "--set", "walks.walk_length=5",
        "--set", "spark.shuffle_partitions=2"]
DAY0 = 1511654400  # 2017-11-26 00:00 UTC: inside the Taobao preset's documented range


def readme_commands() -> list[list[str]]:
    """The ``recsys run`` commands of the README's "Run it on your own logs" code block, as argv lists."""
    section = README.read_text().split("## Run it on your own logs", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True)[1:] for line in lines if line.strip().startswith("recsys run ")]


def _command(predicate) -> list[str]:
    found = [argv for argv in readme_commands() if predicate(argv)]
    assert found, f"README's 'Run it on your own logs' has no such command: {readme_commands()}"
    return found[0]


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _mapping(argv: list[str]) -> dict[str, str | None]:
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    pairs = dict(s.split("=", 1) for s in sets if s.startswith("ingest.mapping."))
    return {k.removeprefix("ingest.mapping."): (None if v == "null" else v) for k, v in pairs.items()}


def _events(users: int, days: int = 4, seed: int = 13) -> list[tuple[str, str, int]]:
    """(user, item, unix seconds): each user one session a day of 4 items from its own group of 30."""
    rng = random.Random(seed)
    rows = []
    for day in range(days):
        for u in range(users):
            group = u % 4
            start = DAY0 + day * 86400 + 8 * 3600 + u * 37
            for step, item in enumerate(rng.sample(range(30), 4)):
                rows.append((f"u{u}", f"i{group * 30 + item}", start + 60 * step))
    return rows


def _write_hand_mapped(path: Path, mapping: dict, users: int) -> None:
    """The events in the layout the README's hand mapping names (CSV with a header)."""
    columns = [mapping.get("user_id", "user_id"), mapping.get("item_id", "item_id"), mapping.get("event_time", "timestamp")]
    event_type = mapping.get("event_type", "event_type")
    if event_type:
        columns.append(event_type)
    time_format = mapping.get("time_format", "iso")
    lines = [",".join(columns)]
    for user, item, seconds in _events(users):
        stamp = {"unix_s": str(seconds), "unix_ms": str(seconds * 1000)}.get(time_format)
        if stamp is None:
            import datetime as dt
            stamp = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(",".join([user, item, stamp] + (["view"] if event_type else [])))
    target = path / "part-1.csv" if str(path).endswith("/") or not path.suffix else path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")


def _report(lake: Path) -> str:
    [report] = lake.glob("runs/*/report.md")
    return report.read_text()


@pytest.fixture
def fresh_folder(tmp_path, monkeypatch):
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_the_readmes_preset_command_into_a_fresh_lake(prefect_harness, fresh_folder):
    argv = _command(lambda a: "--preset" in a and _value(a, "--preset") == "taobao")
    source = fresh_folder / _value(argv, "--input")  # ../shared/datasets/taobao/UserBehavior_head.csv, made here
    source.parent.mkdir(parents=True)
    source.write_text("user_id,item_id,category_id,behavior_type,timestamp\n" + "".join(
        f"{user.removeprefix('u')},{item.removeprefix('i')},{int(item[1:]) // 30},pv,{seconds}\n"
        for user, item, seconds in _events(150)))

    assert main(argv + FAST) == 0
    lake = fresh_folder / "data" / "lake" / "taobao"
    assert "- dataset: **taobao**" in _report(lake)
    assert (lake / "recommendations" / "LATEST.json").exists()
    assert not (fresh_folder / "data" / "lake" / "sample").exists()


def test_the_readmes_hand_mapping_command_into_a_fresh_lake(prefect_harness, fresh_folder):
    argv = _command(lambda a: "ingest.preset=null" in a)
    assert "--lake" not in argv and not any(a.startswith("dataset=") for a in argv)
    source = _value(argv, "--input")
    _write_hand_mapped(fresh_folder / source, _mapping(argv), users=150)

    assert main(argv + FAST) == 0
    name = Path(source.rstrip("/")).name.split(".")[0]
    lake = fresh_folder / "data" / "lake" / name
    assert f"- dataset: **{name}**" in _report(lake)
    assert not (fresh_folder / "data" / "lake" / "sample").exists()


def test_a_log_too_small_for_a_holdout_publishes_nothing_and_exits_4(prefect_harness, fresh_folder, capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    argv = _command(lambda a: "ingest.preset=null" in a)
    source = _value(argv, "--input")
    _write_hand_mapped(fresh_folder / source, _mapping(argv), users=8)  # 32 events a day: a few dozen test pairs

    assert main(argv + FAST) == 4
    out = capsys.readouterr().out
    assert "run ended NotPublished (exit 4)" in out and "holdout too small" in out
    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
    assert run.state.type.value == "COMPLETED" and run.state.name == "NotPublished"
    lake = fresh_folder / "data" / "lake" / Path(source.rstrip("/")).name
    report = _report(lake)
    assert "**Nothing published** to `item_to_item`" in report and "evaluate.min_positives 100" in report
    assert "**Nothing published** to `user_to_item`" in report and "evaluate.min_users 100" in report
    assert not (lake / "recommendations" / "item_to_item").exists()
