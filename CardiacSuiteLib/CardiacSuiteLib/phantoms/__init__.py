"""Digital phantoms with exactly known ground truth, drawn on the spot: the demo, the in-Slicer self-tests and
the test suite all use these, so they ship with the extension.

- ``cine``: a beating short-axis cine (LV and RV) with analytic volumes (needs nothing else).
- ``long_axis``: 2- and 4-chamber long-axis cines with ellipsoidal atria and analytic atrial volumes.
- ``ct_heart``: a contrast CT drawn from a real whole-heart label map (HU per structure, fat, lung, blur, noise).
- ``coronary``: ``ct_heart`` with a coronary tree of known centerlines and radii.
- ``ct4d``: a 4D CT with analytic motion (contraction, shortening, twist) and its true displacement.

The CT phantoms draw on the whole-heart label maps of the test data; ``ct_heart.whole_heart_label_path`` says
where they are looked for and what to do when they are not there.
"""
