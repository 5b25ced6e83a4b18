"""The headless host, the CardiacCase node and scene bundles: what a Slicer user would open."""

import numpy as np

from CardiacSuiteLib import mrml
from CardiacSuiteLib.app import create_app
from CardiacSuiteLib.case import CardiacCase, Role

GEOMETRY = np.array([[-1.5, 0, 0, 10.0], [0, -1.25, 0, 20.0], [0, 0, 8.0, -5.0], [0, 0, 0, 1.0]])
SPECS = [mrml.SegmentSpec(1, "Right ventricle", (0, 0, 1)), mrml.SegmentSpec(3, "Left ventricle", (1, 0, 0))]


def labels():
    result = np.zeros((4, 20, 24), np.uint8)
    result[1:3, 5:12, 6:14] = 3
    result[1:3, 5:12, 16:20] = 1
    return result


def test_segmentation_converts_to_closed_surface(scene):
    segmentation = mrml.add_segmentation_from_labelmap(scene, labels(), GEOMETRY, SPECS, "seg")
    assert segmentation.CreateClosedSurfaceRepresentation()
    surface = segmentation.GetClosedSurfaceInternalRepresentation("Left_ventricle")
    assert surface is not None and surface.GetNumberOfPoints() > 50


def test_labelmap_round_trip_keeps_geometry(scene):
    volume = mrml.add_volume(scene, np.zeros((4, 20, 24), np.float32), GEOMETRY, "reference")
    segmentation = mrml.add_segmentation_from_labelmap(scene, labels(), GEOMETRY, SPECS, "seg")
    colour_tables = scene.GetNodesByClass("vtkMRMLColorTableNode").GetNumberOfItems()
    back = mrml.labelmap_from_segmentation(segmentation, volume, {"Right ventricle": 1, "Left ventricle": 3})
    assert np.array_equal(back, labels())
    assert np.allclose(mrml.ijk_to_ras(volume), GEOMETRY)
    # The temporary label map leaves nothing behind, its colour table included.
    assert scene.GetNodesByClass("vtkMRMLColorTableNode").GetNumberOfItems() == colour_tables


def test_sequence_browser_selects_items(scene):
    frames = [np.full((2, 3, 4), value, np.float32) for value in (1.0, 2.0, 3.0)]
    sequence, browser = mrml.add_volume_sequence(scene, frames, GEOMETRY, [0.0, 40.0, 80.0], "cine")
    proxy = browser.GetProxyNode(sequence)
    browser.SetSelectedItemNumber(2)
    assert mrml.array_from_volume(proxy).max() == 3.0
    assert mrml.sequence_index_values(sequence) == [0.0, 40.0, 80.0]


def test_case_node_and_scene_bundle_round_trip(app, tmp_path):
    scene = app.scene
    frames = [np.random.default_rng(i).random((4, 20, 24)).astype(np.float32) for i in range(3)]
    sequence, browser = mrml.add_volume_sequence(scene, frames, GEOMETRY, [0.0, 40.0, 80.0], "cine")
    segmentation = mrml.add_segmentation_from_labelmap(scene, labels(), GEOMETRY, SPECS, "seg")
    table = mrml.add_table(scene, "function", ["Measurement", "LV"], [["EDV", "150.0"]])
    case = CardiacCase.create(scene, "study", study_uid="1.2.3", patient_id="P1")
    case.set_reference(Role.CINE, sequence)
    case.set_reference(Role.CINE_BROWSER, browser)
    case.set_reference(Role.FUNCTION_TABLE, table)
    case.set_reference(Role.CT_SEGMENTATION, segmentation)
    case.set_value("FunctionResults", {"lv": {"ef_pct": 55.5}})
    bundle = tmp_path / "scene.mrb"
    assert scene.WriteToMRB(str(bundle))

    reopened = create_app(cache_dir=tmp_path / "cache2")
    assert reopened.scene.ReadFromMRB(str(bundle))
    cases = CardiacCase.all(reopened.scene)
    assert len(cases) == 1
    loaded = cases[0]
    assert (loaded.study_uid, loaded.patient_id) == ("1.2.3", "P1")
    assert loaded.value("FunctionResults") == {"lv": {"ef_pct": 55.5}}
    loaded_sequence = loaded.reference(Role.CINE)
    assert loaded_sequence.GetNumberOfDataNodes() == 3
    assert np.allclose(mrml.array_from_volume(loaded_sequence.GetNthDataNode(2)), frames[2])
    loaded_segmentation = loaded.reference(Role.CT_SEGMENTATION)
    reference = mrml.add_volume(reopened.scene, np.zeros((4, 20, 24), np.float32), GEOMETRY, "grid")
    back = mrml.labelmap_from_segmentation(loaded_segmentation, reference, {"Right ventricle": 1, "Left ventricle": 3})
    assert np.array_equal(back, labels())
    assert mrml.table_rows(loaded.reference(Role.FUNCTION_TABLE)) == [{"Measurement": "EDV", "LV": "150.0"}]


def test_get_or_create_matches_study(scene):
    first = CardiacCase.get_or_create(scene, "a", study_uid="9.9")
    assert CardiacCase.get_or_create(scene, "other name", study_uid="9.9").node is first.node
    assert CardiacCase.get_or_create(scene, "b", study_uid="8.8").node is not first.node


def test_case_lists_what_it_references(scene):
    """The Study section of every module lists a study's references; the first study is the default one."""
    assert CardiacCase.first(scene) is None
    case = CardiacCase.create(scene, "Study A")
    CardiacCase.create(scene, "Study B")
    assert CardiacCase.first(scene).node.GetID() == case.node.GetID()
    assert case.contents() == []
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Heart")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Function")
    case.set_reference(Role.CT_SEGMENTATION, segmentation)
    case.set_reference(Role.FUNCTION_TABLE, table)
    assert case.contents() == [(Role.CT_SEGMENTATION, "Heart"), (Role.FUNCTION_TABLE, "Function")]
    scene.RemoveNode(segmentation)
    assert case.contents() == [(Role.FUNCTION_TABLE, "Function")]
