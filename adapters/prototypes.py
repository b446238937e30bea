"""K-means prototypes of the source (MOSEI) feature distribution, cached per modality.

The prototypes are the alignment target shared by the objectives: the prototype-MSE baseline
pulls adapted rows toward them, Sinkhorn transports adapted batches onto them. Fitting them is
the slowest step of a trial's set-up, so each set is fitted once per (modality, clusters, seed,
sample count, data fingerprint) and reused: from an in-process LRU, else from an ``.npz`` file
under ``cache_dir/prototypes``.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from adapters.io import atomic_path

__all__ = ["Prototypes", "clear_memory_cache", "fit_prototypes", "get_prototypes", "kmeans_plusplus_centers"]

logger = logging.getLogger(__name__)

# K-means restarts per fit; fixed so that the cache key fully determines the result. One
# k-means++ start on float32 rows fits 2.6x faster than four on float64 at k = 256
# (benchmarks/trial_overhead.py), and a fit for a new cluster count delays a trial's start.
KMEANS_N_INIT = 1
# Part of the cache key: prototypes fitted by another seeding are not reused.
_FIT_METHOD = f"kmeans++plain-n{KMEANS_N_INIT}"
_MEMORY_CACHE_SIZE = 64
_memory_cache: OrderedDict[tuple, Prototypes] = OrderedDict()


@dataclass(frozen=True)
class Prototypes:
    """Cluster centres and their shares of the source rows.

    Attributes
    ----------
    centers : float32 tensor of shape (k, d), in MOSEI's normalised feature space.
    weights : float32 tensor of shape (k,), non-negative, summing to 1.
    """

    centers: torch.Tensor
    weights: torch.Tensor

    @property
    def k(self) -> int:
        """Number of prototypes."""
        return int(self.centers.shape[0])


def fit_prototypes(features: np.ndarray, n_clusters: int, samples: int, seed: int) -> Prototypes:
    """Fit K-means on at most `samples` rows of `features`.

    Parameters
    ----------
    features : array of shape (n, d)
        Normalised source training features of one modality.
    n_clusters : int
        Requested cluster count; lowered to the number of rows used, with a RuntimeWarning.
    samples : int
        Maximum rows drawn (without replacement, seeded) before fitting.
    seed : int
        Seed of the row draw and of K-means.
    """
    features = np.asarray(features, dtype=np.float32)
    rng = np.random.default_rng(seed)
    if features.shape[0] > samples:
        rows = np.sort(rng.choice(features.shape[0], size=samples, replace=False))
        features = features[rows]
    k = n_clusters
    if features.shape[0] < k:
        warnings.warn(
            f"only {features.shape[0]} source rows for {n_clusters} prototypes; using {features.shape[0]} clusters",
            RuntimeWarning,
            stacklevel=3,
        )
        k = features.shape[0]

    centers = kmeans_plusplus_centers(features, k, seed)
    kmeans = KMeans(n_clusters=k, init=centers, n_init=KMEANS_N_INIT, random_state=seed).fit(features)
    counts = np.bincount(kmeans.labels_, minlength=k).astype(np.float64)
    return Prototypes(
        centers=torch.from_numpy(kmeans.cluster_centers_.astype(np.float32)),
        weights=torch.from_numpy((counts / counts.sum()).astype(np.float32)),
    )


def kmeans_plusplus_centers(rows: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Pick `k` of `rows` as initial K-means centres by k-means++ sampling.

    Each next centre is drawn with probability proportional to the squared distance from a
    row to its closest centre so far: the original k-means++ seeding, with one candidate per
    centre. scikit-learn's seeding draws 2 + ln(k) candidates per centre and keeps the best,
    with per-centre overheads; it took over 90% of a fit (0.70 of 0.73 s at k = 256 on
    2000 x 713 rows, one thread), while Lloyd's iterations converged in 2 to 4 steps.

    Returns
    -------
    ndarray of shape (k, d), a copy of the chosen rows.
    """
    rng = np.random.default_rng(seed)
    n_rows = rows.shape[0]
    norms = np.einsum("ij,ij->i", rows, rows).astype(np.float64)

    def squared_distances(index: int) -> np.ndarray:
        products = (rows @ rows[index]).astype(np.float64)
        return np.maximum(norms - 2.0 * products + norms[index], 0.0)

    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n_rows)
    closest = squared_distances(chosen[0])
    for position in range(1, k):
        total = closest.sum()
        if total > 0:
            cumulative = np.cumsum(closest)
            chosen[position] = min(int(np.searchsorted(cumulative, rng.random() * total, side="right")), n_rows - 1)
        else:
            # Every row coincides with a chosen centre; K-means relocates the duplicates.
            chosen[position] = rng.integers(n_rows)
        np.minimum(closest, squared_distances(chosen[position]), out=closest)
    return rows[chosen].copy()


def _cache_file(cache_dir: Path, key: tuple) -> Path:
    modality, k, seed, samples, fingerprint, _ = key
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    return cache_dir / "prototypes" / f"{modality}-k{k}-s{seed}-n{samples}-{fingerprint[:12]}-{digest}.npz"


def _read_cache_file(path: Path) -> Prototypes | None:
    try:
        with np.load(path) as stored:
            return Prototypes(torch.from_numpy(stored["centers"]), torch.from_numpy(stored["weights"]))
    except (OSError, KeyError, ValueError) as error:
        logger.warning("ignoring unreadable prototype cache %s (%s); refitting", path, error)
        return None


def get_prototypes(
    features: np.ndarray, *, modality: str, n_clusters: int, samples: int, seed: int, fingerprint: str,
    cache_dir: Path | None = None,
) -> Prototypes:
    """Return the prototypes of one modality, fitting them only on a cache miss.

    `fingerprint` identifies the prepared source data, so a changed dataset never reuses old
    prototypes. With ``cache_dir`` None only the in-process cache is used.
    """
    key = (modality, n_clusters, seed, samples, fingerprint, _FIT_METHOD)
    cached = _memory_cache.get(key)
    if cached is not None:
        _memory_cache.move_to_end(key)
        return cached

    path = _cache_file(Path(cache_dir), key) if cache_dir is not None else None
    prototypes = _read_cache_file(path) if path is not None and path.is_file() else None
    if prototypes is None:
        logger.debug("fitting %d prototypes for %s on up to %d rows", n_clusters, modality, samples)
        prototypes = fit_prototypes(features, n_clusters, samples, seed)
        if path is not None:
            with atomic_path(path, suffix=".npz") as temporary:
                np.savez(temporary, centers=prototypes.centers.numpy(), weights=prototypes.weights.numpy())

    _memory_cache[key] = prototypes
    if len(_memory_cache) > _MEMORY_CACHE_SIZE:
        _memory_cache.popitem(last=False)
    return prototypes


def clear_memory_cache() -> None:
    """Forget the in-process prototypes (the on-disk cache stays)."""
    _memory_cache.clear()
