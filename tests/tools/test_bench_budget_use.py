"""The budget side by side's variants and its paired comparison (no training)."""

from __future__ import annotations

import argparse

import pytest

from autotransfer.advisor.assemble import assemble
from autotransfer.advisor.presets import load_preset
from tests.tools.load import load_tool


def bench():
    return load_tool("bench_budget_use")


def advised():
    """A gradual recipe as the advisor builds one: head, 2 epochs from group 4, 3 from group 1."""
    d = dict(load_preset("quick").decisions)
    d.update(backbone="mobilenet_v2", input_size=128, da_method="none", finetune_from=1,
             gradual=True, group_lr_decay=0.5, finetune_epochs=5, head_epochs=40,
             warmup_fraction=0.1)
    return assemble(d, {}, name="advised")


def test_variants_spend_more_time_on_the_deepest_phase_only():
    b, recipe = bench(), advised()
    assert [(p.epochs, p.trainable_from) for p in recipe.phases] == [(40, 5), (2, 4), (3, 1)]
    assert b.variant(recipe, "advised") is recipe
    longer = b.variant(recipe, "longer")  # default: twice the epochs
    assert [(p.epochs, p.trainable_from) for p in longer.phases] == [(40, 5), (2, 4), (6, 1)]
    assert longer.phases[2].warmup_epochs == pytest.approx(2 * recipe.phases[2].warmup_epochs)
    assert b.variant_name("longer", b.variant(recipe, "longer", 12)) == "longer-12"
    deeper = b.variant(recipe, "deeper", 6)
    assert [(p.epochs, p.trainable_from) for p in deeper.phases] == [(40, 5), (2, 4), (6, 0)]
    # the new group learns (the search's depth change: the phase's decay continues)
    assert deeper.phases[2].group_lr_multipliers[0] == pytest.approx(0.0625)
    larger = b.variant(recipe, "larger")
    assert larger.backbone.input_size == 192 and larger.phases[2].epochs == 3
    assert b.variant(deeper, "deeper") is None  # group 0 is the deepest there is
    at224 = b.variant(recipe, "larger", None, 224)  # a size of its own, the advised epochs
    assert at224.backbone.input_size == 224 and at224.phases[2].epochs == 3
    assert b.variant_name("larger", at224, 224) == "larger224-3"
    assert b.kind_of("larger224-3") == "larger224"
    assert b.variant(recipe, "larger", None, 128) is None  # not larger than the advised
    head_only = assemble({**dict(load_preset("quick").decisions), "backbone": "mobilenet_v2",
                          "input_size": 128, "da_method": "none", "finetune_from": 5}, {},
                         name="head")
    assert b.variant(head_only, "longer") is None and b.variant(head_only, "deeper") is None


def test_variant_specs_are_checked():
    b = bench()
    assert b.parse_variant("longer:12") == ("longer", 12, None)
    assert b.parse_variant("deeper") == ("deeper", None, None)
    assert b.parse_variant("larger:9@224") == ("larger", 9, 224)
    assert b.parse_variant("larger@160") == ("larger", None, 160)
    for bad in ("wider", "longer:x", "advised:3", "longer@224", "larger@x", "larger@16"):
        with pytest.raises(argparse.ArgumentTypeError):
            b.parse_variant(bad)


def test_paired_counts_discordant_images_and_tests_them_two_sided():
    b = bench()
    assert b.paired("0000", "1111") == (4, 0, pytest.approx(0.125))
    assert b.paired("1100", "1010") == (1, 1, 1.0)
    assert b.paired("", "1") is None and b.paired("10", "1") is None


def test_the_cap_keeps_a_class_proportional_sample(tmp_path):
    b = bench()
    for label, n in (("a", 30), ("b", 10)):
        (tmp_path / label).mkdir()
        for i in range(n):
            (tmp_path / label / f"{i}.png").write_bytes(b"x")
    b.cap_training_folder(tmp_path, 20)
    assert [len(list((tmp_path / c).iterdir())) for c in ("a", "b")] == [15, 5]
    b.cap_training_folder(tmp_path, 100)  # under the cap: nothing goes
    assert len(list((tmp_path / "a").iterdir())) == 15


