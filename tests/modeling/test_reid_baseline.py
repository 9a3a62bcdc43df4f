"""ReIDBaseline's public pieces (``pooled_features``, ``head``, ``embed``, ``from_config``) against the modules
they are made of, so projects that call them (RSL, SLSR) get exactly the baseline's head."""
import inspect

import pytest
import torch
import torch.nn.functional as F

import reid2  # noqa: F401  (registration)
from reid2.modeling import ReIDBaseline

CFG = "configs/synthetic/reid_tiny.yaml"


def _cfg(*opts):
    from reid2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(CFG)
    cfg.merge_from_list(["MODEL.REID.NUM_CLASSES", "5", "MODEL.REID_BACKBONE.WIDTH", "8", "MODEL.DEVICE", "cpu",
                         *opts])
    return cfg


def _images(n=3):
    return torch.randn(n, 3, 128, 64, generator=torch.Generator().manual_seed(0))


def test_from_config_gives_every_init_argument():
    params = inspect.signature(ReIDBaseline.__init__).parameters
    kwargs = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(ReIDBaseline.from_config(_cfg())) == kwargs


def test_from_config_overrides_for_subclasses():
    args = ReIDBaseline.from_config(_cfg(), num_classes=9, with_losses=False)
    assert args["num_classes"] == 9 and args["losses_cfg"] is None
    assert ReIDBaseline.from_config(_cfg())["num_classes"] == 5


def test_head_is_bn_neck_then_classifier():
    torch.manual_seed(0)
    model = ReIDBaseline(_cfg("MODEL.REID.DROPOUT", "0.5")).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.bottleneck.weight)
        torch.nn.init.normal_(model.bottleneck.running_mean)
        pooled = model.pooled_features(_images())
        out = model.head(pooled)
        bn = (pooled - model.bottleneck.running_mean) / torch.sqrt(model.bottleneck.running_var + 1e-5) \
            * model.bottleneck.weight + model.bottleneck.bias
    assert set(out) == {"logits", "pool_feat", "bn_feat"}
    torch.testing.assert_close(out["pool_feat"], pooled)
    torch.testing.assert_close(out["bn_feat"], bn)
    torch.testing.assert_close(out["logits"], bn @ model.classifier.weight.T)  # eval: no dropout


def test_head_without_bn_neck_classifies_the_pooled_feature():
    model = ReIDBaseline(_cfg("MODEL.REID.BN_NECK", "False")).eval()
    with torch.no_grad():
        pooled = model.pooled_features(_images())
        out = model.head(pooled)
        torch.testing.assert_close(out["bn_feat"], pooled)
        torch.testing.assert_close(out["logits"], pooled @ model.classifier.weight.T)
        # no BN neck: every feature is the pooled one
        torch.testing.assert_close(model.embed(_images(), "after_bn"), pooled)


def test_embed_and_flip_inference():
    model = ReIDBaseline(_cfg("TEST.REID.FLIP_FEATS", "True")).eval()
    x = _images()
    with torch.no_grad():
        pooled = model.pooled_features(x)
        torch.testing.assert_close(model.embed(x, "before_bn"), pooled)
        torch.testing.assert_close(model.embed(x), model.bottleneck(pooled))  # TEST_FEAT after_bn
        flipped = model.bottleneck(model.pooled_features(x.flip(3)))
        torch.testing.assert_close(model({"images": x}), 0.5 * (model.bottleneck(pooled) + flipped))
    with pytest.raises(ValueError, match="before_bn or after_bn"):
        model.embed(x, "bn")


def test_training_forward_uses_the_head():
    torch.manual_seed(0)
    model = ReIDBaseline(_cfg()).train()
    x, y = _images(4), torch.tensor([0, 1, 2, 4])
    torch.manual_seed(1)
    losses = model({"images": x, "targets": y})
    with torch.no_grad():
        model.bottleneck.momentum = 0.0  # same batch statistics, running stats untouched
        logits = model.head(model.pooled_features(x))["logits"]
    assert list(losses) == ["loss_cls"]
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(logits, y))


def test_declared_class_count_keys_are_the_identity_rows():
    """The predictor reads the number of identities from these entries of a checkpoint."""
    model = ReIDBaseline(_cfg("MODEL.LOSSES.NAMES", "['CrossEntropyLoss', 'CenterLoss']"))
    state = model.state_dict()
    entries = ReIDBaseline.class_count_keys["MODEL.REID.NUM_CLASSES"]
    assert set(entries) <= set(state) and all(state[k].shape[0] == 5 for k in entries)
