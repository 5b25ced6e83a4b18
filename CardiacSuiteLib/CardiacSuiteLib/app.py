"""Headless Slicer host: a real MRML scene with the application and module logics attached.

Inside Slicer the application builds all of this; batch scripts and the test suite build it here, so that
segmentations convert to closed surfaces, volume sequences browse through their proxies and scenes save to
``.mrb`` and read back exactly as in the application.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import vtk

import slicer

MODULE_LOGIC_CLASSES = {
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "Colors": "vtkSlicerColorLogic",
    "Volumes": "vtkSlicerVolumesLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "Sequences": "vtkSlicerSequencesLogic",
    "Markups": "vtkSlicerMarkupsLogic",
    "Transforms": "vtkSlicerTransformLogic",
    "Tables": "vtkSlicerTablesLogic",
    "Data": "vtkSlicerDataModuleLogic",
}


@dataclass
class HeadlessApp:
    """Owns the scene and every logic attached to it.

    Module logics keep raw pointers to the application logic, so this object must outlive every use of the
    scene: keep a reference to it, not only to ``scene``.
    """

    scene: slicer.vtkMRMLScene
    application_logic: slicer.vtkSlicerApplicationLogic
    logics: dict[str, object] = field(default_factory=dict)
    cache_dir: Path | None = None
    _keep_alive: list[object] = field(default_factory=list)

    def logic(self, name: str):
        return self.logics[name]

    def clear(self) -> None:
        """Empty the scene as File > Close Scene does (default colour nodes stay)."""
        self.scene.Clear(False)

    def close(self) -> None:
        """Empty the scene and remove the temporary cache folder if this host created it."""
        self.scene.Clear(True)
        for finalizer in self._keep_alive:
            if isinstance(finalizer, weakref.finalize):
                finalizer()


def create_app(cache_dir: str | os.PathLike | None = None) -> HeadlessApp:
    """Build a scene, its application logic and the module logics CardiacSuite uses.

    ``cache_dir`` is the remote-IO cache the data IO manager needs to read ``.mrb`` bundles back; a private
    temporary folder is used when it is not given.
    """
    scene = slicer.vtkMRMLScene()
    crosshair = slicer.vtkMRMLCrosshairNode()
    crosshair.SetCrosshairName("default")
    scene.AddNode(crosshair)

    owned = cache_dir is None
    cache = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="cardiacsuite-cache-"))
    cache.mkdir(parents=True, exist_ok=True)
    (cache / ".slicer-cache").touch()  # the cache manager's mark that this folder is its own

    app_logic = slicer.vtkSlicerApplicationLogic()
    # slicer-core ships no colour-table files; an empty folder where the colour logic looks keeps it quiet.
    home = cache / "home"
    (home / "share" / "ColorFiles").mkdir(parents=True, exist_ok=True)
    app_logic.SetHomeDirectory(str(home))
    app_logic.SetShareDirectory("share")
    app_logic.SetTemporaryPath(str(cache))
    app_logic.SetMRMLScene(scene)
    app_logic.SetSliceLogics(vtk.vtkCollection())
    app_logic.SetViewLogics(vtk.vtkCollection())

    logics: dict[str, object] = {}
    for name, class_name in MODULE_LOGIC_CLASSES.items():
        logic = getattr(slicer, class_name)()
        # The colour logic must know the application before it sees the scene, or it adds no default nodes.
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(name, logic)
        logics[name] = logic
    logics["Colors"].AddDefaultColorNodes()

    remote_io = slicer.vtkMRMLRemoteIOLogic()
    remote_io.SetMRMLScene(scene)
    data_io = slicer.vtkDataIOManagerLogic()
    data_io.SetMRMLApplicationLogic(app_logic)
    data_io.SetAndObserveDataIOManager(remote_io.GetDataIOManager())
    remote_io.GetCacheManager().SetRemoteCacheDirectory(str(cache))
    remote_io.AddDataIOToScene()

    host = HeadlessApp(
        scene=scene,
        application_logic=app_logic,
        logics=logics,
        cache_dir=cache,
        _keep_alive=[crosshair, remote_io, data_io],
    )
    if owned:
        # A private temporary folder goes away with the host (or at the latest when Python exits).
        host._keep_alive.append(weakref.finalize(host, shutil.rmtree, str(cache), ignore_errors=True))
    return host
