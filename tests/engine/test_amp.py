"""SOLVER.AMP.ENABLED: bf16 autocast on the CPU (fp16 + grad scaler on CUDA) in the re-ID, person-search and KD
trainers; the OIM table / queue / logits, the batch-contrastive centers and the KD soft targets stay fp32.

Tolerances. bf16 keeps 8 significand bits (relative rounding 2^-9 ≈ 0.2 % per rounding); convolutions and matrix
products accumulate in fp32, so a forward pass of these few-layer tiny models moves the first loss by ~0.1 % (0.06 %
re-ID, 0.01 % OIM measured): the first step must agree within 1 %. Later steps see weights updated by slightly
different gradients; the re-ID losses stay within 2 % over 4 steps (0.2 % measured). Person search samples RoIs
and keeps proposals by top-k / NMS on scores, a discontinuous choice that a bf16-sized score change can flip, so
its later steps are compared within 10 % (3.5 % measured).
"""
import shutil

import pytest
import torch
import torch.nn.functional as F

from reid2.engine.amp import ReID2AMPTrainer, amp_dtype
from reid2.modeling.losses.kd import hint_loss, rpn_soft_objectness_loss, soft_cross_entropy_with_temperature
from reid2.modeling.losses.oim import OIMLoss
from tests.helpers import REPO, save_random_checkpoint

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _cfg(config, out, *opts, device="cpu"):
    from reid2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / config))
    cfg.merge_from_list([str(x) for x in ["MODEL.DEVICE", device, "SOLVER.MAX_ITER", 4, "TEST.EVAL_PERIOD", 0,
                                          "DATASETS.TEST", "()", "OUTPUT_DIR", out, "SOLVER.CHECKPOINT_PERIOD",
                                          1000, "SOLVER.WARMUP_ITERS", 0, "REID2.LOG_PERIOD", 1, *opts]])
    return cfg


def _train(cfg, resume=False):
    """(trainer, per-step total losses, backbone output dtypes of the first step)."""
    from detectron2.utils.env import seed_all_rng

    from reid2.engine import TRAINER_REGISTRY

    seed_all_rng(0)
    trainer = TRAINER_REGISTRY.get(cfg.REID2.TRAINER)(cfg)
    trainer.resume_or_load(resume=resume)
    dtypes = {}
    trainer.model.backbone.register_forward_hook(
        lambda mod, inp, out: dtypes.setdefault("backbone", {v.dtype for v in out.values()}) and None)
    trainer.train()
    return trainer, [v for v, _ in trainer.storage.history("total_loss").values()], dtypes.get("backbone")


def _close(amp, fp32, first_tol, tol):
    rel = [abs(a - b) / abs(b) for a, b in zip(amp, fp32)]
    assert len(rel) == len(fp32) and rel[0] < first_tol and max(rel) < tol, (amp, fp32, rel)


def test_amp_dtype_by_device_and_key():
    assert amp_dtype("auto", "cuda") is torch.float16 and amp_dtype("auto", "cpu") is torch.bfloat16
    assert amp_dtype("bfloat16", "cuda") is torch.bfloat16 and amp_dtype("float16", "cpu") is torch.float16
    with pytest.raises(ValueError, match="SOLVER.AMP.DTYPE.*'fp8'"):
        amp_dtype("fp8", "cpu")


