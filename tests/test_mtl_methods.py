"""MTL methods beyond plain hard sharing: the multidigits suite, MTAN, AdaShare and αVIL, each
checked for its defining behaviour on small real runs (scikit-learn digits), plus plain
references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mtgfast.errors import InputError
from mtgfast.mtl.adashare import build as build_adashare
from mtgfast.mtl.adashare import train_adashare
from mtgfast.mtl.alphavil import train_alphavil
from mtgfast.mtl.architectures import build_hard, build_model
from mtgfast.mtl.mtan import MTAN
from mtgfast.mtl.mtan import build as build_mtan
from mtgfast.mtl.suites.base import Splits, TaskSuite
from mtgfast.mtl.suites.multidigits import MultiDigitsSuite, superimpose
from mtgfast.mtl.trainer import TrainConfig, fit, train_mtl


def _seeds(fast: tuple[int, ...], slow: tuple[int, ...]) -> list:
    """Seeds for a behaviour test: ``fast`` by default, ``slow`` too under ``-m slow``."""
    return [*fast, *(pytest.param(s, marks=pytest.mark.slow) for s in slow)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def md() -> MultiDigitsSuite:
    return MultiDigitsSuite(n_train=1500, n_valid=400, n_test=400)


class _Derived(TaskSuite):
    """Tasks derived from multidigits' canvases and labels (for the method-specific checks)."""

    encoder_config = {"hidden": 64, "n_blocks": 1, "dropout": 0.0}

    def __init__(self, base: MultiDigitsSuite, n_blocks: int = 1) -> None:
        super().__init__(n_blocks=n_blocks)
        self.base = base
        self.encoder_config = {"hidden": 64, "n_blocks": n_blocks, "dropout": 0.0}

    @property
    def in_dim(self) -> int:
        return self.base.in_dim

    def _targets(self, X: torch.Tensor, Y: torch.Tensor, split: int) -> torch.Tensor | list:
        raise NotImplementedError

    def _build_splits(self) -> Splits:
        sp = self.base.splits()
        return Splits(sp.X_train, self._targets(sp.X_train, sp.Y_train, 0), sp.X_valid,
                      self._targets(sp.X_valid, sp.Y_valid, 1), sp.X_test,
                      self._targets(sp.X_test, sp.Y_test, 2))


