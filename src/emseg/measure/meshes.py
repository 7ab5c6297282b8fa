"""Object meshes in nm: marching cubes on a lightly smoothed object mask, simplification,
and export as PLY/OBJ or neuroglancer precomputed (legacy single-resolution) meshes."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SMOOTH_SIGMA_VOX = 0.75  # Gaussian σ (voxels) before marching cubes: staircase → smooth surface
FORMATS = ("ply", "obj", "precomputed")


def object_mesh(mask: np.ndarray, voxel_size: Sequence[float], origin_vox: Sequence[int] = (0, 0, 0),
                smooth_sigma_vox: float = SMOOTH_SIGMA_VOX):
    """Triangle mesh (trimesh, vertices x, y, z in nm) of a boolean object mask whose first
    voxel is at ``origin_vox`` in the volume. The mask is padded so the mesh is closed."""
    import trimesh
    from scipy import ndimage
    from skimage import measure

    field = np.pad(mask.astype(np.float32), 2)
    if smooth_sigma_vox > 0:
        field = ndimage.gaussian_filter(field, smooth_sigma_vox)
    if field.max() <= 0.5:  # a speck that smoothing flattens: mesh the raw mask instead
        field = np.pad(mask.astype(np.float32), 2)
    verts, faces, _, _ = measure.marching_cubes(field, 0.5, spacing=tuple(float(v) for v in voxel_size))
    verts += (np.asarray(origin_vox, np.float64) - 2) * np.asarray(voxel_size, np.float64)
    # z, y, x → x, y, z (what mesh viewers and neuroglancer expect); swapping two axes flips
    # skimage's (inward, for a bright object) winding to outward normals (tested)
    return trimesh.Trimesh(vertices=verts[:, ::-1], faces=faces, process=False)


def surface_area_nm2(mask: np.ndarray, voxel_size: Sequence[float]) -> float:
    """Surface area (nm²) of a boolean object mask, from its mesh."""
    return float(object_mesh(mask, voxel_size).area)


def simplify(mesh, fraction: float):
    """Keep about ``fraction`` of the faces (quadric decimation); 1.0 = unchanged."""
    if fraction >= 1.0 or len(mesh.faces) < 64:
        return mesh
    target = max(16, int(len(mesh.faces) * fraction))
    return mesh.simplify_quadric_decimation(face_count=target)


def write_precomputed_mesh(mesh, label: int, outdir: str | os.PathLike) -> None:
    """One object in neuroglancer's legacy precomputed mesh format: a manifest ``<id>:0``
    naming a fragment file of uint32 vertex count, float32 x y z (nm), uint32 triangles."""
    outdir = Path(outdir)
    fragment = f"{label}.frag"
    verts = np.asarray(mesh.vertices, "<f4")
    faces = np.asarray(mesh.faces, "<u4")
    with open(outdir / fragment, "wb") as f:
        f.write(np.uint32(len(verts)).astype("<u4").tobytes())
        f.write(verts.tobytes())
        f.write(faces.tobytes())
    (outdir / f"{label}:0").write_text(json.dumps({"fragments": [fragment]}))


def read_precomputed_mesh(outdir: str | os.PathLike, label: int):
    """Read back one object written by `write_precomputed_mesh` (vertices, faces)."""
    outdir = Path(outdir)
    manifest = json.loads((outdir / f"{label}:0").read_text())
    data = (outdir / manifest["fragments"][0]).read_bytes()
    n = int(np.frombuffer(data[:4], "<u4")[0])
    verts = np.frombuffer(data[4:4 + 12 * n], "<f4").reshape(n, 3)
    faces = np.frombuffer(data[4 + 12 * n:], "<u4").reshape(-1, 3)
    return verts, faces


def write_precomputed_info(outdir: str | os.PathLike) -> None:
    """The ``info`` file that marks a folder as a neuroglancer legacy mesh source."""
    (Path(outdir) / "info").write_text(json.dumps({"@type": "neuroglancer_legacy_mesh"}))


def export_meshes(labels_volume, outdir: str | os.PathLike, fmt: str = "ply", ids: Sequence[int] | None = None,
                  fraction: float = 1.0, smooth_sigma_vox: float = SMOOTH_SIGMA_VOX, block=(64, 256, 256),
                  progress: bool = False) -> list[dict]:
    """Mesh the chosen objects (default: all) of an instance label Volume into ``outdir``."""
    from tqdm.auto import tqdm

    from emseg.errors import InvalidValuesError
    from emseg.measure.objects import object_boxes, read_object

    if fmt not in FORMATS:
        raise InvalidValuesError(f"mesh format must be one of {FORMATS}, got {fmt!r}")
    if not 0.0 < fraction <= 1.0:
        raise InvalidValuesError(f"simplification fraction must be in (0, 1], got {fraction}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    boxes = object_boxes(labels_volume, block, progress)
    if ids is not None:
        missing = sorted(set(int(i) for i in ids) - set(boxes))
        if missing:
            raise InvalidValuesError(f"{labels_volume.path}: no objects with ids {missing[:10]}")
        boxes = {int(i): boxes[int(i)] for i in ids}
    written = []
    for label, box in tqdm(boxes.items(), desc="meshes", disable=not progress, leave=False):
        mask, origin = read_object(labels_volume, label, box)
        mesh = simplify(object_mesh(mask, labels_volume.voxel_size, origin, smooth_sigma_vox), fraction)
        if fmt == "precomputed":
            write_precomputed_mesh(mesh, label, outdir)
        else:
            mesh.export(outdir / f"{label}.{fmt}")
        written.append({"id": label, "vertices": len(mesh.vertices), "faces": len(mesh.faces),
                        "area_nm2": float(mesh.area)})
    if fmt == "precomputed":
        write_precomputed_info(outdir)
    return written
