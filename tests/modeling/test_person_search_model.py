"""PersonSearchRCNN / OIMROIHeads / mapper / evaluator / trainer on hand-made inputs and the tiny synthetic data."""
import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

import reid2.modeling.meta_arch.person_search  # noqa: F401  (registration, until reid2.modeling exports it)
from reid2.config import get_cfg
from reid2.data.person_search_mapper import PersonSearchDatasetMapper
from reid2.evaluation.protocols import get_queries
from reid2.evaluation.ps_evaluator import PersonSearchEvaluator
from reid2.modeling.roi_heads import BACKGROUND_PID, OIMROIHeads
from tests.helpers import REPO, image_input

LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_oim"}


def tiny_cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/synthetic/oim_tiny.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.OIM.NUM_PIDS", 5, "MODEL.OIM.QUEUE_SIZE", 20,
                         "DATASETS.TRAIN", "()", "DATASETS.TEST", "()", *opts])
    return cfg


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def test_training_returns_all_losses_and_oim_weight_scales():
    inputs = [image_input(seed=1), image_input(seed=2, boxes=((5, 5, 30, 80),), pids=(0,))]
    models = {}
    for weight in (1.0, 0.25):
        torch.manual_seed(0)
        models[weight] = build_model(tiny_cfg("MODEL.OIM.LOSS_WEIGHT", weight)).train()
        models[weight].roi_heads.oim_loss.load_lut(torch.nn.functional.normalize(torch.randn(5, 256), dim=1))
    losses = {}
    for weight, model in models.items():
        torch.manual_seed(1)  # same proposal sampling
        with EventStorage():
            losses[weight] = model(inputs)
    assert set(losses[1.0]) == LOSS_KEYS
    assert all(torch.isfinite(v) for v in losses[1.0].values())
    assert losses[0.25]["loss_oim"].item() == pytest.approx(0.25 * losses[1.0]["loss_oim"].item(), rel=1e-5)
    assert losses[1.0]["loss_oim"].item() > 0
    sum(losses[1.0].values()).backward()  # (with zero LUT and queue the OIM gradient is exactly 0)
    assert models[1.0].roi_heads.embedding_head.projection.weight.grad.abs().sum() > 0
    assert int(models[1.0].roi_heads.oim_loss.queue_ptr) > 0  # unlabelled fg RoIs were enqueued


