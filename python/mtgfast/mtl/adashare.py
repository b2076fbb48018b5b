"""AdaShare for the residual MLP encoder (Sun, Panda, Feris & Saenko, NeurIPS 2020).

Every task t owns, for every residual block b, a select/skip policy ``π_t^b = softmax(logits_t^b)``
learned together with the network through Gumbel-softmax samples ``u_t^b``; task t computes

    h ← u_t^b · block_b(h) + (1 − u_t^b) · h        (skip = identity)

on the shared stem output, then its own head. Policy learning adds (paper, eq. 4-5) ``λ_sp ·
L_sparsity + λ_sh · L_sharing`` with ``L_sparsity = Σ_{t,b} log π_t^b(select)`` (fewer blocks) and
``L_sharing = Σ_{t1<t2} Σ_b (B − b)/B · |π_t1^b − π_t2^b|`` (b = 0 for the first block: tasks are
pushed to share low-level blocks more). Curriculum: at stage k only the last k blocks' policies are
learned, the others always execute. Then a policy is drawn from the learned distribution and the
network is re-trained from scratch with it (``train_adashare``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_bool, check_int, check_real
from ..errors import InputError, InputTypeError
from .engine import Engine, check_run_inputs
from .models import BlockEncoder, MTLModel, torch_seed
from .trainer import train_mtl

__all__ = ["AdaShare", "AdaShareResult", "build", "train_adashare"]


class AdaShare(MTLModel):
    """Shared stem + residual blocks, each block selected or skipped per task by a learned policy.

    States: warm-up (``searching=False``, no fixed policy: every block runs), policy search
    (``searching=True``: Gumbel-softmax samples of the last ``n_learned`` blocks' policies while
    training, their most likely decision in eval mode) and re-training (``fixed_policy`` set).
    """

    fixed_policy: Tensor | None  # a buffer (None while the policy is learned)

    def __init__(self, encoder: nn.Module, heads: nn.ModuleList, *, lambda_sparsity: float = 0.02,
                 lambda_sharing: float = 0.05, tau: float = 5.0, tau_decay: float = 0.965,
                 fixed_policy: Tensor | None = None) -> None:
        super().__init__()
        lambda_sparsity = check_real("lambda_sparsity", lambda_sparsity, 0)
        lambda_sharing = check_real("lambda_sharing", lambda_sharing, 0)
        tau = check_real("tau", tau, 0, open_low=True)
        tau_decay = check_real("tau_decay", tau_decay, 0, 1, open_low=True)
        blocks = getattr(encoder, "blocks", None)
        if blocks is None or not hasattr(encoder, "stem") or len(blocks) < 1:
            raise InputError("AdaShare needs an encoder with a stem and at least one residual "
                             "block")
        self.encoder = cast(BlockEncoder, encoder)  # checked just above
        self.heads = heads
        self.n_tasks = len(heads)
        self.n_blocks = len(blocks)
        self.lambda_sparsity = float(lambda_sparsity)
        self.lambda_sharing = float(lambda_sharing)
        self.tau = float(tau)
        self.tau_decay = float(tau_decay)
        # logits[..., 0] = select, [..., 1] = skip; equal logits = probability 1/2 (paper's init)
        self.policy_logits = nn.Parameter(torch.zeros(self.n_tasks, self.n_blocks, 2))
        self.searching = fixed_policy is None
        self.n_learned = self.n_blocks
        if fixed_policy is None:
            self.register_buffer("fixed_policy", None)
        else:
            fp = torch.as_tensor(fixed_policy, dtype=torch.float32)
            if fp.shape != (self.n_tasks, self.n_blocks) or not bool(((fp == 0) | (fp == 1)).all()):
                raise InputError(f"policy must be 0/1 of shape ({self.n_tasks}, {self.n_blocks}), "
                                 f"got {tuple(fp.shape)}")
            self.register_buffer("fixed_policy", fp)
            self.policy_logits.requires_grad_(False)

    # -- policy ---------------------------------------------------------------------------------
    def _learned(self) -> Tensor:
        """Boolean (n_blocks,) mask of the blocks whose policy the curriculum stage learns."""
        idx = torch.arange(self.n_blocks, device=self.policy_logits.device)
        return idx >= self.n_blocks - self.n_learned

    def select_probs(self) -> Tensor:
        """``π_t^b(select)``, shape (n_tasks, n_blocks), differentiable."""
        return torch.softmax(self.policy_logits, dim=-1)[..., 0]

    def _decisions(self) -> Tensor:
        if self.fixed_policy is not None:
            return self.fixed_policy
        ones = torch.ones(self.n_tasks, self.n_blocks, device=self.policy_logits.device)
        if not self.searching:
            return ones
        learned = self._learned()
        if self.training:
            u = F.gumbel_softmax(self.policy_logits, tau=self.tau, hard=False, dim=-1)[..., 0]
        else:
            u = (self.select_probs() > 0.5).float()
        return torch.where(learned, u, ones)

    def policy(self, binary: bool = False) -> Tensor:
        """Learned policy, shape (n_tasks, n_blocks): select probabilities, or 0/1 decisions
        (the fixed policy when re-training; otherwise select where probability > 1/2, and blocks
        the curriculum has not reached yet always select)."""
        with torch.no_grad():
            if self.fixed_policy is not None:
                return self.fixed_policy.detach().cpu().clone()
            p = self.select_probs().detach().cpu()
            if not binary:
                return p
            learned = self._learned().cpu()
            return torch.where(learned, (p > 0.5).float(), torch.ones_like(p))

    def end_epoch(self) -> None:
        """Anneal the Gumbel temperature (``tau ← tau · tau_decay``, paper: 5 then × 0.965)."""
        self.tau = max(self.tau * self.tau_decay, 1e-3)

    # -- model protocol -------------------------------------------------------------------------
    def forward(self, x: Tensor) -> list[Tensor]:
        h0 = self.encoder.stem(x)
        u = self._decisions()
        outs = []
        for t, head in enumerate(self.heads):
            h = h0
            for b, block in enumerate(self.encoder.blocks):
                ub = u[t, b]
                if self.fixed_policy is not None:
                    # hard policy: really skip (no compute), as the re-trained AdaShare network does
                    h = block(h) if bool(ub) else h
                else:
                    h = ub * block(h) + (1 - ub) * h
            outs.append(head(h))
        return outs

    def regularizer(self) -> Tensor:
        """``λ_sp L_sparsity + λ_sh L_sharing`` on the learned blocks while searching, else 0."""
        if self.fixed_policy is not None or not self.searching:
            return torch.zeros((), device=self.policy_logits.device)
        learned = self._learned()
        p = self.select_probs()[:, learned]
        log_p = torch.log_softmax(self.policy_logits, dim=-1)[..., 0][:, learned]
        sparsity = log_p.sum()
        b_idx = torch.arange(self.n_blocks, device=p.device)[learned].float()
        depth_w = (self.n_blocks - b_idx) / self.n_blocks
        sharing = p.new_zeros(())
        for t1 in range(self.n_tasks):
            for t2 in range(t1 + 1, self.n_tasks):
                sharing = sharing + (depth_w * (p[t1] - p[t2]).abs()).sum()
        return self.lambda_sparsity * sparsity + self.lambda_sharing * sharing

    def network_parameters(self) -> list[nn.Parameter]:
        """Everything but the policy logits (trained on a different data half while searching)."""
        return [p for n, p in self.named_parameters() if n != "policy_logits"]

    def shared_parameters(self) -> list[nn.Parameter]:
        """The shared encoder's parameters."""
        return list(self.encoder.parameters())


