"""MTG-Net methods of the replay benchmark: the active loop on a recorded gain table.

``measure`` is a lookup in the recorded validation gains, so a replay is the paper's protocol: the
method sees only the gains of the combinations its loop chose, then predicts every combination.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError, did_you_mean
from ..gains import FloatArray, GainTable
from .active import ActiveLoop, make_selector
from .final import FINAL_CHOICES, final_gains

__all__ = ["BIAS_PRIOR_METHODS", "FEATURE_PRIOR_METHODS", "FINAL_CHOICES", "METHOD_DEFAULTS",
           "METHOD_OPTIONS", "NEEDS_NOISE_METHODS", "NEEDS_PRIOR_METHODS", "PRIOR_METHODS", "REPLAY_METHODS",
           "SELECTOR_OPTIONS", "TABLE_PRIOR_METHODS", "replay_method"]

#: method name -> selector of the active loop
REPLAY_METHODS: dict[str, str] = {
    "mtgnet": "search",                    # groups the search would choose on the ensemble
                                           # mean, verified; the final grouping only of
                                           # measured groups (fifth pass); the estimate is
                                           # alpha * MTGNet + (1 - alpha) * per-task ridge,
                                           # alpha fitted out of fold (blend="ridge", the
                                           # default since the fifteenth pass)
    "mtgnet-plain": "search",              # mtgnet with MTG-Net alone (blend=None): the
                                           # default of passes 5-14; the variants below that
                                           # name "mtgnet's loop" build on it
    "mtgnet-search": "search",             # alias of mtgnet-plain (its artifact columns)
    "mtgnet-committee1": "search",         # mtgnet plus, in round 1, the same searches on each
                                           # member (committee; the default of passes 3-4)
    "mtgnet-estimate": "search",           # the same loop; the final search also takes
                                           # unmeasured groups at their estimate (the old default)
    "mtgnet-committee": "search",          # the committee in every round, not just the first
    "mtgnet-complete": "search",           # mtgnet-committee1's loop, whole groupings of the
                                           # mean's searches finished first (fewest missing)
    "mtgnet-thompson": "search",           # mtgnet-committee1's loop, free slots from one
                                           # member drawn per task (Thompson sampling)
    "mtgnet-calibrated": "search",         # mtgnet with optimism mean + 1 spread, the spread
                                           # calibrated per task on out-of-fold residuals
    "mtgnet-shrunk": "search",             # mtgnet's loop; the final choice on measured
                                           # gains shrunk towards the out-of-fold estimate
    "mtgnet-paper": "exp-gain",            # the paper's sampler, alpha = 25
    "mtgnet-pairs": "pairs-first",         # every pair first, then the search sampler
    "mtgnet-halfpairs": "pairs-first",     # a balanced half of the pairs first, then mtgnet's
                                           # sampler (for HOA-equal K)
    "mtgnet-deterministic": "greedy",      # the released code: largest |gain| per task
    "mtgnet-random": "random",             # ablation: uniform among unmeasured candidates
    "mtgnet-uncertainty": "uncertainty",   # exp(alpha * (|mean| + kappa * std)) of the ensemble
    "mtgnet-prior": "search",              # the default's sampler; MTG-Net learns the residual
                                           # over the pooled pair prior (estimators/prior.py)
    "mtgnet-tag": "search",                # the default's sampler; MTG-Net learns the residual
                                           # over TAG's estimate, scaled per task (prior=)
    "mtgnet-tagfeature": "search",         # mtgnet; TAG's estimate is an input of the network
                                           # (token_prior=, sixth pass)
    "mtgnet-blend": "search",              # mtgnet; the estimate is alpha * MTGNet + (1 - alpha)
                                           # * pooled pair estimate, alpha fitted out of fold
                                           # (estimators/blend.py, seventh pass)
    "mtgnet-ridgeblend": "search",         # alias of mtgnet (its fourteenth-pass artifact
                                           # columns; estimators/ridge.py)
    "mtgnet-taskblend": "search",          # mtgnet with one blend weight per task, shrunk
                                           # towards the shared one by 10 rows (task_shrink,
                                           # fifteenth pass)
    "mtgnet-repshrunk": "search",          # mtgnet-shrunk with the noise term measured by
                                           # replicates (noise=, seventh pass)
    "mtgnet-repsample": "search",          # mtgnet-repshrunk whose sampler's searches read the
                                           # shrunk measurements too (shrink_known=, nineteenth
                                           # pass)
    "mtgnet-tagbias": "search",            # mtgnet; TAG's pair affinities bias the attention
                                           # (attention_prior=, seventh pass)
    "mtgnet-improve": "improvement",       # the groups with the largest expected improvement
                                           # of the measured grouping (study/improvement.py,
                                           # eighth pass)
    "mtgnet-e20": "search",                # mtgnet with 20 ensemble members instead of 5
                                           # (eighth pass)
    "mtgnet-explore": "search",            # mtgnet; each slot with probability 1/2 a uniform
                                           # candidate of its task (epsilon-greedy, eighth pass)
    "mtgnet-explore2": "search",           # mtgnet-explore from the second round on (round 1
                                           # as mtgnet's; ninth pass)
}

#: options a method runs with unless given (the best configuration found: README, issue 13)
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "mtgnet": {"kappa": 0.0, "warm_start": True, "final": "measured", "blend": "ridge"},
    "mtgnet-plain": {"kappa": 0.0, "warm_start": True, "final": "measured"},
    "mtgnet-search": {"kappa": 0.0, "warm_start": True, "final": "measured"},
    "mtgnet-committee1": {"kappa": 0.0, "warm_start": True, "final": "measured",
                          "committee": True, "committee_rounds": 1},
    "mtgnet-estimate": {"kappa": 0.0, "warm_start": True, "final": "estimate"},
    "mtgnet-committee": {"kappa": 0.0, "warm_start": True, "final": "measured",
                         "committee": True},
    "mtgnet-complete": {"kappa": 0.0, "warm_start": True, "final": "measured", "committee": True,
                        "committee_rounds": 1, "complete": True},
    "mtgnet-thompson": {"kappa": 0.0, "warm_start": True, "final": "measured", "committee": True,
                        "committee_rounds": 1, "free": "thompson"},
    "mtgnet-calibrated": {"kappa": 1.0, "warm_start": True, "final": "measured",
                          "calibrate": True},
    "mtgnet-shrunk": {"kappa": 0.0, "warm_start": True, "final": "shrunk"},
    "mtgnet-pairs": {"kappa": 0.0, "warm_start": True},
    "mtgnet-halfpairs": {"kappa": 0.0, "warm_start": True, "final": "measured", "fraction": 0.5},
    "mtgnet-prior": {"kappa": 0.0, "warm_start": True},
    "mtgnet-tag": {"kappa": 0.0, "warm_start": True, "final": "measured"},
    "mtgnet-tagfeature": {"kappa": 0.0, "warm_start": True, "final": "measured"},
    "mtgnet-blend": {"kappa": 0.0, "warm_start": True, "final": "measured", "blend": "pairs"},
    "mtgnet-ridgeblend": {"kappa": 0.0, "warm_start": True, "final": "measured",
                          "blend": "ridge"},
    "mtgnet-taskblend": {"kappa": 0.0, "warm_start": True, "final": "measured",
                         "blend": "ridge", "task_shrink": 10.0},
    "mtgnet-repshrunk": {"kappa": 0.0, "warm_start": True, "final": "shrunk"},
    "mtgnet-repsample": {"kappa": 0.0, "warm_start": True, "final": "shrunk",
                         "shrink_known": True},
    "mtgnet-tagbias": {"kappa": 0.0, "warm_start": True, "final": "measured"},
    "mtgnet-improve": {"warm_start": True, "final": "measured"},
    "mtgnet-e20": {"kappa": 0.0, "warm_start": True, "final": "measured", "n_estimators": 20},
    "mtgnet-explore": {"kappa": 0.0, "warm_start": True, "final": "measured", "explore": 0.5},
    "mtgnet-explore2": {"kappa": 0.0, "warm_start": True, "final": "measured", "explore": 0.5,
                        "explore_after": 1},
}

#: methods whose estimator is PairPriorMTGNet (the MTGNet options go to its inner model)
PRIOR_METHODS = ("mtgnet-prior",)
#: methods whose final shrinkage takes the measurements' noise from ``noise=`` (replicates)
NEEDS_NOISE_METHODS = ("mtgnet-repshrunk", "mtgnet-repsample")
#: methods whose estimator is TablePriorMTGNet over the ``prior`` table given to replay_method
TABLE_PRIOR_METHODS = ("mtgnet-tag",)
#: methods whose MTGNet reads the ``prior`` table as an input feature (``token_prior``)
FEATURE_PRIOR_METHODS = ("mtgnet-tagfeature",)
#: methods whose MTGNet biases its attention by the pair matrix of the ``prior`` table
BIAS_PRIOR_METHODS = ("mtgnet-tagbias",)
#: methods that need ``prior=`` (TAG's estimate: one joint run, no measured combination)
NEEDS_PRIOR_METHODS = (*TABLE_PRIOR_METHODS, *FEATURE_PRIOR_METHODS, *BIAS_PRIOR_METHODS)
#: options that go to the selector (the rest go to the loop or to MTGNet)
SELECTOR_OPTIONS = ("alpha", "kappa", "budgets", "committee", "mean_votes", "committee_rounds",
                    "complete", "free", "calibrate", "fraction", "samples", "explore",
                    "explore_after", "shrink_known")
#: every option a replay method takes besides MTGNet's: the selector's, then the loop's
METHOD_OPTIONS = (*SELECTOR_OPTIONS, "warm_start", "risk", "final", "blend", "task_shrink",
                  "shrink", "max_size", "shrink_rows")


@contextmanager
def _timing(stats: dict[str, list[float]], what: str) -> Iterator[None]:
    """Append the wall (``<what>_s``) and this thread's CPU seconds (``<what>_cpu_s``) of the
    block to ``stats``."""
    t, c = time.perf_counter(), time.thread_time()
    yield   # a block that raises records nothing
    stats.setdefault(f"{what}_s", []).append(time.perf_counter() - t)
    stats.setdefault(f"{what}_cpu_s", []).append(time.thread_time() - c)


class _Recorded:
    """A wrapped estimator or selector that records statistics in ``stats``; every attribute it
    does not time (predict_members, predict_held_out, bind...) is the wrapped object's."""

    def __init__(self, inner: Any, stats: dict[str, list[float]]) -> None:
        self.inner = inner
        self.stats = stats

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class _Timed(_Recorded):
    """An estimator that records how long its fits and predictions take (replay statistics):
    wall seconds (``fit_s``, ``predict_s``) and this thread's CPU seconds (``fit_cpu_s``,
    ``predict_cpu_s``; on a shared machine the wall time measures the load as much as the work)."""

    def fit(self, table: GainTable) -> _Timed:
        with _timing(self.stats, "fit"):
            self.inner.fit(table)
        self.stats.setdefault("fit_rows", []).append(float(len(table)))
        self.stats.setdefault("fit_epochs", []).append(float(getattr(self.inner, "n_epochs_", 0)))
        if hasattr(self.inner, "alpha_"):   # BlendMTGNet: the network's weight in this fit
            # (per-task weights: their mean)
            self.stats.setdefault("fit_alpha", []).append(float(np.mean(self.inner.alpha_)))
        return self

    def predict(self, masks: object, **kwargs: Any) -> Any:
        with _timing(self.stats, "predict"):
            return self.inner.predict(masks, **kwargs)


