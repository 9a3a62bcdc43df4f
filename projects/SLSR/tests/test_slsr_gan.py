"""The SLSR DCGAN (§4.1): output shapes, value ranges and exact parameter counts; the GAN split."""

import pytest
import torch

from reid2.projects.slsr.dcgan import Discriminator, Generator, sample_z
from reid2.projects.slsr.generation import split_counts


def _count(m):
    return sum(p.numel() for p in m.parameters())


def _deconv(cin, cout):  # 5x5 kernel + bias
    return cin * cout * 25 + cout


def _bn(c):
    return 2 * c


def test_generator_paper_shape_and_parameters():
    G = Generator()  # z 100, 128x128, gf_dim 64
    z = sample_z(2, 100, torch.Generator().manual_seed(0))
    assert z.min() >= -1 and z.max() <= 1
    x = G(z)
    assert x.shape == (2, 3, 128, 128)
    assert x.min() >= -1 and x.max() <= 1  # tanh
    expected = ((100 * 8 * 8 * 512 + 8 * 8 * 512) + _bn(512)          # linear → 8x8x512, BN
                + _deconv(512, 256) + _bn(256) + _deconv(256, 128) + _bn(128)
                + _deconv(128, 64) + _bn(64) + _deconv(64, 3))       # → 128x128x3, tanh
    assert expected == 7_617_539
    assert _count(G) == expected
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == 4 and all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in convs)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_discriminator_paper_shape_and_parameters(activation):
    D = Discriminator(activation=activation)
    p = D(torch.rand(2, 3, 128, 128) * 2 - 1)
    assert p.shape == (2, 1) and ((p > 0) & (p < 1)).all()  # sigmoid
    expected = (_deconv(3, 64) + _bn(64) + _deconv(64, 128) + _bn(128) + _deconv(128, 256) + _bn(256)
                + _deconv(256, 512) + _bn(512) + (8 * 8 * 512 + 1))   # four 5x5/2 convs + BN, linear → 1
    assert expected == 4_341_249
    assert _count(D) == expected
    acts = [m for m in D.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.LeakyReLU))]
    assert len(acts) == 4 and all(isinstance(a, torch.nn.LeakyReLU) == (activation == "leaky_relu") for a in acts)
    with pytest.raises(ValueError, match="D_ACTIVATION"):
        Discriminator(activation="tanh")


def test_small_cpu_variant():
    G, D = Generator(100, 32, 8), Discriminator(32, 8)
    x = G(sample_z(3))
    assert x.shape == (3, 3, 32, 32) and D(x).shape == (3, 1)
    with pytest.raises(ValueError, match="power of 2"):
        Generator(image_size=48)


def test_split_counts():
    assert split_counts([40, 49, 20], 30, "proportional") == [11, 13, 6]  # 11.01, 13.49, 5.50 → largest remainders
    assert sum(split_counts([5, 1, 1000], 12000, "proportional")) == 12000
    assert split_counts([40, 49, 20], 10) == [4, 3, 3]  # equal: the default
    with pytest.raises(ValueError, match="SPLIT"):
        split_counts([1, 2], 3, "random")


def test_gan_training_resumes_exactly_after_a_crash(tmp_path, monkeypatch):
    """A crash between epochs loses nothing: the resumed GAN equals an uninterrupted one bit for bit."""
    import reid2.projects.slsr.generation as generation
    from reid2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_list(["SLSR.GAN.IMAGE_SIZE", "16", "SLSR.GAN.GF_DIM", "4", "SLSR.GAN.DF_DIM", "4",
                         "SLSR.GAN.BATCH_SIZE", "4", "SLSR.GAN.EPOCHS", "3", "SLSR.GAN.G_STEPS", "2"])
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)  # 2 iterations per epoch
    ref = generation.train_gan(cfg, images, str(tmp_path / "ref"), seed=5)

    real_save, saves = generation.atomic_save, []

    def crash_on_second_checkpoint(path, fn):
        if path.endswith("checkpoint.pth"):
            saves.append(path)
            if len(saves) == 2:
                raise KeyboardInterrupt("simulated crash")
        return real_save(path, fn)

    monkeypatch.setattr(generation, "atomic_save", crash_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        generation.train_gan(cfg, images, str(tmp_path / "run"), seed=5)
    monkeypatch.undo()
    state = torch.load(tmp_path / "run" / "checkpoint.pth")
    assert (state["epoch"], state["iter"]) == (1, 2)
    resumed = generation.train_gan(cfg, images, str(tmp_path / "run"), seed=5)
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    # finished: loaded from G.pth, not retrained
    again = generation.train_gan(cfg, None, str(tmp_path / "run"), seed=5)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), again.state_dict().values()))