def _policy_tensor(policy: Any) -> Tensor:
    try:
        return torch.as_tensor(policy, dtype=torch.float32)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"policy must be a (tasks, blocks) nested sequence of 0/1: {exc}"
                             ) from exc


def build(suite: Any, tasks: Sequence[int], *, hidden: int | None = None,
          n_blocks: int | None = None, dropout: float | None = None, seed: int = 0,
          policy: Any = None, lambda_sparsity: float = 0.02, lambda_sharing: float = 0.05,
          tau: float = 5.0, tau_decay: float = 0.965) -> AdaShare:
    """AdaShare model for ``tasks`` of ``suite``. With ``policy`` (0/1 per task and block, e.g. from
    ``train_adashare``) it is the re-training network. Without, ``train_mtl`` learns policy and
    weights jointly on the same batches, at a fixed temperature unless the trainer calls the model's
    ``end_epoch()`` (a one-phase simplification); ``train_adashare`` runs the paper's schedule."""
    from .architectures import seeded_parts

    encoder, heads = seeded_parts(suite, tasks, hidden=hidden, n_blocks=n_blocks, dropout=dropout,
                                  seed=seed, blocks_for="adashare")
    fixed = None if policy is None else _policy_tensor(policy)
    model = AdaShare(encoder, heads, lambda_sparsity=lambda_sparsity,
                     lambda_sharing=lambda_sharing, tau=tau, tau_decay=tau_decay,
                     fixed_policy=fixed)
    torch.manual_seed(torch_seed(seed))
    return model


