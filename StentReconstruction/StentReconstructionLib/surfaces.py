"""Closed surface models of a device, built from what an algorithm located, with points in RAS.

The polydata carry no transform: the propagation moves their points directly with a deformation field, and
the scene shows them as they are.
"""

from __future__ import annotations

import numpy as np
import vtk
from scipy.spatial import cKDTree
from vtk.util import numpy_support

from . import sections


def _polydata(points: np.ndarray, triangles: np.ndarray) -> vtk.vtkPolyData:
    """Triangle mesh from (P, 3) points and (T, 3) point indices."""
    vtk_points = vtk.vtkPoints()
    vtk_points.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float64), deep=True))
    triangles = np.asarray(triangles, dtype=np.int64)
    cells = vtk.vtkCellArray()
    offsets = numpy_support.numpy_to_vtkIdTypeArray(np.arange(0, 3 * len(triangles) + 1, 3, dtype=np.int64), deep=True)
    connectivity = numpy_support.numpy_to_vtkIdTypeArray(np.ascontiguousarray(triangles.ravel()), deep=True)
    cells.SetData(offsets, connectivity)
    mesh = vtk.vtkPolyData()
    mesh.SetPoints(vtk_points)
    mesh.SetPolys(cells)
    return mesh


def mesh_arrays(mesh: vtk.vtkPolyData) -> tuple[np.ndarray, np.ndarray]:
    """(points (P, 3), triangles (T, 3)) of a triangulated polydata."""
    triangulate = vtk.vtkTriangleFilter()
    triangulate.SetInputData(mesh)
    triangulate.Update()
    output = triangulate.GetOutput()
    if output.GetNumberOfPoints() == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    points = numpy_support.vtk_to_numpy(output.GetPoints().GetData()).astype(float)
    polys = output.GetPolys()
    connectivity = numpy_support.vtk_to_numpy(polys.GetConnectivityArray()).astype(np.int64)
    return points, connectivity.reshape(-1, 3)


def _outward(mesh: vtk.vtkPolyData) -> vtk.vtkPolyData:
    """Consistent, outward-facing triangles (the scene's lighting and a volume check rely on them)."""
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputData(mesh)
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()
    normals.SplittingOff()
    normals.ComputeCellNormalsOff()
    normals.Update()
    return normals.GetOutput()


def tube_from_envelope(axis: np.ndarray, radii: np.ndarray) -> vtk.vtkPolyData:
    """The envelope (radii per station and sector around the axis) as a closed tube with flat end caps."""
    axis = np.asarray(axis, float)
    radii = np.asarray(radii, float)
    stations, sectors = radii.shape
    ring = sections.envelope_points(axis, radii).reshape(-1, 3)
    points = np.vstack([ring, axis[0], axis[-1]])
    start_centre, end_centre = len(ring), len(ring) + 1
    index = np.arange(stations * sectors).reshape(stations, sectors)
    here, there = index[:-1], index[1:]
    here_next, there_next = np.roll(here, -1, axis=1), np.roll(there, -1, axis=1)
    side = np.concatenate([np.stack([here, there, there_next], -1).reshape(-1, 3),
                           np.stack([here, there_next, here_next], -1).reshape(-1, 3)])
    first, last = index[0], index[-1]
    cap_start = np.stack([np.full(sectors, start_centre), np.roll(first, -1), first], -1)
    cap_end = np.stack([np.full(sectors, end_centre), last, np.roll(last, -1)], -1)
    return _outward(_polydata(points, np.concatenate([side, cap_start, cap_end])))


