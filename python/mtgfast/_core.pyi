"""Typed stubs of the compiled core ``mtgfast._core`` (C++17, pybind11).

Arrays: masks are ``uint64`` (bit j = task j), gains ``float64`` of shape (n_masks, n_tasks).
C++ ``std::invalid_argument``/``std::length_error`` arrive as ``ValueError``, ``std::out_of_range``
as ``IndexError``. Long loops release the GIL.
"""

import enum
from collections.abc import Sequence
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

_Masks: TypeAlias = npt.NDArray[np.uint64]
_Order: TypeAlias = Literal["lex", "colex", "binary"]

class masks:  # submodule
    """Enumeration, ranking and sampling of uint64 task masks."""

    @staticmethod
    def binomial(n: int, k: int) -> int:
        """C(n, k) for n <= 64 (0 outside 0 <= k <= n)."""
    @staticmethod
    def enumerate_all(n: int, order: _Order, max_bytes: int) -> _Masks:
        """All 2^n - 1 non-empty subsets; ValueError when they would take more than max_bytes."""
    @staticmethod
    def enumerate_k(n: int, k: int, order: _Order) -> _Masks:
        """All C(n, k) k-subsets in lex or colex order ("binary" is colex for one size)."""
    @staticmethod
    def rank_colex(masks: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Colex rank of each mask among the subsets of its own size."""
    @staticmethod
    def unrank_colex(ranks: npt.ArrayLike, n: int, k: int) -> _Masks:
        """The k-subsets with the given colex ranks; IndexError if a rank >= C(n, k)."""
    @staticmethod
    def sample_distinct(n: int, count: int, sizes: list[int], seed: int) -> _Masks:
        """count distinct uniform non-empty subsets (of the given sizes if any), sorted."""
    @staticmethod
    def popcount(masks: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """Number of tasks in each mask (1-D; ValueError otherwise)."""

class search:  # submodule
    """Grouping search: partition DP, branch-and-bound with Lagrangian bounds, beam + local search."""

    class Method(enum.Enum):
        """Which search produced a result."""

        dp = 0
        bnb = 1
        beam = 2

    class Uncovered(enum.Enum):
        """What a task that no chosen group contains costs: its singleton, or nothing."""

        singleton = 0
        alone = 1

    class GroupingResult:
        """One budget's answer: a grouping, its value and an upper bound of the optimum."""

        @property
        def budget(self) -> int: ...
        @property
        def feasible(self) -> bool:
            """A grouping was found (False and optimal: none exists)."""
        @property
        def optimal(self) -> bool:
            """bound - value <= gap_tol * max(1, |value|) (always True from the DP)."""
        @property
        def timed_out(self) -> bool: ...
        @property
        def method(self) -> search.Method: ...
        @property
        def bound(self) -> float:
            """Upper bound of the optimum for this budget (-inf: proven infeasible)."""
        @property
        def gap(self) -> float:
            """bound - value (inf when no grouping was found)."""
        @property
        def value(self) -> float: ...
        @property
        def nodes(self) -> int:
            """Branch-and-bound nodes (0 for the other methods)."""
        @property
        def groups(self) -> _Masks: ...
        @property
        def assignment(self) -> npt.NDArray[np.int64]: ...
        @property
        def task_gains(self) -> npt.NDArray[np.float64]: ...

    @staticmethod
    def group(masks: npt.ArrayLike, gains: npt.ArrayLike, budgets: Sequence[int],
              method: search.Method, beam_width: int, uncovered: search.Uncovered,
              time_limit: float, max_dp_bytes: int, gap_tol: float = 1e-6,
              local_search: bool = True) -> list[search.GroupingResult]:
        """One result per budget, in order. Gains outside each mask are ignored; time_limit in
        seconds covers the whole call, every method (0: none); "dp" raises ValueError above
        max_dp_bytes. Scalars are strict: a bool (or None) where a number is meant, or a number
        where a bool is meant, is a TypeError."""
    @staticmethod
    def local_search(masks: npt.ArrayLike, gains: npt.ArrayLike, start: npt.ArrayLike,
                     budget: int, uncovered: search.Uncovered, max_rounds: int = 200,
                     merge: bool = True, kick_seed: int = 0, scan: bool = False) -> _Masks:
        """Local search from the candidate masks `start`: the chosen masks in the routine's
        order. scan=True: the former whole-pool scan (the reference). For tests."""
    @staticmethod
    def dp_bytes(n_tasks: int, max_budget: int) -> int:
        """Bytes the partition DP needs for n_tasks and budgets up to max_budget (2**64 - 1 for
        n_tasks outside [1, 40]; ValueError for max_budget < 1)."""
