"""MTG-Net: a self-attention meta-learner that predicts per-task gains of any task combination.

Model (Song et al., NeurIPS 2022): task embeddings E (N x D) are the tokens of the tasks of a
combination, a stack of post-LN self-attention encoder layers mixes them (absent tasks are masked out
of the keys), a linear head reads one gain per member task. The forward pass is
``mtgfast.ops.reference.mtgnet_forward_dense`` on :meth:`MTGNetModule.params`, so the Triton kernel
written against ``MTGNetParams`` computes exactly this model.

Training: full-batch Adam on the measured rows (singletons are free rows of gain 0), loss on member
tasks only, early stopping on a held-out part of the measured combinations, an ensemble of
independently seeded members (each with its own held-out part) trained in one loop (one backward
for all members: for these tiny batches the per-op overhead, not arithmetic, is the cost). The prediction is the ensemble mean; the spread is its standard deviation.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ..checks import check_int
from ..devices import check_device
from ..errors import InputError, InputTypeError
from ..gains import FloatArray, GainTable
from ..masks import MaskArray, as_masks, masks_to_dense, popcount
from ..ops.dispatch import Backend, mtgnet_predict
from ..ops.reference import LayerParams, MTGNetParams, mtgnet_forward_dense
from .base import GainEstimator
from .stacked import pack_rows, stacked_forward

__all__ = ["MAX_ABS_GAIN", "MTGNet", "MTGNetModule", "check_training_gains"]

_LAYER_FIELDS = tuple(f.name for f in fields(LayerParams))
_FORMAT = "mtgfast.MTGNet/1"
#: CPU predictions of at most this many combinations run on one thread (latency-bound).
_SMALL_BATCH = 4096
#: ensemble members at most (each is a whole network: more would only fill the memory)
MAX_ESTIMATORS = 1000
#: learning-rate factor of a warm-started fit (it starts near a minimum of a similar loss)
_WARM_LR = 0.2


class MTGNetModule(nn.Module):
    """One MTG-Net as ``nn.Parameter``s laid out exactly like :class:`MTGNetParams` ((in, out)).

    ``forward(member)`` maps a boolean membership matrix ``(M, N)`` to gains ``(M, N)`` (0 outside).
    """

    def __init__(self, n_tasks: int, dim: int = 64, n_layers: int = 2, n_heads: int = 1,
                 ffn_dim: int = 64, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.n_heads = int(n_heads)
        self.temperature = float(temperature)

        def xavier(fan_in: int, fan_out: int) -> nn.Parameter:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            return nn.Parameter((torch.rand(fan_in, fan_out, generator=generator) * 2 - 1) * bound)

        def zeros(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.zeros(*shape))

        def ones(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.ones(*shape))

        # N(0, 1) embeddings: post-LN makes their scale irrelevant, only directions matter
        self.embedding = nn.Parameter(torch.randn(n_tasks, dim, generator=generator))
        self.layers = nn.ModuleList()
        for _ in range(n_layers):
            layer = nn.Module()
            layer.w_qkv, layer.b_qkv = xavier(dim, 3 * dim), zeros(3 * dim)
            layer.w_o, layer.b_o = xavier(dim, dim), zeros(dim)
            layer.ln1_w, layer.ln1_b = ones(dim), zeros(dim)
            layer.w_1, layer.b_1 = xavier(dim, ffn_dim), zeros(ffn_dim)
            layer.w_2, layer.b_2 = xavier(ffn_dim, dim), zeros(dim)
            layer.ln2_w, layer.ln2_b = ones(dim), zeros(dim)
            self.layers.append(layer)
        # a small head: the first predictions are near 0, the gain of an uninformed guess
        self.w_head = nn.Parameter(torch.randn(dim, generator=generator) * 0.01)
        self.b_head = nn.Parameter(torch.zeros(()))

    def params(self) -> MTGNetParams:
        """Views of the parameters as :class:`MTGNetParams` (differentiable, not copies)."""
        return MTGNetParams(self.embedding,
                            [LayerParams(**{f: getattr(lay, f) for f in _LAYER_FIELDS})
                             for lay in self.layers],
                            self.w_head, self.b_head, self.n_heads, self.temperature)

    def forward(self, member: torch.Tensor) -> torch.Tensor:
        return mtgnet_forward_dense(self.params(), member)


def _members(n_estimators: object) -> int:
    """``n_estimators`` checked: at least 1 (``>= 1`` named as for every count), at most
    :data:`MAX_ESTIMATORS`."""
    n = check_int("n_estimators", n_estimators, 1)
    if n > MAX_ESTIMATORS:
        raise InputError(f"n_estimators must be at most {MAX_ESTIMATORS} (each member is a "
                         f"whole network), got {n}")
    return n


def _rms(g: FloatArray) -> float:
    """RMS of the finite-valued ``g`` (0 when empty), exact for ordinary gains and still right
    where ``g**2`` underflows (|g| < ~1e-154) or overflows (|g| > ~1e154): then it is computed
    on ``g / max|g|``."""
    if not g.size:
        return 0.0
    with np.errstate(over="ignore", under="ignore"):
        rms = float(np.sqrt(np.mean(g * g)))
    if np.finfo(np.float64).tiny <= rms < math.inf:
        return rms
    top = float(np.max(np.abs(g)))
    if top == 0.0:
        return 0.0
    return top * float(np.sqrt(np.mean((g / top) ** 2)))


def _check_float(name: str, value: object, low: float, *, inclusive: bool = False,
                 high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    ok = (v >= low if inclusive else v > low) and math.isfinite(v) and (high is None or v < high)
    if not ok:
        rng = f"{'[' if inclusive else '('}{low}, {high if high is not None else 'inf'})"
        raise InputError(f"{name} must lie in {rng}, got {value}")
    return v


class MTGNet(GainEstimator):
    """MTG-Net gain estimator (scikit-learn style): ``fit(table)``, ``predict(masks)``.

    Defaults (measured on the Taskonomy-5 / ETTm1-7 replays, see benchmarks/replay_mtgnet.py):
      dim=64, n_layers=2: the paper's encoder; smaller nets fit the few rows no better (dim=16:
        66.0% vs 75.8% on Taskonomy K=1); ffn_dim=dim keeps inference cost at about half of 4*dim.
      n_heads=1: one head; with N <= 64 tokens a head split buys nothing measurable and costs copies.
      temperature=1.0 (plain scaled dot product): the release's sharper 0.2 was tried on the replays
        (Taskonomy K=1,2, ETTm1 K=1,3, ETTh1 K=1,3; 5 seeds): it helped the paper's sampler on 3
        of those 6 settings and hurt the deterministic one on 3 of 4; over all four samplers on
        Taskonomy and ETTm1, 76.0% vs 77.0% of the oracle: within seed noise, so 1.0 stays.
      loss="mse" (the paper), lr=3e-3, max_epochs=300, patience=30, weight_decay=0: full-batch Adam
        reaches its best held-out loss within ~100 steps on <= a few hundred rows.
      validation_fraction=0.2: held-out measured combinations for early stopping (the release stops
        on the training loss, which overfits); each member holds out a different part, so the
        ensemble uses every row. With fewer than ``1/validation_fraction`` rows nothing is held out
        and members train ``max_epochs // 4`` epochs.
      n_estimators=5: mean of 5 independently seeded members; their std is the uncertainty.
      token_prior=None: a GainTable of prior gains (e.g. TAG's estimate, one joint run, no
        measured combination) fed to the network as an input: token j of C starts as
        ``E_j + f_j(C) w`` with ``f_j(C)`` the prior's gain of j in C over its RMS and ``w``
        learned per member from 0 (so the first fit starts as the plain network); predictions
        then use the stacked forward, not the ops kernels. The default None is the plain model.
      attention_prior=None: an (N, N) matrix, entry [j, k] a prior effect of task k on task j
        (e.g. TAG's lookahead affinity, the pair matrix of its estimate), added over its RMS to
        the attention score of token j on token k in every layer, times a weight learned per
        member and layer from 0 (seventh pass); like token_prior it predicts with the stacked
        forward (member_params, save and score_whole_space refuse it).
      warm_start_from=None: a previous fit (same tasks and shape) to continue from, as the active
        loop's refits do (a few more rows each time): members start from its parameters with lr
        x 0.2 and ``warm_patience=10``; 3-4x fewer epochs (N = 27: 34 vs 139). Held-out rows are
        the ``validation_fraction`` of rows with the smallest hash of (seed, member, mask), so a
        refit holds out (almost) the same rows and the warm member's held-out loss stays honest.
    """

    def __init__(self, dim: int = 64, n_layers: int = 2, n_heads: int = 1,
                 ffn_dim: int | None = None, temperature: float = 1.0,
                 loss: Literal["mse", "l1"] = "mse", lr: float = 3e-3, weight_decay: float = 0.0,
                 max_epochs: int = 300, patience: int = 30, validation_fraction: float = 0.2,
                 n_estimators: int = 5, seed: int = 0, device: str | None = None,
                 warm_start_from: MTGNet | None = None, warm_patience: int = 10,
                 token_prior: GainTable | None = None,
                 attention_prior: FloatArray | None = None) -> None:
        self.dim = dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.ffn_dim = ffn_dim
        self.temperature = temperature
        self.loss = loss
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.n_estimators = n_estimators
        self.seed = seed
        self.device = device
        self.warm_start_from = warm_start_from
        self.warm_patience = warm_patience
        self.token_prior = token_prior
        self.attention_prior = attention_prior

    # -- validation ----------------------------------------------------------------------------
    def _check_params(self) -> dict[str, Any]:
        p = {
            "dim": check_int("dim", self.dim, 1),
            "n_layers": check_int("n_layers", self.n_layers, 1),
            "n_heads": check_int("n_heads", self.n_heads, 1),
            "ffn_dim": (check_int("ffn_dim", self.ffn_dim, 1) if self.ffn_dim is not None
                        else check_int("dim", self.dim, 1)),
            "temperature": _check_float("temperature", self.temperature, 0.0),
            "lr": _check_float("lr", self.lr, 0.0),
            "weight_decay": _check_float("weight_decay", self.weight_decay, 0.0, inclusive=True),
            "max_epochs": check_int("max_epochs", self.max_epochs, 1),
            "patience": check_int("patience", self.patience, 1),
            "validation_fraction": _check_float("validation_fraction", self.validation_fraction,
                                                0.0, inclusive=True, high=1.0),
            "n_estimators": _members(self.n_estimators),
            "seed": check_int("seed", self.seed, 0, 2**63 - 1),
            "warm_patience": check_int("warm_patience", self.warm_patience, 1),
        }
        if self.token_prior is not None and not isinstance(self.token_prior, GainTable):
            raise InputTypeError("token_prior must be a GainTable of prior gains or None, got "
                                 f"{type(self.token_prior).__name__}")
        if self.attention_prior is not None:
            a = self.attention_prior
            if not isinstance(a, np.ndarray) or a.ndim != 2 or a.shape[0] != a.shape[1]:
                raise InputTypeError("attention_prior must be a square (N, N) numpy array or "
                                     f"None, got {type(a).__name__} "
                                     f"{getattr(a, 'shape', '')}")
            if not np.all(np.isfinite(a)):
                raise InputError("attention_prior must be finite")
        if self.warm_start_from is not None and not isinstance(self.warm_start_from, MTGNet):
            raise InputTypeError("warm_start_from must be a fitted MTGNet or None, got "
                                 f"{type(self.warm_start_from).__name__}")
        if p["dim"] % p["n_heads"]:
            raise InputError(f"dim ({p['dim']}) must be divisible by n_heads ({p['n_heads']})")
        if self.loss not in ("mse", "l1"):
            raise InputError(f"loss must be 'mse' or 'l1', got {self.loss!r}")
        check_device(self.device)
        return p

    # -- training ------------------------------------------------------------------------------
    def _fit(self, table: GainTable) -> None:
        p = self._check_params()
        check_training_gains(table)
        #: token_prior in the table's task order (fixed at fit: predictions read the same one)
        self.token_prior_ = self._aligned_token_prior(table)
        on_cpu = self.device is None or torch.device(self.device).type == "cpu"
        with _one_cpu_thread(on_cpu):
            self._train(table, p)

    def _train(self, table: GainTable, p: dict[str, Any]) -> None:
        n = table.n_tasks
        if n < 2:
            raise InputError("MTG-Net needs at least 2 tasks")
        masks, gains = _with_free_singletons(table.masks, table.gains, n)
        member = masks_to_dense(masks, n)
        size = member.sum(axis=1)
        if not np.any(size >= 2):
            raise InputError("MTG-Net needs at least one measured combination of >= 2 tasks "
                             "(singletons carry no information: their gain is 0 by definition)")
        gains = np.where(size[:, None] == 1, np.where(member, 0.0, np.nan), gains)
        known = member & np.isfinite(gains)
        # scale targets to unit RMS so lr and init do not depend on the unit of the gains
        multi = known & (size[:, None] >= 2)
        scale = _rms(gains[multi]) if multi.any() else 1.0
        scale = scale if scale > 0 else 1.0
        dev = torch.device(self.device) if self.device is not None else torch.device("cpu")

        e = p["n_estimators"]
        multi_rows = np.flatnonzero(size >= 2)
        n_hold = int(math.floor(p["validation_fraction"] * multi_rows.size))
        train_w = np.repeat(known[None].astype(np.float32), e, axis=0)       # (E, M, N)
        valid_w = np.zeros_like(train_w)
        held_out: list[MaskArray] = [masks[:0]] * e
        if n_hold >= 1:
            for k in range(e):
                # the n_hold rows of smallest hash of (seed, member, mask): a refit with a few more
                # rows holds out (almost) the same ones, so a warm-started member's held-out loss
                # stays honest (it never trained on them)
                u = _unit_hash(masks[multi_rows], p["seed"], k)
                held = multi_rows[np.argsort(u, kind="stable")[:n_hold]]
                held_out[k] = masks[held].copy()
                valid_w[k, held] = train_w[k, held]
                train_w[k, held] = 0.0
        epochs = p["max_epochs"] if n_hold >= 1 else max(1, p["max_epochs"] // 4)

        feat = self._token_features(masks, n, fit=True)
        gen = torch.Generator().manual_seed(p["seed"])
        members = [MTGNetModule(n, p["dim"], p["n_layers"], p["n_heads"], p["ffn_dim"],
                                p["temperature"], generator=gen).to(dev) for _ in range(e)]
        warm = self._warm_state(n, p, scale)
        if warm is not None:
            # continue from the previous fit (a refit of the active loop adds a few rows): the
            # best held-out loss comes within a few epochs, so a short patience suffices
            for k, mod in enumerate(members):
                mod.load_state_dict({q: v[k] for q, v in warm.items()
                                     if q not in ("w_feat", "w_bias")})
            # a fresh Adam takes lr-sized steps in every direction: smaller steps keep the fit
            p = {**p, "patience": p["warm_patience"], "lr": p["lr"] * _WARM_LR}
        # all members train as one stacked ensemble on size-binned packed tokens (stacked.py):
        # the same math as a loop over MTGNetModule members, ~E times fewer ops, fewer tokens
        state = {k: nn.Parameter(torch.stack([m.state_dict()[k] for m in members]))
                 for k in members[0].state_dict()}
        feat_t = None
        if feat is not None:
            # the prior's weight starts at 0: the first fit starts as the plain network
            w0 = warm["w_feat"] if warm is not None and "w_feat" in warm else \
                torch.zeros(e, p["dim"])
            state["w_feat"] = nn.Parameter(w0.clone().to(dev))
            feat_t = torch.as_tensor(feat, dtype=torch.float32, device=dev)
        bias_t = self._attention_bias(n, fit=True)
        if bias_t is not None:
            # the bias's weight starts at 0 too: the first fit starts as the plain network
            b0 = warm["w_bias"] if warm is not None and "w_bias" in warm else \
                torch.zeros(e, p["n_layers"])
            state["w_bias"] = nn.Parameter(b0.clone().to(dev))
            bias_t = bias_t.to(dev)
        packed = pack_rows(member, dev)
        y_t = torch.as_tensor(np.nan_to_num(gains / scale), dtype=torch.float32, device=dev)
        tw = torch.as_tensor(train_w, device=dev)
        vw = torch.as_tensor(valid_w, device=dev)
        tw_sum = tw.sum(dim=(1, 2)).clamp_min(1.0)
        vw_sum = vw.sum(dim=(1, 2)).clamp_min(1.0)
        opt = torch.optim.Adam(list(state.values()), lr=p["lr"], weight_decay=p["weight_decay"])
        err = (lambda d: d * d) if self.loss == "mse" else torch.abs
        best = {k: v.detach().clone() for k, v in state.items()}
        best_val = [math.inf] * e
        best_epoch = [epochs] * e if n_hold < 1 else [0] * e
        active = torch.ones(e, device=dev)
        epoch = 0
        for epoch in range(epochs):
            opt.zero_grad(set_to_none=True)
            d = err(stacked_forward(state, packed, p["n_layers"], p["n_heads"],
                                    p["temperature"], feature=feat_t, bias=bias_t)
                    - y_t)                                                     # (E, M, N)
            # members that stopped leave the loss (their best parameters are kept below)
            loss = ((d * tw).sum(dim=(1, 2)) / tw_sum * active).sum()
            if n_hold >= 1:
                # held-out loss of the parameters *before* this step, from the same forward
                val = ((d.detach() * vw).sum(dim=(1, 2)) / vw_sum).tolist()
                for k in range(e):
                    if active[k] > 0 and val[k] < best_val[k]:
                        best_val[k], best_epoch[k] = val[k], epoch
                        for q, v in state.items():
                            best[q][k] = v.detach()[k]
            loss.backward()
            opt.step()
            if n_hold >= 1:
                # a member whose held-out loss has not improved for `patience` epochs is done
                for k in range(e):
                    if epoch - best_epoch[k] >= p["patience"]:
                        active[k] = 0.0
                if not bool(active.any()):
                    break
        if n_hold < 1:
            best = {k: v.detach().clone() for k, v in state.items()}
        final = best
        self.state_: dict[str, torch.Tensor] = {k: v.cpu() for k, v in final.items()}
        self.config_: dict[str, Any] = {k: p[k] for k in ("dim", "n_layers", "n_heads", "ffn_dim",
                                                          "temperature", "n_estimators")}
        self.scale_ = scale
        self.n_epochs_ = epoch + 1
        self.n_holdout_ = n_hold
        #: per member, the measured combinations it held out (never trained on in this fit)
        self.held_out_ = held_out
        self.best_epoch_ = np.asarray(best_epoch)
        self.n_train_rows_ = int(masks.shape[0])
        self._params_cache: dict[str, list[MTGNetParams]] = {}
        self._members_cache: tuple[Any, ...] | None = None

    def _member_outputs(self, m: MaskArray, device: str | torch.device | None,
                        backend: Backend) -> list[torch.Tensor]:
        """Each member's raw output (float64, scaled unit) on ``m``; the last masks' outputs are
        kept, so ``predict_members`` after ``predict`` on the same masks (the committee reads
        both every ask) costs nothing and gives the very same numbers."""
        key = (str(device), str(backend), m.shape[0])
        cached = self.__dict__.get("_members_cache")
        if cached is not None and cached[0] == key and np.array_equal(cached[1], m):
            return list(cached[2])
        if self.token_prior is not None or self.attention_prior is not None:
            if backend == "triton":
                raise InputError("backend='triton' cannot run an MTGNet with token_prior= or "
                                 "attention_prior= (the kernel has neither); use "
                                 "backend='torch' or 'auto'")
            out = self._feature_outputs(m)
            self._members_cache = (key, m.copy(), tuple(out))
            return out
        params = self.member_params(device)
        masks_t = torch.from_numpy(m.view(np.int64).copy())
        small_on_cpu = params[0].embedding.device.type == "cpu" and m.shape[0] <= _SMALL_BATCH
        out = []
        for prm in params:
            with _one_cpu_thread(small_on_cpu):
                y = mtgnet_predict(prm, masks_t.to(prm.embedding.device), backend=backend)
            out.append(y.to(torch.float64).cpu())
        self._members_cache = (key, m.copy(), tuple(out))
        return out

    def _token_features(self, masks: MaskArray, n: int, *, fit: bool = False
                        ) -> FloatArray | None:
        """``token_prior``'s gains of ``masks`` (0 where it has none and for singletons) over
        their RMS on its combinations of >= 2 tasks (set at fit), or None without a prior."""
        if self.token_prior is None:
            return None
        prior = self.__dict__.get("token_prior_", self.token_prior)
        if prior.n_tasks != n:
            raise InputError(f"token_prior has {prior.n_tasks} tasks, the table {n}")
        if fit:
            multi = prior.member() & (popcount(prior.masks) >= 2)[:, None]
            v = prior.gains[multi]
            v = v[np.isfinite(v)]
            rms = _rms(v)
            self.feature_scale_ = rms if rms > 0 else 1.0
        idx = prior.index_of(masks)
        x = np.where((idx >= 0)[:, None], prior.gains[np.maximum(idx, 0)], 0.0)
        x = np.where(np.isfinite(x) & masks_to_dense(masks, n), x, 0.0)
        x[popcount(masks) < 2] = 0.0
        return x / self.feature_scale_

    def _aligned_token_prior(self, table: GainTable) -> GainTable | None:
        """``token_prior`` with its tasks in ``table``'s order (its columns are read by
        position); a prior of other tasks is an InputError naming both task lists."""
        prior = self.token_prior
        return None if prior is None else prior.aligned_to(table.task_names, "token_prior",
                                                           "the table")

    def _attention_bias(self, n: int, *, fit: bool = False) -> torch.Tensor | None:
        """``attention_prior`` over its off-diagonal RMS (set at fit), diagonal 0, as a float32
        tensor; None without one."""
        a = self.attention_prior
        if a is None:
            return None
        if a.shape != (n, n):
            raise InputError(f"attention_prior has shape {a.shape}, the table {n} tasks")
        b = np.array(a, dtype=np.float64)
        np.fill_diagonal(b, 0.0)
        if fit:
            off = b[~np.eye(n, dtype=bool)]
            rms = _rms(off)
            self.bias_scale_ = rms if rms > 0 else 1.0
        return torch.as_tensor(b / self.bias_scale_, dtype=torch.float32)

    def _feature_outputs(self, m: MaskArray) -> list[torch.Tensor]:
        """Each member's raw output with ``token_prior`` features and/or the ``attention_prior``
        bias (the stacked forward, in blocks of rows; the ops kernels know neither)."""
        c = self.config_
        n = self.n_tasks_
        out = torch.zeros(c["n_estimators"], m.shape[0], n, dtype=torch.float64)
        state = self.state_
        with torch.no_grad(), _one_cpu_thread(True):
            for s in range(0, m.shape[0], _SMALL_BATCH):
                part = m[s:s + _SMALL_BATCH]
                feat = self._token_features(part, n)
                y = stacked_forward(state, pack_rows(masks_to_dense(part, n)), c["n_layers"],
                                    c["n_heads"], c["temperature"],
                                    feature=None if feat is None else
                                    torch.as_tensor(feat, dtype=torch.float32),
                                    bias=self._attention_bias(n))
                out[:, s:s + part.shape[0]] = y.double()
        return list(out)

    def _warm_state(self, n: int, p: dict[str, Any], scale: float
                    ) -> dict[str, torch.Tensor] | None:
        """Stacked member states of ``warm_start_from`` with the head rescaled to this fit's
        target unit, or None when there is nothing compatible to start from."""
        prev = self.warm_start_from
        if prev is None or not hasattr(prev, "state_") or prev.n_tasks_ != n:
            return None
        # the previous fit is superseded: drop its kept outputs (a chain of warm starts would
        # hold one (members, candidates, tasks) array per refit)
        prev.__dict__["_members_cache"] = None
        same = all(prev.config_.get(k) == p[k] for k in ("dim", "n_layers", "n_heads", "ffn_dim",
                                                         "n_estimators"))
        if not same:
            return None
        ratio = prev.scale_ / scale
        st = {k: v.clone() for k, v in prev.state_.items()}
        st["w_head"] *= ratio
        st["b_head"] *= ratio
        return st

    # -- inference -----------------------------------------------------------------------------
    def member_params(self, device: str | torch.device | None = None) -> list[MTGNetParams]:
        """Detached :class:`MTGNetParams` of each ensemble member (gains in the scaled unit)."""
        self._check_fitted()
        if self.attention_prior is not None:
            raise InputError("an MTGNet with attention_prior= has no kernel parameters (the "
                             "kernels carry no attention bias): use predict / predict_members")
        dev = check_device(device if device is not None else (self.device or "cpu"))
        key = str(dev)
        cache = self.__dict__.setdefault("_params_cache", {})
        if key not in cache:
            c = self.config_
            out = []
            for k in range(c["n_estimators"]):
                t = {name: v[k].to(dev) for name, v in self.state_.items()}
                layers = [LayerParams(**{f: t[f"layers.{i}.{f}"] for f in _LAYER_FIELDS})
                          for i in range(c["n_layers"])]
                out.append(MTGNetParams(t["embedding"], layers, t["w_head"], t["b_head"],
                                        c["n_heads"], c["temperature"]))
            cache[key] = out
        return cache[key]

    @overload
    def predict(self, masks: object, *, device: str | torch.device | None = ...,
                backend: Backend = ..., return_std: Literal[False] = ...) -> FloatArray: ...

    @overload
    def predict(self, masks: object, *, device: str | torch.device | None = ...,
                backend: Backend = ..., return_std: Literal[True]
                ) -> tuple[FloatArray, FloatArray]: ...

    @overload
    def predict(self, masks: object, *, device: str | torch.device | None = ...,
                backend: Backend = ..., return_std: bool = ...
                ) -> FloatArray | tuple[FloatArray, FloatArray]: ...

    def predict(self, masks: object, *, device: str | torch.device | None = None,
                backend: Backend = "auto", return_std: bool = False
                ) -> FloatArray | tuple[FloatArray, FloatArray]:
        """Ensemble-mean gains ``(n_masks, n_tasks)``, NaN outside each combination.

        Singletons get exactly 0 (their gain by definition). ``return_std=True`` also returns the
        members' standard deviation (0 for a single member). Batched through ``mtgnet_predict``.
        """
        self._check_fitted()
        if not isinstance(return_std, (bool, np.bool_)):
            raise InputTypeError(f"return_std must be a bool, got {return_std!r}")
        m = as_masks(masks, self.n_tasks_)
        ys = self._member_outputs(m, device, backend)
        mean_t: torch.Tensor | None = None
        m2: torch.Tensor | None = None
        for k, y in enumerate(ys, start=1):
            if mean_t is None:
                mean_t, m2 = y, torch.zeros_like(y) if return_std else None
                continue
            # Welford: a stable running mean and sum of squared deviations over members
            delta = y - mean_t
            mean_t = mean_t + delta / k
            if m2 is not None:
                m2 += delta * (y - mean_t)
        assert mean_t is not None
        mean = mean_t.numpy() * self.scale_
        member = masks_to_dense(m, self.n_tasks_)
        single = member.sum(axis=1) == 1
        mean[~member] = np.nan
        mean[single] = np.where(member[single], 0.0, np.nan)
        if not return_std:
            return mean
        assert m2 is not None
        std = np.sqrt(m2.numpy() / len(ys)) * self.scale_
        std[~member] = np.nan
        std[single] = np.where(member[single], 0.0, np.nan)
        return mean, std

    def predict_members(self, masks: object, *, device: str | torch.device | None = None,
                        backend: Backend = "auto") -> FloatArray:
        """Each member's gains ``(n_estimators, n_masks, n_tasks)`` (NaN outside, 0 for
        singletons): what the ensemble spread is made of, e.g. a grouping's value per member."""
        self._check_fitted()
        m = as_masks(masks, self.n_tasks_)
        ys = self._member_outputs(m, device, backend)
        out = np.empty((len(ys), m.shape[0], self.n_tasks_))
        for k, y in enumerate(ys):
            out[k] = y.numpy() * self.scale_
        member = masks_to_dense(m, self.n_tasks_)
        single = member.sum(axis=1) == 1
        out[:, ~member] = np.nan
        out[:, single] = np.where(member[single], 0.0, np.nan)
        return out

    def predict_held_out(self, masks: object) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """Out-of-fold gains of training rows: per mask, the mean over the members that held it
        out of this fit (NaN where none did), and how many did; what a measurement is checked
        against (a warm-started member may have trained on the row in an earlier fit)."""
        self._check_fitted()
        m = as_masks(masks, self.n_tasks_)
        held = getattr(self, "held_out_", None)
        if held is None:
            raise InputError("this MTGNet has no record of its held-out rows (loaded from a file "
                             "or fitted by an older version): refit it")
        which = np.stack([np.isin(m, h) for h in held])                      # (E, M)
        count = which.sum(axis=0).astype(np.int64)
        out = np.full((m.shape[0], self.n_tasks_), np.nan)
        rows = np.flatnonzero(count > 0)
        if rows.size:
            preds = self.predict_members(m[rows])                            # (E, R, N)
            w = which[:, rows].astype(np.float64)[:, :, None]
            out[rows] = np.nansum(preds * w, axis=0) / count[rows, None]
            member = masks_to_dense(m[rows], self.n_tasks_)
            out[rows] = np.where(member, out[rows], np.nan)
        return out, count

    def _predict(self, masks: MaskArray) -> FloatArray:
        out = self.predict(masks)
        assert isinstance(out, np.ndarray)
        return out

    def embeddings(self, member: int | None = 0) -> FloatArray:
        """Learned task embeddings ``(n_tasks, dim)`` of one ensemble member, or of all
        (``member=None``: ``(n_estimators, n_tasks, dim)``); members live in different bases."""
        self._check_fitted()
        emb = self.state_["embedding"].double().numpy()
        if member is None:
            return emb.copy()
        k = check_int("member", member, 0)
        if k >= emb.shape[0]:
            raise InputError(f"member must be < n_estimators={emb.shape[0]}, got {k}")
        return emb[k].copy()

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write parameters and learned state to ``path`` (torch.save of tensors and plain data)."""
        self._check_fitted()
        if self.token_prior is not None or self.attention_prior is not None:
            raise InputError("an MTGNet with token_prior= or attention_prior= cannot be saved "
                             "(its prior is not part of the file); refit it where the prior is "
                             "at hand")
        torch.save({"format": _FORMAT,
                    "params": {**self.get_params(), "warm_start_from": None},
                    "config": self.config_,
                    "state": self.state_, "scale": self.scale_,
                    "task_names": list(self.task_names_), "n_epochs": self.n_epochs_,
                    "n_holdout": self.n_holdout_, "best_epoch": self.best_epoch_.tolist(),
                    "n_train_rows": self.n_train_rows_}, os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MTGNet:
        """An estimator saved by :meth:`save`, ready to ``predict`` (``torch.load`` with
        ``weights_only=True``: no pickled code runs; anything else is an ``InputError``)."""
        if not isinstance(path, (str, os.PathLike)):
            raise InputTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        p = os.fspath(path)
        if not os.path.isfile(p):
            why = "it is a directory" if os.path.isdir(p) else "no such file"
            raise InputError(f"cannot load MTGNet from {p!r}: {why}")
        try:
            with warnings.catch_warnings():  # torch warns about foreign pickle protocols
                warnings.simplefilter("ignore")
                blob = torch.load(p, map_location="cpu", weights_only=True)
        except OSError as exc:
            raise InputError(f"cannot load MTGNet from {p!r}: {exc.strerror or exc}") from None
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
            # torch's own message suggests weights_only=False (unsafe): never pass it on
            raise InputError(f"{p!r} is not an MTGNet file saved by MTGNet.save (not a torch "
                             f"weights file: {type(exc).__name__})") from None
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            found = (f"format {blob.get('format')!r}" if isinstance(blob, dict)
                     else f"a {type(blob).__name__}")
            raise InputError(f"{p!r} is not an MTGNet file saved by MTGNet.save (expected format "
                             f"{_FORMAT!r}, found {found})")
        try:
            state = blob["state"]
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                                      for v in state.values()):
                raise TypeError("'state' is not a dict of tensors")
            est = cls(**blob["params"])
            est._check_params()
            est.state_ = dict(state)
            est.config_ = dict(blob["config"])
            est.scale_ = float(blob["scale"])
            est.task_names_ = tuple(str(t) for t in blob["task_names"])
            est.n_tasks_ = len(est.task_names_)
            est.n_epochs_ = int(blob["n_epochs"])
            est.n_holdout_ = int(blob["n_holdout"])
            est.best_epoch_ = np.asarray(blob["best_epoch"])
            est.n_train_rows_ = int(blob["n_train_rows"])
            emb = est.state_["embedding"]
            if emb.ndim != 3 or emb.shape[:2] != (est.config_["n_estimators"], est.n_tasks_):
                raise ValueError(f"embedding of shape {tuple(emb.shape)} does not match "
                                 f"{est.config_['n_estimators']} members x {est.n_tasks_} tasks")
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InputError(f"{p!r} is a damaged or incompatible MTGNet file ({what})") from None
        return est

    def _check_fitted(self) -> None:
        if not hasattr(self, "state_"):
            raise InputError("this MTGNet is not fitted yet: call fit(table) first")


#: Largest |gain| accepted for training: gains are relative changes of a metric (0.05 = 5%);
#: anything beyond this is a unit or parsing error and would overflow the float32 model.
MAX_ABS_GAIN = 1e6


def check_training_gains(table: GainTable) -> None:
    """Reject gains MTG-Net cannot learn from: +-inf or |gain| > ``MAX_ABS_GAIN`` (row and task
    named), or no finite gain at all in a combination of >= 2 tasks (all NaN)."""
    member = table.member()
    g = np.where(member, table.gains, 0.0)
    bad = np.isinf(g) | (np.abs(np.nan_to_num(g)) > MAX_ABS_GAIN)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(f"training gains must be finite with |gain| <= {MAX_ABS_GAIN:g}: row "
                         f"{r} (mask {int(table.masks[r])}), task {c} "
                         f"({table.task_names[c]!r}) is {table.gains[r, c]}")
    multi = member & (member.sum(axis=1) >= 2)[:, None]
    if multi.any() and not np.isfinite(g[multi]).any():
        raise InputError("training gains are all NaN: no combination of >= 2 tasks has a "
                         "measured gain to learn from")


@contextmanager
def _one_cpu_thread(enabled: bool) -> Iterator[None]:
    """Run on one intra-op thread: full-batch steps on a few hundred rows are latency-bound,
    and on a busy machine torch's thread pool made each fit 4-10x slower (seen while MTL runs
    trained in parallel: 75 epochs took 7-23 s instead of ~1 s)."""
    before = torch.get_num_threads()
    if enabled and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _unit_hash(masks: MaskArray, seed: int, member: int) -> FloatArray:
    """A uniform number in [0, 1) per mask from (seed, member, mask): splitmix64 finaliser."""
    with np.errstate(over="ignore"):
        salt = (seed * 0x9E3779B97F4A7C15 + member * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB)
        x = masks.astype(np.uint64) ^ np.uint64(salt % (1 << 64))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _with_free_singletons(masks: MaskArray, gains: FloatArray, n: int
                          ) -> tuple[MaskArray, FloatArray]:
    """Append the singleton rows the table lacks: their gain is 0 by definition, so they are free."""
    singles = np.uint64(1) << np.arange(n, dtype=np.uint64)
    missing = singles[~np.isin(singles, masks)]
    if missing.size == 0:
        return masks, np.asarray(gains, dtype=np.float64)
    extra = np.full((missing.size, n), np.nan)
    for r, s in enumerate(missing):
        extra[r, int(s).bit_length() - 1] = 0.0
    return np.concatenate([masks, missing]), np.vstack([gains, extra])
