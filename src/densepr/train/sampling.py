"""Multi-dataset epochs: how many examples each training set gives an epoch, and whether a batch mixes sets.

DPR's "Multi" retriever draws every batch from one dataset, so in-batch negatives stay within a domain
(``batching="per-source"``); ``"mixed"`` shuffles all sets together. How much each set gives:

- ``proportional``: as many as it has (every example once an epoch);
- ``uniform``: the same share for every set (small sets repeat, large ones are subsampled);
- ``temperature``: shares proportional to ``size ** (1 / T)``, between the two.

>>> sources = np.array([0] * 6 + [1] * 2)
>>> order = epoch_order(sources, block=2, steps=4, sampling="uniform", batching="per-source", seed=0, epoch=0)
>>> sorted(np.bincount(sources[order]).tolist())  # 4 batches of 2: two from each set
[4, 4]
"""

from __future__ import annotations

import numpy as np

from densepr.errors import DenseprError

SAMPLING = ("proportional", "uniform", "temperature")
BATCHING = ("per-source", "mixed")


def source_shares(sizes: np.ndarray, sampling: str = "proportional", temperature: float = 2.0) -> np.ndarray:
    """Each set's share of an epoch (sums to 1)."""
    if sampling not in SAMPLING:
        raise DenseprError(f"unknown sampling {sampling!r}; use one of {', '.join(SAMPLING)}")
    if sampling == "temperature" and temperature <= 0:
        raise DenseprError("--sampling-temperature must be > 0")
    power = {"proportional": 1.0, "uniform": 0.0, "temperature": 1.0 / temperature}[sampling]
    weights = sizes.astype(float) ** power
    return weights / weights.sum()


def _split(total: int, shares: np.ndarray) -> np.ndarray:
    """``total`` split by ``shares`` into integers (largest remainder)."""
    exact = total * shares
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts))[: total - counts.sum()]:
        counts[i] += 1
    return counts


def _stream(members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` of ``members``: whole shuffled passes, the last one cut short."""
    passes = -(-count // len(members))
    return np.concatenate([rng.permutation(members) for _ in range(passes)])[:count]


def epoch_order(sources: np.ndarray, block: int, steps: int, sampling: str = "proportional", batching: str = "per-source",
                seed: int = 0, epoch: int = 0, temperature: float = 2.0) -> np.ndarray:
    """Example indices for ``steps`` global batches of ``block``; ``sources[i]`` is example ``i``'s set.

    One set: a plain permutation. Deterministic in ``(seed, epoch)``, so a resumed run sees the same batches.
    """
    if batching not in BATCHING:
        raise DenseprError(f"unknown batching {batching!r}; use one of {', '.join(BATCHING)}")
    rng = np.random.default_rng([seed, epoch])
    sizes = np.bincount(sources)
    if len(sizes) == 1:
        return rng.permutation(len(sources))
    shares = source_shares(sizes, sampling, temperature)
    members = [np.flatnonzero(sources == s) for s in range(len(sizes))]
    if batching == "mixed":
        counts = _split(steps * block, shares)
        return rng.permutation(np.concatenate([_stream(m, c, rng) for m, c in zip(members, counts) if c]))
    small = [s for s, n in enumerate(sizes) if n < block]
    if small:
        raise DenseprError(f"training set {small[0]} has {sizes[small[0]]} examples, fewer than one global batch of "
                           f"{block}: use --batching mixed or a smaller batch")
    blocks = []
    for m, b in zip(members, _split(steps, shares)):
        blocks += np.split(_stream(m, b * block, rng), b) if b else []
    return np.concatenate([blocks[i] for i in rng.permutation(len(blocks))])
