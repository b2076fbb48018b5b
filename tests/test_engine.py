"""The MTL training engine's own contract (``mtgfast.mtl.engine``): seeding, batching, the epoch
loop with and without validation, early stopping on a method's own scalar, and the history it
keeps, with small steps on the real digits suite."""

from __future__ import annotations

import pytest
import torch

from mtgfast.errors import InputError, InputTypeError
from mtgfast.mtl.architectures import build_model
from mtgfast.mtl.engine import Engine, TrainConfig, check_run_inputs
from mtgfast.mtl.suites.digits import DigitsSuite

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits() -> DigitsSuite:
    return DigitsSuite(n_train=100)


def _engine(suite, config: TrainConfig, seed: int = 0, tasks=(0, 1)) -> Engine:
    return Engine(suite, tuple(tasks), seed, config, build_model("hard", suite, tasks, seed=seed))


def test_batching_is_seeded_and_capped(digits) -> None:
    cfg = TrainConfig(batch_size=32, max_train_batches=3)
    a, b, c = _engine(digits, cfg, 5), _engine(digits, cfg, 5), _engine(digits, cfg, 6)
    pa, pb, pc = a.permutation(), b.permutation(), c.permutation()
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert sorted(pa.tolist()) == list(range(a.n_train))
    assert not torch.equal(a.permutation(), pa)  # a fresh order each epoch
    batches = a.batches(pa)
    assert [len(r) for r in batches] == [32, 32, 32]  # 100 rows: 4 batches, capped at 3
    assert [len(r) for r in _engine(digits, TrainConfig(batch_size=32)).batches(pa)] == \
        [32, 32, 32, 4]
    xb, yb = a.batch(batches[0])
    assert xb.shape == (32, digits.in_dim) and len(yb) == 2 and yb[0].shape[0] == 32
    assert a.task_losses(a.model(xb), yb).shape == (2,)


def test_loop_without_validation_runs_every_epoch(digits) -> None:
    eng = _engine(digits, TrainConfig(epochs=50, patience=1))
    seen = []

    def step(epoch: int) -> dict:
        assert eng.model.training
        seen.append(epoch)
        return {"train_loss": [0.0, 0.0], "extra": epoch * 10}

    out = eng.loop(step, epochs=4, validate=False)
    assert seen == [1, 2, 3, 4] and out.epochs_run == 4 and out.best_epoch == 0
    assert list(out.history) == ["train_loss", "extra"] and out.history["extra"] == [10, 20, 30, 40]


def test_early_stopping_on_the_methods_scalar_restores_the_best_weights(digits) -> None:
    eng = _engine(digits, TrainConfig(epochs=30, patience=2))
    opt = torch.optim.SGD(eng.model.parameters(), lr=0.5)
    states = {}

    def step(epoch: int) -> dict:
        # one plain SGD step on task 1 only (a large lr: its loss falls, then wanders)
        xb, yb = eng.batch(eng.permutation()[:50])
        loss = eng.task_losses(eng.model(xb), yb)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        states[epoch] = {k: v.clone() for k, v in eng.model.state_dict().items()}
        return {"train_loss": [0.0, float(loss.detach())]}

    run = eng.run(step, stop_on=lambda losses: losses[1])
    val = [v[1] for v in run.history["valid_loss"]]
    assert len(val) == run.epochs_run < 30
    assert run.best_epoch == 1 + min(range(len(val)), key=val.__getitem__)
    assert run.epochs_run == run.best_epoch + 2  # patience 2
    for k, v in eng.model.state_dict().items():  # finish() restored the best epoch's weights
        torch.testing.assert_close(v, states[run.best_epoch][k], rtol=0, atol=0)
    assert not eng.model.training
    assert set(run.metrics_valid) == {"digit0", "digit1"} == set(run.metrics_test)


def test_a_diverging_step_stops_at_once(digits) -> None:
    eng = _engine(digits, TrainConfig(epochs=10, patience=5))

    def step(epoch: int) -> dict:
        if epoch == 3:
            with torch.no_grad():
                for p in eng.model.parameters():
                    p.fill_(float("nan"))
        return {"train_loss": [0.0, 0.0]}

    run = eng.run(step)
    assert run.epochs_run == 3 and run.best_epoch == 1
    assert all(v == v for v in run.metrics_valid.values())  # the best (finite) weights are back


def test_bad_input(digits) -> None:
    eng = _engine(digits, TrainConfig())
    with pytest.raises(InputError, match="split"):
        eng.evaluate("train")
    with pytest.raises(InputTypeError, match="suite"):
        check_run_inputs("digits", [0], 0, TrainConfig())
    with pytest.raises(InputTypeError, match="config"):
        check_run_inputs(digits, [0], 0, {"epochs": 3})
    with pytest.raises(InputError, match="seed"):
        check_run_inputs(digits, [0], True, TrainConfig())
    assert check_run_inputs(digits, [3, 1], 0, TrainConfig()) == (1, 3)  # sorted


def test_numpy_integers_count_as_ints_in_configs_seeds_and_executors() -> None:
    # counts read from numpy arrays (np.int64) are ints; bools and floats are not
    import numpy as np

    from mtgfast.study.executors import make_executor

    config = TrainConfig(epochs=np.int64(3), batch_size=np.int32(8), patience=np.int64(2),
                         n_blocks=np.int64(1))
    assert check_run_inputs(DigitsSuite(), [0, 1], np.int64(4), config) == (0, 1)
    with pytest.raises(InputTypeError, match="epochs must be an int"):
        TrainConfig(epochs=3.0)
    ex = make_executor("inprocess", workers=np.int64(1))
    ex.close()
    with pytest.raises(InputTypeError, match="workers must be an int"):
        make_executor("inprocess", workers=True)
    with pytest.raises(InputError, match="workers"):
        make_executor("inprocess", workers=np.int64(0))
