"""Stage 2: one DCGAN per cluster (Eq. 3), then N generated images split over the clusters.

Outputs in ``<work>/stage2/``: ``gan_c<c>/`` (``checkpoint.pth`` after every epoch, ``G.pth`` and
``DONE.json`` once the cluster's GAN is trained; ``gan_all/`` too with ``SLSR.GAN.INIT_FROM_ALL``),
``images/gan_<c>_<idx>.jpg``, ``samples_cluster<c>.png`` (a grid for a person to look at),
``manifest.json`` (every generated image's path relative to ``stage2/`` and its cluster) and
``DONE.json`` (written last). An interrupted run continues from the last finished epoch of the
interrupted cluster; finished clusters are not retrained.

Training: real images resized to S x S (aspect ratio not kept, as the public code's ``crop=False``) and
scaled to [-1, 1]; z ~ U[-1, 1]^100; D maximises log D(x) + log(1 - D(G(z))) (Eq. 3), G uses the
non-saturating form max log D(G(z)) (DCGAN's practice); Adam(lr 2e-4, β1 0.5). D sees the real and
the fake batch separately (separate BN statistics), as in the public code.
"""
import csv
import logging
import math
import os
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from reid2.utils.progress import progress_bar
from reid2.utils.serialization import load_torch_file

from .dcgan import Discriminator, Generator, sample_z
from .paths import atomic_save, atomic_write_json, check_borrowed, check_marker, stage_done, stage_paths, write_marker

__all__ = ["run_stage2", "split_counts", "train_gan", "load_cluster_images", "stage2_settings"]

logger = logging.getLogger("reid2.slsr")


def stage2_settings(cfg):
    g = cfg.SLSR.GAN
    return {"image_size": g.IMAGE_SIZE, "z_dim": g.Z_DIM, "gf_dim": g.GF_DIM, "df_dim": g.DF_DIM,
            "d_activation": g.D_ACTIVATION, "epochs": g.EPOCHS, "batch": g.BATCH_SIZE, "lr": g.LR,
            "beta1": g.BETA1, "g_steps": g.G_STEPS, "max_iters": g.MAX_ITERS, "init_from_all": g.INIT_FROM_ALL,
            "num_generated": g.NUM_GENERATED, "split": g.SPLIT, "seed": g.SEED}