class TargetWithAux(_Derived):
    """αVIL's setting: a low-resource target (the upper-left digit, labelled on 150 training rows
    only), a related high-resource auxiliary (the same digit labelled on every row) and a harmful
    auxiliary (those labels shuffled across rows: pure label noise)."""

    name = "target_with_aux"
    task_names = ("target", "related", "shuffled")
    loss_kinds = ("ce", "ce", "ce")
    metric_names = ("accuracy",) * 3
    n_labelled = 150

    def head_out_dim(self, task: int) -> int:
        return 10

    def _targets(self, X: torch.Tensor, Y: torch.Tensor, split: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(100 + split)
        a = Y[:, 0]
        target = a.clone()
        if split == 0:
            target[self.n_labelled:] = -1  # unlabelled for the target task
        return torch.stack([target, a, a[torch.randperm(len(a), generator=g)]], 1)

    def loss(self, task: int, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        if task != 0:
            return super().loss(task, y_pred, y_true)
        keep = y_true >= 0
        if not bool(keep.any()):
            return y_pred.sum() * 0.0
        return F.cross_entropy(y_pred[keep], y_true[keep].long())


class DigitAndPixel(_Derived):
    """Unrelated tasks on the same canvases: read the upper-left digit (needs depth) vs tell whether
    one pixel is brighter than average (linear in the input, solved by the stem alone)."""

    name = "digit_and_pixel"
    task_names = ("upper_left", "pixel")
    loss_kinds = ("ce", "bce")
    metric_names = ("accuracy", "bce")

    def head_out_dim(self, task: int) -> int:
        return (10, 1)[task]

    def _targets(self, X: torch.Tensor, Y: torch.Tensor, split: int) -> list:
        return [Y[:, 0], (X[:, 60] > 0).float()]


# -- multidigits -----------------------------------------------------------------------------------
def test_superimpose_places_and_overlays() -> None:
    a = np.zeros((1, 8, 8), np.float32)
    b = np.zeros((1, 8, 8), np.float32)
    a[0, 7, 7], a[0, 0, 0] = 0.3, 1.0
    b[0, 4, 4], b[0, 7, 7] = 0.8, 0.5
    c = superimpose(a, b, 3)
    assert c.shape == (1, 11, 11)
    # the overlap keeps the brighter pixel (a has 0.3, b has 0.8 there)
    assert c[0, 0, 0] == 1.0 and c[0, 7, 7] == 0.8
    assert c[0, 10, 10] == 0.5 and c.sum() == pytest.approx(1.0 + 0.8 + 0.5)


def test_multidigits_deterministic_and_well_formed() -> None:
    s1 = MultiDigitsSuite(n_train=200, n_valid=50, n_test=50, split_seed=3)
    s2 = MultiDigitsSuite(n_train=200, n_valid=50, n_test=50, split_seed=3)
    s3 = MultiDigitsSuite(n_train=200, n_valid=50, n_test=50, split_seed=4)
    a, b, c = s1.splits(), s2.splits(), s3.splits()
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.Y_test, b.Y_test)
    assert not torch.equal(a.X_train, c.X_train)
    assert a.X_train.shape == (200, 121) and a.X_valid.shape == (50, 121)
    assert a.Y_train.shape == (200, 2) and a.Y_train.dtype == torch.int64
    assert int(a.Y_train.min()) >= 0 and int(a.Y_train.max()) <= 9
    assert s1.in_dim == 121 and s1.head_out_dim(0) == 10 and s1.n_tasks == 2
    assert s1.higher_is_better == (True, True)
    assert s1.fingerprint() == s2.fingerprint() != s3.fingerprint()
    assert MultiDigitsSuite(metric="ce").higher_is_better == (False, False)


def test_multidigits_labels_are_the_pictured_digits() -> None:
    # a nearest-neighbour read-out of each corner from the training canvases must beat chance by
    # far:
    # labels really belong to the digits drawn in those corners
    sp = MultiDigitsSuite(n_train=600, n_valid=100, n_test=100).splits()
    d = torch.cdist(sp.X_valid, sp.X_train)
    nn_idx = d.argmin(1)
    acc = (sp.Y_train[nn_idx] == sp.Y_valid).float().mean(0)
    assert bool((acc > 0.5).all()), acc


@pytest.mark.parametrize("kw", [{"shift": 0}, {"shift": 8}, {"n_train": 5}, {"metric": "auroc"}])
def test_multidigits_bad_params(kw: dict) -> None:
    with pytest.raises(InputError):
        MultiDigitsSuite(**kw)


# -- MTAN ------------------------------------------------------------------------------------------
def test_mtan_shapes_and_registry(md: MultiDigitsSuite) -> None:
    m = build_model("mtan", md, (0, 1), n_blocks=2, seed=0)
    assert isinstance(m, MTAN)
    x = md.splits().X_valid[:7]
    outs = m(x)
    assert [tuple(o.shape) for o in outs] == [(7, 10), (7, 10)]
    masks = m.attention_masks(x)
    assert masks.shape == (2, 2, 7, 64)
    assert bool(((masks > 0) & (masks < 1)).all())
    assert float(m.regularizer()) == 0.0
    with pytest.raises(InputError):
        build_mtan(md, (0, 1), n_blocks=0)
    with pytest.raises(InputError):
        build_mtan(md, (0, 1), bogus=1)


def test_mtan_forward_matches_the_attention_equations(md: MultiDigitsSuite) -> None:
    m = build_mtan(md, (0, 1), n_blocks=2, seed=1).eval()
    x = md.splits().X_valid[:5]
    with torch.no_grad():
        p1 = m.encoder.blocks[0](m.encoder.stem(x))
        p2 = m.encoder.blocks[1](p1)
        for t in range(2):
            a1 = m.attention[t][0](p1)
            a2 = m.attention[t][1](torch.cat([p2, m.carry[0](a1 * p1)], 1))
            assert torch.allclose(m(x)[t], m.heads[t](a2 * p2), atol=1e-6)


@pytest.mark.parametrize("seed", _seeds((0,), slow=(1, 2)))
def test_mtan_attention_masks_become_task_specific(md: MultiDigitsSuite, seed: int) -> None:
    X, Y = md.splits().X_valid, md.splits().Y_valid
    init = build_mtan(md, (0, 1), n_blocks=2, seed=seed)
    res, model = fit(md, (0, 1), seed,
                      TrainConfig(epochs=12, arch="mtan", n_blocks=2, patience=100))
    assert all(v > 0.7 for v in res.metrics_test.values())
    a0, a = init.attention_masks(X), model.attention_masks(X)
    # the two tasks' masks drift apart with training (per-unit mean over inputs, each block)
    gap0 = (a0[0].mean(1) - a0[1].mean(1)).abs().mean(1)
    gap = (a[0].mean(1) - a[1].mean(1)).abs().mean(1)
    assert bool((gap > 1.5 * gap0).all()), (gap0, gap)
    # and each task's selection serves that task: swapping the attention modules hurts both
    model.eval()
    with torch.no_grad():
        own = [float(F.cross_entropy(o, Y[:, i])) for i, o in enumerate(model(X))]
        model.attention = torch.nn.ModuleList([model.attention[1], model.attention[0]])
        swapped = [float(F.cross_entropy(o, Y[:, i])) for i, o in enumerate(model(X))]
    assert swapped[0] > own[0] and swapped[1] > own[1], (own, swapped)


# -- AdaShare --------------------------------------------------------------------------------------
def _adashare_reference_regularizer(logits: torch.Tensor, learned: list[int], lam_sp: float,
                                    lam_sh: float) -> float:
    p = torch.softmax(logits, -1)[..., 0].tolist()
    n_tasks, n_blocks = len(p), len(p[0])
    sparsity = sum(np.log(p[t][b]) for t in range(n_tasks) for b in learned)
    sharing = sum((n_blocks - b) / n_blocks * abs(p[t1][b] - p[t2][b])
                  for t1 in range(n_tasks) for t2 in range(t1 + 1, n_tasks) for b in learned)
    return lam_sp * sparsity + lam_sh * sharing


def test_adashare_regularizer_and_curriculum(md: MultiDigitsSuite) -> None:
    m = build_adashare(md, (0, 1), n_blocks=4, lambda_sparsity=0.3, lambda_sharing=0.7)
    torch.manual_seed(0)
    with torch.no_grad():
        m.policy_logits.copy_(torch.randn(2, 4, 2))
    for k in (1, 2, 4):
        m.n_learned = k
        learned = list(range(4 - k, 4))  # the deepest k blocks
        ref = _adashare_reference_regularizer(m.policy_logits.detach(), learned, 0.3, 0.7)
        assert float(m.regularizer().detach()) == pytest.approx(ref, rel=1e-5)
        m.train()
        u = m._decisions()
        assert bool((u[:, : 4 - k] == 1).all())  # blocks before the curriculum stage always run
        assert bool(((u[:, 4 - k:] > 0) & (u[:, 4 - k:] < 1)).all())  # soft Gumbel samples
    m.searching = False  # warm-up: every block runs, no regularizer
    assert bool((m._decisions() == 1).all()) and float(m.regularizer()) == 0.0


def test_adashare_fixed_policy_executes_exactly_the_selected_blocks(md: MultiDigitsSuite) -> None:
    policy = ((1, 0, 1), (0, 0, 1))
    m = build_adashare(md, (0, 1), n_blocks=3, seed=2, policy=policy).eval()
    x = md.splits().X_valid[:6]
    with torch.no_grad():
        for t, row in enumerate(policy):
            h = m.encoder.stem(x)
            for b, keep in enumerate(row):
                h = m.encoder.blocks[b](h) if keep else h
            assert torch.allclose(m(x)[t], m.heads[t](h), atol=1e-6)
    assert m.policy(binary=True).tolist() == [list(r) for r in policy]
    assert float(m.regularizer()) == 0.0
    # an all-select policy is hard sharing, weight for weight (same seeding)
    full = build_adashare(md, (0, 1), n_blocks=3, seed=2, policy=((1, 1, 1), (1, 1, 1))).eval()
    hard = build_hard(md, (0, 1), n_blocks=3, seed=2).eval()
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full(x), hard(x)))
    with pytest.raises(InputError):
        build_adashare(md, (0, 1), n_blocks=3, policy=((1, 0), (1, 1)))
    with pytest.raises(InputError):
        build_adashare(md, (0, 1), n_blocks=3, policy=((1, 0, 2), (1, 1, 1)))


