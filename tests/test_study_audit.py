"""Fixes of the API audit (/work/audit/api/FINDINGS.md) in ``Study`` and ``ActiveLoop``: each
test reproduces a finding and fails on the code before its fix. Real (tiny) training runs: a
plain train callable and a small MTG-Net."""

from __future__ import annotations

import numpy as np
import pytest

from mtgfast import HOA, TAG, GainStore, GainTable, MTGNet
from mtgfast.errors import InputError, InputTypeError, StoreError
from mtgfast.masks import k_subsets
from mtgfast.study.active import ActiveLoop, make_selector
from mtgfast.study.study import Study

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: a small MTG-Net: a few epochs, one member (the loop refits it after each selection)
TINY = {"max_epochs": 3, "n_estimators": 1, "dim": 8}
_CALLS: list[tuple[str, ...]] = []


def _train(tasks: tuple[str, ...], seed: int) -> dict[str, float]:
    """Every task does a little better in a larger group (a loss); records each call."""
    _CALLS.append(tasks)
    return {t: 1.0 - 0.05 * (len(tasks) - 1) - 0.001 * (seed % 3) for t in tasks}


@pytest.fixture(autouse=True)
def _clear_calls():
    _CALLS.clear()


# -- #1 candidates= restricts the active loop and the final choice -------------------------------
def test_candidates_restrict_the_active_loop_and_the_measured_final_choice():
    cands = np.concatenate([k_subsets(5, 1), k_subsets(5, 2)])   # singletons and pairs only
    allowed = set(cands.tolist())
    with Study(_train, task_names=list("abcde"), store=":memory:", candidates=cands,
               estimator_options=TINY, progress=False) as s:
        s.run(rounds=1)
        trained = {r.mask for r in s.store.runs(s.name)}
        res = s.result(budget=3, verify=False)
        assert s.final == "measured"
    assert trained <= allowed and len(trained) > 5   # pairs chosen, never the full set
    assert set(res.grouping.groups.tolist()) <= allowed


def test_include_full_outside_the_candidates_is_refused():
    with pytest.raises(InputError, match="include_full"):
        Study(_train, task_names=list("abc"), store=":memory:", candidates=[1, 2, 4, 3, 5, 6],
              active_options={"include_full": True}, progress=False)
    assert _CALLS == []


# -- #3 a store the caller passed in stays open -------------------------------------------------
def test_close_leaves_a_store_the_caller_passed_open():
    store = GainStore(":memory:")
    with Study(_train, task_names=["a", "b"], store=store, estimator="hoa", progress=False) as s:
        s.run()
    assert store.count_runs(s.name) == 3   # still open, nothing lost
    store.close()