def test_the_table_compares_each_variant_with_the_advised_and_the_nearest_longer():
    b = bench()

    def row(acc, seconds, correct):
        return {"test_accuracy": acc, "n_test": 4, "test_correct": correct, "seconds": seconds,
                "input_size": 128, "phases": [["head", 40, 5], ["finetune", 3, 1]],
                "deepest_epochs_run": 3, "deepest_epoch_s": 17.0, "epoch_time": None,
                "load_before": "1.00", "load_after": "1.10"}

    result = {"dataset": "d", "n_train": 8, "n_val": 2, "n_test": 4, "max_train": 10,
              "variants": {"advised": row(0.5, 100.0, "1100"),
                           "longer-6": row(0.75, 160.0, "1110"),
                           "deeper-3": row(1.0, 170.0, "1111")}}
    text = b.markdown([result], {"cpus": 2, "started": "t", "affinity": [1]})
    assert "capped to a seeded, class-proportional 10" in text
    deeper = next(line for line in text.splitlines() if line.startswith("| deeper-3"))
    # +50 points in 70 extra seconds; 2 images gained on the advised, 1 on longer-6
    assert "+42.86" in deeper and "+2 −0, p = 0.5" in deeper and "+1 −0, p = 1" in deeper


def test_the_kinds_are_pooled_over_datasets_against_the_advised():
    b = bench()

    def row(correct, seconds=100.0, restored=None):
        r = {"test_accuracy": correct.count("1") / len(correct), "n_test": len(correct),
             "test_correct": correct, "seconds": seconds, "input_size": 128,
             "phases": [["head", 40, 5], ["finetune", 9, 2]], "deepest_epochs_run": 9,
             "deepest_epoch_s": 10.0, "epoch_time": None, "load_before": "1", "load_after": "1"}
        return {**r, "restored": restored} if restored else r

    results = [{"dataset": "a", "n_train": 8, "n_val": 2, "n_test": 4, "max_train": None,
                "variants": {"advised": row("1000"),
                             "longer-18": row("1110", 150.0,
                                              [["head", 31, 40, 0.9], ["finetune", 13, 16, 0.9]])}},
               {"dataset": "b", "n_train": 8, "n_val": 2, "n_test": 4, "max_train": None,
                "variants": {"advised": row("1100"), "longer-18": row("1001", 200.0),
                             "deeper-9": row("1100"),
                             # a second variant of a kind on the same images is not pooled again
                             "longer-24": row("1011", 250.0)}}]
    text = b.markdown(results, {"cpus": 2, "started": "t", "affinity": [0]})
    assert b.kind_of("longer-18") == "longer" and b.kind_of("advised") == "advised"
    longer = next(line for line in text.splitlines() if line.startswith("| longer |"))
    # a: +2 −0 in 1.5×; b: +1 −1 in 2×; pooled +3 −1 (p = 0.625); higher on 1 of 2, lower on 0
    assert "a: +2 −0, p = 0.5; 1.50×" in longer and "b: +1 −1, p = 1; 2.00×" in longer
    assert "| +3 −1, p = 0.62 | 1 of 2 | 0 of 2 |" in longer
    deeper = next(line for line in text.splitlines() if line.startswith("| deeper |"))
    assert "| +0 −0, p = 1 | 0 of 1 | 0 of 1 |" in deeper
    assert "| 13 of 16 |" in text  # the deepest phase's restored epoch, where recorded


def test_saving_merges_rows_another_process_saved_meanwhile():
    b = bench()
    saved = [{"dataset": "a", "variants": {"advised": 1, "larger160-9": 2}},
             {"dataset": "b", "variants": {"advised": 3}}]
    merged = b.merge(saved, {"dataset": "a", "variants": {"advised": 1, "larger224-9": 4}})
    assert merged[0] == {"dataset": "b", "variants": {"advised": 3}}
    assert merged[1]["variants"] == {"advised": 1, "larger160-9": 2, "larger224-9": 4}
    assert b.merge([], {"dataset": "c", "variants": {}}) == [{"dataset": "c", "variants": {}}]


def test_a_run_stopped_mid_way_resumes_and_counts_its_chunks_to_the_last_checkpoint(tmp_path):
    import json
    import os

    b = bench()
    out = tmp_path / "runs" / "larger224-9"
    chunks, resume = b._chunks(out)  # nothing there: a fresh run, one chunk started
    assert not resume and len(chunks) == 1 and chunks[0]["end"] is None
    partial = tmp_path / "runs" / "larger224-9.partial"
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "recipe.yaml").write_text("x")
    (partial / "checkpoints" / "latest.json").write_text("{}")
    start = chunks[0]["start"]
    os.utime(partial / "checkpoints" / "latest.json", (start + 100, start + 100))
    chunks, resume = b._chunks(out)  # the first chunk was killed: it counts to its checkpoint
    assert resume and len(chunks) == 2 and chunks[0]["end"] == start + 100
    assert json.loads((tmp_path / "runs" / "larger224-9.chunks.json").read_text()) == chunks
