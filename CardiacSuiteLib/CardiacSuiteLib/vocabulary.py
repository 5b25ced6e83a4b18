"""The scene vocabulary: every name by which CardiacSuite's modules find each other's nodes, declared once.

Modules never import each other. They meet on the study's CardiacCase node (a ``vtkMRMLScriptedModuleNode``,
see ``case.py``): a *role* is a node reference on it, pointing at a node one module made and another reads; a
*key* is a JSON parameter on it holding a result document or a method choice; an *attribute* is a tag set on
a node itself. Each name below says what it holds and which module writes it. A module that needs a new name
adds it here (a test fails on a role, key or attribute string written anywhere else), and Docs/Architecture.md
lists the contract a new module reads from.
"""

from __future__ import annotations

#: ``ModuleName`` attribute value that marks a scripted-module node as a CardiacCase.
CASE_MODULE_NAME = "CardiacCase"
#: Attribute on every CardiacCase node whose value is :data:`CASE_MODULE_NAME`.
MODULE_NAME_ATTRIBUTE = "ModuleName"


class Role:
    """Node-reference roles on the CardiacCase node: ``case.reference(Role.X)`` gives the node."""

    # --- CMRAnalysis: short-axis cine function
    #: Short-axis cine: a volume sequence (one 3D volume per cardiac phase), or a single volume for one phase.
    CINE = "CineSequence"
    #: Short-axis cine given as one 3D volume (a single phase, or a volume whose slices are the phases).
    CINE_VOLUME = "CineVolume"
    #: Sequence browser that plays :attr:`CINE`.
    CINE_BROWSER = "CineBrowser"
    #: Segmentation sequence, one labelmap per phase (LV blood pool, myocardium, RV blood pool).
    FUNCTION_SEGMENTATION = "FunctionSegmentationSequence"
    #: Browser synchronising :attr:`FUNCTION_SEGMENTATION` with the cine.
    FUNCTION_SEGMENTATION_BROWSER = "FunctionSegmentationBrowser"
    #: Table: one row per measured quantity (EDV, ESV, SV, EF, mass, CO, indexed values) with unit and method.
    FUNCTION_TABLE = "FunctionTable"
    #: Table: each quantity beside its normal range, z-score and flag, for the chosen normal-value set.
    FUNCTION_REFERENCE_TABLE = "FunctionReferenceTable"
    #: Table: LV and RV volume (ml) per phase, with filling and ejection rates.
    FUNCTION_CURVES_TABLE = "FunctionCurvesTable"
    #: Plot chart of :attr:`FUNCTION_CURVES_TABLE`.
    FUNCTION_CURVES_PLOT = "FunctionCurvesPlot"
    #: Table: AHA 17-segment wall thickness, thickening and territory.
    FUNCTION_AHA_TABLE = "FunctionAHATable"
    #: Markups fiducials: anterior and inferior RV insertion points (editable; they anchor the AHA segments).
    RV_INSERTION_POINTS = "RVInsertionPoints"
    #: Table: each function figure of a prior study of the patient beside this study's, with the difference.
    FUNCTION_PRIOR_TABLE = "FunctionPriorTable"
    #: Table: the prior study's LV and RV volume (ml) per phase, plotted in :attr:`FUNCTION_CURVES_PLOT`.
    FUNCTION_PRIOR_CURVES_TABLE = "FunctionPriorCurvesTable"

    # --- CMRAnalysis: long-axis atria
    #: Two-chamber long-axis cine (volume sequence).
    ATRIAL_2CH_CINE = "AtrialTwoChamberCine"
    #: Four-chamber long-axis cine (volume sequence).
    ATRIAL_4CH_CINE = "AtrialFourChamberCine"
    #: Segmentation sequence of the left (and, in 4-chamber, right) atrium on the two-chamber cine.
    ATRIAL_2CH_SEGMENTATION = "AtrialTwoChamberSegmentation"
    #: Segmentation sequence of the atria on the four-chamber cine.
    ATRIAL_4CH_SEGMENTATION = "AtrialFourChamberSegmentation"
    #: Table: atrial volumes per phase and the derived volumes and emptying fractions.
    ATRIAL_TABLE = "AtrialVolumeTable"

    # --- CardiacSegmentation: CT
    #: The CT volume the segmentation was made on (one phase of a 4D CT, or a 3D CT).
    CT_VOLUME = "CTVolume"
    #: Segmentation of the heart (chambers, myocardium, aorta, pulmonary artery) on :attr:`CT_VOLUME`.
    CT_SEGMENTATION = "CTSegmentation"
    #: Table of the preset's measurements (volumes, diameters, valve-plane geometry).
    CT_MEASUREMENTS = "CTMeasurementTable"
    #: Segmentation of the coronary lumen.
    CT_CORONARY_SEGMENTATION = "CTCoronarySegmentation"
    #: Markups curves, one per traced coronary (multiple references; each curve tagged with :attr:`Attribute.SIDE`).
    CT_CORONARY_CENTERLINE = "CTCoronaryCenterline"
    #: Markups fiducials at the left and right coronary ostia.
    CT_CORONARY_OSTIA = "CTCoronaryOstia"

    # --- FourDCT: 4D CT
    #: Volume sequence, one CT per cardiac phase; the index is the phase in % of the R-R interval when known.
    CT4D_SEQUENCE = "CT4DSequence"
    #: Browser playing the 4D sequence and everything synchronised with it.
    CT4D_BROWSER = "CT4DBrowser"
    #: Segmentation sequence: the reference segmentation carried to every phase.
    CT4D_SEGMENTATION_SEQUENCE = "CT4DSegmentationSequence"
    #: Transform sequence: per phase, the transform that maps the reference phase onto it (see Docs/FourDCT.md).
    CT4D_TRANSFORM_SEQUENCE = "CT4DTransformSequence"
    #: Table: per phase, segment volumes and propagation quality.
    CT4D_TABLE = "CT4DTable"
    #: The segmentation on the reference phase that was propagated.
    CT4D_REFERENCE_SEGMENTATION = "CT4DReferenceSegmentation"

    # --- StentReconstruction
    #: Model nodes, one per reconstruction algorithm's device surface (multiple references, ranked order).
    STENT_MODEL = "StentModel"
    #: Markups curves, one per algorithm: the device axis (multiple references, same order as the models).
    STENT_AXIS = "StentAxis"
    #: Markups curves of the traced struts or wires of the chosen result (multiple references).
    STENT_STRUTS = "StentStruts"
    #: Table: per algorithm its rank, structure-match score and its parts, and the measurements.
    STENT_TABLE = "StentTable"
    #: Table: the chosen result's cross-sections every 0.5 mm (diameters, area, eccentricity, expansion).
    STENT_SECTIONS_TABLE = "StentSectionsTable"
    #: Model sequence: the chosen device moved to every phase (synchronised with the 4D CT's browser).
    STENT_MODEL_SEQUENCE = "StentModelSequence"
    #: Markups curve sequence: the chosen device's axis at every phase.
    STENT_AXIS_SEQUENCE = "StentAxisSequence"
    #: Table: per phase, the moved device's measurements, its distance to the vessel centreline and the
    #: consistency check against that phase's metal.
    STENT_PHASE_TABLE = "StentPhaseTable"
    #: The CT the device was reconstructed on (cropped to the region around the device).
    STENT_VOLUME = "StentVolume"

    # --- InterventionPlanning (one set per protocol: TAVR, mitral, pulmonary, PCI; node names say which)
    #: Markups point lists of the landmarks a protocol measured from (found or edited; multiple references).
    PLAN_LANDMARKS = "PlanLandmarks"
    #: Markups planes: the annular plane (TAVR, mitral) or the landing-zone plane (multiple references).
    PLAN_PLANE = "PlanPlane"
    #: Markups curves: annulus and section contours, centrelines, the D-shape (multiple references).
    PLAN_CURVE = "PlanCurve"
    #: Tables of a protocol's measurements (measurement, value, unit; multiple references, one per protocol).
    PLAN_TABLE = "PlanTable"
    #: Single-slice volumes: the CT in each measured cross-section (annulus, LVOT, sinus, STJ, …).
    PLAN_SECTION_IMAGE = "PlanSectionImage"
    #: The CT the planning measurements were made on.
    PLAN_VOLUME = "PlanVolume"


