"""The evaluator and its protocol come from the test set's metadata, for every registered test set."""
import logging

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import reid2  # noqa: F401  (registrations)
from reid2.config import get_cfg
from reid2.evaluation import PersonSearchEvaluator, ReIDEvaluator, build_evaluator
from reid2.evaluation.build import RANK_PROTOCOLS

TEST_SETS = sorted(n for n in DatasetCatalog.list() if n.endswith("_test") and
                   MetadataCatalog.get(n).get("evaluator_type", None) in ("reid", "person_search"))
EXPECTED_RANK_PROTOCOL = {"market": "market", "cuhk03_classic": "cuhk03_classic", "split_average": "market"}


def test_every_builtin_family_is_registered():
    names = set(TEST_SETS)
    for expected in ("market1501_test", "dukemtmc_test", "cuhk03_labeled_test", "cuhk03_classic_detected_split0_test",
                     "viper_split0_test", "cuhk01_split9_test", "msmt17_test", "cuhk_sysu_test", "prw_test"):
        assert expected in names, expected


@pytest.mark.parametrize("name", TEST_SETS)
def test_evaluator_follows_the_dataset(name):
    cfg = get_cfg()  # TEST.REID.PROTOCOL "" = follow the dataset
    meta = MetadataCatalog.get(name)
    evaluator = build_evaluator(cfg, name, model=None)
    if meta.evaluator_type == "person_search":
        assert isinstance(evaluator, PersonSearchEvaluator)
    else:
        assert isinstance(evaluator, ReIDEvaluator)
        assert evaluator.protocol == EXPECTED_RANK_PROTOCOL[meta.protocol]
        if name.startswith("cuhk03_classic"):
            assert evaluator.protocol == "cuhk03_classic"  # today's bug: scored with the Market protocol


def test_config_that_disagrees_is_used_with_a_warning(caplog):
    cfg = get_cfg()
    cfg.TEST.REID.PROTOCOL = "market"
    with caplog.at_level(logging.WARNING):
        evaluator = build_evaluator(cfg, "cuhk03_classic_labeled_split0_test")
    assert evaluator.protocol == "market"
    assert "TEST.REID.PROTOCOL='market'" in caplog.text and "'cuhk03_classic'" in caplog.text


def test_unknown_evaluator_type_names_the_dataset():
    DatasetCatalog.register("odd_type_test", lambda: [])
    MetadataCatalog.get("odd_type_test").set(evaluator_type="coco")
    with pytest.raises(ValueError, match="odd_type_test.*coco"):
        build_evaluator(get_cfg(), "odd_type_test")


def test_protocol_table_is_closed():
    assert set(RANK_PROTOCOLS) == set(EXPECTED_RANK_PROTOCOL)