def split_counts(sizes, total, mode="equal"):
    """Images per cluster summing to ``total``: equal (the default, as the public code) or proportional to ``sizes``
    (largest remainder either way)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if total < 0 or len(sizes) == 0:
        raise ValueError(f"cannot split {total} images over {len(sizes)} clusters")
    if mode == "equal":
        weights = np.ones_like(sizes)
    elif mode == "proportional":
        if sizes.sum() <= 0:
            raise ValueError("proportional split of empty clusters")
        weights = sizes
    else:
        raise ValueError(f"SLSR.GAN.SPLIT must be 'proportional' or 'equal', got {mode!r}")
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def load_cluster_images(files, image_size, desc="images"):
    """uint8 tensor (N, 3, S, S) of the images resized to S x S (aspect not kept)."""
    out = torch.empty(len(files), 3, image_size, image_size, dtype=torch.uint8)
    for i, path in enumerate(progress_bar(files, desc=desc, unit="img")):
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB").resize((image_size, image_size), Image.BICUBIC))
        out[i] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return out


def _to_unit(batch_uint8):
    return batch_uint8.float().div_(127.5).sub_(1.0)


def _models(g):
    return (Generator(g.Z_DIM, g.IMAGE_SIZE, g.GF_DIM),
            Discriminator(g.IMAGE_SIZE, g.DF_DIM, g.D_ACTIVATION))


def train_gan(cfg, images, out_dir, seed, init_from=None, device="cpu", desc="GAN"):
    """Train one DCGAN on ``images`` (uint8 N x 3 x S x S), resumable from ``out_dir/checkpoint.pth``.

    Returns the trained generator. ``out_dir/DONE.json`` marks a finished GAN (then it is just loaded).
    """
    g = cfg.SLSR.GAN
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
        torch.manual_seed(seed)
        G, D = _models(g)
    if check_marker(out_dir, stage2_settings(cfg), "stage2"):
        G.load_state_dict(load_torch_file(os.path.join(out_dir, "G.pth")))
        return G.to(device)
    if len(images) == 0:
        raise ValueError(f"SLSR stage 2: no images to train {desc} on")
    os.makedirs(out_dir, exist_ok=True)
    G.to(device), D.to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=g.LR, betas=(g.BETA1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=g.LR, betas=(g.BETA1, 0.999))
    batch = min(g.BATCH_SIZE, len(images))
    per_epoch = len(images) // batch
    total = g.EPOCHS * per_epoch if g.MAX_ITERS <= 0 else min(g.EPOCHS * per_epoch, g.MAX_ITERS)
    epoch, it, history = 0, 0, []
    ckpt = os.path.join(out_dir, "checkpoint.pth")
    if os.path.isfile(ckpt):
        state = load_torch_file(ckpt)
        G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
        opt_g.load_state_dict(state["opt_g"]), opt_d.load_state_dict(state["opt_d"])
        epoch, it, history = state["epoch"], state["iter"], state["history"]
        logger.info("SLSR stage 2: %s resumed at epoch %d (iteration %d)", desc, epoch, it)
    elif init_from is not None:
        G.load_state_dict(init_from[0]), D.load_state_dict(init_from[1])
    ones = torch.ones(batch, 1, device=device)
    zeros = torch.zeros(batch, 1, device=device)
    bar = progress_bar(total=total, desc=desc, unit="it")
    bar.update(it)
    G.train(), D.train()
    while it < total:
        rng = torch.Generator().manual_seed(seed * 100003 + epoch)  # an epoch's randomness: resume == no stop
        perm = torch.randperm(len(images), generator=rng)
        sums = defaultdict(float)
        steps = 0
        for b in range(per_epoch):
            if it >= total:
                break
            real = _to_unit(images[perm[b * batch:(b + 1) * batch]]).to(device)
            z = sample_z(batch, g.Z_DIM, rng).to(device)
            fake = G(z)
            loss_d = (F.binary_cross_entropy_with_logits(D.logits(real), ones)
                      + F.binary_cross_entropy_with_logits(D.logits(fake.detach()), zeros))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            for s in range(g.G_STEPS):
                if s > 0:
                    fake = G(z)
                loss_g = F.binary_cross_entropy_with_logits(D.logits(fake), ones)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
            sums["loss_d"] += loss_d.item()
            sums["loss_g"] += loss_g.item()
            steps += 1
            it += 1
            bar.update(1)
            bar.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}", epoch=epoch)
        epoch += 1
        history.append({"epoch": epoch, "iter": it, **{k: v / max(steps, 1) for k, v in sums.items()}})
        state = {"G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
                 "opt_d": opt_d.state_dict(), "epoch": epoch, "iter": it, "history": history}
        atomic_save(ckpt, lambda f: torch.save(state, f))
    bar.close()
    atomic_save(os.path.join(out_dir, "G.pth"), lambda f: torch.save(G.state_dict(), f))
    atomic_save(os.path.join(out_dir, "D.pth"), lambda f: torch.save(D.state_dict(), f))
    write_marker(out_dir, stage2_settings(cfg), iterations=it, history=history)
    logger.info("SLSR stage 2: %s trained, %d iterations, last epoch %s", desc, it, history[-1] if history else {})
    return G


@torch.no_grad()
def generate(G, n, z_dim, seed, batch=256, device="cpu"):
    """``n`` images as uint8 (n, S, S, 3), in BN eval mode (running statistics)."""
    G.eval()
    rng = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, batch):
        z = sample_z(min(batch, n - start), z_dim, rng).to(device)
        x = G(z).clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
        out.append(x.permute(0, 2, 3, 1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, G.image_size, G.image_size, 3), np.uint8)


def _save_grid(images, path):
    from torchvision.utils import make_grid

    t = torch.from_numpy(images).permute(0, 3, 1, 2)
    nrow = max(1, int(math.ceil(math.sqrt(len(t)))))
    grid = make_grid(t, nrow=nrow, padding=2).permute(1, 2, 0).numpy()
    atomic_save(path, lambda f: Image.fromarray(grid).save(f, format="PNG"))


def _read_assignments(path):
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise FileNotFoundError(f"SLSR stage 2 needs stage 1's {path}; run stage 1 first") from None
    return [(r["file_name"], int(r["cluster"])) for r in rows]


def run_stage2(cfg, force=False):
    """Run stage 2 unless complete; returns the path of ``manifest.json``."""
    paths = stage_paths(cfg)
    out = paths.stage2
    settings = stage2_settings(cfg)
    if not paths.owns("stage2"):  # another run's GAN images: they must belong to the clusters this run uses
        if paths.stage2_from != paths.stage1_from:
            raise ValueError(f"SLSR.GAN.FROM_RUN ({cfg.SLSR.GAN.FROM_RUN}) needs SLSR.CLUSTER.FROM_RUN set to the "
                             f"same run (got {cfg.SLSR.CLUSTER.FROM_RUN!r}): its images belong to its clusters")
        check_borrowed(out, settings, "stage2", "SLSR.GAN.FROM_RUN")
        return paths.manifest
    if stage_done(out, settings, "stage2", force):
        return paths.manifest
    g = cfg.SLSR.GAN
    device = cfg.MODEL.DEVICE
    rows = _read_assignments(os.path.join(paths.stage1, "assignments.csv"))
    k = cfg.SLSR.NUM_CLUSTERS
    files = [[f for f, c in rows if c == i] for i in range(k)]
    init = None
    if g.INIT_FROM_ALL:
        all_images = load_cluster_images([f for f, _ in rows], g.IMAGE_SIZE, desc="GAN images (all)")
        G_all = train_gan(cfg, all_images, os.path.join(out, "gan_all"), g.SEED + 999, device=device, desc="GAN all")
        D_all = load_torch_file(os.path.join(out, "gan_all", "D.pth"))
        init = (G_all.state_dict(), D_all)
        del all_images
    counts = split_counts([len(f) for f in files], g.NUM_GENERATED, g.SPLIT)
    img_dir = os.path.join(out, "images")
    os.makedirs(img_dir, exist_ok=True)
    entries = []
    for c in range(k):
        gan_dir = os.path.join(out, f"gan_c{c}")
        if not check_marker(gan_dir, settings, "stage2"):
            images = load_cluster_images(files[c], g.IMAGE_SIZE, desc=f"GAN images (cluster {c})")
        else:
            images = None
        G = train_gan(cfg, images, gan_dir, g.SEED + c, init_from=init, device=device,
                      desc=f"GAN cluster {c}/{k}")
        gen = generate(G, counts[c], g.Z_DIM, g.SEED * 7919 + c, device=device)
        for i, arr in enumerate(progress_bar(gen, desc=f"writing cluster {c}", unit="img")):
            name = f"gan_{c}_{i:06d}.jpg"
            path = os.path.join(img_dir, name)
            atomic_save(path, lambda f, a=arr: Image.fromarray(a).save(f, format="JPEG", quality=95))
            entries.append({"file_name": os.path.join("images", name), "cluster": c})
        grid = generate(G, g.GRID_SIZE, g.Z_DIM, g.SEED * 7919 + 10007 + c, device=device)
        if len(grid):
            _save_grid(grid, os.path.join(out, f"samples_cluster{c}.png"))
    manifest = {"num_clusters": k, "image_size": g.IMAGE_SIZE, "counts": counts,
                "cluster_sizes": [len(f) for f in files], "images": entries}
    atomic_write_json(paths.manifest, manifest)
    write_marker(out, settings, counts=counts)
    logger.info("SLSR stage 2: %d generated images (%s per cluster) in %s", len(entries), counts, img_dir)
    return paths.manifest
