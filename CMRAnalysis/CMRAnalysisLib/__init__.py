"""Algorithms of the CMRAnalysis module; importable without Qt or the Slicer application."""
