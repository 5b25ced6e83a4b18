from typing import Optional

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper

from slicer import vtkMRMLScriptedModuleNode

#: Attribute value that marks a study's CardiacCase node (CardiacSuiteLib.case.MODULE_NAME).
CARDIAC_CASE = "CardiacCase"


#
# CardiacSegmentation
#


class CardiacSegmentation(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Cardiac Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["CardiacSuite developers"]
        # _() function marks text as translatable to other languages
        self.parent.helpText = _("""
Segmentation of cardiac CT: the four chambers, the myocardium, the great vessels and the coronary
arteries.<br><br>
<b>Coming:</b> AI segmentation with models from CardiacSuite's model registry (labels with standard terminology
codes, checksummed and versioned weights, CPU or GPU), filed under the study so that 4D CT propagation, stent
scoring and the planning report use it. This version has no processing step; the <b>Study</b> section shows
what the current study holds.
<br><br>See the <a href="https://github.com/CardiacSuite/SlicerCardiacSuite#cardiacsegmentation">module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Part of CardiacSuite, developed by the CardiacSuite developers and distributed under the Apache License 2.0.
Built on 3D Slicer and its Sequences, Segmentations and Markups modules.
""")


#
# CardiacSegmentationParameterNode
#


@parameterNodeWrapper
class CardiacSegmentationParameterNode:
    """
    The parameters needed by module.

    cardiacCase - the study (CardiacCase node) whose inputs and results this module works with.
    """

    cardiacCase: vtkMRMLScriptedModuleNode


#
# CardiacSegmentationWidget
#


class CardiacSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CardiacSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # Only CardiacCase nodes are studies; other scripted module nodes (parameter nodes) are not offered.
        self.ui.cardiacCaseSelector.addAttribute("vtkMRMLScriptedModuleNode", "ModuleName", CARDIAC_CASE)

        # Set scene in MRML widgets. The .ui connects the top-level widget's "mrmlSceneChanged(vtkMRMLScene*)"
        # signal to each MRML widget's "setMRMLScene(vtkMRMLScene*)" slot.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = CardiacSegmentationLogic()

        # These connections ensure that we update parameter node when scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        # Make sure parameter node exists and observed
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        # Do not react to parameter node changes (GUI will be updated when the user enters into the module)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        # Parameter node will be reset, do not use it anymore
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        # If this module is shown while the scene is closed then recreate a new parameter node immediately
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed."""
        self.setParameterNode(self.logic.getParameterNode())

        # Show the study that is in the scene if none is selected yet
        if not self._parameterNode.cardiacCase:
            self._parameterNode.cardiacCase = self.logic.defaultCase()

    def setParameterNode(self, inputParameterNode: Optional[CardiacSegmentationParameterNode]) -> None:
        """
        Set and observe parameter node.
        Observation is needed because when the parameter node is changed then the GUI must be updated immediately.
        """
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Note: in the .ui file, a Qt dynamic property called "SlicerParameterName" is set on each
            # ui element that needs connection.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        """This module has nothing to apply yet: keep the Study section's summary up to date instead."""
        caseNode = self._parameterNode.cardiacCase if self._parameterNode else None
        if caseNode is None:
            self.ui.studyContentsLabel.text = _("No study in the scene yet. CMR Analysis files its results under one.")
            return
        try:
            contents = self.logic.describeCase(caseNode)
        except ValueError as error:
            self.ui.studyContentsLabel.text = str(error)
            return
        if not contents:
            self.ui.studyContentsLabel.text = _("The study holds no data yet.")
            return
        self.ui.studyContentsLabel.text = "\n".join(f"{role}: {name}" for role, name in contents)


#
# CardiacSegmentationLogic
#


class CardiacSegmentationLogic(ScriptedLoadableModuleLogic):
    """This class should implement all the actual computation done by your module.  The interface
    should be such that other python code can import this class and make use of the functionality without
    requiring an instance of the Widget.
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self) -> None:
        """Called when the logic class is instantiated. Can be used for initializing member variables."""
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return CardiacSegmentationParameterNode(super().getParameterNode())

    def defaultCase(self):
        """The first study (CardiacCase node) in the scene, or None."""
        from CardiacSuiteLib.case import CardiacCase

        cases = CardiacCase.all(slicer.mrmlScene)
        return cases[0].node if cases else None

    @staticmethod
    def describeCase(caseNode) -> list[tuple[str, str]]:
        """(role, node name) of every node the study references; raises ValueError for a node that is not a study."""
        from CardiacSuiteLib.case import CardiacCase

        case = CardiacCase(caseNode)
        contents = []
        for index in range(caseNode.GetNumberOfNodeReferenceRoles()):
            role = caseNode.GetNthNodeReferenceRole(index)
            node = case.reference(role)
            if node is not None:
                contents.append((role, node.GetName()))
        return contents


#
# CardiacSegmentationTest
#


class CardiacSegmentationTest(ScriptedLoadableModuleTest):
    """
    This is the test case for your scripted module.
    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_ParameterNodeHoldsStudy()
        self.setUp()
        self.test_StudyContents()

    def test_ParameterNodeHoldsStudy(self):
        """The parameter node stores the selected study and finds it again as the scene's default study."""
        slicer.mrmlScene.Clear()
        from CardiacSuiteLib.case import CardiacCase

        logic = CardiacSegmentationLogic()
        self.assertIsNone(logic.defaultCase())
        parameterNode = logic.getParameterNode()
        self.assertIsNone(parameterNode.cardiacCase)

        case = CardiacCase.create(slicer.mrmlScene, "Synthetic study", study_uid="1.2.826.0.1.3680043.8.498.1")
        self.assertEqual(logic.defaultCase().GetID(), case.node.GetID())
        parameterNode.cardiacCase = case.node
        self.assertEqual(logic.getParameterNode().cardiacCase.GetID(), case.node.GetID())
        self.delayDisplay("Parameter node holds the study")

    def test_StudyContents(self):
        """The Study section lists what the study references, and refuses a node that is not a study."""
        slicer.mrmlScene.Clear()
        from CardiacSuiteLib.case import CardiacCase, Role

        logic = CardiacSegmentationLogic()
        case = CardiacCase.create(slicer.mrmlScene, "Synthetic study")
        self.assertEqual(logic.describeCase(case.node), [])

        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Synthetic CTA")
        case.set_reference(Role.CT_VOLUME, node)
        self.assertEqual(logic.describeCase(case.node), [(Role.CT_VOLUME, "Synthetic CTA")])

        slicer.mrmlScene.RemoveNode(node)
        self.assertEqual(logic.describeCase(case.node), [])

        notAStudy = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "Not a study")
        with self.assertRaises(ValueError):
            logic.describeCase(notAStudy)
        self.delayDisplay("Study contents listed")
