"""Slicer-side helpers shared by every CardiacSuite module widget (Qt and the application; not for headless use)."""