@pytest.mark.parametrize("seed", _seeds((0,), slow=(1, 2)))
def test_adashare_policy_differs_between_unrelated_tasks(md: MultiDigitsSuite, seed: int) -> None:
    suite = DigitAndPixel(md, n_blocks=3)
    cfg = TrainConfig(epochs=6, n_blocks=3, patience=100)
    res = train_adashare(suite, (0, 1), seed, cfg, warmup_epochs=2, search_epochs=12,
                         lambda_sparsity=0.05, lambda_sharing=0.05, policy_lr=0.1)
    policy = np.array(res.policy)
    assert policy.shape == (2, 3)
    # the digit reader keeps some depth the linear pixel task gives up
    assert policy[0].sum() > policy[1].sum(), res.policy_probs
    assert ((policy[0] == 1) & (policy[1] == 0)).any()
    # history: one probability table per epoch, temperature annealed while searching
    hist = res.search_history
    assert len(hist["policy_probs"]) == 14 and hist["tau"][-1] < hist["tau"][2]
    assert hist["n_learned"][:2] == [0, 0] and hist["n_learned"][-1] == 3
    # the re-training used that policy through the trainer's protocol
    assert set(res.run.metrics_test) == {"upper_left", "pixel"}
    assert res.run.metrics_test["upper_left"] > 0.6


