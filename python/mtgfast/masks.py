"""Task names <-> uint64 masks, and enumeration/ranking/sampling of combinations (wraps ``_core``).

A combination of ``n_tasks <= 64`` tasks is a ``uint64`` whose bit ``j`` is task ``j``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from . import _core
from .checks import check_int, env_int, is_int
from .errors import InputError, InputTypeError

Order = Literal["lex", "colex", "binary"]
MaskArray = npt.NDArray[np.uint64]
#: the most tasks a combination holds (a uint64 bit each)
MAX_TASKS = 64

#: Largest array ``all_masks`` builds unless ``MTGFAST_MAX_ENUM_BYTES`` says otherwise (8 GiB).
DEFAULT_MAX_ENUM_BYTES = 8 << 30
#: Peak bytes per combination drawn by the core's sampler (its hash set of drawn indices: 2
#: buckets and a node each, then the sorted indices and the masks): csrc/enumerate.cpp.
SAMPLE_BYTES_PER_MASK = 72

__all__ = [
    "MaskArray",
    "Order",
    "all_masks",
    "as_masks",
    "check_n_tasks",
    "dense_to_masks",
    "indices_to_mask",
    "k_subsets",
    "mask_to_indices",
    "masks_to_dense",
    "popcount",
    "rank",
    "sample_masks",
    "unrank",
]


def check_n_tasks(n_tasks: object) -> int:
    """Validate a number of tasks (an int in [1, MAX_TASKS]) and return it as ``int``."""
    return check_int("n_tasks", n_tasks, 1, MAX_TASKS, expected=f"in [1, {MAX_TASKS}]")


def _check_order(order: str) -> None:
    if order not in ("lex", "colex", "binary"):
        raise InputError(f"order must be 'lex', 'colex' or 'binary', got {order!r}")


def _list_masks(items: list[object], name: str) -> npt.NDArray[np.generic]:
    """The masks of a Python sequence, checked element by element (numpy would turn ``True``
    into 1, and ``[-1, 2**63]`` into float64): ints become uint64 with the offending value named;
    anything else goes through numpy (a bool is a type error, nested lists a shape error)."""
    for i, x in enumerate(items):
        if isinstance(x, (bool, np.bool_)):
            raise InputTypeError(f"{name} must hold integers, got bool {x!r} at index {i}")
    ints: list[int] = []
    for x in items:
        if not is_int(x):
            return np.asarray(items)
        ints.append(int(x))
    for i, v in enumerate(ints):
        if v < 0:
            raise InputError(f"{name} must be non-negative, got {v} at index {i}")
        if v >= 1 << 64:
            raise InputError(f"{name}[{i}] = {v} does not fit in 64 bits (at most 64 tasks)")
    return np.array(ints, dtype=np.uint64)


def as_masks(masks: object, n_tasks: int | None = None, *, name: str = "masks") -> MaskArray:
    """Convert to a 1-D ``uint64`` array, checking for negatives, zero masks and bits >= n_tasks."""
    if isinstance(masks, np.ndarray):
        arr = masks
    elif isinstance(masks, (set, frozenset, Mapping, str, bytes)):  # no order, or not masks
        raise InputTypeError(f"{name} must be an array of integer masks (ordered like the gain "
                             f"rows), got {type(masks).__name__}")
    elif type(masks).__module__.partition(".")[0] == "torch" and hasattr(masks, "detach"):
        arr = np.asarray(masks.detach().cpu().numpy())
    else:
        try:
            items = list(masks) if not is_int(masks) else [masks]  # type: ignore[call-overload]
        except TypeError as exc:
            raise InputTypeError(f"{name} must be an array of integer masks, got "
                                 f"{type(masks).__name__}") from exc
        arr = _list_masks(items, name)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == object:
            for i, x in enumerate(arr):  # int("3") and int(2.5) would parse or truncate
                if not is_int(x):
                    raise InputTypeError(f"{name} must hold integers, got {type(x).__name__} "
                                         f"{x!r:.40} at index {i}")
            ints = [int(x) for x in arr]
            if any(x < 0 or x >= 1 << 64 for x in ints):
                raise InputError(f"{name} must lie in [1, 2^64)")
            arr = np.array(ints, dtype=np.uint64)
        else:
            raise InputTypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype != np.uint64:
        if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and int(arr.min()) < 0:
            raise InputError(f"{name} must be non-negative")
        arr = arr.astype(np.uint64)
    if arr.size and not np.all(arr):
        raise InputError(f"{name} contains the empty combination (mask 0) at index "
                         f"{int(np.flatnonzero(arr == 0)[0])}")
    if n_tasks is not None and n_tasks < 64 and arr.size:
        bad = arr >> np.uint64(n_tasks)
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{name}[{i}] = {int(arr[i])} uses a task bit >= n_tasks={n_tasks}")
    return np.ascontiguousarray(arr)


def all_masks(n_tasks: int, order: Order = "lex", *, max_bytes: int | None = None) -> MaskArray:
    """All ``2**n_tasks - 1`` non-empty combinations.

    ``order="lex"``: by size, then ``itertools.combinations`` order (as in the MTG-Net release files);
    ``"colex"``: by size, then increasing value; ``"binary"``: 1, 2, ..., 2**n - 1. Raises
    ``ValueError`` naming the size when the array would exceed ``max_bytes`` (default 8 GiB or
    ``MTGFAST_MAX_ENUM_BYTES``).
    """
    n = check_n_tasks(n_tasks)
    _check_order(order)
    if max_bytes is None:
        max_bytes = env_int("MTGFAST_MAX_ENUM_BYTES", DEFAULT_MAX_ENUM_BYTES)
    max_bytes = min(check_int("max_bytes", max_bytes, 0), 2**64 - 1)
    if n == 64:
        raise InputError("enumerating all 2^64 - 1 combinations of 64 tasks is not possible")
    need = ((1 << n) - 1) * 8
    if need > max_bytes:
        raise InputError(f"all_masks({n}) needs {need / 2**30:.3g} GiB for 2^{n} - 1 masks, over "
                         f"the limit of {max_bytes / 2**30:.3g} GiB (max_bytes or "
                         f"MTGFAST_MAX_ENUM_BYTES)")
    return _core.masks.enumerate_all(n, order, max_bytes)


def k_subsets(n_tasks: int, k: int, order: Literal["lex", "colex"] = "lex") -> MaskArray:
    """All ``C(n_tasks, k)`` combinations of exactly ``k`` tasks, in lex or colex (Gosper) order."""
    n = check_n_tasks(n_tasks)
    if order not in ("lex", "colex"):
        raise InputError(f"order must be 'lex' or 'colex', got {order!r}")
    k = check_int("k", k, 1, n, expected=f"in [1, {n}]")
    count = _core.masks.binomial(n, k)
    limit = env_int("MTGFAST_MAX_ENUM_BYTES", DEFAULT_MAX_ENUM_BYTES)
    if count * 8 > limit:
        raise InputError(f"C({n}, {k}) = {count} masks need {count * 8 / 2**30:.1f} GiB, "
                         f"over the limit of {limit / 2**30:.1f} GiB")
    return _core.masks.enumerate_k(n, k, order)


def popcount(masks: object) -> npt.NDArray[np.int32]:
    """Number of tasks in each combination."""
    return _core.masks.popcount(as_masks(masks))


def rank(masks: object) -> npt.NDArray[np.uint64]:
    """Colex rank of each mask among the combinations of its own size (combinatorial number system)."""
    return _core.masks.rank_colex(as_masks(masks))


def unrank(ranks: object, n_tasks: int, k: int) -> MaskArray:
    """The ``k``-task combinations of ``n_tasks`` tasks whose colex ranks are ``ranks``."""
    n = check_n_tasks(n_tasks)
    k = check_int("k", k, 1, n, expected=f"in [1, {n}]")
    r = np.asarray(ranks)
    if r.ndim != 1 or (r.size and not np.issubdtype(r.dtype, np.integer)):
        raise InputError("ranks must be a 1-D integer array")
    if r.size and np.issubdtype(r.dtype, np.signedinteger) and int(r.min()) < 0:
        raise InputError("ranks must be non-negative")
    total = _core.masks.binomial(n, int(k))
    if r.size and int(r.max()) >= total:
        raise InputError(f"rank {int(r.max())} is not below C({n}, {k}) = {total}")
    return _core.masks.unrank_colex(r.astype(np.uint64), n, int(k))


def sample_masks(n_tasks: int, count: int, *, sizes: Iterable[int] | None = None,
                 seed: int = 0) -> MaskArray:
    """``count`` distinct combinations drawn uniformly (optionally only of the given sizes).

    Returned sorted by size then colex rank; the draw is a function of ``seed`` alone.
    """
    n = check_n_tasks(n_tasks)
    if sizes is not None and (is_int(sizes) or isinstance(sizes, (str, bytes))
                              or not isinstance(sizes, Iterable)):
        raise InputTypeError(f"sizes must be a sequence of ints or None, got "
                             f"{type(sizes).__name__}")
    size_list = sorted({check_int("sizes", s) for s in sizes}) if sizes is not None else []
    for s in size_list:
        if not 1 <= s <= n:
            raise InputError(f"sizes must lie in [1, {n}], got {s}")
    count = check_int("count", count, 0)
    seed = check_int("seed", seed)  # any int: the sampler takes it modulo 2**64
    available = sum(_core.masks.binomial(n, s) for s in (size_list or range(1, n + 1)))
    if int(count) > available:
        raise InputError(f"cannot draw {count} distinct combinations: only {available} exist")
    need = int(count) * SAMPLE_BYTES_PER_MASK
    limit = env_int("MTGFAST_MAX_ENUM_BYTES", DEFAULT_MAX_ENUM_BYTES)
    if need > limit:
        raise InputError(f"drawing {count} combinations needs too much memory: about "
                         f"{need:,} bytes ({need / 2**30:.3g} GiB), over the limit of "
                         f"{limit / 2**30:.3g} GiB (MTGFAST_MAX_ENUM_BYTES)")
    return _core.masks.sample_distinct(n, int(count), size_list, int(seed) & (2**64 - 1))


def mask_to_indices(mask: int) -> list[int]:
    """Task indices (ascending) of one mask."""
    m = check_int("mask", mask, 0, 2**64 - 1, expected="in [0, 2^64)")
    out = []
    while m:
        low = m & -m
        out.append(low.bit_length() - 1)
        m ^= low
    return out


def indices_to_mask(indices: Iterable[int]) -> int:
    """The mask of a collection of task indices in [0, 64)."""
    if is_int(indices) or isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
        raise InputTypeError(f"indices must be a collection of task indices, got "
                             f"{type(indices).__name__}")
    m = 0
    for j in indices:
        m |= 1 << check_int("task index", j, 0, 63, expected="in [0, 64)")
    return m


def masks_to_dense(masks: object, n_tasks: int) -> npt.NDArray[np.bool_]:
    """Boolean membership matrix of shape ``(n_masks, n_tasks)``."""
    n = check_n_tasks(n_tasks)
    arr = as_masks(masks, n)
    bits = np.arange(n, dtype=np.uint64)
    return ((arr[:, None] >> bits[None, :]) & np.uint64(1)).astype(bool)


def dense_to_masks(dense: object) -> MaskArray:
    """Masks from a 0/1 membership matrix of shape ``(n_masks, n_tasks)``."""
    d = np.asarray(dense)
    if d.ndim != 2:
        raise InputError(f"membership matrix must be 2-D, got shape {d.shape}")
    if not 1 <= d.shape[1] <= 64:  # 0 columns would make masks of the empty combination
        raise InputError(f"the membership matrix needs 1 to 64 columns (tasks), got {d.shape[1]}")
    if d.size and not np.isin(d, (0, 1)).all():
        raise InputError("membership matrix must hold only 0 and 1")
    weights = np.uint64(1) << np.arange(d.shape[1], dtype=np.uint64)
    return (d.astype(np.uint64) * weights[None, :]).sum(axis=1, dtype=np.uint64)


def names_to_mask(names: Sequence[str], all_names: Sequence[str]) -> int:
    """The mask of tasks given by name, with bit order taken from ``all_names``."""
    for what, v in (("names", names), ("all_names", all_names)):
        if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
            raise InputTypeError(f"{what} must be a sequence of task names, got {type(v).__name__}")
    all_names = list(all_names)
    index = {n: i for i, n in enumerate(all_names)}
    if len(index) != len(all_names):  # a name at two bits: which one it means is a guess
        dup = sorted({str(n) for n in all_names if all_names.count(n) > 1})
        raise InputError(f"all_names must be distinct, got {dup} more than once")
    missing = [n for n in names if n not in index]
    if missing:
        raise InputError(f"unknown task names {missing}; known: {list(all_names)}")
    return indices_to_mask(index[n] for n in names)
