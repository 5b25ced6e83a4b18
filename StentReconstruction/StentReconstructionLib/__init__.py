"""Algorithms of the StentReconstruction module; importable without Qt or the Slicer application."""
