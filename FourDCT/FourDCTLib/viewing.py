"""Several cardiac phases side by side, with linked slice position, zoom and pan.

Built only from MRML nodes, so it is the same inside Slicer and in a headless scene: a layout description
registered on the layout node, one slice view node per phase, one sequence browser per view (each browser
keeps its own proxy volume, fixed at its phase, and its own proxy of the segmentation sequence), and linked
slice composite nodes so that Slicer's slice link logic carries slice offset, zoom and pan from any view to
the others. Inside Slicer the layout manager shows the arrangement; headless, the nodes are all there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

import vtk

import slicer
from CardiacSuiteLib.vocabulary import Attribute

from .choices import ORIENTATIONS

LAYOUT_ID = 6401  # a custom layout id, away from Slicer's built-in ones
VIEW_TAG = "FourDCT"
VIEW_COLOR = "#2E86AB"


@dataclass
class MultiPhaseView:
    layout_id: int
    phases: list[int]
    labels: list[str]
    slice_nodes: list
    composite_nodes: list
    browsers: list


def layout_description(labels: Sequence[str], orientation: str = ORIENTATIONS[0]) -> str:
    """Slice views side by side (two rows from five views up), each labelled with its phase."""
    count = len(labels)
    per_row = count if count <= 4 else (count + 1) // 2
    rows = [list(range(start, min(start + per_row, count))) for start in range(0, count, per_row)]

    def view(n: int) -> str:
        return (
            f'<item><view class="vtkMRMLSliceNode" singletontag="{VIEW_TAG}{n + 1}">'
            f'<property name="orientation" action="default">{orientation}</property>'
            f'<property name="viewlabel" action="default">{escape(labels[n])}</property>'
            f'<property name="viewcolor" action="default">{VIEW_COLOR}</property>'
            f'<property name="viewgroup" action="default">0</property>'
            "</view></item>"
        )

    body = "".join(f'<item><layout type="horizontal">{"".join(view(n) for n in row)}</layout></item>' for row in rows)
    return f'<layout type="vertical">{body}</layout>'


def layout_node(scene):
    """The scene's layout node (Slicer has one; a headless scene gets one)."""
    node = scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")
    if node is None:
        node = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if node is None:
        node = slicer.vtkMRMLLayoutNode()
        node.SetSingletonTag("vtkMRMLLayoutNode")
        node = scene.AddNode(node)
    return node


def _slice_node(scene, tag: str):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceNode")
        if node.GetLayoutName() == tag:
            return node
    if scene.GetDefaultNodeByClass("vtkMRMLSliceNode") is None:
        # Slicer registers a default slice node holding the Axial/Sagittal/Coronal presets; a bare scene has none.
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    node = scene.CreateNodeByClass("vtkMRMLSliceNode")
    node.SetName(tag)
    node.SetLayoutName(tag)
    node.SetSingletonTag(tag)
    return scene.AddNode(node)


def _composite_node(scene, tag: str):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if node.GetLayoutName() == tag:
            return node
    node = slicer.vtkMRMLSliceCompositeNode()
    node.SetLayoutName(tag)
    node.SetSingletonTag(tag)
    return scene.AddNode(node)


def is_view_browser(browser) -> bool:
    """A browser made here to hold one view at its phase (not the browser that plays the study)."""
    return bool(browser.GetAttribute(Attribute.FOURDCT_VIEW_BROWSER))


