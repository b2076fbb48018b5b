"""Plots (matplotlib, drawn off-screen with the Agg canvas): replay curves, the chosen grouping as a
task x group matrix, estimated against measured gains, and MTG-Net's task embeddings in 2-D."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .files import atomic_write
from .errors import InputError, InputTypeError
from .gains import GainTable
from .grouping import Grouping, check_grouping_table
from .replay import ReplayResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_embeddings", "plot_estimated_vs_measured", "plot_grouping", "plot_replay"]

_STYLE = {"oracle": ("k", "o", "-"), "test-oracle": ("0.45", "^", ":"),
          "hoa": ("tab:blue", "s", "-"), "tag": ("tab:green", "D", "-"),
          "random": ("tab:brown", "x", "--")}


def _require_matplotlib() -> None:
    """``InputError`` naming the extra to install when matplotlib is missing (it is optional)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("plots need matplotlib, which is not installed: pip install "
                         "\"mtgfast[plot]\"")


def _save(fig: Figure, path: str | os.PathLike[str]) -> None:
    """``fig`` as an image at ``path`` (format from the suffix), written atomically: a failed
    write leaves any previous image whole."""
    import matplotlib

    # the format from ``path``, not from the temporary name (savefig's own default otherwise)
    fmt = os.path.splitext(os.fspath(path))[1][1:] or matplotlib.rcParams["savefig.format"]
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))


def _figure(size: tuple[float, float]) -> Figure:
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_grouping(grouping: Grouping, gains: GainTable, path: str | os.PathLike[str] | None = None,
                  *, title: str | None = None) -> Figure:
    """The chosen grouping as a task x group matrix: each cell is task j's gain in group g (from
    ``gains``, estimated or measured; blank where j is not in g), the serving cell framed."""
    n = check_grouping_table(grouping, gains, "gains")
    groups = [int(g) for g in grouping.groups.tolist()]
    rows = gains.index_of(np.asarray(groups, dtype=np.uint64))
    mat = np.full((n, len(groups)), np.nan)
    for a, g in enumerate(groups):
        for j in range(n):
            if (g >> j) & 1:
                single = g & (g - 1) == 0
                mat[j, a] = 0.0 if single else (gains.gains[rows[a], j] if rows[a] >= 0
                                                else np.nan)
    fig = _figure((1.6 + 0.9 * len(groups), 1.2 + 0.35 * n))
    ax = fig.add_subplot()
    lim = float(np.nanmax(np.abs(mat))) if np.isfinite(mat).any() else 1.0
    lim = lim if lim > 0 else 1.0
    im = ax.imshow(100 * mat, cmap="RdBu", vmin=-100 * lim, vmax=100 * lim, aspect="auto")
    for j, a in enumerate(grouping.assignment.tolist()):
        if a >= 0:
            ax.add_patch(_rect(a, j))
            if np.isfinite(mat[j, a]):
                dark = abs(mat[j, a]) > 0.6 * lim
                ax.text(a, j, f"{100 * mat[j, a]:.1f}", ha="center", va="center", fontsize=7,
                        color="w" if dark else "k")
    ax.set_yticks(range(n), gains.task_names, fontsize=8)
    ax.set_xticks(range(len(groups)), [f"G{a + 1}" for a in range(len(groups))], fontsize=8)
    ax.set_xlabel("chosen group (framed: the group serving the task)")
    fig.colorbar(im, ax=ax, label="gain (%)", shrink=0.8)
    ax.set_title(title if title is not None else
                 f"grouping, B = {grouping.budget}: average gain {100 * grouping.average:.2f}%",
                 fontsize=9)
    if path is not None:
        _save(fig, path)
    return fig


def _rect(x: int, y: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="k", linewidth=1.6)