def test_oim_logits_and_buffers_stay_fp32_under_autocast():
    """Under bf16 autocast the loss equals the fp32 loss of the same (bf16) features: the table product is not
    rounded to bf16 (it would be, by ~1e-2, without the fp32 region)."""
    torch.manual_seed(0)
    oim = OIMLoss(num_pids=6, queue_size=5, feat_dim=32, scalar=30.0)
    oim.lut.copy_(F.normalize(torch.randn(6, 32), dim=1))
    oim.queue.copy_(F.normalize(torch.randn(5, 32), dim=1))
    feats = F.normalize(torch.randn(8, 32), dim=1).bfloat16()
    pids = torch.tensor([0, 1, 2, -1, 3, 5, -1, 0])
    reference = F.cross_entropy(30.0 * feats.double() @ torch.cat([oim.lut, oim.queue]).double().t(), pids,
                                ignore_index=-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert oim.logits(feats.float()).dtype is torch.float32
        loss = oim.eval()(feats, pids)
        oim.train()(feats, pids)
    assert loss.dtype is torch.float32
    assert abs(loss.item() - reference.item()) < 1e-5
    assert oim.lut.dtype is torch.float32 and oim.queue.dtype is torch.float32


def test_kd_soft_targets_are_fp32_under_autocast():
    torch.manual_seed(0)
    student, teacher = (torch.randn(6, 3) * 20).bfloat16(), (torch.randn(6, 3) * 20).bfloat16()
    fmap_s, fmap_t = torch.randn(2, 4, 5, 5).bfloat16(), torch.randn(2, 4, 5, 5).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        soft = soft_cross_entropy_with_temperature(student, teacher, T=10.0)
        rpn = rpn_soft_objectness_loss(student[:, 0], teacher[:, 0], T=10.0)
        hint = hint_loss(fmap_s, fmap_t, "sum_per_image")
    s, t = student.double(), teacher.double()
    ref_soft = -(F.softmax(t / 10, 1) * F.log_softmax(s / 10, 1)).sum(1).mean()
    p = torch.sigmoid(t[:, 0] / 10)
    ref_rpn = -(p * F.logsigmoid(s[:, 0] / 10) + (1 - p) * F.logsigmoid(-s[:, 0] / 10)).mean()
    ref_hint = (fmap_s.double() - fmap_t.double()).pow(2).flatten(1).sum(1).mean()
    for got, ref in ((soft, ref_soft), (rpn, ref_rpn), (hint, ref_hint)):
        assert got.dtype is torch.float32
        assert abs(got.item() - ref.item()) < 1e-5 * max(1.0, abs(ref.item())), (got, ref)


def test_reid_batch_contrastive_amp_steps_match_fp32(datasets_root, tmp_path):
    """bc_tiny (softmax + batch-contrastive + center loss): bf16 backbone, fp32 centers, losses close to fp32."""
    config = "configs/synthetic/bc_tiny.yaml"
    _, fp32, fp32_dtypes = _train(_cfg(config, tmp_path / "fp32"))
    trainer, amp, amp_dtypes = _train(_cfg(config, tmp_path / "amp", "SOLVER.AMP.ENABLED", True))
    assert isinstance(trainer._trainer, ReID2AMPTrainer) and not trainer._trainer.grad_scaler.is_enabled()
    assert fp32_dtypes == {torch.float32} and amp_dtypes == {torch.bfloat16}
    assert trainer.model.losses["BatchContrastiveLoss"].center.centers.dtype is torch.float32
    assert trainer.model.losses["BatchContrastiveLoss"].center.centers.abs().sum() > 0  # they moved
    _close(amp, fp32, 1e-2, 2e-2)


def test_oim_and_kd_amp_steps_match_fp32(datasets_root, tmp_path):
    """OIM person search, then its KD student (KD_reid table + KD_det teacher): bf16 trunk, fp32 table and queue."""
    oim = "configs/synthetic/oim_tiny.yaml"
    _, fp32, _ = _train(_cfg(oim, tmp_path / "oim32"))
    trainer, amp, dtypes = _train(_cfg(oim, tmp_path / "oim_amp", "SOLVER.AMP.ENABLED", True))
    assert dtypes == {torch.bfloat16}
    heads = trainer.model.roi_heads.oim_loss
    assert heads.lut.dtype is torch.float32 and heads.queue.dtype is torch.float32 and int(heads.queue_ptr) > 0
    _close(amp, fp32, 1e-2, 0.1)

    teacher = save_random_checkpoint("configs/synthetic/det_tiny.yaml", tmp_path)
    kd = ["MODEL.KD.REID.LUT_SOURCE", tmp_path / "oim32" / "model_final.pth",
          "MODEL.KD.TEACHER_CONFIG", "configs/synthetic/det_tiny.yaml", "MODEL.KD.TEACHER_WEIGHTS", teacher,
          "MODEL.KD.HINT.ENABLED", True, "MODEL.KD.RPN.ENABLED", True, "MODEL.KD.RCN.ENABLED", True]
    config = "configs/synthetic/kd_oim_tiny.yaml"
    _, fp32, _ = _train(_cfg(config, tmp_path / "kd32", *kd))
    trainer, amp, dtypes = _train(_cfg(config, tmp_path / "kd_amp", "SOLVER.AMP.ENABLED", True, *kd))
    assert dtypes == {torch.bfloat16}
    table = torch.load(tmp_path / "oim32" / "model_final.pth", weights_only=False)["model"]["roi_heads.oim_loss.lut"]
    lut = trainer.model.roi_heads.oim_loss.lut
    assert lut.dtype is torch.float32 and torch.allclose(lut, F.normalize(table, dim=1))  # frozen, fp32
    _close(amp, fp32, 1e-2, 0.1)


def test_fp16_grad_scaler_state_is_checkpointed_and_resumed(datasets_root, tmp_path):
    """float16 autocast (a grad scaler; on the CPU here): the scaler's state is in the checkpoint with the exact-
    resume state, and a run resumed from iteration 2 ends with the weights of the uninterrupted run."""
    opts = ["SOLVER.AMP.ENABLED", True, "SOLVER.AMP.DTYPE", "float16", "SOLVER.CHECKPOINT_PERIOD", 2,
            "MODEL.REID_BACKBONE.WIDTH", 8, "SOLVER.IMS_PER_BATCH", 16]
    full, _, dtypes = _train(_cfg("configs/synthetic/reid_tiny.yaml", tmp_path / "full", *opts))
    assert dtypes == {torch.float16} and full._trainer.grad_scaler.is_enabled()
    state = torch.load(tmp_path / "full" / "model_0000001.pth", weights_only=False)["trainer"]
    assert {"data_position", "rng"} <= set(state) and state["data_position"] == 2
    assert state["_trainer"]["grad_scaler"]["scale"] > 0
    assert "state" in state["_trainer"]["optimizer"]

    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    (tmp_path / "resumed" / "last_checkpoint").write_text("model_0000001.pth")
    resumed, _, _ = _train(_cfg("configs/synthetic/reid_tiny.yaml", tmp_path / "resumed", *opts), resume=True)
    assert resumed.start_iter == 2
    assert resumed._trainer.grad_scaler.get_scale() == full._trainer.grad_scaler.get_scale()
    for (key, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), key


# ---- CUDA only ---------------------------------------------------------------------------------------------
@CUDA
def test_cuda_oim_table_queue_and_kd_teacher_live_on_the_gpu(datasets_root, tmp_path):
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    from tests.helpers import image_input

    teacher = save_random_checkpoint("configs/synthetic/det_tiny.yaml", tmp_path)
    cfg = _cfg("configs/synthetic/kd_oim_tiny.yaml", tmp_path, "MODEL.KD.REID.LUT_SOURCE", "",
               "MODEL.KD.TEACHER_CONFIG", "configs/synthetic/det_tiny.yaml", "MODEL.KD.TEACHER_WEIGHTS", teacher,
               "MODEL.KD.HINT.ENABLED", True, "MODEL.KD.RPN.ENABLED", True, "MODEL.KD.RCN.ENABLED", True,
               "MODEL.OIM.NUM_PIDS", 5, device="cuda")
    model = build_model(cfg).train()
    with EventStorage(), torch.autocast("cuda", dtype=torch.float16):
        losses = model([image_input(seed=1, pids=(3, -1)), image_input(seed=2, pids=(0, -1))])
    oim = model.roi_heads.oim_loss
    assert oim.lut.is_cuda and oim.queue.is_cuda and oim.lut.dtype is torch.float32
    assert all(p.is_cuda for p in model.teacher.parameters()) and not model.teacher.training
    assert all(v.dtype is torch.float32 and torch.isfinite(v) for v in losses.values()), losses


@CUDA
def test_cuda_amp_is_fp16_with_a_grad_scaler(datasets_root, tmp_path):
    config = "configs/synthetic/reid_tiny.yaml"
    _, fp32, _ = _train(_cfg(config, tmp_path / "fp32", device="cuda"))
    trainer, amp, dtypes = _train(_cfg(config, tmp_path / "amp", "SOLVER.AMP.ENABLED", True, device="cuda"))
    assert dtypes == {torch.float16} and trainer._trainer.grad_scaler.is_enabled()
    _close(amp, fp32, 1e-2, 2e-2)  # fp16 has 3 more significand bits than bf16


def _nccl_worker(out_dir):
    from detectron2.utils import comm

    from tests.engine.test_oim_distributed import STEPS, batch, make_loss

    rank = comm.get_rank()
    oim = make_loss().cuda()
    for step in range(STEPS):
        feats, pids = batch(rank, step)
        feats = feats.cuda().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.float16):
            oim(feats, pids.cuda()).backward()
    torch.save({k: v.cpu() for k, v in oim.state_dict().items()}, f"{out_dir}/rank{rank}.pt")


