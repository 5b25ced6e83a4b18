"""DICOM import: find the series in a folder, order slices and phases, and read them with exact geometry.

``scan_folder`` lists what a folder holds from headers alone; ``read_dicom_folder``/``read_series`` turn one
series (or a cine stack stored as one series per slice) into an ``ImageSeries``. Errors reach the user as one
``InputError`` line naming the file and the problem.
"""

from .cardiac4d import CardiacPhase, CardiacPhases, find_cardiac_phases, read_phase
from .discovery import DicomScan, FrameRecord, SeriesSummary, merge_cine_stacks, scan_folder
from .series import read_dicom_file, read_dicom_folder, read_series, select_series

__all__ = [
    "CardiacPhase",
    "CardiacPhases",
    "find_cardiac_phases",
    "read_phase",
    "DicomScan",
    "FrameRecord",
    "SeriesSummary",
    "merge_cine_stacks",
    "read_dicom_file",
    "read_dicom_folder",
    "read_series",
    "scan_folder",
    "select_series",
]