class _TimedSelector(_Recorded):
    """A selector that records the seconds of each ask (``select_s``, ``select_cpu_s``: for the
    search sampler mostly its grouping searches)."""

    def ask(self, ctx: Any) -> Any:
        with _timing(self.stats, "select"):
            return self.inner.ask(ctx)


@dataclass(frozen=True)
class _Setup:
    """A replay method's checked configuration: its selector, loop and estimator options."""

    selector: Any
    warm: bool
    risk: float
    final: str
    est_opts: dict[str, Any]
    prior_opts: dict[str, Any]
    table_opts: dict[str, Any]
    use_prior: bool
    blend: str | None   # BlendMTGNet's base (estimators.blend.BLEND_BASES), or the network alone
    task_shrink: float | None   # BlendMTGNet's per-task weights' shrinkage (None: shared)
    use_table: bool
    prior: GainTable | None   # in valid's task order


# replay_method's own keywords a front end may give as plain values (seed and rounds are the
# front end's own arguments; stats, prior and noise are objects a Python caller builds)
PLAIN_KEYWORDS = ("use_measured",)


def option_names() -> frozenset[str]:
    """Every keyword a replay method takes in ``**options``: MTGNet's parameters (but ``seed``
    and ``warm_start_from``, which the method sets) and :data:`METHOD_OPTIONS`."""
    from ..estimators.mtgnet import MTGNet

    params = set(inspect.signature(MTGNet.__init__).parameters) - {"self", "seed",
                                                                   "warm_start_from"}
    return frozenset(params | set(METHOD_OPTIONS))