def plot_estimated_vs_measured(estimated: GainTable, measured: GainTable,
                               path: str | os.PathLike[str] | None = None, *,
                               title: str | None = None) -> Figure:
    """Scatter of estimated against measured gains, one point per (measured combination of >= 2
    tasks, member task), with the diagonal: how far off the estimator is where it can be checked."""
    for nm, t in (("estimated", estimated), ("measured", measured)):
        if not isinstance(t, GainTable):
            raise InputTypeError(f"{nm} must be a GainTable, got {type(t).__name__}")
    if estimated.n_tasks != measured.n_tasks:
        raise InputError(f"estimated has {estimated.n_tasks} tasks, measured {measured.n_tasks}")
    multi = measured.member().sum(axis=1) >= 2
    m = measured.masks[multi]
    rows = estimated.index_of(m)
    keep = rows >= 0
    if not keep.any():
        raise InputError("no measured combination of >= 2 tasks is in the estimated table")
    y = measured.gains[multi][keep]
    x = estimated.gains[rows[keep]]
    ok = np.isfinite(x) & np.isfinite(y)
    fig = _figure((4.6, 4.2))
    ax = fig.add_subplot()
    xs, ys = 100 * x[ok], 100 * y[ok]
    ax.scatter(xs, ys, s=12, alpha=0.7, color="tab:blue", edgecolor="none")
    lo, hi = float(min(xs.min(), ys.min())), float(max(xs.max(), ys.max()))
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, linestyle="--")
    r = float(np.corrcoef(xs, ys)[0, 1]) if xs.size > 1 and xs.std() > 0 and ys.std() > 0 \
        else float("nan")
    ax.set_xlabel("estimated gain (%)")
    ax.set_ylabel("measured gain (%)")
    ax.set_title(title if title is not None else
                 f"{int(keep.sum())} measured combinations, r = {r:.2f}", fontsize=9)
    if path is not None:
        _save(fig, path)
    return fig


def plot_embeddings(estimator: Any, path: str | os.PathLike[str] | None = None, *,
                    member: int = 0, clusters: object | None = None,
                    title: str | None = None) -> Figure:
    """MTG-Net's learned task embeddings of one ensemble member in 2-D (PCA, scikit-learn), one
    labelled point per task (the paper's embedding figure); ``clusters`` colours the points."""
    if not hasattr(estimator, "embeddings"):
        raise InputTypeError("estimator must be a fitted MTGNet (it has no embeddings())")
    from sklearn.decomposition import PCA

    emb = np.asarray(estimator.embeddings(member), dtype=np.float64)
    names = list(estimator.task_names_)
    # post-LN makes only directions matter: compare unit vectors
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    xy = PCA(n_components=2).fit_transform(emb) if emb.shape[0] >= 2 else np.zeros((1, 2))
    fig = _figure((5.0, 4.4))
    ax = fig.add_subplot()
    col: Any = "tab:blue"
    if clusters is not None:
        c = np.asarray(clusters)
        if c.shape != (len(names),):
            raise InputError(f"clusters must have one entry per task ({len(names)}), got {c.shape}")
        col = [f"C{int(v) % 10}" for v in c]
    ax.scatter(xy[:, 0], xy[:, 1], c=col, s=30)
    for (px, py), nm in zip(xy, names):
        ax.annotate(nm, (px, py), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title if title is not None else f"task embeddings (member {member}, PCA)",
                 fontsize=9)
    if path is not None:
        _save(fig, path)
    return fig


def plot_replay(result: ReplayResult, path: str | os.PathLike[str] | None = None, *,
                ax: Axes | None = None, title: str | None = None) -> Figure:
    """Average test (or validation) gain in percent vs budget, one line per method; saved to
    ``path`` when given.

    Uses a bare ``Figure`` with the Agg canvas, so it never changes the caller's pyplot backend.
    """
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    if ax is None:
        fig = Figure(figsize=(7.2, 4.0), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    for i, (name, res) in enumerate(result.methods.items()):
        color, marker, line = _STYLE.get(name, (f"C{(i + 3) % 10}", "v", "-"))
        kw: dict[str, Any] = {"color": color, "marker": marker, "linestyle": line, "label": name}
        ax.plot(result.budgets, [100 * v for v in res.average_test_gain], **kw)
    ax.set_xlabel("budget B (number of groups)")
    ax.set_ylabel(f"average {result.scored} gain over tasks (%)")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:.1f}%"))  # percent, 1 decimal
    ax.set_xticks(list(result.budgets))
    ax.axhline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_title(title if title is not None else
                 f"{result.dataset} ({result.n_tasks} tasks)".strip())
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    if path is not None:
        _save(fig, path)
    return fig
