import cc3d
import numpy as np
import pytest
from scipy import ndimage

from emseg.synth import make_volume


def test_synthetic_volume_has_em_like_content():
    s = make_volume((32, 64, 64), (8.0, 8.0, 8.0), seed=1)
    assert s.raw.dtype == np.uint8 and s.raw.shape == (32, 64, 64)
    assert s.mito.shape == s.raw.shape and set(np.unique(s.mito)) <= {0, 1}
    assert 0.01 < s.mito.mean() < 0.4
    assert s.membranes.any()
    # membranes and mitochondria are darker than cytoplasm
    cytoplasm = (s.mito == 0) & (s.membranes == 0)
    assert s.raw[s.membranes > 0].mean() < s.raw[cytoplasm].mean() - 40
    assert s.raw[s.mito > 0].mean() < s.raw[cytoplasm].mean() - 20
    assert s.mito_instances.max() >= 1


def test_synthetic_volume_is_reproducible_and_seeded():
    a = make_volume((16, 48, 48), 8.0, seed=5)
    b = make_volume((16, 48, 48), 8.0, seed=5)
    c = make_volume((16, 48, 48), 8.0, seed=6)
    assert np.array_equal(a.raw, b.raw)
    assert not np.array_equal(a.raw, c.raw)


def test_anisotropic_voxels_sample_the_same_geometry():
    iso = make_volume((40, 40, 40), (10.0, 10.0, 10.0), seed=2, noise=0)
    aniso = make_volume((10, 40, 40), (40.0, 10.0, 10.0), seed=2, noise=0)
    # same physical extent → similar mitochondria volume fraction
    assert abs(iso.mito.mean() - aniso.mito.mean()) < 0.08


def test_touching_pairs_are_in_contact_and_separate_instances():
    s = make_volume((24, 64, 64), 8.0, seed=0, mito_density=3.0, touching=1.0)
    assert s.touching_pairs, "no pair placed"
    assert np.array_equal(s.mito > 0, s.mito_instances > 0)
    components = cc3d.connected_components(s.mito > 0, connectivity=6)
    for a, b in s.touching_pairs:
        grown = ndimage.binary_dilation(s.mito_instances == a)  # 6-neighbours
        assert (grown & (s.mito_instances == b)).any(), f"pair {a}, {b} does not touch"
        assert len(np.unique(components[s.mito_instances == a])) == 1
        assert np.unique(components[s.mito_instances == a]) == np.unique(components[s.mito_instances == b])
    # the binary mask has fewer connected objects than instances: the pairs are what a threshold merges
    assert components.max() <= s.mito_instances.max() - len(s.touching_pairs)
    with pytest.raises(ValueError, match="touching"):
        make_volume((8, 16, 16), 8.0, touching=1.5)