class Key:
    """JSON parameters on the CardiacCase node: ``case.value(Key.X)`` gives the document."""

    #: Short-axis function results (the ``results.json`` document of ``cmr-function``).
    FUNCTION_RESULTS = "FunctionResults"
    #: The options the short-axis analysis ran with (model, exclusions, papillary convention, normal values).
    FUNCTION_OPTIONS = "FunctionOptions"
    #: The prior study the function results are compared with (its folder, results document and the patient
    #: check), kept so that a recompute compares again; the comparison itself is the results' ``prior`` block.
    FUNCTION_PRIOR_STUDY = "FunctionPriorStudy"
    #: RV insertion points as the analysis first placed them (to tell a user's edit from the automatic ones).
    RV_INSERTION_POINTS_AS_MEASURED = "RVInsertionPointsAsMeasured"
    #: Long-axis atrial results (the ``results.json`` document of ``cmr-atria``).
    ATRIAL_RESULTS = "AtrialResults"
    #: The CardiacSegmentation mode that made :attr:`Role.CT_SEGMENTATION`.
    CT_SEGMENTATION_MODE = "CTSegmentationMode"
    #: LV function over the cycle measured on the propagated 4D segmentation.
    CT4D_FUNCTION = "CT4DFunction"
    #: Stent reconstruction results (the ``results.json`` document of ``cardiacsuite stent``).
    STENT_RESULTS = "StentResults"
    #: Planning results per protocol: ``{"tavr": results.json document, "mitral": …}``.
    PLAN_RESULTS = "PlanResults"
    #: Study identity, set when the case is made.
    STUDY_INSTANCE_UID = "StudyInstanceUID"
    PATIENT_ID = "PatientID"


class Attribute:
    """Attributes set on nodes themselves (``node.GetAttribute(Attribute.X)``)."""

    #: On a coronary centerline curve: which tree it belongs to (``left`` or ``right``).
    SIDE = "CardiacSuite.Side"
    #: On a sequence browser FourDCT made for viewing: which view it drives.
    FOURDCT_VIEW_BROWSER = "FourDCT.ViewBrowser"
