"""DensePose's 24 fine parts and DSA-reID's two-level merge (24 → 13 left/right → 8 front/back).

Derived from the official tables (``shared/notes/densepose.md`` §1.5): the level-1 pairs are exactly the
pairs of DensePose's horizontal-flip map ``POINT_LABEL_SYMMETRIES``; the level-2 pairs join the two halves
(front/back) that carry the same official name. Part ids are DensePose's 1-based ``I`` values; DSAP
image ``k`` holds part ``k + 1``.
"""
NUM_PARTS = 24

# detectron2 projects/DensePose densepose/structures/transform_data.py: label of the mirrored pixel.
POINT_LABEL_SYMMETRIES = [0, 1, 2, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19, 22, 21, 24, 23]

# Level 1 (element-wise add of left/right symmetric parts): 13 nodes, each a tuple of part ids.
LEVEL1_GROUPS = [
    (1,), (2,),                       # torso back, torso front (self-symmetric)
    (3, 4), (5, 6),                   # hands, feet
    (7, 8), (9, 10),                  # upper legs back, front
    (11, 12), (13, 14),               # lower legs back, front
    (15, 16), (17, 18),               # upper arms front, back
    (19, 20), (21, 22),               # lower arms front, back
    (23, 24),                         # head (right/left halves)
]

# Level 2 (element-wise add of front/back nodes): 8 branches, each a tuple of level-1 node indices.
BRANCH_NAMES = ["head", "torso", "upper_arms", "lower_arms", "hands", "upper_legs", "lower_legs", "feet"]
LEVEL2_GROUPS = [
    (12,),       # head {23, 24}
    (0, 1),      # torso {1} | {2}
    (8, 9),      # upper arms {15, 16} | {17, 18}
    (10, 11),    # lower arms {19, 20} | {21, 22}
    (2,),        # hands {3, 4}
    (4, 5),      # upper legs {7, 8} | {9, 10}
    (6, 7),      # lower legs {11, 12} | {13, 14}
    (3,),        # feet {5, 6}
]


def group_index(groups, num_inputs):
    """``index[i]`` = the group that input ``i`` is added into (for ``Tensor.index_add_``)."""
    index = [-1] * num_inputs
    for g, members in enumerate(groups):
        for m in members:
            index[m] = g
    if min(index) < 0:
        raise AssertionError(f"merge table leaves inputs {[i for i, g in enumerate(index) if g < 0]} unassigned")
    return index


LEVEL1_INDEX = group_index([[p - 1 for p in g] for g in LEVEL1_GROUPS], NUM_PARTS)  # 24 → 13
LEVEL2_INDEX = group_index(LEVEL2_GROUPS, len(LEVEL1_GROUPS))  # 13 → 8


def branch_parts():
    """The DensePose part ids that end in each of the 8 branches (for documentation and tests)."""
    return [sorted(p for n in nodes for p in LEVEL1_GROUPS[n]) for nodes in LEVEL2_GROUPS]
