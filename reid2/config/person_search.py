"""Person-search (OIM) keys. Filled in by the person-search issue."""
from detectron2.config import CfgNode as CN


def add_person_search_config(cfg: CN) -> None:
    pass
