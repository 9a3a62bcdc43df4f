"""The DCGAN of SLSR §4.1 (Radford et al.), as in the paper and the authors' TensorFlow code.

G: z ∈ U[-1, 1]^100 → linear → 8x8x512 → BN → ReLU → four 5x5 stride-2 transposed convolutions
   (512 → 256 → 128 → 64 → 3 channels, 16 → 32 → 64 → 128 px), BN + ReLU after the first three,
   tanh after the last → 128x128x3 in [-1, 1].
D: 128x128x3 → four 5x5 stride-2 convolutions (3 → 64 → 128 → 256 → 512 channels, 64 → 8 px), each
   followed by BN and ReLU (the paper's text; ``activation="leaky_relu"`` gives DCGAN's / the public
   code's leaky ReLU, slope 0.2) → flatten → linear → sigmoid.

TF's "SAME" 5x5 stride-2 layers are ``Conv2d(k=5, s=2, p=2)`` and ``ConvTranspose2d(k=5, s=2, p=2,
output_padding=1)``. Weights N(0, 0.02), biases 0. ``image_size`` (a power of 2, >= 16) and the widths
``gf_dim`` / ``df_dim`` default to the paper's 128 / 64 / 64; the linear layers follow (S/16)² x 8·dim.
The generator's output layer has no BN (DCGAN: BN on G's output destabilises training).
"""
import torch
from torch import nn

__all__ = ["Generator", "Discriminator", "init_dcgan_weights", "sample_z"]


def _check_size(image_size):
    if image_size < 16 or image_size & (image_size - 1):
        raise ValueError(f"SLSR.GAN.IMAGE_SIZE must be a power of 2 >= 16, got {image_size}")
    return image_size // 16


def init_dcgan_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def sample_z(n: int, z_dim: int = 100, generator=None, device="cpu") -> torch.Tensor:
    """z ~ U[-1, 1]^z_dim."""
    return torch.rand(n, z_dim, generator=generator, device=device) * 2.0 - 1.0


class Generator(nn.Module):
    def __init__(self, z_dim: int = 100, image_size: int = 128, gf_dim: int = 64):
        super().__init__()
        self.base = _check_size(image_size)
        self.z_dim, self.image_size, self.top = z_dim, image_size, gf_dim * 8
        self.project = nn.Linear(z_dim, self.base * self.base * self.top)
        self.bn0 = nn.BatchNorm2d(self.top)
        layers, ch = [], self.top
        for i in range(4):
            out = 3 if i == 3 else ch // 2
            layers.append(nn.ConvTranspose2d(ch, out, 5, stride=2, padding=2, output_padding=1))
            if i < 3:
                layers += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        layers.append(nn.Tanh())
        self.deconvs = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(-1, self.top, self.base, self.base)
        return self.deconvs(torch.relu(self.bn0(x)))


class Discriminator(nn.Module):
    def __init__(self, image_size: int = 128, df_dim: int = 64, activation: str = "relu"):
        super().__init__()
        base = _check_size(image_size)
        if activation == "relu":
            act = lambda: nn.ReLU(inplace=True)
        elif activation == "leaky_relu":
            act = lambda: nn.LeakyReLU(0.2, inplace=True)
        else:
            raise ValueError(f"SLSR.GAN.D_ACTIVATION must be 'relu' or 'leaky_relu', got {activation!r}")
        layers, ch = [], 3
        for i in range(4):
            out = df_dim * 2 ** i
            layers += [nn.Conv2d(ch, out, 5, stride=2, padding=2), nn.BatchNorm2d(out), act()]
            ch = out
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(base * base * ch, 1)
        init_dcgan_weights(self)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """D(x) ∈ (0, 1): the probability that x is a real image."""
        return torch.sigmoid(self.logits(x))
