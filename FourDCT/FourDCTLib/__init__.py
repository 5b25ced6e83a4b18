"""Algorithms of the FourDCT module; importable without Qt or the Slicer application."""
