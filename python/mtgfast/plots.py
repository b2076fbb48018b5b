"""Plots of replay results (matplotlib, drawn off-screen with the Agg canvas)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .replay import ReplayResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_replay"]

_STYLE = {"oracle": ("k", "o", "-"), "test-oracle": ("0.45", "^", ":"),
          "hoa": ("tab:blue", "s", "-"), "tag": ("tab:green", "D", "-"),
          "random": ("tab:brown", "x", "--")}


def plot_replay(result: ReplayResult, path: str | os.PathLike[str] | None = None, *,
                ax: Axes | None = None, title: str | None = None) -> Figure:
    """Average test (or validation) gain in percent vs budget, one line per method; saved to
    ``path`` when given.

    Uses a bare ``Figure`` with the Agg canvas, so it never changes the caller's pyplot backend.
    """
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
        fig.savefig(path, dpi=120)
    return fig  # type: ignore[return-value]
