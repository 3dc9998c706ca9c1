"""The social graph between users (networkx) and word-of-mouth sharing over it.

The graph is built once with networkx, then kept as CSR arrays (`policies.base.SocialGraph`) so
that sharing among 100k users is vectorised: every sharer's item is pushed into the inbox of each
of their friends, where it raises the item's appeal (`UtilityParams.social`) and is remembered.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from policies.base import SocialGraph
from scenarios.schema import SocialConfig


def build_graph(n_users: int, config: SocialConfig, seed: int) -> nx.Graph:
    degree = max(1, min(config.degree, n_users - 1))
    if n_users < 3:
        return nx.complete_graph(n_users)
    if config.graph == "watts_strogatz":
        even = max(2, degree - degree % 2)
        return nx.watts_strogatz_graph(n_users, even, config.rewire, seed=seed)
    if config.graph == "barabasi_albert":
        return nx.barabasi_albert_graph(n_users, max(1, degree // 2), seed=seed)
    return nx.fast_gnp_random_graph(n_users, degree / max(1, n_users - 1), seed=seed)


def to_csr(graph: nx.Graph, n_users: int) -> SocialGraph:
    edges = np.asarray(list(graph.edges()), dtype=np.int64).reshape(-1, 2)
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n_users), out=indptr[1:])
    return SocialGraph(indptr=indptr, indices=dst)


def fan_out(graph: SocialGraph, sharers: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every (friend, item, sharer) triple for sharers[i] sharing items[i] with all friends."""
    start = graph.indptr[sharers]
    count = graph.indptr[sharers + 1] - start
    total = int(count.sum())
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    friends = graph.indices[np.repeat(start, count) + offsets]
    return friends, np.repeat(items, count), np.repeat(sharers, count)
