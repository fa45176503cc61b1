"""`moa batch --shard K/N` and `moa batch merge`: N processes split one input by id, each
into its own crash-safe output, and the merge joins them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moa.batch.items import Item
from moa.batch.shard import find_shards, parse_shard, pick, select, shard_of, shard_path
from moa.cli.app import app, main
from moa.errors import ConfigError

RECIPE = '[[layers]]\nmodels = ["fake:p"]\n[aggregator]\nmodel = "fake:agg"\n'


def test_every_item_is_in_exactly_one_shard_whatever_the_order() -> None:
    items = [Item(i) for i in [*range(50), *(f"id-{i}" for i in range(50))]]
    shards = [select(items, k, 4) for k in range(1, 5)]
    assert sorted(repr(i.id) for s in shards for i in s) == sorted(repr(i.id) for i in items)
    assert all(len(s) > 10 for s in shards)  # a hash, not a block split
    assert select(list(reversed(items)), 2, 4) == list(reversed(shards[1]))


def test_every_host_puts_an_id_in_the_same_shard() -> None:
    """Not Python's salted hash(): other processes (other seeds) agree."""
    code = (
        "from moa.batch.shard import shard_of; print([shard_of(f'id-{i}', 4) for i in range(40)])"
    )
    here = str([shard_of(f"id-{i}", 4) for i in range(40)])
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        there = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True
        )
        assert there.stdout.strip() == here, there.stderr


def test_shard_specs_are_checked() -> None:
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "2", "a/b"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_pick_answers_everything_into_output_unless_a_shard_is_named() -> None:
    items = [Item(i) for i in range(20)]
    assert pick(items, Path("out.jsonl"), None) == (items, Path("out.jsonl"))
    chosen, out = pick(items, Path("out.jsonl"), "2/3")
    assert chosen == select(items, 2, 3)
    assert out == shard_path(Path("out.jsonl"), 2, 3)


def test_a_missing_shard_is_named(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    shard_path(out, 1, 3).write_text("")
    shard_path(out, 3, 3).write_text("")
    with pytest.raises(ConfigError, match=r"out\.2-of-3\.jsonl"):
        find_shards(out)


def test_sharded_batches_merge_into_one_output_in_input_order(
    upstream, recipe_file, tmp_path: Path, monkeypatch, capsys
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": i, "prompt": f"q{i}"}) + "\n" for i in range(12)))
    recipe = str(recipe_file(RECIPE))
    runner = CliRunner()
    for k in (1, 2, 3):
        args = ["batch", str(source), "-o", str(out), "-r", recipe, "--shard", f"{k}/3", "-q"]
        done = runner.invoke(app, [*args, "--no-cache"])
        assert done.exit_code == 0, done.stderr
    assert not out.exists()
    assert len(upstream.requests_for("agg")) == 12  # each prompt answered by one shard
    with pytest.raises(SystemExit) as exit_code:
        main(["batch", "merge", "-o", str(out), "--input", str(source)])
    assert exit_code.value.code in (0, None)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == list(range(12))
    with pytest.raises(SystemExit):  # merging again appends nothing
        main(["batch", "merge", "-o", str(out)])
    assert len(out.read_text().splitlines()) == 12
    assert "0 merged, 12 already there" in capsys.readouterr().err