def test_sampled_proposals_inherit_matched_person_ids():
    cfg = tiny_cfg("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16, "MODEL.ROI_HEADS.POSITIVE_FRACTION", 0.5)
    heads = OIMROIHeads(cfg, {"res4": ShapeSpec(channels=64, stride=16)})
    targets = [image_input()["instances"], Instances((96, 128), gt_boxes=Boxes(torch.zeros(0, 4)),
                                                     gt_classes=torch.zeros(0, dtype=torch.int64),
                                                     gt_pids=torch.zeros(0, dtype=torch.int64))]
    proposal_boxes = torch.tensor([[11, 11, 41, 89], [12, 10, 40, 88], [61, 21, 89, 94],
                                   [100, 0, 127, 30], [0, 60, 20, 95], [45, 5, 58, 40]], dtype=torch.float32)
    proposals = [Instances((96, 128), proposal_boxes=Boxes(proposal_boxes.clone()),
                           objectness_logits=torch.zeros(6)) for _ in range(2)]
    with EventStorage():
        sampled = heads.label_and_sample_proposals(proposals, targets)
    first = sampled[0]
    iou = pairwise_iou(first.proposal_boxes, targets[0].gt_boxes)
    foreground = first.gt_classes == 0
    expected = torch.where(foreground, targets[0].gt_pids[iou.argmax(dim=1)], torch.full_like(first.gt_pids,
                                                                                            BACKGROUND_PID))
    assert foreground.sum() >= 4 and (~foreground).sum() >= 1  # 2 GT (appended) + 3 matching proposals
    assert torch.equal(first.gt_pids, expected)
    assert set(first.gt_pids[foreground].tolist()) == {3, -1}
    assert torch.all(sampled[1].gt_pids == BACKGROUND_PID)  # image without ground truth


def test_inference_fields_norms_and_original_coordinates(tiny_model):
    tiny_model.eval()
    data = image_input(seed=3)
    scaled = dict(data, height=2 * data["height"], width=2 * data["width"])  # original twice the input size
    with torch.no_grad():
        raw = tiny_model.inference([data], do_postprocess=False)[0]
        out = tiny_model([scaled])[0]["instances"]
    assert {"pred_boxes", "scores", "pred_classes", "reid_feats"} <= set(out.get_fields())
    assert len(out) > 0 and out.reid_feats.shape == (len(out), 256)
    assert torch.allclose(out.reid_feats.norm(dim=1), torch.ones(len(out)), atol=1e-5)
    assert out.image_size == (192, 256)
    assert torch.allclose(out.pred_boxes.tensor, (raw.pred_boxes.tensor * 2).clamp(max=256), atol=1e-3)
    assert torch.allclose(out.reid_feats, raw.reid_feats)


def test_detection_features_are_those_of_their_proposal(tiny_model):
    """With a single proposal, the detection's reid_feats is the embedding of the proposal box itself."""
    tiny_model.eval()
    heads = tiny_model.roi_heads
    data = image_input(seed=4)
    box = Boxes(torch.tensor([[20.0, 10.0, 50.0, 90.0]]))
    with torch.no_grad():
        features = tiny_model.extract_features(tiny_model.preprocess_image([data]))
        old = heads.box_predictor.test_score_thresh
        heads.box_predictor.test_score_thresh = 0.0
        try:
            instances, _ = heads(None, features, [Instances((96, 128), proposal_boxes=box,
                                                            objectness_logits=torch.zeros(1))])
        finally:
            heads.box_predictor.test_score_thresh = old
        expected = heads.embed_boxes(features, [box])[0]
    assert len(instances[0]) == 1
    assert torch.allclose(instances[0].reid_feats, expected, atol=1e-6)


def test_embed_boxes_shapes_and_coordinates(tiny_model):
    tiny_model.eval()
    data = image_input(seed=5)
    boxes = [np.array([[10, 10, 40, 90], [60, 20, 90, 95], [0, 0, 20, 50]], np.float32), np.zeros((0, 4))]
    with torch.no_grad():
        embeddings = tiny_model.embed_boxes([data, image_input(seed=6)], boxes)
        doubled = tiny_model.embed_boxes([dict(data, height=192, width=256)], [boxes[0] * 2])
    assert [tuple(e.shape) for e in embeddings] == [(3, 256), (0, 256)]
    assert torch.allclose(embeddings[0].norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(doubled[0], embeddings[0], atol=1e-5)  # boxes are read in original coordinates
    assert not torch.allclose(embeddings[0][0], embeddings[0][1])
    with pytest.raises(ValueError, match="2 box sets"):
        tiny_model.embed_boxes([data], boxes)


def test_detector_only_has_no_identity_branch():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("MODEL.PERSON_SEARCH.REID_ON", False))
    assert model.roi_heads.embedding_head is None and model.roi_heads.oim_loss is None
    assert not any("oim_loss" in k or "embedding" in k for k in model.state_dict())
    with EventStorage():
        losses = model.train()([image_input()])
    assert set(losses) == LOSS_KEYS - {"loss_oim"}
    model.eval()
    with torch.no_grad():
        out = model([image_input()])[0]["instances"]
        assert not out.has("reid_feats")
        with pytest.raises(RuntimeError, match="REID_ON"):
            model.embed_boxes([image_input()], [np.zeros((1, 4))])


def test_checkpoint_keys_for_distillation(tiny_model):
    keys = tiny_model.state_dict()
    assert keys["roi_heads.oim_loss.lut"].shape == (5, 256)
    assert keys["roi_heads.oim_loss.queue"].shape == (20, 256)
    assert keys["roi_heads.oim_loss.queue_ptr"].dtype == torch.long


def test_training_without_person_ids_fails_clearly(tiny_model):
    data = image_input()
    data["instances"].remove("gt_pids")
    with EventStorage(), pytest.raises(ValueError, match="gt_pids"):
        tiny_model.train()([data])


def test_resnet18_c4_builds_basic_res5_and_trains_one_step():
    cfg = tiny_cfg("MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.RESNETS.DEPTH", 18,
                   "MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.PERSON_SEARCH.RES5_HEAD", "resnet",
                   "MODEL.RESNETS.NORM", "BN")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    from detectron2.modeling.backbone.resnet import BasicBlock
    assert [type(b) for b in model.roi_heads.res5] == [BasicBlock, BasicBlock]
    assert model.backbone.output_shape()["res4"].channels == 256
    assert model.roi_heads.embedding_head.projection.in_features == 512
    with EventStorage():
        losses = model([image_input(), image_input(seed=7)])
    assert set(losses) == LOSS_KEYS and all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("name", ["oim_r50.yaml", "oim_r18.yaml", "det_r50.yaml", "prw/oim_r50.yaml"])
def test_paper_configs_build(name):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / name))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.OIM.NUM_PIDS", 5532 if "prw" not in name else 483])
    model = build_model(cfg)
    assert model.roi_heads.reid_on == ("det_" not in name)
    assert cfg.REID2.TRAINER == "PersonSearchTrainer" and cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST == 0.4
    assert model.proposal_generator.anchor_generator.num_cell_anchors == [9]
    if model.roi_heads.reid_on:
        assert model.roi_heads.oim_loss.lut.shape[1] == 256


