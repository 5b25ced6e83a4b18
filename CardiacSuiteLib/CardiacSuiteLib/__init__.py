"""CardiacSuite's shared library: headless host, case node, DICOM import, MRML helpers and model inference.

Nothing here imports Qt or reads ``slicer.app``/``slicer.mrmlScene``: the scene arrives as an argument, so the
same code runs in Slicer, in batch and in the tests.
"""

__version__ = "0.1.0"