def unknown_method_message(name: object) -> str:
    """The error text of an unknown replay method name, with the closest known one."""
    return (f"unknown MTG-Net replay method {name!r}{did_you_mean(name, REPLAY_METHODS)} "
            f"(known: {', '.join(REPLAY_METHODS)})")


def _check_option_names(options: Mapping[str, Any]) -> None:
    """Unknown option names are an InputError naming the closest known option (before MTGNet
    or a selector sees them as a raw TypeError)."""
    known = option_names()
    for key in options:
        if key in known:
            continue
        if key in ("seed", "warm_start_from"):
            raise InputError(f"option {key!r} is set by the replay method itself (seed=: the "
                             "method's seed; warm_start_from: by warm_start=)")
        raise InputError(f"unknown option {key!r} for the mtgnet* methods"
                         f"{did_you_mean(key, sorted(known), cutoff=0.7)} "
                         f"(accepted: {', '.join(sorted(known))})")


def check_method(name: str, valid: GainTable, *, seed: int = 0, rounds: int = 1,
                 use_measured: bool = True, stats: dict[str, list[float]] | None = None,
                 prior: GainTable | None = None, noise: GainTable | None = None,
                 **options: Any) -> None:
    """Check a :func:`replay_method` call (name, options and their values) without running it:
    ``replay`` calls it for every method before the first one runs (``stats`` is not read)."""
    _setup(name, valid, seed, rounds, use_measured, prior, noise, options, stats)


