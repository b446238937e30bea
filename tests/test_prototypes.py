import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from adapters import prototypes as prototypes_module
from adapters.prototypes import clear_memory_cache, fit_prototypes, get_prototypes, kmeans_plusplus_centers


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


def test_kmeans_plusplus_centers_are_distinct_rows_and_seeded():
    rows = np.random.default_rng(3).normal(size=(300, 12)).astype(np.float32)

    centers = kmeans_plusplus_centers(rows, 40, seed=5)

    assert centers.shape == (40, 12)
    # Every centre is a row of the input, no row twice.
    picked = {tuple(center) for center in centers.tolist()}
    assert len(picked) == 40
    assert picked <= {tuple(row) for row in rows.tolist()}
    np.testing.assert_array_equal(centers, kmeans_plusplus_centers(rows, 40, seed=5))
    assert not np.array_equal(centers, kmeans_plusplus_centers(rows, 40, seed=6))


def test_kmeans_plusplus_seeding_finds_separated_blobs():
    # Eight tight blobs far apart: k-means++ draws far rows with high probability, so the
    # fitted prototypes sit on the blobs like scikit-learn's own seeding does.
    rng = np.random.default_rng(0)
    blob_centres = rng.normal(scale=50.0, size=(8, 20))
    rows = (blob_centres[rng.integers(0, 8, 800)] + rng.normal(size=(800, 20))).astype(np.float32)

    ours = fit_prototypes(rows, n_clusters=8, samples=800, seed=0)
    reference = KMeans(n_clusters=8, n_init=4, random_state=0).fit(rows)

    nearest = np.min(np.linalg.norm(blob_centres[:, None, :] - ours.centers.numpy()[None], axis=2), axis=1)
    assert np.all(nearest < 1.0), nearest
    ours_inertia = KMeans(n_clusters=8, init=ours.centers.numpy(), n_init=1, max_iter=1).fit(rows).inertia_
    assert ours_inertia <= 1.01 * reference.inertia_
