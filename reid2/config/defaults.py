"""``add_reid_config``: the keys reid2 adds to Detectron2's config, grouped by topic.

Each topic lives in its own module (``reid.py`` for re-ID data/model/test keys,
``person_search.py`` for OIM person search, ...) and only *adds* keys; YAML files override
them. Unknown keys in a YAML file still fail loudly, as yacs does.
"""
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg


def add_reid_config(cfg: CN) -> CN:
    """Add every reid2 key to a Detectron2 config (idempotent)."""
    if getattr(cfg, "_REID2_ADDED", False) or "REID2" in cfg:
        return cfg
    from . import engine as _engine
    from . import kd as _kd
    from . import person_search as _ps
    from . import reid as _reid

    _engine.add_engine_config(cfg)
    _reid.add_reid_data_config(cfg)
    _reid.add_reid_model_config(cfg)
    _ps.add_person_search_config(cfg)
    _kd.add_kd_config(cfg)
    for adder in _EXTRA_ADDERS:
        adder(cfg)
    return cfg


_EXTRA_ADDERS = []


def register_config_adder(fn):
    """Let a project add its keys to every config built by :func:`get_cfg` (decorator)."""
    if fn not in _EXTRA_ADDERS:
        _EXTRA_ADDERS.append(fn)
    return fn


def get_cfg() -> CN:
    """Detectron2's default config with all reid2 keys added."""
    return add_reid_config(_d2_get_cfg())
