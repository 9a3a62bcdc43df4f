"""``DSATrainer``: reid2's re-ID trainer with the DSAP-producing training loader (``REID2.TRAINER``)."""
from reid2.data import build_reid_train_loader
from reid2.engine import TRAINER_REGISTRY, ReIDTrainer

from .data import build_dsa_test_loader, build_dsa_train_loader


@TRAINER_REGISTRY.register()
class DSATrainer(ReIDTrainer):
    """Training batches carry ``dsap`` unless MODEL.DSA.MODE is none; test batches carry it when
    MODEL.DSA.TEST_FEATURE fuses the two streams (otherwise testing is reid2's, MF-Stream only)."""

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if cfg.MODEL.DSA.TEST_FEATURE == "mf":
            return super().build_test_loader(cfg, dataset_name)
        return build_dsa_test_loader(cfg, dataset_name)

    @classmethod
    def build_train_loader(cls, cfg):
        if cfg.MODEL.DSA.MODE == "none":
            return build_reid_train_loader(cfg)
        return build_dsa_train_loader(cfg)