@pytest.mark.dist
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpu_nccl_oim_buffers_equal_single_process(tmp_path):
    from reid2.engine import launch
    from tests.engine.test_oim_distributed import STEPS, batch, make_loss

    launch(_nccl_worker, 2, dist_url="auto", args=(str(tmp_path),))
    single = make_loss()
    for step in range(STEPS):
        parts = [batch(r, step) for r in range(2)]
        single(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    for rank in range(2):
        state = torch.load(tmp_path / f"rank{rank}.pt")
        for key, value in single.state_dict().items():
            assert torch.allclose(state[key].float(), value.float(), atol=1e-5), (rank, key)


def test_speed_options_keep_the_optimizer_and_the_update(datasets_root, tmp_path):
    """SOLVER.FUSED_OPTIMIZER: the same groups and hyper-parameters with fused=True, and (Adam, fp32) the same
    weights after a step up to rounding; MODEL.CHANNELS_LAST: the model's convolution weights are NHWC."""
    from reid2.config import get_cfg
    from reid2.engine import ReID2Trainer

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/Base-ReID.yaml"))
    results = {}
    for fused in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        cfg.SOLVER.FUSED_OPTIMIZER = fused
        optimizer = ReID2Trainer.build_optimizer(cfg, model)
        assert [g.get("fused") or False for g in optimizer.param_groups] == [fused] * len(optimizer.param_groups)
        model(torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))).square().sum().backward()
        optimizer.step()
        results[fused] = ([(g["lr"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups],
                          [p.detach().clone() for p in model.parameters()])
    assert results[False][0] == results[True][0]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(results[False][1], results[True][1]))

    cfg = _cfg("configs/synthetic/reid_tiny.yaml", tmp_path, "MODEL.CHANNELS_LAST", True, "SOLVER.MAX_ITER", 1)
    from reid2.engine import ReIDTrainer

    trainer = ReIDTrainer(cfg)
    convs = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                         for w in convs)
    trainer.train()  # and it trains
