"""Landmark and curve files: Slicer markups JSON (``.mrk.json``) in, Slicer markups JSON out.

A landmarks file holds one or more markups; every control point with a label is a landmark of that name, and
every curve markup is a curve under its markup name (a vessel centreline, an annulus contour). Coordinates are
read in the file's coordinate system (LPS, as Slicer writes, or RAS) and returned in RAS millimetres.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from CardiacSuiteLib.errors import InputError

_LPS = np.array([-1.0, -1.0, 1.0])


def _points(markup: dict) -> tuple[list[str], np.ndarray]:
    labels = [str(p.get("label", "")) for p in markup.get("controlPoints", [])]
    points = np.array([p["position"] for p in markup.get("controlPoints", [])], float).reshape(-1, 3)
    if markup.get("coordinateSystem", "LPS") == "LPS":
        points = points * _LPS
    return labels, points


def read(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Named landmarks and named curves (RAS mm) from a markups file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        markups = document["markups"]
        parsed = [(m, *_points(m)) for m in markups]
    except (ValueError, KeyError, TypeError, IndexError):
        raise InputError(f"{path}: not a Slicer markups file (.mrk.json) with control points") from None
    landmarks, curves = {}, {}
    for markup, labels, points in parsed:
        kind = str(markup.get("type", "Fiducial")).lower()
        if kind in ("curve", "closedcurve"):
            name = str(markup.get("name") or f"curve {len(curves) + 1}")
            curves[name] = points
            continue
        for label, point in zip(labels, points):
            if label:
                landmarks[label] = point
    if not landmarks and not curves:
        raise InputError(f"{path}: no labelled control points or curves in it")
    return landmarks, curves


def check_inside(landmarks: dict[str, np.ndarray], volume, source: str) -> None:
    """Every landmark must lie in the image: a point outside means the wrong file or the wrong CT."""
    for name, point in landmarks.items():
        if not volume.inside(point[None], margin_voxels=0.5)[0]:
            raise InputError(f"{source}: landmark '{name}' at R,A,S {', '.join(f'{v:.1f}' for v in point)} mm is "
                             "outside the CT; were the landmarks placed on this study?")


def write_points(path: str | Path, name: str, landmarks: dict[str, np.ndarray], descriptions: dict[str, str]) -> Path:
    """A Slicer point list (``vtkMRMLMarkupsFiducialNode`` JSON, LPS) of the landmarks, labelled by name."""
    points = []
    for index, (label, point) in enumerate(landmarks.items()):
        points.append({"id": str(index + 1), "label": label, "description": descriptions.get(label, ""),
                       "associatedNodeID": "", "position": [float(v) for v in np.asarray(point) * _LPS],
                       "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0], "selected": True,
                       "locked": False, "visibility": True, "positionStatus": "defined"})
    document = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/Resources/"
                           "Schema/markups-schema-v1.0.3.json#",
                "markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": False,
                             "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d", "name": name,
                             "controlPoints": points}]}
    path = Path(path)
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return path
