"""The Study section every CardiacSuite module shows: which study (CardiacCase node) it works on and what it holds.

StentReconstruction and SurgicalPlanReport have no processing step yet; their widgets are this base alone, so the
template's lifecycle (parameter node, scene close, enter/exit) is written once here. A module adds its own
``@parameterNodeWrapper`` class with a ``cardiacCase`` parameter and a ``.ui`` with ``cardiacCaseSelector`` and
``studyContentsLabel``.
"""

from __future__ import annotations

from typing import Optional

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from CardiacSuiteLib.case import CardiacCase
from CardiacSuiteLib.vocabulary import CASE_MODULE_NAME, MODULE_NAME_ATTRIBUTE


def offerOnlyStudies(selector) -> None:
    """Make a node combo box list CardiacCase nodes only, not other scripted-module (parameter) nodes."""
    selector.addAttribute("vtkMRMLScriptedModuleNode", MODULE_NAME_ATTRIBUTE, CASE_MODULE_NAME)


def studySummary(caseNode) -> str:
    """One line per node the study references, or a sentence saying why there is nothing to list."""
    if caseNode is None:
        return _("No study in the scene yet. CMR Analysis, CardiacSegmentation and FourDCT file their results under one.")
    try:
        contents = CardiacCase(caseNode).contents()
    except ValueError as error:
        return str(error)
    if not contents:
        return _("The study holds no data yet.")
    return "\n".join(f"{role}: {name}" for role, name in contents)


class StudyModuleLogic(ScriptedLoadableModuleLogic):
    """Logic of a module that reads a study: its parameter node class and the scene's default study."""

    parameterNodeClass = None

    def getParameterNode(self):
        return self.parameterNodeClass(super().getParameterNode())

    @staticmethod
    def defaultCase():
        """The first study (CardiacCase node) in the scene, or None."""
        case = CardiacCase.first(slicer.mrmlScene)
        return case.node if case else None

    @staticmethod
    def describeCase(caseNode) -> list[tuple[str, str]]:
        """(role, node name) of every node the study references; ValueError for a node that is not a study."""
        return CardiacCase(caseNode).contents()


class StudyModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The Slicer template's widget for a module whose form is the Study section: select a study, list it."""

    logicClass = StudyModuleLogic
    uiFile = ""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self.longWork = None  # a module's CardiacSuiteUI.longwork.LongWork, stopped and discarded here
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(self.uiFile))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        offerOnlyStudies(self.ui.cardiacCaseSelector)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.logicClass()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self.longWork is not None:
            self.longWork.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        if self.longWork is not None:  # a running job's result is for the closing scene
            self.longWork.discard()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.cardiacCase:
            self._parameterNode.cardiacCase = self.logic.defaultCase()

    def setParameterNode(self, inputParameterNode: Optional[object]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Nothing to apply in a study-only form: keep the Study section's summary up to date instead."""
        caseNode = self._parameterNode.cardiacCase if self._parameterNode else None
        self.ui.studyContentsLabel.text = studySummary(caseNode)


def checkStudyModuleLogic(test, logic, roleForTest: str):
    """In-Slicer self-test shared by study-only modules: default study, parameter node, contents, refusal.

    Returns the study it made (now empty again)."""
    test.assertIsNone(logic.defaultCase())
    parameterNode = logic.getParameterNode()
    test.assertIsNone(parameterNode.cardiacCase)
    case = CardiacCase.create(slicer.mrmlScene, "Synthetic study", study_uid="1.2.826.0.1.3680043.8.498.1")
    test.assertEqual(logic.defaultCase().GetID(), case.node.GetID())
    parameterNode.cardiacCase = case.node
    test.assertEqual(logic.getParameterNode().cardiacCase.GetID(), case.node.GetID())
    test.assertEqual(logic.describeCase(case.node), [])
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Synthetic node")
    case.set_reference(roleForTest, node)
    test.assertEqual(logic.describeCase(case.node), [(roleForTest, "Synthetic node")])
    slicer.mrmlScene.RemoveNode(node)
    test.assertEqual(logic.describeCase(case.node), [])
    notAStudy = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "Not a study")
    with test.assertRaises(ValueError):
        logic.describeCase(notAStudy)
    return case.node