def _setup(name: str, valid: GainTable, seed: int, rounds: int, use_measured: bool,
           prior: GainTable | None, noise: GainTable | None,
           options: dict[str, Any], stats: object = None) -> _Setup:
    """Validate a replay method's arguments and build its configuration (no training)."""
    if not isinstance(name, str) or name not in REPLAY_METHODS:
        raise InputError(unknown_method_message(name))
    if not isinstance(valid, GainTable):
        raise InputTypeError(f"valid must be a GainTable, got {type(valid).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 0:
        raise InputError(f"rounds must be a non-negative int, got {rounds!r}")
    if not isinstance(use_measured, (bool, np.bool_)):
        raise InputTypeError(f"use_measured must be a bool, got {type(use_measured).__name__}")
    if stats is not None and not isinstance(stats, dict):   # it is filled after the first fit
        raise InputTypeError(f"stats must be a dict (it receives the timings) or None, got "
                             f"{type(stats).__name__}")
    _check_option_names(options)
    n = valid.n_tasks
    full = np.uint64((1 << n) - 1)
    if valid.index_of(np.array([full], dtype=np.uint64))[0] < 0:
        raise InputError("the replay table must contain the full set (the loop starts from it)")

    from ..estimators.mtgnet import MTGNet   # torch is imported only when a replay needs it

    final_given = "final" in options
    options = {**METHOD_DEFAULTS.get(name, {}), **options}
    sel_opts = {k: options.pop(k) for k in SELECTOR_OPTIONS if k in options}
    selector = make_selector(REPLAY_METHODS[name], **sel_opts)
    warm = bool(options.pop("warm_start", False))
    risk = options.pop("risk", 0.0)
    if isinstance(risk, bool) or not isinstance(risk, (int, float)) or not risk >= 0:
        raise InputError(f"risk must be a number >= 0, got {risk!r}")
    final = options.pop("final", "estimate")
    if final not in FINAL_CHOICES:
        raise InputError(f"final must be one of {', '.join(FINAL_CHOICES)}, got {final!r}")
    if final != "estimate" and not use_measured:
        if final_given:
            raise InputError(f"final={final!r} needs use_measured=True (it keeps measured gains "
                             "only)")
        final = "estimate"   # the ablation without measured gains: every row is an estimate
    use_prior = name in PRIOR_METHODS
    blend = options.pop("blend", None)
    blend = None if blend == "none" else blend   # as the command line's --set blend=none reads
    from ..estimators.blend import BLEND_BASES

    if blend is not None and (not isinstance(blend, str) or blend not in BLEND_BASES):
        raise InputError(f"blend must be None or 'none' (MTG-Net alone) or one of "
                         f"{', '.join(BLEND_BASES)}, got {blend!r}")
    task_shrink = options.pop("task_shrink", None)
    if task_shrink is not None and blend is None:
        raise InputError("task_shrink is an option of the blend (blend='ridge' or 'pairs'), "
                         f"not of {name!r} without it")
    if blend is not None and (use_prior or name in TABLE_PRIOR_METHODS):
        raise InputError(f"blend={blend!r} blends MTG-Net itself; {name} learns a residual over "
                         "a prior instead (pass blend=None)")
    prior_opts: dict[str, Any] = {k: options.pop(k) for k in ("shrink", "max_size")
                                  if k in options}
    if not use_prior and prior_opts:
        raise InputError(f"{', '.join(prior_opts)} is an option of {', '.join(PRIOR_METHODS)} "
                         f"only, not {name!r}")
    use_table = name in TABLE_PRIOR_METHODS
    use_feature = name in FEATURE_PRIOR_METHODS
    use_bias = name in BIAS_PRIOR_METHODS
    table_opts: dict[str, Any] = {k: options.pop(k) for k in ("shrink_rows",) if k in options}
    if not use_table and table_opts:
        raise InputError(f"shrink_rows is an option of {', '.join(TABLE_PRIOR_METHODS)} only, "
                         f"not {name!r}")
    if use_table or use_feature or use_bias:
        if not isinstance(prior, GainTable):
            raise InputTypeError(f"{name} needs prior=, a GainTable of prior gains (e.g. TAG's "
                                 f"estimate), got {type(prior).__name__}")
        prior = prior.aligned_to(valid.task_names, "prior", "valid")
    elif prior is not None:
        raise InputError(f"prior= is for {', '.join(NEEDS_PRIOR_METHODS)} only, not {name!r}")
    if name in NEEDS_NOISE_METHODS:
        if not isinstance(noise, GainTable):
            raise InputTypeError(f"{name} needs noise=, a GainTable of the validation gains' "
                                 f"noise variances (from replicates), got {type(noise).__name__}"
                                 " (the `mtgfast replay` command line reads no replicate "
                                 "variances; benchmarks/replay_mtgnet.py gives them for "
                                 "--dataset etth1 and --dataset synthetic --replicates R)")
        if noise.n_tasks != valid.n_tasks:
            raise InputError(f"noise has {noise.n_tasks} tasks, valid {valid.n_tasks}")
        if final != "shrunk":
            raise InputError(f"{name} uses noise= in final='shrunk' only, got final={final!r}")
    elif noise is not None:
        raise InputError(f"noise= is for {', '.join(NEEDS_NOISE_METHODS)} only, not {name!r}")
    est_opts = {"seed": int(seed), **options}
    if use_feature:
        est_opts["token_prior"] = prior
    if use_bias:
        from ..estimators.base import pair_matrix

        assert isinstance(prior, GainTable)
        # TAG's estimate of pair {j, k} for j is its affinity of k onto j: the pair matrix
        est_opts["attention_prior"] = pair_matrix(prior, what="the attention prior")
    MTGNet(**est_opts)._check_params()   # fail on bad options before any work
    if use_prior:
        from ..estimators.prior import PairPriorMTGNet

        PairPriorMTGNet(MTGNet(**est_opts), **prior_opts)._check()
    if blend is not None:
        from ..estimators.blend import BlendMTGNet

        BlendMTGNet(MTGNet(**est_opts), base=blend, task_shrink=task_shrink)._check()
    if use_table:
        from ..estimators.prior import TablePriorMTGNet

        TablePriorMTGNet(MTGNet(**est_opts), prior, **table_opts)._check()
    return _Setup(selector, warm, float(risk), final, est_opts, prior_opts, table_opts,
                  use_prior, blend, task_shrink, use_table, prior)


def replay_method(name: str, valid: GainTable, *, seed: int, rounds: int = 1,
                  use_measured: bool = True, stats: dict[str, list[float]] | None = None,
                  prior: GainTable | None = None, noise: GainTable | None = None,
                  **options: Any) -> tuple[FloatArray, int]:
    """Run MTG-Net's active loop on ``valid`` and predict all its rows.

    Returns ``(gains, n_measured)``: gains ``(n_masks, n_tasks)`` (NaN outside) for every row of
    ``valid.masks``, and the number of combinations of >= 2 tasks whose true gains the loop used
    (the full set included; singletons are free and not counted). ``use_measured``: rows the loop
    measured keep their measured gains instead of the prediction (they are known). ``options``:
    ``alpha``/``kappa``/``budgets`` go to the selector, ``warm_start`` (each refit continues
    from the previous fit) to the loop, ``risk`` (the final search sees unmeasured combinations
    at mean - risk * ensemble std; moot under ``final="measured"``) and ``final``
    (:data:`FINAL_CHOICES`; ``mtgnet``'s default is ``"measured"``) to the prediction,
    ``blend`` (None: MTG-Net alone; ``"ridge"``, ``mtgnet``'s default, or ``"pairs"``: a
    :class:`BlendMTGNet` over that base) to the estimator,
    ``shrink``/``max_size`` (``mtgnet-prior`` only) to :class:`PairPriorMTGNet`, ``shrink_rows``
    (``mtgnet-tag`` only) to :class:`TablePriorMTGNet`, the rest to :class:`MTGNet`. ``prior``:
    the prior gain table of ``mtgnet-tag`` (e.g. TAG's estimate of every row of ``valid``).
    ``noise``: ``mtgnet-repshrunk``'s per-entry noise variance of the validation gains (from
    replicates: the variance of their mean; e.g. ``synthetic_gain_tables(replicates=2)``).
    ``stats``: a dict that receives the seconds of every fit and prediction (``fit_s``,
    ``predict_s``; CPU seconds ``*_cpu_s``), of every ask of the selector (``select_s``) and the
    rows and epochs of every fit.
    """
    setup = _setup(name, valid, seed, rounds, use_measured, prior, noise, options, stats)
    selector, warm, risk, final = setup.selector, setup.warm, setup.risk, setup.final
    est_opts, prior_opts, table_opts = setup.est_opts, setup.prior_opts, setup.table_opts
    use_prior, blend, use_table = setup.use_prior, setup.blend, setup.use_table
    prior = setup.prior
    n = valid.n_tasks
    from ..estimators.blend import BlendMTGNet
    from ..estimators.mtgnet import MTGNet   # torch is imported only when a replay needs it
    from ..estimators.prior import PairPriorMTGNet, TablePriorMTGNet

    def factory() -> Any:
        # warm start: each refit continues from the previous fit (same members, more rows)
        prev = loop.estimator_ if warm else None
        prev = prev.inner if isinstance(prev, _Timed) else prev
        prev = getattr(prev, "model_", prev)   # a PairPriorMTGNet / BlendMTGNet warm-starts
                                               # its network
        est: Any = MTGNet(**est_opts, warm_start_from=prev if isinstance(prev, MTGNet) else None)
        if use_prior:
            est = PairPriorMTGNet(est, **prior_opts)
        if blend is not None:
            est = BlendMTGNet(est, base=blend, task_shrink=setup.task_shrink)
        if use_table:
            est = TablePriorMTGNet(est, prior, **table_opts)
        return est if stats is None else _Timed(est, stats)

    loop = ActiveLoop(selector, factory, valid.masks, n,
                      task_names=valid.task_names, seed=int(seed))
    if hasattr(selector, "bind"):
        # the search sampler reads the measured gains of the loop (and their noise variances)
        if noise is not None:
            selector.bind(loop, noise=noise)
        else:
            selector.bind(loop)
    if stats is not None:
        loop.selector = _TimedSelector(selector, stats)   # type: ignore[assignment]

    def measure(mask: int) -> FloatArray:
        return valid.lookup(np.array([mask], dtype=np.uint64))[0]

    est = loop.run(measure, int(rounds))
    inner = est.inner if isinstance(est, _Timed) else est
    if use_measured and final != "estimate":
        # the final choice reads measured gains only ("shrunk": and the estimator's out-of-fold
        # predictions of measured rows): predicting every row would be thrown away
        return final_gains(valid.masks, loop.table(), final, estimator=inner,
                           noise=noise), loop.n_measured
    if risk > 0:
        # risk-aware final search: unverified combinations count at mean - risk * spread
        predict_std: Any = est.predict   # the Estimator protocol does not promise return_std
        mean, std = predict_std(valid.masks, return_std=True)
        pred = np.asarray(mean, dtype=np.float64) - risk * np.asarray(std, dtype=np.float64)
    else:
        pred = np.asarray(est.predict(valid.masks), dtype=np.float64)
    if not use_measured:
        pred[~valid.member()] = np.nan
        return pred, loop.n_measured
    return final_gains(valid.masks, loop.table(), final, estimate=pred,
                       estimator=inner), loop.n_measured
