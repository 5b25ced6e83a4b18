"""Algorithms of the CardiacSegmentation module; importable without Qt or the Slicer application."""
