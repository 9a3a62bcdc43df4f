"""``get_cfg``: Detectron2's config plus every key reid2 adds, grouped by topic; ``load_config`` for entry points.

Each topic lives in its own module (``reid.py`` for re-ID data/model/test keys, ``backbone.py`` for the re-ID
backbones, ``person_search.py`` for OIM person search, ...) and only *adds* keys; YAML files override them.
Unknown keys in a YAML file still fail loudly, as yacs does. A project or downstream package adds its own
keys with :func:`register_config_adder` when it is imported (see :mod:`reid2.config.imports`).
"""
from typing import Iterable, Optional

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

from .imports import declared_imports, import_modules

_EXTRA_ADDERS = []


def add_reid_config(cfg: CN) -> CN:
    """Add every reid2 key (and every registered adder's) to a Detectron2 config (idempotent)."""
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


def register_config_adder(fn):
    """Let an imported project or package add its keys to every config built by :func:`get_cfg` (decorator)."""
    if fn not in _EXTRA_ADDERS:
        _EXTRA_ADDERS.append(fn)
    return fn


def get_cfg() -> CN:
    """Detectron2's default config with all reid2 keys (and those of the imported projects) added."""
    return add_reid_config(_d2_get_cfg())


def load_config(config_file: Optional[str] = None, opts: Iterable = (), imports: Iterable[str] = ()) -> CN:
    """The config of an entry point: ``imports`` and the file's ``REID2.IMPORTS`` are imported first (so their
    keys exist), then defaults + file + ``KEY VALUE`` overrides are merged. Not frozen."""
    import_modules(imports)
    if config_file:
        import_modules(declared_imports(config_file))
    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    import_modules(cfg.REID2.IMPORTS)  # an override on the command line
    return cfg
