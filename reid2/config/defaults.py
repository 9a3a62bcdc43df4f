"""``get_cfg``: Detectron2's config plus every key reid2 adds, grouped by topic; ``load_config`` for entry points.

Each topic lives in its own module (``reid.py`` for re-ID data/model/test keys, ``backbone.py`` for the re-ID
backbones, ``person_search.py`` for OIM person search, ...) and only *adds* keys; YAML files override them.
Unknown keys in a YAML file still fail loudly, as yacs does. A project or downstream package adds its own
keys with :func:`register_config_adder` when it is imported (see :mod:`reid2.config.imports`).

:func:`get_cfg` returns a :class:`CfgNode` that loads YAML files safely: Detectron2 v0.6 retries a file it cannot
read with ``yaml.safe_load`` with ``yaml.unsafe_load`` (``!!python/object/apply:os.system`` runs), reid2 refuses it.
"""
from typing import Iterable, Optional

import yaml
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

from reid2.utils.serialization import check_duplicate_yaml_keys, trusted, unsafe_yaml_error

from .imports import declared_imports, import_modules

_EXTRA_ADDERS = []


class CfgNode(CN):
    """Detectron2's ``CfgNode`` (``_BASE_``, versions, ``COMPUTED_`` keys) with safe YAML loading only, and no
    key given twice in one mapping (YAML would keep the last silently).

    A ``python/...`` tag is an error naming the file and line unless ``merge_from_file(path, allow_unsafe=True)``
    or ``REID2_TRUST_PICKLE=1`` (Detectron2's own default is ``allow_unsafe=True``).
    """

    @classmethod
    def load_yaml_with_base(cls, filename, allow_unsafe=False):
        # fvcore resolves _BASE_ by calling cls.load_yaml_with_base again, so every base file is checked too.
        check_duplicate_yaml_keys(filename)
        if trusted(allow_unsafe):
            return super().load_yaml_with_base(filename, allow_unsafe=True)
        try:
            return super().load_yaml_with_base(filename, allow_unsafe=False)
        except yaml.constructor.ConstructorError as err:
            raise unsafe_yaml_error(filename, err) from None

    def merge_from_file(self, cfg_filename, allow_unsafe=False):
        super().merge_from_file(cfg_filename, allow_unsafe=allow_unsafe)


def safe_cfg(cfg: CN) -> CfgNode:
    """``cfg`` (any Detectron2 config, e.g. one with DensePose's keys) turned into a :class:`CfgNode` in place:
    same keys, values and flags, only the YAML loading differs."""
    object.__setattr__(cfg, "__class__", CfgNode)  # yacs guards its own __setattr__
    for value in cfg.values():
        if isinstance(value, CN):
            safe_cfg(value)
    return cfg


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
    """Detectron2's default config with all reid2 keys (and those of the imported projects) added; a :class:`CfgNode`
    (safe YAML loading)."""
    return safe_cfg(add_reid_config(_d2_get_cfg()))


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