# -- αVIL ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", _seeds((0, 1), slow=(2, 3, 4)))
def test_alphavil_downweights_harmful_auxiliary(md: MultiDigitsSuite, seed: int) -> None:
    suite = TargetWithAux(md)
    cfg = TrainConfig(epochs=8, patience=100)
    res = train_alphavil(suite, (0, 1, 2), 0, seed, cfg)
    W = np.array(res.run.history["weights"])  # (epochs, tasks)
    A = np.array(res.run.history["alpha"])
    assert W.shape == (8, 3) and A.shape == (8, 3)
    assert (W >= 0).all()
    # auxiliary weights follow α: w_e = max(0, w_{e-1} + α_e - 1); the target's stays 1
    w = np.ones(3)
    for e in range(8):
        w = np.maximum(0.0, w + A[e] - 1.0)
        w[0] = 1.0
        assert W[e] == pytest.approx(w, abs=1e-5)
    # the related auxiliary is up-weighted, the label-noise one down-weighted below it
    assert W[-1, 1] > 1.0 > W[-1, 2]
    assert W[:, 2].mean() < W[:, 1].mean()
    assert res.target == "target" and set(res.weights) == {"target", "related", "shuffled"}
    assert res.weights["related"] == pytest.approx(W[-1, 1])
    assert res.run.metrics_test["target"] > 0.7


def test_alphavil_learn_target_weight_follows_alpha(md: MultiDigitsSuite) -> None:
    res = train_alphavil(TargetWithAux(md), (0, 1, 2), 0, 0, TrainConfig(epochs=3, patience=100),
                         learn_target_weight=True)
    W, A = np.array(res.run.history["weights"]), np.array(res.run.history["alpha"])
    w = np.ones(3)
    for e in range(3):
        w = np.maximum(0.0, w + A[e] - 1.0)  # every weight, the target's included, follows α
        assert W[e] == pytest.approx(w, abs=1e-5)
    assert not np.allclose(W[:, 0], 1.0)


def test_alphavil_bad_input(md: MultiDigitsSuite) -> None:
    cfg = TrainConfig(epochs=1)
    with pytest.raises(InputError, match="target"):
        train_alphavil(md, (0,), 1, 0, cfg)
    with pytest.raises(InputError):
        train_alphavil(md, (0, 1), 0, 0, cfg, sample_fraction=0.0)
    with pytest.raises(InputError):
        train_alphavil(md, (0, 1), 0, 0, cfg, alpha_steps=0)
    with pytest.raises(InputError, match="weighting"):
        train_alphavil(md, (0, 1), 0, 0, TrainConfig(epochs=1, weighting="dwa"))


def test_multidigits_in_suite_registry() -> None:
    from mtgfast.mtl.suites import get_suite

    s = get_suite("multidigits", n_train=100, n_valid=20, n_test=20)
    assert isinstance(s, MultiDigitsSuite) and s.task_names == ("upper_left", "lower_right")


def test_methods_run_through_train_mtl(md: MultiDigitsSuite) -> None:
    # the names the study's --weighting / --arch flags pass
    for arch in ("hard", "mtan", "adashare"):
        for weighting in ("equal", "uncertainty", "dwa"):
            cfg = TrainConfig(epochs=2, n_blocks=2, arch=arch, weighting=weighting,
                              max_train_batches=3)
            res = train_mtl(md, (0, 1), 0, cfg)
            assert set(res.metrics_valid) == {"upper_left", "lower_right"}
            assert len(res.history["weights"]) == res.epochs_run
