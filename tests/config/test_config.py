"""Config: every reid2 key present, YAML round-trip, unknown keys fail loudly."""
import pytest
import yaml

from tests.helpers import REPO


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


CONFIGS = sorted([*(REPO / "configs").rglob("*.yaml"), *(REPO / "projects").glob("*/configs/*.yaml")])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_loads_and_is_self_contained(path):
    """All configs merge (a project config imports its project through REID2.IMPORTS); _BASE_ stays in the repo."""
    from reid2.config import load_config

    base = yaml.safe_load(path.read_text()).get("_BASE_")
    if base:
        target = (path.parent / base).resolve()
        assert target.is_file() and REPO in target.parents, f"{path}: _BASE_ {base} is not one of our files"
    load_config(str(path))


def test_project_configs_declare_their_project():
    """A project's configs import the project themselves (nothing else imports it)."""
    from reid2.config import declared_imports
    from reid2.projects import PROJECTS

    for name, folder in PROJECTS.items():
        configs = sorted((REPO / "projects" / folder / "configs").glob("*.yaml"))
        assert configs, folder
        for path in configs:
            assert f"reid2.projects.{name}" in declared_imports(str(path)), path


def test_imports_happen_before_the_merge(tmp_path, monkeypatch):
    """A downstream module named in the YAML's REID2.IMPORTS can add config keys the same YAML uses."""
    from reid2.config import load_config

    pkg = tmp_path / "downstream_keys_pkg.py"
    pkg.write_text("from detectron2.config import CfgNode as CN\n"
                   "from reid2.config import register_config_adder\n\n"
                   "@register_config_adder\n"
                   "def add_keys(cfg):\n"
                   "    cfg.MY_EXT = CN({'ALPHA': 1.0})\n")
    base = tmp_path / "base.yaml"
    base.write_text("REID2:\n  IMPORTS: ['downstream_keys_pkg']\n")
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: base.yaml\nMY_EXT:\n  ALPHA: 2.5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_config(str(child))
    assert cfg.MY_EXT.ALPHA == 2.5


def test_key_given_twice_is_an_error_naming_file_key_and_lines(tmp_path):
    """YAML keeps the last of two equal keys: a second SOLVER block would drop the first's BASE_LR silently."""
    from reid2.config import get_cfg

    path = tmp_path / "dup.yaml"
    path.write_text("SOLVER:\n  BASE_LR: 0.5\nMODEL:\n  DEVICE: cpu\nSOLVER:\n  MAX_ITER: 7\n")
    with pytest.raises(ValueError, match=r"dup\.yaml, line 5: key SOLVER is given twice .*first on line 1"):
        get_cfg().merge_from_file(str(path))
    nested = tmp_path / "nested.yaml"
    nested.write_text("_BASE_: ok.yaml\nMODEL:\n  ROI_HEADS:\n    NMS_THRESH_TEST: 0.4\n    NMS_THRESH_TEST: 0.5\n")
    (tmp_path / "ok.yaml").write_text("MODEL:\n  DEVICE: cpu\n")
    with pytest.raises(ValueError, match=r"line 5: key MODEL\.ROI_HEADS\.NMS_THRESH_TEST is given twice"):
        get_cfg().merge_from_file(str(nested))
    (tmp_path / "base_dup.yaml").write_text("MODEL:\n  DEVICE: cpu\n  DEVICE: cuda\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base_dup.yaml\n")
    with pytest.raises(ValueError, match=r"base_dup\.yaml, line 3: key MODEL\.DEVICE"):  # a _BASE_ file too
        get_cfg().merge_from_file(str(tmp_path / "child.yaml"))
    # equal keys in different mappings, and YAML merge keys, are fine
    fine = tmp_path / "fine.yaml"
    fine.write_text("MODEL:\n  DEVICE: cpu\nSOLVER:\n  BASE_LR: 0.25\nTEST:\n  EVAL_PERIOD: 3\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(fine))
    assert (cfg.MODEL.DEVICE, cfg.SOLVER.BASE_LR, cfg.TEST.EVAL_PERIOD) == ("cpu", 0.25, 3)