@dataclass(frozen=True)
class AdaShareResult:
    """Outcome of ``train_adashare``: the re-trained run, the learned select probabilities and the
    0/1 policy used for re-training (both ``(tasks, blocks)``), and the search history
    (``policy_probs`` per epoch, ``train_loss`` per epoch and task, ``tau`` per epoch)."""

    run: Any  # mtgfast.mtl.trainer.RunResult
    policy_probs: tuple[tuple[float, ...], ...]
    policy: tuple[tuple[int, ...], ...]
    search_history: Mapping[str, list[Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "search_history", MappingProxyType(dict(self.search_history)))


class _PolicySearchStep:
    """One epoch of AdaShare's search on the engine's model: warm-up epochs train the weights with
    every block executed; search epochs alternate per batch a weight step on one half of the
    training rows and a policy step (task losses + regularizer) on the other, with the curriculum
    stage set from the epoch and the Gumbel temperature annealed after the epoch."""

    def __init__(self, engine: Engine, *, warmup_epochs: int, stage_epochs: int,
                 policy_lr: float) -> None:
        self.engine, self.warmup_epochs, self.stage_epochs = engine, warmup_epochs, stage_epochs
        model: AdaShare = engine.model  # type: ignore[assignment]
        self.model = model
        config = engine.config
        rows = torch.randperm(engine.n_train, generator=engine.generator)
        half = engine.n_train // 2
        # weights / policy halves
        self.rows_w, self.rows_p = rows[:half].to(engine.device), rows[half:].to(engine.device)
        self.opt_w = torch.optim.AdamW(model.network_parameters(), lr=config.lr,
                                       weight_decay=config.weight_decay)
        self.opt_p = torch.optim.Adam([model.policy_logits], lr=policy_lr)

    def _losses(self, rows: Tensor) -> Tensor:
        xb, yb = self.engine.batch(rows)
        return self.engine.task_losses(self.model(xb), yb)

    def __call__(self, epoch: int) -> dict[str, Any]:
        eng, model = self.engine, self.model
        e = epoch - 1  # epochs of the schedule count from 0
        searching = e >= self.warmup_epochs
        model.searching = searching
        if searching:
            # curriculum: deepest block first, one more block every ``stage_epochs`` epochs
            model.n_learned = min(model.n_blocks, 1 + (e - self.warmup_epochs) // self.stage_epochs)
        perm_w = self.rows_w[eng.permutation(self.rows_w.numel())]
        perm_p = self.rows_p[eng.permutation(self.rows_p.numel())]
        batches = eng.batches(perm_w)
        bs = eng.config.batch_size
        sums = torch.zeros(len(eng.tasks), device=eng.device)
        for b, rows_b in enumerate(batches):
            losses = self._losses(rows_b)
            self.opt_w.zero_grad(set_to_none=True)
            losses.sum().backward()
            self.opt_w.step()
            sums += losses.detach()
            if searching:
                pb = perm_p[(b * bs) % perm_p.numel():][:bs]
                total = self._losses(pb).sum() + model.regularizer()
                self.opt_p.zero_grad(set_to_none=True)
                total.backward()
                self.opt_p.step()
        if searching:
            model.end_epoch()
        return {"train_loss": [float(v) for v in sums / max(len(batches), 1)],
                "policy_probs": model.policy().tolist(), "tau": model.tau,
                "n_learned": model.n_learned if searching else 0}


def train_adashare(suite: Any, tasks: Sequence[int], seed: int, config: Any, *,
                   warmup_epochs: int = 5, search_epochs: int = 20, stage_epochs: int | None = None,
                   policy_lr: float = 0.01, lambda_sparsity: float = 0.02,
                   lambda_sharing: float = 0.05, sample_policy: bool = False) -> AdaShareResult:
    """AdaShare's two phases: search the policy, then re-train from scratch with it.

    Search: ``warmup_epochs`` with every block executed, then ``search_epochs`` alternating per
    batch a weight step on one half of the training rows and a policy step (task losses +
    regularizer) on the other half, Gumbel temperature annealed per epoch; curriculum: the number of
    learned (deepest) blocks grows by one every ``stage_epochs`` (default: search_epochs /
    n_blocks). Re-training: ``train_mtl`` with ``arch="adashare"`` and the policy, so it shares the
    trainer's protocol (early stopping, metrics). The policy is the most likely decision per block,
    or a draw from the learned distribution (``sample_policy=True``, as the paper does).
    """
    idx = check_run_inputs(suite, tasks, seed, config)
    warmup_epochs = check_int("warmup_epochs", warmup_epochs, 0)
    search_epochs = check_int("search_epochs", search_epochs, 0)
    policy_lr = check_real("policy_lr", policy_lr, 0, open_low=True)
    if stage_epochs is not None:
        stage_epochs = check_int("stage_epochs", stage_epochs, 1)
    sample_policy = check_bool("sample_policy", sample_policy)
    start = time.perf_counter()
    model = build(suite, idx, hidden=config.hidden, n_blocks=config.n_blocks,
                  dropout=config.dropout, seed=seed, lambda_sparsity=lambda_sparsity,
                  lambda_sharing=lambda_sharing)
    stage = (stage_epochs if stage_epochs is not None
             else max(1, math.ceil(search_epochs / model.n_blocks)))
    engine = Engine(suite, idx, seed, config, model, start=start)
    step = _PolicySearchStep(engine, warmup_epochs=warmup_epochs, stage_epochs=stage,
                             policy_lr=policy_lr)
    # the search neither validates nor stops early: every warm-up and search epoch runs
    history = engine.loop(step, epochs=warmup_epochs + search_epochs, validate=False).history
    gen = engine.generator

    probs = model.policy()
    if sample_policy:
        draw = torch.rand(probs.shape, generator=gen) < probs
        learned = model._learned().cpu()
        chosen = torch.where(learned, draw.float(), torch.ones_like(probs))
    else:
        chosen = model.policy(binary=True)
    policy = tuple(tuple(int(v) for v in row) for row in chosen.tolist())
    retrain_cfg = replace(config, arch="adashare",
                          arch_options=tuple(sorted({**dict(config.arch_options),
                                                     "policy": policy}.items())))
    run = train_mtl(suite, idx, seed, retrain_cfg)  # the trainer's protocol, early stopping and all
    return AdaShareResult(run=run,
                          policy_probs=tuple(tuple(float(v) for v in r) for r in probs.tolist()),
                          policy=policy, search_history=history,
                          seconds=time.perf_counter() - start)
