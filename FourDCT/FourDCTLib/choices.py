"""FourDCT's option lists, declared once: the module's combo boxes, the command line's choices and the Lib's
own checks are all built from these."""

#: Deformable registration methods (see ``registration``); the first is the default.
METHODS = ("demons", "diffeomorphic-demons", "bspline")
#: Temporal strategies (see ``propagation``): every phase to the reference, or phase to phase composed.
STRATEGIES = ("reference", "sequential")
#: Slice orientations of the side-by-side phase views (see ``viewing``).
ORIENTATIONS = ("Axial", "Sagittal", "Coronal")
#: Volumes a command-line scene holds beside the results: cropped to the registered box, whole, or none.
SCENE_VOLUMES = ("box", "full", "none")
