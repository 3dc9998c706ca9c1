"""Array helpers shared by the world, the agents, the metrics, the environments and the policies.

A leaf module: it imports numpy and `simenv.kernels` (numpy and numba) only, so `policies` can
use it without importing `agents` or the world.

- `nan_to`: NaN replaced by a value (ratings of slates that were skipped).
- Unit-norm rows: `unit_rows` computes in the dtype it is given (float32 by default, what the
  world, the deciders and the policies use; the metrics ask for float64), `unit_rows_clipped`
  also bounds every component to [-1, 1] (observations declared as ``Box(-1, 1)``).
- Ring buffers: every bounded per-user record (recent consumption, the social inbox, memory
  slots, a policy's history) is a row of a 2-D array plus a write pointer per row.
  `ring_slots` turns a batch of writes, in which one user may appear several times, into
  distinct slots, so a batch write is one fancy-index assignment and a user's writes land in
  order; `ring_push` does the write.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.typing import DTypeLike

from simenv import kernels
from simenv.kernels import PAIRWISE_BLOCK


def unit_rows(x: np.ndarray, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Rows of ``x`` (last axis) scaled to unit L2 norm; all-zero rows stay zero.

    ``x`` is converted to ``dtype`` first and the norm and the division are computed in it.
    """
    x = np.asarray(x, dtype=dtype)
    if x.ndim and x.size and x.dtype in _KERNEL_FLOATS and x.shape[-1] <= PAIRWISE_BLOCK:
        # one compiled pass over the rows, the same values (the squares summed in the order
        # of numpy's pairwise sum)
        return kernels.unit_rows(x.reshape(-1, x.shape[-1])).reshape(x.shape)
    # what np.linalg.norm(x, axis=-1, keepdims=True) computes, without its Python overhead
    norm = np.sqrt(np.add.reduce(x * x, axis=-1, keepdims=True))
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


_KERNEL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@cache
def einsum_order_holds() -> bool:
    """Whether `simenv.kernels.einsum_dot` adds a float32 row's products in the order this
    process's numpy einsum adds them (checked once, on random rows of every length up to 40
    and a few longer ones, in both the ``"nd,nd->n"`` and ``"nkd,nd->nk"`` forms). The
    one-user kernels that stand in for einsum are used only when it holds; a numpy built for
    other SIMD lanes keeps the numpy path (the same results, more calls)."""
    rng = np.random.default_rng(12345)  # a local generator: no global random state
    for d in [*range(1, 41), 63, 64, 100, 128]:
        a = rng.standard_normal((3, 5, d)).astype(np.float32)
        b = rng.standard_normal((3, d)).astype(np.float32)
        rows = np.einsum("nd,nd->n", a[:, 0], b)
        slates = np.einsum("nkd,nd->nk", a, b)
        for i in range(3):
            dots = [kernels.einsum_dot(a[i, j], b[i]) for j in range(5)]
            got = np.array(dots, dtype=np.float32)  # numba hands float32 back as a float
            if (
                got.tobytes() != slates[i].tobytes()
                or got[:1].tobytes() != rows[i : i + 1].tobytes()
            ):
                return False
    return True


def short_float32_rows(*arrays: np.ndarray) -> bool:
    """Whether every one of ``arrays`` is float32 with at most `PAIRWISE_BLOCK` columns (2-D):
    what the kernels that sum a row in numpy's pairwise order (`kernels.unit_rows`'s) and
    round as numpy's float32 arithmetic does need to give numpy's values."""
    for a in arrays:
        if a.dtype != _FLOAT32 or (a.ndim == 2 and a.shape[1] > PAIRWISE_BLOCK):
            return False
    return True


def one_user_kernels(*arrays: np.ndarray) -> bool:
    """Whether the one-user kernels (`simenv.kernels`, the single env's step) may stand in for
    the numpy path on ``arrays``: `short_float32_rows` and `einsum_order_holds`."""
    return short_float32_rows(*arrays) and einsum_order_holds()


_FLOAT32 = np.dtype(np.float32)  # a dtype compares faster with a dtype than with a type


def nan_to(x: np.ndarray, value: float) -> np.ndarray:
    """``x`` with NaN replaced by ``value``, in x's float dtype (`np.nan_to_num` without its
    overhead; for arrays that hold no infinities, such as ratings)."""
    x = np.asarray(x)
    return np.where(np.isnan(x), value, x)


def unit_rows_clipped(x: np.ndarray) -> np.ndarray:
    """`unit_rows` in float32 with every component clipped to [-1, 1] (rounding cannot push
    a component out of an observation space's bounds)."""
    out = unit_rows(x)
    np.maximum(out, -1.0, out=out)  # = np.clip(out, -1, 1), in place
    return np.minimum(out, 1.0, out=out)


def ring_slots(ptr: np.ndarray, users: np.ndarray, width: int) -> np.ndarray:
    """Slots to write for each of ``users`` (in order) and advance ``ptr`` in place.

    A user appearing m times in ``users`` gets m consecutive slots after its pointer (mod width):
    one pass over the writes (`simenv.kernels.ring_slots`), no sort.
    """
    users = np.asarray(users, dtype=np.int64)
    if users.size == 0:
        return np.zeros(0, dtype=np.int64)
    return kernels.ring_slots(ptr, users, width)


def ring_push(
    buffer: np.ndarray,
    ptr: np.ndarray,
    users: np.ndarray,
    values: np.ndarray,
    *extra: tuple[np.ndarray, np.ndarray],
) -> None:
    """Append ``values[i]`` to row ``users[i]`` of ``buffer`` (the oldest entry is overwritten);
    a user may appear several times (its writes land in order). ``extra`` are (buffer, values)
    pairs written at the same slots."""
    users = np.asarray(users, dtype=np.int64)
    if users.size == 0:
        return
    slots = ring_slots(ptr, users, buffer.shape[1])
    buffer[users, slots] = values
    for buf, vals in extra:
        buf[users, slots] = vals
