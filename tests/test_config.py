"""Config: every reid2 key present, YAML round-trip, unknown keys fail loudly."""
import pytest
import yaml

from conftest import REPO


def test_reid_keys_added_and_idempotent():
    from reid2.config import add_reid_config, get_cfg

    cfg = get_cfg()
    for key in ("REID2.TRAINER", "INPUT.REID.SIZE_TRAIN", "DATALOADER.NUM_INSTANCES",
                "MODEL.REID.POOLING", "MODEL.LOSSES.NAMES", "TEST.REID.RERANK.K1", "SOLVER.OPTIMIZER"):
        node = cfg
        for part in key.split("."):
            node = node[part]
    again = add_reid_config(cfg.clone())
    assert yaml.safe_load(again.dump()) == yaml.safe_load(cfg.dump())


def test_yaml_round_trip(tmp_path):
    from reid2.config import get_cfg

    cfg = get_cfg()
    cfg.MODEL.REID.POOLING = "gem"
    cfg.INPUT.REID.SIZE_TRAIN = [288, 144]
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.dump())
    loaded = get_cfg()
    loaded.merge_from_file(str(path))
    assert yaml.safe_load(loaded.dump()) == yaml.safe_load(cfg.dump())
    assert loaded.MODEL.REID.POOLING == "gem" and list(loaded.INPUT.REID.SIZE_TRAIN) == [288, 144]


def test_unknown_key_fails(tmp_path):
    from reid2.config import get_cfg

    path = tmp_path / "bad.yaml"
    path.write_text("MODEL:\n  REID:\n    POOLNG: avg\n")
    with pytest.raises(KeyError, match="POOLNG"):
        get_cfg().merge_from_file(str(path))


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_loads_and_is_self_contained(path):
    """All configs merge into reid2's defaults (plus the projects' keys); _BASE_ only points at our own files."""
    from reid2.config import get_cfg
    from reid2.utils.projects import import_projects

    import_projects()  # as tools/train_net.py does: projects register their config keys

    base = yaml.safe_load(path.read_text()).get("_BASE_")
    if base:
        assert (path.parent / base).resolve().is_file(), f"{path}: _BASE_ {base} is not one of our files"
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
