"""The person-id code space of person search, in one place.

``gt_pids`` (the mapper's per-box ids, then the RoI heads' per-proposal labels) use:
* ``>= 0``: a labelled identity, the row of the OIM lookup table;
* ``UNLABELED_PID`` (-1): a person without an identity label (CUHK-SYSU/PRW unlabelled boxes): OIM's queue;
* ``BACKGROUND_PID`` (-2, any value <= -2): a background proposal, ignored by the identity loss.
"""
UNLABELED_PID = -1
BACKGROUND_PID = -2

__all__ = ["BACKGROUND_PID", "UNLABELED_PID"]
