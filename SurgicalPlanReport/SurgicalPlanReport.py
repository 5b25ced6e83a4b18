import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.parameterNodeWrapper import parameterNodeWrapper

from slicer import vtkMRMLScriptedModuleNode

from CardiacSuiteUI.study import StudyModuleLogic, StudyModuleWidget, checkStudyModuleLogic, studySummary


#
# SurgicalPlanReport
#


class SurgicalPlanReport(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Surgical Plan Report")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["CardiacSuite developers"]
        # _() function marks text as translatable to other languages
        self.parent.helpText = _("""
Planning reports and exports.<br><br>
<b>Coming:</b> a report of the study's measurements, tables and views, exported as PDF, DICOM (encapsulated PDF,
structured report, segmentation), FHIR or HL7 v2. This version has no processing step; the <b>Study</b> section
shows what the current study holds.
<br><br>See the <a href="https://github.com/CardiacSuite/SlicerCardiacSuite#surgicalplanreport">module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Part of CardiacSuite, developed by the CardiacSuite developers and distributed under the Apache License 2.0.
Built on 3D Slicer and its Sequences, Segmentations and Markups modules.
""")


#
# SurgicalPlanReportParameterNode
#


@parameterNodeWrapper
class SurgicalPlanReportParameterNode:
    """
    The parameters needed by module.

    cardiacCase - the study (CardiacCase node) whose inputs and results this module works with.
    """

    cardiacCase: vtkMRMLScriptedModuleNode


#
# SurgicalPlanReportLogic
#


class SurgicalPlanReportLogic(StudyModuleLogic):
    """Finds the study this module works on; see CardiacSuiteUI.study."""

    parameterNodeClass = SurgicalPlanReportParameterNode


#
# SurgicalPlanReportWidget
#


class SurgicalPlanReportWidget(StudyModuleWidget):
    """The Study section: which study the module works on and what it holds (lifecycle in CardiacSuiteUI.study)."""

    logicClass = SurgicalPlanReportLogic
    uiFile = "UI/SurgicalPlanReport.ui"


#
# SurgicalPlanReportTest
#


class SurgicalPlanReportTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test (Reload and Test, and ctest)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_StudySection()

    def test_StudySection(self):
        """The logic finds the scene's study, keeps it in the parameter node and lists what it references."""
        slicer.mrmlScene.Clear()
        from CardiacSuiteLib.vocabulary import Role

        caseNode = checkStudyModuleLogic(self, SurgicalPlanReportLogic(), Role.FUNCTION_TABLE)
        self.assertEqual(studySummary(caseNode), _("The study holds no data yet."))
        self.delayDisplay("Study section lists the study")