# -- #7 an estimator instance is checked before training ----------------------------------------
@pytest.mark.parametrize("kwargs, exc, words", [
    ({"estimator": MTGNet(dim="x")}, InputTypeError, "dim"),
    ({"estimator": HOA()}, InputError, "every pair"),
    ({"estimator": TAG(affinity=np.zeros((4, 4)))}, InputError, "return_std"),
    ({"estimator": MTGNet(), "estimator_options": {"dim": 8}}, InputError, "estimator_options"),
    ({"active_options": {"refit_interval": lambda n, N: 0}}, InputError, "refit_interval"),
])
def test_an_estimator_instance_and_refit_interval_are_checked_before_training(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        Study(_train, task_names=list("abcd"), store=":memory:", progress=False, **kwargs)
    assert _CALLS == []


# -- #8 a zero STL metric stops the study before any multi-task run -----------------------------
@pytest.mark.parametrize("estimator", ["hoa", "oracle"])
def test_a_zero_stl_metric_is_refused_before_any_multitask_run(estimator):
    def train(tasks: tuple[str, ...], seed: int) -> dict[str, float]:
        _CALLS.append(tasks)
        return {t: (0.0 if len(tasks) == 1 and t == "a" else 0.5) for t in tasks}

    with Study(train, task_names=list("abcd"), store=":memory:", estimator=estimator,
               progress=False) as s:
        with pytest.raises(StoreError, match="task 'a'"):
            s.run()
    assert sorted(_CALLS) == [("a",), ("b",), ("c",), ("d",)]


# -- #2 a resume with other options is refused, naming the option -------------------------------
def _loop_study(db, **kw):
    base = dict(task_names=list("abcd"), store=db, estimator="mtgnet", estimator_options=TINY,
                active_options={"selector": "random", "seed": 0}, progress=False)
    base.update(kw)
    return Study(_train, **base)


@pytest.mark.parametrize("kwargs, option", [
    ({"active_options": {"selector": "random", "seed": 7}}, "active_seed"),
    ({"active_options": {"selector": "greedy", "seed": 0}}, "selector"),
    ({"active_options": {"selector": "random", "seed": 0, "include_full": False}},
     "include_full"),
    ({"estimator_options": {**TINY, "dim": 16}}, "estimator_options"),
    ({"seeds": (0, 1)}, "seeds"),
    ({"estimator": "hoa", "estimator_options": None}, "estimator"),
    ({"estimator": "mtgnet-plain"}, "estimator"),   # the network alone: other choices
    ({"candidates": [1, 2, 4, 8, 3, 12, 15]}, "candidates"),
])
def test_a_resume_with_other_loop_options_is_refused_naming_the_option(tmp_path, kwargs, option):
    db = tmp_path / "s.db"
    with _loop_study(db) as s:
        s.run(rounds=1)
    n = len(_CALLS)
    with pytest.raises(StoreError, match=f"started with {option}="):
        _loop_study(db, **kwargs)
    assert len(_CALLS) == n   # refused before training
    # the same options (progress output, workers aside) resume: nothing is trained again
    with _loop_study(db, progress=True, workers=1) as again:
        again.run(rounds=1)
        assert again.n_trained == 0


def test_a_study_stored_before_the_default_blend_resumes_as_mtgnet_plain(tmp_path):
    """A study stored by a version whose "mtgnet" was MTG-Net alone (no ``estimator_target``
    among its options) resumes as "mtgnet-plain", the same estimator; today's "mtgnet" (the
    ridge blend) would make other choices, so it is refused, naming the name to use."""
    import json
    import sqlite3

    db = tmp_path / "s.db"
    with _loop_study(db, estimator="mtgnet-plain") as s:
        s.run(rounds=1)
        name = s.name
    con = sqlite3.connect(db)
    row = con.execute("SELECT config FROM studies WHERE name = ?", (name,)).fetchone()
    cfg = json.loads(row[0])
    opts = cfg["study_options"]
    assert opts["estimator_target"] == "mtgfast.estimators.mtgnet:MTGNet"
    del opts["estimator_target"]
    opts["estimator"] = "mtgnet"        # what the old version stored
    con.execute("UPDATE studies SET config = ? WHERE name = ?", (json.dumps(cfg), name))
    con.commit()
    con.close()
    n = len(_CALLS)
    with pytest.raises(StoreError, match="started with estimator='mtgnet-plain'"):
        _loop_study(db)
    with _loop_study(db, estimator="mtgnet-plain") as again:
        again.run(rounds=1)
        assert again.n_trained == 0
    assert len(_CALLS) == n


def test_studies_without_the_active_loop_share_their_runs(tmp_path):
    db = tmp_path / "s.db"
    with Study(_train, task_names=list("abc"), store=db, estimator="hoa", progress=False) as s:
        s.run()
    with Study(_train, task_names=list("abc"), store=db, estimator="oracle", seeds=(0,),
               progress=False) as again:   # every pair is already there: only the full set
        again.run()
        assert again.n_trained == 1


# -- #9 runs of another fingerprint are not measured for the loop -------------------------------
def test_a_run_of_another_fingerprint_does_not_count_as_measured():
    st = GainStore(":memory:")
    with Study(_train, task_names=list("abcd"), store=st, name="s", estimator_options=TINY,
               active_options={"selector": "random"}, progress=False) as s:
        s.collect_stl()
        st.record_run("s", 0b0011, 0, metrics_valid={"a": 0.9, "b": 0.9},
                      fingerprint="old-procedure")
        s.run(rounds=1)
        assert len(s.selections()) == 1 + 4
    st.close()


# -- #15 (valid, test) for some tasks, one number for others ------------------------------------
def test_mixed_valid_test_output_names_the_combination_and_fails_the_run():
    def train(tasks: tuple[str, ...], seed: int) -> dict[str, object]:
        return {t: ((1.0, 2.0) if t == "a" else 1.0) for t in tasks}

    with Study(train, task_names=list("abc"), store=":memory:", estimator="hoa",
               progress=False) as s:
        with pytest.raises(InputError, match=r"combination \{a, [bc]\} \(seed 0\)"):
            s.run()
        failed = s.store.runs(s.name, status="failed")
        assert len(failed) == 1 and failed[0].error and "(seed 0)" in failed[0].error


# -- #13 a budget the candidates cannot cover -----------------------------------------------------
def test_a_budget_the_candidates_cannot_cover_is_refused_before_training():
    with pytest.raises(InputError, match=r"budget 3 cannot cover 30 tasks.* 3 task"):
        Study(_train, task_names=[f"t{i}" for i in range(30)], store=":memory:",
              estimator="hoa", budget=3, progress=False)
    with pytest.raises(InputError, match=r"budget 2 cannot cover 5 tasks"):
        Study(_train, task_names=list("abcde"), store=":memory:", estimator="hoa", budget=2,
              candidates=np.concatenate([k_subsets(5, 1), k_subsets(5, 2)]), progress=False)
    assert _CALLS == []
    Study(_train, task_names=[f"t{i}" for i in range(30)], store=":memory:", estimator="hoa",
          budget=10, progress=False).close()


# -- #6 a resume table is matched to the loop's tasks by name -----------------------------------
def test_a_resume_table_is_reordered_by_name_or_refused():
    t = GainTable(np.array([3, 5], np.uint64),
                  np.array([[0.1, 0.2, np.nan], [0.3, np.nan, 0.4]]), ("c", "a", "b"))
    loop = ActiveLoop(make_selector("random"), HOA, None, 3, task_names=("a", "b", "c"),
                      initial=t)
    # t's mask 3 = {c, a} is the loop's mask 5 = {a, c}; t's mask 5 = {c, b} is the loop's 6
    np.testing.assert_array_equal(loop.table().lookup([5, 6]),
                                  [[0.2, np.nan, 0.1], [np.nan, 0.4, 0.3]])
    other = GainTable(t.masks, t.gains, ("x", "y", "z"))
    with pytest.raises(InputError, match=r"\['x', 'y', 'z'\].*\['a', 'b', 'c'\]"):
        ActiveLoop(make_selector("random"), HOA, None, 3, task_names=("a", "b", "c"),
                   initial=other)


# -- #21 coercions and late checks ---------------------------------------------------------------
@pytest.mark.parametrize("kwargs, exc, words", [
    ({"active_options": {"include_full": "false"}}, InputTypeError, "include_full"),
    ({"active_options": {"selector_options": [1]}}, InputTypeError, "selector_options"),
    ({"active_options": {"selector": "random", "selector_options": {"alpha": 1}}}, InputError,
     "alpha"),
    ({"active_options": {"selector": ["random"]}}, InputTypeError, "selector"),
    ({"task_names": ["a"]}, InputError, "at least 2 tasks"),
    ({"estimator": "tag", "affinity": [["x"] * 3] * 3}, InputTypeError, "affinity"),
])
def test_study_options_are_checked_not_coerced(kwargs, exc, words):
    kw = {"task_names": list("abc"), **kwargs}
    with pytest.raises(exc, match=words):
        Study(_train, store=":memory:", progress=False, **kw)
    assert _CALLS == []


def test_active_loop_arguments_are_checked_not_coerced():
    sel = make_selector("random")
    with pytest.raises(InputTypeError, match="include_full"):
        ActiveLoop(sel, HOA, None, 3, include_full="false")
    with pytest.raises(InputTypeError, match="task_names"):
        ActiveLoop(sel, HOA, None, 3, task_names="abc")
    with pytest.raises(InputError, match="distinct"):
        ActiveLoop(sel, HOA, None, 3, task_names=("a", "a", "b"))
    with pytest.raises(InputError, match="alpha"):
        make_selector("random", alpha=1)
    loop = ActiveLoop(sel, HOA, None, 3)
    assert loop.ask().tolist() == [7]   # the full set, pending until told
    with pytest.raises(InputTypeError, match="max_masks"):
        loop.ask(max_masks="x")
