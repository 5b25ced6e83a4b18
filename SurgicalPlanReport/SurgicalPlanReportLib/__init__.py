"""Algorithms of the SurgicalPlanReport module; importable without Qt or the Slicer application."""
