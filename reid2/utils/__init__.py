"""Leaf helpers (files, arrays, modules, progress, the Detectron2 ``_C`` stub): they import nothing of reid2."""
