"""Embedded default data: deterministic synthetic people written in the real on-disk formats.

``generate_market`` writes a Market-1501 folder (crops, query/gt_bbox, distractors, junk, DensePose IUV PNGs),
``generate_cuhk_sysu`` a CUHK-SYSU folder (scenes and the original .mat annotations), ``generate_all`` both
for a preset. CLI: ``python -m reid2.data.synthetic --root DIR [--preset default|tiny]``.
"""
from .cuhk_sysu import generate_cuhk_sysu
from .market import generate_market
from .person import Appearance, Pose, random_appearance, random_pose, render_person
from .presets import PRESETS, generate_all

__all__ = ["generate_market", "generate_cuhk_sysu", "generate_all", "PRESETS", "Appearance", "Pose",
           "random_appearance", "random_pose", "render_person"]