def tubes_along(polylines: list[np.ndarray], radius: float, sides: int = 8) -> vtk.vtkPolyData:
    """Wires as capped tubes of ``radius`` mm, appended into one closed-piece mesh."""
    append = vtk.vtkAppendPolyData()
    count = 0
    for line in polylines:
        line = np.asarray(line, float)
        if len(line) < 2:
            continue
        keep = np.concatenate([[True], np.linalg.norm(np.diff(line, axis=0), axis=1) > 1e-6])
        line = line[keep]
        if len(line) < 2:
            continue
        points = vtk.vtkPoints()
        points.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(line), deep=True))
        cells = vtk.vtkCellArray()
        cells.InsertNextCell(len(line))
        for i in range(len(line)):
            cells.InsertCellPoint(i)
        polyline = vtk.vtkPolyData()
        polyline.SetPoints(points)
        polyline.SetLines(cells)
        tube = vtk.vtkTubeFilter()
        tube.SetInputData(polyline)
        tube.SetRadius(float(radius))
        tube.SetNumberOfSides(int(sides))
        tube.CappingOn()
        tube.Update()
        append.AddInputData(tube.GetOutput())
        count += 1
    if count == 0:
        return vtk.vtkPolyData()
    # the caps get their own copies of the rim points; merged, every tube is a closed mesh
    clean = vtk.vtkCleanPolyData()
    clean.SetInputConnection(append.GetOutputPort())
    clean.PointMergingOn()
    clean.SetTolerance(0.0)
    triangulate = vtk.vtkTriangleFilter()
    triangulate.SetInputConnection(clean.GetOutputPort())
    triangulate.Update()
    return triangulate.GetOutput()


def isosurface(image: np.ndarray, ijk_to_ras: np.ndarray, level: float, keep: np.ndarray | None = None,
               keep_distance_mm: float = 1.5, min_share: float = 0.02) -> vtk.vtkPolyData:
    """The iso-surface of a [k, j, i] image at ``level``, in RAS, closed at the image border.

    With ``keep`` (RAS points, e.g. the envelope), only connected pieces whose median distance to those points
    is within ``keep_distance_mm`` and whose size is at least ``min_share`` of the largest such piece remain:
    calcium and noise specks away from the device drop out.
    """
    values = np.asarray(image, dtype=np.float32)
    floor = float(min(values.min(), level) - 1.0)
    padded = np.pad(values, 1, mode="constant", constant_values=floor)
    data = vtk.vtkImageData()
    data.SetDimensions(padded.shape[2], padded.shape[1], padded.shape[0])
    data.SetOrigin(-1.0, -1.0, -1.0)
    data.SetSpacing(1.0, 1.0, 1.0)
    data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(padded.ravel(), deep=True))
    contour = vtk.vtkFlyingEdges3D()
    contour.SetInputData(data)
    contour.SetValue(0, float(level))
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    contour.Update()
    points_ijk, triangles = mesh_arrays(contour.GetOutput())
    if len(triangles) == 0:
        return vtk.vtkPolyData()
    matrix = np.asarray(ijk_to_ras, float)
    points = points_ijk @ matrix[:3, :3].T + matrix[:3, 3]
    if np.linalg.det(matrix[:3, :3]) < 0:
        triangles = triangles[:, ::-1]
    triangles = _keep_pieces(points, triangles, keep, keep_distance_mm, min_share)
    used, inverse = np.unique(triangles.ravel(), return_inverse=True)
    return _polydata(points[used], inverse.reshape(-1, 3))


def _keep_pieces(points: np.ndarray, triangles: np.ndarray, keep: np.ndarray | None, distance_mm: float,
                 min_share: float) -> np.ndarray:
    """Triangles of the connected pieces near ``keep`` and large enough."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(points), len(points)))
    _, label = connected_components(graph, directed=False)
    piece = label[triangles[:, 0]]
    size = np.bincount(piece)
    near = np.ones(len(size), bool)
    if keep is not None and len(keep):
        distance = cKDTree(np.asarray(keep, float).reshape(-1, 3)).query(points)[0]
        order = np.argsort(label)
        bounds = np.searchsorted(label[order], np.arange(len(size) + 1))
        for index in range(len(size)):
            members = order[bounds[index]:bounds[index + 1]]
            near[index] = members.size > 0 and float(np.median(distance[members])) <= distance_mm
    candidates = np.where(near & (size > 0))[0]
    if candidates.size == 0:
        candidates = np.array([int(np.argmax(size))])
    largest = size[candidates].max()
    kept = candidates[size[candidates] >= min_share * largest]
    return triangles[np.isin(piece, kept)]


def closed(mesh: vtk.vtkPolyData) -> bool:
    """Whether every edge of the mesh is shared by exactly two triangles."""
    _, triangles = mesh_arrays(mesh)
    if len(triangles) == 0:
        return False
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool(np.all(counts == 2))


__all__ = ["tube_from_envelope", "tubes_along", "isosurface", "mesh_arrays", "closed"]