@pytest.mark.slow
def test_resnet50_paper_config_one_step_at_600px():
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/oim_r50.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.OIM.NUM_PIDS", 5532, "MODEL.WEIGHTS", "",
                         "MODEL.REQUIRE_PRETRAINED", False])  # random init on purpose
    torch.manual_seed(0)
    model = build_model(cfg).train()
    inputs = [image_input(600, 800, boxes=((100, 100, 180, 400), (400, 150, 470, 420)), pids=(7, -1), seed=s)
              for s in (8, 9)]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001)
    with EventStorage():
        losses = model(inputs)
    sum(losses.values()).backward()
    optimizer.step()
    assert set(losses) == LOSS_KEYS and all(torch.isfinite(v) for v in losses.values())


def test_mapper_keeps_person_ids_aligned_through_flip_and_filtering(tmp_path):
    path = tmp_path / "img.jpg"
    cv2.imwrite(str(path), np.full((60, 80, 3), 128, np.uint8))
    record = {"file_name": str(path), "image_id": "img.jpg", "height": 60, "width": 80, "annotations": [
        {"bbox": [10, 5, 30, 55], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "person_id": 4},
        {"bbox": [40, 5, 40, 55], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "person_id": 9},  # empty
        {"bbox": [50, 10, 70, 50], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "person_id": -1}]}
    cfg = tiny_cfg("INPUT.MIN_SIZE_TRAIN", "(120,)", "INPUT.MAX_SIZE_TRAIN", 1000, "INPUT.RANDOM_FLIP", "horizontal")
    mapper = PersonSearchDatasetMapper(cfg, is_train=True)
    seen_flip = set()
    for seed in range(8):
        np.random.seed(seed)
        out = mapper(record)
        inst = out["instances"]
        boxes = inst.gt_boxes.tensor
        flipped = bool(boxes[0, 0] > 80)
        seen_flip.add(flipped)
        expected = torch.tensor([[20, 10, 60, 110], [100, 20, 140, 100]], dtype=torch.float32)
        if flipped:
            expected = torch.stack([160 - expected[:, 2], expected[:, 1], 160 - expected[:, 0], expected[:, 3]], 1)
        assert torch.allclose(boxes, expected) and inst.gt_pids.tolist() == [4, -1]
    assert seen_flip == {True, False}
    bad = dict(record, annotations=[{k: v for k, v in record["annotations"][0].items() if k != "person_id"}])
    with pytest.raises(ValueError, match="person_id"):
        mapper(bad)


class OracleModel(torch.nn.Module):
    """Embeds a query box as the one-hot of the ground-truth person it overlaps most (for evaluator tests)."""

    def __init__(self, dicts, dim):
        super().__init__()
        self.by_file = {d["file_name"]: d for d in dicts}
        self.dim = dim

    def one_hot(self, record, boxes):
        from reid2.evaluation.search import pairwise_iou

        gt = np.array([a["bbox"] for a in record["annotations"]])
        pids = np.array([a["person_id"] for a in record["annotations"]])
        best = pids[pairwise_iou(boxes, gt).argmax(axis=1)]
        feats = np.zeros((len(boxes), self.dim), np.float32)
        feats[best >= 0, best[best >= 0]] = 1.0
        return torch.from_numpy(feats)

    def embed_boxes(self, inputs, boxes):
        return [self.one_hot(self.by_file[x["file_name"]], np.asarray(b)) for x, b in zip(inputs, boxes)]


