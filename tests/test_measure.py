"""Measurements on analytic shapes, objects across blocks, intensities, meshes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from emseg.cli import main
from emseg.errors import InvalidValuesError
from emseg.io import write_ome_zarr
from emseg.measure.meshes import export_meshes, read_precomputed_mesh
from emseg.measure.objects import measure
from emseg.postprocess.pipeline import open_input

pytestmark = pytest.mark.timeout(120)


def ellipsoid_labels(semi_nm, voxel_size, label=1, margin=1.3):
    shape = [int(2 * margin * max(semi_nm) / v) for v in voxel_size]
    centre = [s * v / 2 + 0.37 * v for s, v in zip(shape, voxel_size)]  # off the voxel grid
    grids = [(np.arange(n) + 0.5) * v - c for n, v, c in zip(shape, voxel_size, centre)]
    z, y, x = np.meshgrid(*grids, indexing="ij")
    inside = (z / semi_nm[0]) ** 2 + (y / semi_nm[1]) ** 2 + (x / semi_nm[2]) ** 2 <= 1
    return inside.astype(np.uint32) * label, centre


def ellipsoid_area(a, b, c):
    p = 1.6075  # Knud Thomsen's formula, within 1.1 % (exact for spheres)
    return 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


@pytest.mark.parametrize("semi_nm, voxel_size", [
    ((100, 100, 100), (8, 8, 8)),  # sphere
    ((100, 100, 100), (20, 6, 6)),  # sphere, anisotropic voxels
    ((80, 120, 200), (10, 5, 5)),  # ellipsoid, anisotropic
    ((150, 100, 60), (6, 6, 6)),  # ellipsoid along z
])
def test_volume_area_axes_centroid_of_analytic_shapes(semi_nm, voxel_size):
    labels, centre = ellipsoid_labels(semi_nm, voxel_size, label=7)
    row = measure(labels, voxel_size=voxel_size, block=(8, 24, 24)).loc[7]
    a, b, c = semi_nm
    assert row.volume_nm3 == pytest.approx(4 / 3 * np.pi * a * b * c, rel=0.02)
    assert row.surface_area_nm2 == pytest.approx(ellipsoid_area(a, b, c), rel=0.05)
    axes = sorted((2 * a, 2 * b, 2 * c), reverse=True)
    assert [row.axis_major_nm, row.axis_intermediate_nm, row.axis_minor_nm] == pytest.approx(axes, rel=0.03)
    assert [row.centroid_z_nm, row.centroid_y_nm, row.centroid_x_nm] == pytest.approx(centre, abs=0.5)
    assert row.equivalent_diameter_nm == pytest.approx(2 * np.cbrt(a * b * c), rel=0.01)
    assert row.elongation == pytest.approx(axes[0] / axes[2], rel=0.03)
    assert 0 < row.sphericity <= 1.02 and not row.touches_border


def test_objects_across_blocks_measured_once_with_intensity(rng):
    labels = np.zeros((20, 30, 30), np.uint64)
    labels[2:18, 3:25, 4:9] = 2**33 + 5  # an id beyond uint32, spanning many blocks
    labels[0:4, 20:30, 20:30] = 3  # touches the border
    raw = rng.integers(0, 255, labels.shape, dtype=np.uint8)
    vs = (30.0, 4.0, 4.0)
    blockwise = measure(labels, raw, vs, block=(4, 8, 8))
    whole = measure(labels, raw, vs, block=(20, 30, 30))
    assert list(blockwise.index) == [3, 2**33 + 5]
    cols = [c for c in blockwise.columns if c != "touches_border"]
    np.testing.assert_allclose(blockwise[cols].to_numpy(float), whole[cols].to_numpy(float), rtol=1e-9)
    big = blockwise.loc[2**33 + 5]
    inside = raw[labels == 2**33 + 5]
    assert big.voxels == 16 * 22 * 5 and big.volume_nm3 == pytest.approx(16 * 22 * 5 * 480)
    assert big.mean_intensity == pytest.approx(inside.mean()) and big.std_intensity == pytest.approx(inside.std())
    assert [big.bbox_min_z_nm, big.bbox_max_z_nm, big.bbox_min_x_nm, big.bbox_max_x_nm] == [60, 540, 16, 36]
    assert blockwise.loc[3].touches_border and not big.touches_border


def test_binary_mask_is_split_and_float_labels_rejected():
    mask = np.zeros((6, 10, 10), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    mask[4:6, 6:9, 6:9] = 1
    assert len(measure(mask, voxel_size=(8, 8, 8), surface=False)) == 2
    with pytest.raises(InvalidValuesError, match="integers"):
        measure(mask.astype(np.float32), voxel_size=(8, 8, 8))


@pytest.mark.parametrize("fmt", ["ply", "obj", "precomputed"])
def test_mesh_export_roundtrip(tmp_path, fmt):
    labels, _ = ellipsoid_labels((60, 60, 60), (8, 8, 8), label=4)
    volume = open_input(labels, (8, 8, 8))
    written = export_meshes(volume, tmp_path, fmt, fraction=0.5 if fmt == "ply" else 1.0)
    assert [w["id"] for w in written] == [4]
    if fmt == "precomputed":
        verts, faces = read_precomputed_mesh(tmp_path, 4)
        assert (tmp_path / "info").read_text() == '{"@type": "neuroglancer_legacy_mesh"}'
        mesh = trimesh.Trimesh(verts, faces)
    else:
        mesh = trimesh.load(tmp_path / f"4.{fmt}", process=False)
    assert mesh.is_watertight and mesh.volume > 0  # closed, normals outwards
    assert mesh.area == pytest.approx(4 * np.pi * 60**2, rel=0.06)
    assert np.allclose(mesh.bounds.mean(axis=0), mesh.centroid, atol=8)  # x, y, z nm in the volume
    with pytest.raises(InvalidValuesError, match="no objects"):
        export_meshes(volume, tmp_path, fmt, ids=[99])


def test_cli_measure_writes_table_summary_and_png(tmp_path, capsys):
    labels, _ = ellipsoid_labels((60, 60, 60), (8, 8, 8), label=1)
    labels[:, :, : labels.shape[2] // 2] *= 2  # two halves → two objects
    write_ome_zarr(labels, tmp_path / "l.ome.zarr", (8, 8, 8), levels=1, kind="labels")
    out = tmp_path / "m" / "table.csv"
    assert main(["measure", str(tmp_path / "l.ome.zarr"), "-o", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out, index_col="id")
    assert list(table.index) == [1, 2] and {"surface_area_nm2", "sphericity", "touches_border"} <= set(table)
    assert (tmp_path / "m" / "table.png").stat().st_size > 1000
    assert "objects" in (tmp_path / "m" / "table.summary.csv").read_text()
    assert main(["mesh", str(tmp_path / "l.ome.zarr"), str(tmp_path / "ng"), "--format", "precomputed",
                 "--ids", "2"]) == 0
    assert (tmp_path / "ng" / "2:0").exists() and not (tmp_path / "ng" / "1:0").exists()
    assert main(["mesh", str(tmp_path / "l.ome.zarr"), str(tmp_path / "x"), "--format", "stl"]) == 2


def test_measure_of_a_volume_without_objects_is_an_empty_table_with_every_column():
    empty = measure(np.zeros((8, 16, 16), np.uint32), raw=np.ones((8, 16, 16), np.uint8), voxel_size=(8, 8, 8))
    full = measure(np.ones((8, 16, 16), np.uint32), raw=np.ones((8, 16, 16), np.uint8), voxel_size=(8, 8, 8))
    assert len(empty) == 0 and len(full) == 1
    assert list(empty.columns) == list(full.columns)


def test_units_um_and_density_of_an_instance_table_in_a_mask():
    from emseg.measure.density import density
    from emseg.measure.units import in_units

    labels = np.zeros((10, 20, 20), np.uint32)
    labels[1:4, 1:6, 1:6] = 1  # 75 voxels, centroid at z 2
    labels[3:9, 10:18, 10:18] = 2  # centroid at z 5.5: outside a mask of z 0-4 though it reaches into it
    voxel_size = (10.0, 5.0, 5.0)
    table = measure(labels, voxel_size=voxel_size, surface=False)
    um = in_units(table, "um")
    assert um.loc[1, "volume_um3"] == pytest.approx(75 * 250 / 1e9) and "volume_nm3" not in um
    assert um.loc[2, "centroid_z_um"] == pytest.approx(table.loc[2, "centroid_z_nm"] / 1e3)
    mask = np.zeros(labels.shape, np.uint8)
    mask[:5] = 1
    result, flags = density(labels, table, mask, voxel_size, block=(4, 8, 8))
    assert list(result.index) == ["objects"] and list(flags) == [True, False]
    row = result.loc["objects"]
    assert row.objects == 1 and row.objects_per_um3 == pytest.approx(1 / (2000 * 250 / 1e9))
    assert row.volume_fraction == pytest.approx((75 + 2 * 64) / 2000)  # voxels count, wherever the centroid is
    with pytest.raises(InvalidValuesError, match="mask must hold integers"):
        density(labels, table, mask.astype(np.float32), voxel_size)
