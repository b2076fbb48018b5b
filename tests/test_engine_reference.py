"""The shared MTL training engine changes no number: every method (hard sharing with each loss
weighting, MTAN, AdaShare one-phase and two-phase, αVIL, TAG's lookahead) reproduces, on tiny real
runs (scikit-learn's digits and the multidigits canvases), the initial weights and every metric and
history value that the code produced before the engine existed.

How ``REFERENCE`` was produced: on commit c640e46 (main before the engine refactor, each method
with its own loop), ``PYTHONPATH=python python tests/test_engine_reference.py`` printed it; the
script is this file's ``__main__`` block and runs exactly the ``record_all()`` that the test runs.
Each entry holds the sha256 of every model the run built (state dict at construction, in build
order), the validation/test metrics, and the sha256 of the whole record (metrics, epochs, every
history value, AdaShare's policy, TAG's matrix) as exact float reprs.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from mtgfast.mtl import adashare, architectures
from mtgfast.mtl.adashare import train_adashare
from mtgfast.mtl.alphavil import train_alphavil
from mtgfast.mtl.suites.digits import DigitsSuite
from mtgfast.mtl.suites.multidigits import MultiDigitsSuite
from mtgfast.mtl.tag_affinity import collect_affinity
from mtgfast.mtl.trainer import TrainConfig, train_mtl

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def state_hash(model: torch.nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes and raw bytes, in order)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


@contextmanager
def recording_builds() -> Iterator[list[str]]:
    """Record the initial-state hash of every model built through ``build_model`` or AdaShare's
    ``build`` (the search model of ``train_adashare``), looked up at call time by the trainers."""
    built: list[str] = []
    orig_model, orig_ada = architectures.build_model, adashare.build

    def wrap(fn: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        def inner(*a: Any, **kw: Any) -> torch.nn.Module:
            m = fn(*a, **kw)
            built.append(state_hash(m))
            return m
        return inner

    architectures.build_model = wrap(orig_model)
    adashare.build = wrap(orig_ada)
    try:
        yield built
    finally:
        architectures.build_model, adashare.build = orig_model, orig_ada


def _floats(x: Any) -> Any:
    """Nested lists/dicts with exact float reprs (JSON-stable, bit-exact)."""
    if isinstance(x, dict) or hasattr(x, "items"):
        return {str(k): _floats(v) for k, v in sorted(dict(x).items())}
    if isinstance(x, (list, tuple)):
        return [_floats(v) for v in x]
    if hasattr(x, "tolist"):
        return _floats(x.tolist())
    if isinstance(x, float):
        return repr(x)
    return x


def _run_record(run: Any) -> dict[str, Any]:
    return {"valid": dict(run.metrics_valid), "test": dict(run.metrics_test),
            "epochs_run": run.epochs_run, "best_epoch": run.best_epoch,
            "history": _floats(dict(run.history))}


def _entry(built: list[str], run: Any, extra: dict[str, Any]) -> dict[str, Any]:
    full = {"run": _floats(_run_record(run)), **_floats(extra)}
    digest = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:16]
    return {"init": list(built), "valid": dict(sorted(run.metrics_valid.items())),
            "test": dict(sorted(run.metrics_test.items())), "digest": digest}


def record_all() -> dict[str, dict[str, Any]]:
    """Every method once on a tiny real run; what the test compares with ``REFERENCE``."""
    torch.set_num_threads(1)
    digits = DigitsSuite(n_train=200)
    md = MultiDigitsSuite(n_train=300, n_valid=100, n_test=100)
    small = dict(epochs=3, patience=2, batch_size=64, lr=3e-3)
    out: dict[str, dict[str, Any]] = {}
    for name, suite, tasks, cfg in [
        ("hard-equal", digits, [0, 3, 8], TrainConfig(**small)),
        ("hard-dwa", digits, [1, 2], TrainConfig(**small, weighting="dwa")),
        ("hard-uncertainty", digits, [4, 5], TrainConfig(**small, weighting="uncertainty",
                                                         weight_decay=1e-3)),
        ("hard-dropout-esa", digits, [6, 7], TrainConfig(epochs=8, esa_fraction=0.5, patience=3,
                                                          batch_size=32, dropout=0.2,
                                                          max_train_batches=4)),
        ("stl", digits, [9], TrainConfig(**small)),
        ("mtan", md, [0, 1], TrainConfig(**small, arch="mtan", n_blocks=2)),
        ("adashare-one-phase", md, [0, 1], TrainConfig(**small, arch="adashare", n_blocks=2,
                                                        weighting="dwa")),
    ]:
        with recording_builds() as built:
            run = train_mtl(suite, tasks, 1, cfg)
        out[name] = _entry(built, run, {})
    with recording_builds() as built:
        res = train_adashare(md, (0, 1), 2, TrainConfig(**small, n_blocks=2), warmup_epochs=1,
                             search_epochs=2, sample_policy=True)
    out["adashare"] = _entry(built, res.run, {"policy": res.policy,
                                              "probs": res.policy_probs,
                                              "search": dict(res.search_history)})
    with recording_builds() as built:
        res = train_alphavil(md, (0, 1), 1, 3, TrainConfig(**small), alpha_steps=3)
    out["alphavil"] = _entry(built, res.run, {"weights": dict(res.weights)})
    with recording_builds() as built:
        aff = collect_affinity(digits, 0, TrainConfig(**small), tasks=[0, 1, 7], every=3)
    out["tag"] = _entry(built, aff.run, {"matrix": aff.matrix, "n_steps": aff.n_steps})
    return out


# Printed by ``python tests/test_engine_reference.py`` on c640e46 (before the engine refactor),
# torch 2.13.0+cpu, 1 torch thread; the platform on which the digests are exact:
REFERENCE_PLATFORM = {"torch": "2.13.0+cpu", "cpu_capability": "AVX2"}
REFERENCE: dict[str, dict[str, Any]] = {"adashare": {"digest": "e60c6928bb1efb9c",
              "init": ["d94b5bac29a10f83", "1d6a8e69048b68ec", "1d6a8e69048b68ec"],
              "test": {"lower_right": 0.6600000262260437, "upper_left": 0.6499999761581421},
              "valid": {"lower_right": 0.6100000143051147, "upper_left": 0.6100000143051147}},
 "adashare-one-phase": {"digest": "d335a9b4bcd34311",
                        "init": ["00cab8d3a7c50731", "00cab8d3a7c50731"],
                        "test": {"lower_right": 0.5199999809265137,
                                 "upper_left": 0.4300000071525574},
                        "valid": {"lower_right": 0.4300000071525574,
                                  "upper_left": 0.41999998688697815}},
 "alphavil": {"digest": "b9ff61ca30364924",
              "init": ["f08a98f231488571"],
              "test": {"lower_right": 0.5699999928474426, "upper_left": 0.3799999952316284},
              "valid": {"lower_right": 0.5899999737739563, "upper_left": 0.4099999964237213}},
 "hard-dropout-esa": {"digest": "2b17629ac6075c1e",
                      "init": ["6baa1e542e20d2de"],
                      "test": {"digit6": 0.3237207531929016, "digit7": 0.33508965373039246},
                      "valid": {"digit6": 0.32823288440704346, "digit7": 0.33840522170066833}},
 "hard-dwa": {"digest": "c5b2412de7c99c59",
              "init": ["e9fe34d6a4fcf932"],
              "test": {"digit1": 0.18531925976276398, "digit2": 0.10922933369874954},
              "valid": {"digit1": 0.18575559556484222, "digit2": 0.11366062611341476}},
 "hard-equal": {"digest": "dc6132bc5245d0bf",
                "init": ["4a620cb35abb1e55"],
                "test": {"digit0": 0.24838824570178986,
                         "digit3": 0.218841552734375,
                         "digit8": 0.2504075765609741},
                "valid": {"digit0": 0.19536849856376648,
                          "digit3": 0.19721198081970215,
                          "digit8": 0.24660681188106537}},
 "hard-uncertainty": {"digest": "21bec2632019c808",
                      "init": ["b66bc385194b447c"],
                      "test": {"digit4": 0.17970089614391327, "digit5": 0.18471300601959229},
                      "valid": {"digit4": 0.16307266056537628, "digit5": 0.18425551056861877}},
 "mtan": {"digest": "c767532de9d38fa8",
          "init": ["8ba4471ff29625b0"],
          "test": {"lower_right": 0.5400000214576721, "upper_left": 0.5},
          "valid": {"lower_right": 0.5199999809265137, "upper_left": 0.44999998807907104}},
 "stl": {"digest": "3cc3fc1559ca8b0a",
         "init": ["b23751adb35fbf01"],
         "test": {"digit9": 0.17351724207401276},
         "valid": {"digit9": 0.18741491436958313}},
 "tag": {"digest": "a10ff8bb7e7b2d5d",
         "init": ["b4889b6210a365ee"],
         "test": {"digit0": 0.1650412380695343,
                  "digit1": 0.2341204285621643,
                  "digit7": 0.1690327376127243},
         "valid": {"digit0": 0.17173442244529724,
                   "digit1": 0.20591303706169128,
                   "digit7": 0.16167180240154266}}}


def _same_platform() -> bool:
    return (torch.__version__ == REFERENCE_PLATFORM["torch"]
            and torch.backends.cpu.get_cpu_capability() == REFERENCE_PLATFORM["cpu_capability"])


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict[str, Any]]:
    return record_all()


@pytest.mark.parametrize("method", sorted(REFERENCE))
def test_method_reproduces_the_pre_engine_numbers(recorded, method: str) -> None:
    got, ref = recorded[method], REFERENCE[method]
    # initial weights never depend on float kernels: bit-identical on every platform
    assert got["init"] == ref["init"], "initial weights changed"
    if _same_platform():
        assert got["valid"] == ref["valid"] and got["test"] == ref["test"]
        assert got["digest"] == ref["digest"], "a history value or extra output changed"
    else:  # other SIMD paths round differently; the numbers still agree closely
        for split in ("valid", "test"):
            for k, v in ref[split].items():
                assert math.isclose(got[split][k], v, rel_tol=1e-4, abs_tol=1e-6), (split, k)


def test_reference_covers_every_method() -> None:
    assert set(REFERENCE) == {"hard-equal", "hard-dwa", "hard-uncertainty", "hard-dropout-esa",
                              "stl", "mtan", "adashare-one-phase", "adashare", "alphavil", "tag"}
    # an AdaShare model is seen twice (build_model, then AdaShare's build); train_adashare adds
    # its search model first; every other method builds one model
    assert len(REFERENCE["adashare"]["init"]) == 3
    assert len(REFERENCE["adashare-one-phase"]["init"]) == 2
    assert all(len(e["init"]) == 1 for k, e in REFERENCE.items() if not k.startswith("adashare"))


if __name__ == "__main__":
    import pprint

    print("REFERENCE_PLATFORM =", {"torch": torch.__version__,
                                   "cpu_capability": torch.backends.cpu.get_cpu_capability()})
    pprint.pprint(record_all(), width=100, stream=sys.stdout, sort_dicts=True)