def test_evaluator_scores_an_oracle_perfectly_and_a_shuffled_one_lower(datasets_root):
    name = "synthetic_cuhk_sysu_test"
    dicts = DatasetCatalog.get(name)
    dim = 1 + max(a["person_id"] for d in dicts for a in d["annotations"])
    oracle = OracleModel(dicts, dim)
    evaluator = PersonSearchEvaluator(name, query_mapper=lambda d: dict(d), model=oracle, det_thresh=0.5)
    rng = np.random.default_rng(0)
    results = {}
    for shuffled in (False, True):
        evaluator.reset()
        for d in dicts:
            boxes = np.array([a["bbox"] for a in d["annotations"]], np.float32)
            feats = oracle.one_hot(d, boxes)
            if shuffled:
                feats = feats[rng.permutation(len(feats))]
            inst = Instances((d["height"], d["width"]), pred_boxes=Boxes(torch.from_numpy(boxes)),
                             scores=torch.ones(len(boxes)), pred_classes=torch.zeros(len(boxes), dtype=torch.long),
                             reid_feats=feats)
            evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
        results[shuffled] = evaluator.evaluate()
    assert results[False]["search"] == {"mAP": 100.0, "top1": 100.0, "top5": 100.0, "top10": 100.0}
    assert results[False]["detection"] == {"AP": 100.0, "recall": 100.0}
    assert results[True]["search"]["mAP"] < 90.0 and results[True]["detection"]["AP"] == 100.0
    assert len(get_queries(name)) > 0


def test_evaluator_detection_threshold_is_separate_from_the_search_one(datasets_root):
    """Half of the (perfect) boxes scored 0.3: at one threshold of 0.5 (OIM) detection recall drops with search;
    with a detection threshold of 0.01 (SeqNet) detection sees every box while search still drops them."""
    name = "synthetic_cuhk_sysu_test"
    dicts = DatasetCatalog.get(name)
    dim = 1 + max(a["person_id"] for d in dicts for a in d["annotations"])
    oracle = OracleModel(dicts, dim)
    results = {}
    for detection_thresh in (None, 0.01):
        evaluator = PersonSearchEvaluator(name, query_mapper=lambda d: dict(d), model=oracle, det_thresh=0.5,
                                          detection_thresh=detection_thresh)
        for i, d in enumerate(dicts):
            boxes = np.array([a["bbox"] for a in d["annotations"]], np.float32)
            scores = torch.where(torch.arange(len(boxes)) % 2 == i % 2, 0.3, 0.9)
            inst = Instances((d["height"], d["width"]), pred_boxes=Boxes(torch.from_numpy(boxes)), scores=scores,
                             pred_classes=torch.zeros(len(boxes), dtype=torch.long),
                             reid_feats=oracle.one_hot(d, boxes))
            evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
        results[detection_thresh] = evaluator.evaluate()
    assert results[None]["detection"]["recall"] < 70.0
    assert results[0.01]["detection"] == {"AP": 100.0, "recall": 100.0}
    assert results[0.01]["search"] == results[None]["search"] and results[None]["search"]["mAP"] < 90.0
    cfg = tiny_cfg("TEST.PERSON_SEARCH.DETECTION_EVAL_THRESH", 0.01)
    assert PersonSearchEvaluator.from_config(cfg, name).detection_thresh == 0.01
    assert PersonSearchEvaluator.from_config(tiny_cfg(), name).detection_thresh == 0.5


def test_trainer_test_runs_the_full_evaluation(datasets_root, tmp_path):
    from reid2.engine.person_search import PersonSearchTrainer

    cfg = tiny_cfg("DATASETS.TRAIN", "('synthetic_cuhk_sysu_train',)", "DATASETS.TEST", "('synthetic_cuhk_sysu_test',)",
                   "MODEL.OIM.NUM_PIDS", 0, "OUTPUT_DIR", str(tmp_path), "TEST.PERSON_SEARCH.DET_THRESH", 0.0)
    torch.manual_seed(0)
    model = PersonSearchTrainer.build_model(cfg)
    train_dicts = DatasetCatalog.get("synthetic_cuhk_sysu_train")
    assert model.roi_heads.oim_loss.num_pids == 1 + max(a["person_id"] for d in train_dicts for a in d["annotations"])
    results = PersonSearchTrainer.test(cfg, model)
    assert set(results["search"]) == {"mAP", "top1", "top5", "top10"}
    assert set(results["detection"]) == {"AP", "recall"}
    assert all(0.0 <= v <= 100.0 for task in results.values() for v in task.values())
    assert results["detection"]["recall"] > 0  # det_thresh 0: the untrained detector's boxes reach some people
    assert (tmp_path / "metrics.json").is_file()
