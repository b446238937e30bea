import numpy as np
import pytest
import torch

from adapters import prototypes as prototypes_module
from adapters.prototypes import clear_memory_cache, fit_prototypes, get_prototypes


@pytest.fixture(autouse=True)
def _empty_memory_cache():
    clear_memory_cache()
    yield
    clear_memory_cache()


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    sizes = [60, 30, 10]
    rows = np.concatenate([centre + 0.1 * rng.standard_normal((size, 2)) for centre, size in zip(centres, sizes)])
    return rows.astype(np.float32)


def test_fit_prototypes_weights_are_cluster_shares():
    prototypes = fit_prototypes(_blobs(), n_clusters=3, samples=1000, seed=0)

    assert prototypes.centers.shape == (3, 2)
    assert prototypes.weights.dtype == torch.float32
    # The shares of the three blobs are 0.6, 0.3 and 0.1, whatever order K-means returns them in.
    assert sorted(prototypes.weights.tolist()) == pytest.approx([0.1, 0.3, 0.6])


def test_fit_prototypes_subsamples_rows():
    features = _blobs()
    calls = []
    original = prototypes_module.KMeans.fit

    def spy(self, x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(self, x, *args, **kwargs)

    prototypes_module.KMeans.fit = spy
    try:
        fit_prototypes(features, n_clusters=2, samples=40, seed=1)
    finally:
        prototypes_module.KMeans.fit = original

    assert calls == [40]


def test_fit_prototypes_lowers_cluster_count():
    with pytest.warns(RuntimeWarning, match="3 clusters"):
        prototypes = fit_prototypes(_blobs()[:3], n_clusters=5, samples=100, seed=0)

    assert prototypes.k == 3


def test_get_prototypes_caches_in_memory_and_on_disk(tmp_path, monkeypatch):
    features = _blobs()
    fits = []
    real_fit = prototypes_module.fit_prototypes
    monkeypatch.setattr(prototypes_module, "fit_prototypes", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    key = {"modality": "visual", "n_clusters": 3, "samples": 50, "seed": 0, "fingerprint": "abc"}

    first = get_prototypes(features, cache_dir=tmp_path, **key)
    second = get_prototypes(features, cache_dir=tmp_path, **key)
    clear_memory_cache()
    third = get_prototypes(features, cache_dir=tmp_path, **key)

    # One fit: the second call hits memory, the third the .npz file.
    assert len(fits) == 1
    assert second is first
    assert torch.equal(third.centers, first.centers)
    assert torch.equal(third.weights, first.weights)
    assert len(list((tmp_path / "prototypes").glob("*.npz"))) == 1
    assert not list((tmp_path / "prototypes").glob(".tmp-*"))


def test_get_prototypes_key_includes_fingerprint_and_k(tmp_path):
    features = _blobs()
    base = {"modality": "visual", "samples": 50, "seed": 0}

    a = get_prototypes(features, n_clusters=3, fingerprint="a", cache_dir=tmp_path, **base)
    b = get_prototypes(features, n_clusters=2, fingerprint="a", cache_dir=tmp_path, **base)
    c = get_prototypes(features, n_clusters=3, fingerprint="b", cache_dir=tmp_path, **base)

    assert a.k == 3
    assert b.k == 2
    assert c is not a
    assert len(list((tmp_path / "prototypes").glob("*.npz"))) == 3


def test_get_prototypes_refits_unreadable_file(tmp_path):
    features = _blobs()
    key = {"modality": "audio", "n_clusters": 2, "samples": 50, "seed": 0, "fingerprint": "x"}
    get_prototypes(features, cache_dir=tmp_path, **key)
    clear_memory_cache()
    (path,) = (tmp_path / "prototypes").glob("*.npz")
    path.write_bytes(b"not a zip file")

    prototypes = get_prototypes(features, cache_dir=tmp_path, **key)

    assert prototypes.k == 2