def remove_phase_views(scene) -> None:
    """Remove the per-view browsers (and their proxies) of an earlier multi-phase view."""
    for index in reversed(range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode"))):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        if is_view_browser(browser):
            proxies = []
            sequences = vtk.vtkCollection()
            browser.GetSynchronizedSequenceNodes(sequences, True)
            for n in range(sequences.GetNumberOfItems()):
                proxy = browser.GetProxyNode(sequences.GetItemAsObject(n))
                if proxy is not None:
                    proxies.append(proxy)
            scene.RemoveNode(browser)
            for proxy in proxies:
                scene.RemoveNode(proxy)


def show_phases(
    scene,
    volume_sequence,
    phases: Sequence[int],
    labels: Sequence[str] | None = None,
    segmentation_sequence=None,
    orientation: str = ORIENTATIONS[0],
    window_level: tuple[float, float] | None = (800.0, 200.0),
) -> MultiPhaseView:
    """Show ``phases`` of ``volume_sequence`` side by side (and the segmentation at each phase, if given)."""
    count = volume_sequence.GetNumberOfDataNodes()
    phases = [int(p) for p in phases]
    if not phases:
        raise ValueError("choose at least one phase to show")
    if any(not 0 <= p < count for p in phases):
        raise ValueError(f"phases must be between 0 and {count - 1}, got {phases}")
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}")
    if labels is None:
        unit = volume_sequence.GetIndexUnit()
        labels = [f"{volume_sequence.GetNthIndexValue(p)} {unit}".strip() for p in phases]
    labels = list(labels)

    remove_phase_views(scene)
    layout = layout_node(scene)
    if layout.IsLayoutDescription(LAYOUT_ID):
        layout.SetLayoutDescription(LAYOUT_ID, layout_description(labels, orientation))
    else:
        layout.AddLayoutDescription(LAYOUT_ID, layout_description(labels, orientation))

    slice_nodes, composites, browsers = [], [], []
    for n, (phase, label) in enumerate(zip(phases, labels)):
        tag = f"{VIEW_TAG}{n + 1}"
        slice_node = _slice_node(scene, tag)
        slice_node.SetOrientation(orientation)
        slice_node.SetLayoutLabel(label)
        slice_node.SetLayoutColor(*_rgb(VIEW_COLOR))
        slice_node.SetViewGroup(0)
        composite = _composite_node(scene, tag)

        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"FourDCT view {n + 1} ({label})")
        browser.SetAttribute(Attribute.FOURDCT_VIEW_BROWSER, tag)
        browser.SetAndObserveMasterSequenceNodeID(volume_sequence.GetID())
        if segmentation_sequence is not None:
            browser.AddSynchronizedSequenceNode(segmentation_sequence)
        browser.SetSelectedItemNumber(phase)
        volume = browser.GetProxyNode(volume_sequence)
        volume.SetName(f"{volume_sequence.GetName()} {label}")
        volume.CreateDefaultDisplayNodes()
        if window_level is not None and volume.GetDisplayNode() is not None:
            volume.GetDisplayNode().AutoWindowLevelOff()
            volume.GetDisplayNode().SetWindowLevel(*window_level)
        composite.SetBackgroundVolumeID(volume.GetID())
        composite.SetForegroundVolumeID(None)
        composite.SetLabelVolumeID(None)
        composite.SetLinkedControl(True)
        composite.SetHotLinkedControl(True)
        if segmentation_sequence is not None:
            segmentation = browser.GetProxyNode(segmentation_sequence)
            segmentation.SetName(f"{segmentation_sequence.GetName()} {label}")
            segmentation.CreateDefaultDisplayNodes()
            display = segmentation.GetDisplayNode()
            display.RemoveAllViewNodeIDs()
            display.AddViewNodeID(slice_node.GetID())
            display.SetVisibility2DFill(False)
            display.SetVisibility2DOutline(True)
        slice_nodes.append(slice_node)
        composites.append(composite)
        browsers.append(browser)
    if segmentation_sequence is not None:
        _keep_out_of_phase_views(scene, segmentation_sequence, browsers)
    layout.SetViewArrangement(LAYOUT_ID)
    return MultiPhaseView(LAYOUT_ID, phases, labels, slice_nodes, composites, browsers)


def _keep_out_of_phase_views(scene, segmentation_sequence, own_browsers) -> None:
    """Other proxies of the segmentation sequence (the main browser's) show in every view by default; limit
    them to the views that are not phase views, so each phase view shows only its own phase."""
    other_views = []
    for class_name in ("vtkMRMLSliceNode", "vtkMRMLViewNode"):
        for index in range(scene.GetNumberOfNodesByClass(class_name)):
            view = scene.GetNthNodeByClass(index, class_name)
            if not (view.GetLayoutName() or "").startswith(VIEW_TAG):
                other_views.append(view.GetID())
    own = {b.GetID() for b in own_browsers}
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        if browser.GetID() in own or not browser.IsSynchronizedSequenceNode(segmentation_sequence, True):
            continue
        proxy = browser.GetProxyNode(segmentation_sequence)
        display = proxy.GetDisplayNode() if proxy is not None else None
        if display is not None:
            display.RemoveAllViewNodeIDs()
            for view_id in other_views:
                display.AddViewNodeID(view_id)


def _rgb(hex_color: str) -> tuple[float, float, float]:
    value = hex_color.lstrip("#")
    return tuple(int(value[n : n + 2], 16) / 255.0 for n in (0, 2, 4))
