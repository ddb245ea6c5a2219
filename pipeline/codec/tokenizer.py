"""VAR-style tokenizer: CNN encoder (stride 16) → multi-scale residual VQ per latent tile → CNN decoder.

Shapes: frames `x_BChw` float in [0, 1]; latent `f_BCHW` (H = ceil(h/16)); a frame's tokens are
`idx_k` = list over scales of LongTensor (B, Hk, Wk) (the tiles' token blocks stitched, see tiles.py).
The quantizer's inference path (`encode_tokens` / `tokens_to_fhat`) runs in float64 so tokens and
decoded latents do not depend on batch size or thread count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.codec.config import CodecConfig
from pipeline.codec.tiles import TileGrid, latent_size, map_size


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.gelu(self.c1(F.gelu(x))))


class Encoder(nn.Module):
    """x_BChw in [0,1] (h, w multiples of the stride) → f_BCHW latent."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(cfg.enc_channels):
            layers.append(nn.Conv2d(c_in, c, 4, stride=2, padding=1))
            if i >= 1:
                layers.append(ResBlock(c))
            else:
                layers.append(nn.GELU())
            c_in = c
        layers += [nn.GELU(), nn.Conv2d(c_in, cfg.latent_dim, 1)]
        self.net = nn.Sequential(*layers)
        # linear patch transform (PCA-initialised in training) + the CNN's correction
        self.linear = nn.Conv2d(3, cfg.latent_dim, cfg.stride, stride=cfg.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x - 0.5) + self.net(x * 2.0 - 1.0)


class Decoder(nn.Module):
    """f_BCHW latent → x_BChw (unclamped, ~[0,1]) at 16× the size."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        chans = list(reversed(cfg.enc_channels))
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_dim, chans[0], 3, padding=1)]
        for i, c in enumerate(chans):
            c_out = chans[i + 1] if i + 1 < len(chans) else chans[-1]
            if i < len(chans) - 1:
                layers.append(ResBlock(c))
            else:
                layers.append(nn.GELU())
            layers += [nn.Conv2d(c, c_out * 4, 3, padding=1), nn.PixelShuffle(2)]
        layers += [nn.GELU(), nn.Conv2d(chans[-1], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.linear = nn.ConvTranspose2d(cfg.latent_dim, 3, cfg.stride, stride=cfg.stride)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f) + 0.5 + self.net(f) * 0.5


class Phi(nn.Module):
    """VAR φ refinement: h ← (1 − r)·h + r·conv(h)."""

    def __init__(self, c: int, ratio: float):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.ratio = ratio
        nn.init.dirac_(self.conv.weight)  # start as the identity: subtract exactly what was quantized
        nn.init.zeros_(self.conv.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + self.conv(h) * self.ratio


def _down(f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(f.shape[-2:]) == size:
        return f
    return F.interpolate(f, size=size, mode="area")


def _up(z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(z.shape[-2:]) == size:
        return z
    return F.interpolate(z, size=size, mode="bilinear", align_corners=False)


class MultiScaleQuantizer(nn.Module):
    """Multi-scale residual VQ over same-size tiles f_NCthw with one shared codebook."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.codebook = nn.Embedding(cfg.codebook_size, cfg.latent_dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size)
        self.phis = nn.ModuleList(Phi(cfg.latent_dim, cfg.phi_ratio) for _ in range(cfg.phi_count))
        self.last_residuals: list[torch.Tensor] = []  # training: residual vectors for dead-code reset

    def phi_for(self, k: int) -> Phi:
        n = self.cfg.n_scales
        j = 0 if n == 1 else round(k / (n - 1) * (len(self.phis) - 1))
        return self.phis[j]

    def sizes(self, th: int, tw: int) -> list[tuple[int, int]]:
        t = self.cfg.tile
        return [(map_size(s, th, t), map_size(s, tw, t)) for s in self.cfg.scales]

    def lookup(self, r_NCxy: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Nearest code (ℓ2) for every vector; r (N, C, h, w) → idx (N, h, w)."""
        n, c, h, w = r_NCxy.shape
        r = r_NCxy.permute(0, 2, 3, 1).reshape(-1, c)
        d = (r * r).sum(1, keepdim=True) - 2.0 * r @ codebook.t() + (codebook * codebook).sum(1)[None]
        return d.argmin(1).view(n, h, w)

    def forward(
        self, f: torch.Tensor, n_used: int | None = None, collect: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Training pass on tiles f (N, C, th, tw): (f_hat straight-through, idx per scale, vq loss).

        n_used < N keeps only the first n_used scales in f_hat (quantize dropout).
        """
        th, tw = f.shape[-2:]
        cb = self.codebook.weight
        f_rest = f.detach().clone()
        f_hat = torch.zeros_like(f)
        f_hat_used = None
        idxs = []
        self.last_residuals = []
        n_used = self.cfg.n_scales if n_used is None else n_used
        for k, (hk, wk) in enumerate(self.sizes(th, tw)):
            r = _down(f_rest, (hk, wk))
            with torch.no_grad():
                idx = self.lookup(r, cb)
            if collect:
                self.last_residuals.append(r.permute(0, 2, 3, 1).reshape(-1, r.shape[1]).detach())
            z = self.codebook(idx).permute(0, 3, 1, 2)
            h = self.phi_for(k)(_up(z, (th, tw)))
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            idxs.append(idx)
            if k + 1 == n_used:
                f_hat_used = f_hat
        loss = F.mse_loss(f_hat, f.detach()) + 0.25 * F.mse_loss(f_hat.detach(), f)
        assert f_hat_used is not None
        f_st = f + (f_hat_used - f).detach() + (f_hat_used - f_hat_used.detach())
        return f_st, idxs, loss

    # ---- deterministic inference path (float64) -------------------------------------------

    def _params64(self) -> tuple[torch.Tensor, list[nn.Module]]:
        cache = getattr(self, "_cache64", None)
        if cache is None:
            cb = self.codebook.weight.detach().double()
            phis = []
            for p in self.phis:
                q = Phi(self.cfg.latent_dim, p.ratio).double()
                q.load_state_dict({k: v.double() for k, v in p.state_dict().items()})
                q.requires_grad_(False)
                phis.append(q)
            cache = (cb, phis)
            object.__setattr__(self, "_cache64", cache)
        return cache

    def clear_cache(self) -> None:
        if hasattr(self, "_cache64"):
            object.__delattr__(self, "_cache64")

    def _phi64(self, k: int) -> nn.Module:
        n = self.cfg.n_scales
        j = 0 if n == 1 else round(k / (n - 1) * (len(self.phis) - 1))
        return self._params64()[1][j]

    @torch.no_grad()
    def quantize_tiles64(self, f: torch.Tensor) -> list[torch.Tensor]:
        """Tokens of same-size tiles f (N, C, th, tw), computed in float64: list of (N, hk, wk)."""
        cb, _ = self._params64()
        th, tw = f.shape[-2:]
        f_rest = f.double()
        out = []
        for k, (hk, wk) in enumerate(self.sizes(th, tw)):
            r = _down(f_rest, (hk, wk))
            idx = self.lookup(r, cb)
            z = cb[idx].permute(0, 3, 1, 2)
            f_rest = f_rest - self._phi64(k)(_up(z, (th, tw)))
            out.append(idx)
        return out

    @torch.no_grad()
    def scale_contrib64(self, idx: torch.Tensor, k: int, th: int, tw: int) -> torch.Tensor:
        """φ_k(up(codebook[idx])) for tiles idx (N, hk, wk) → (N, C, th, tw) float64."""
        cb, _ = self._params64()
        z = cb[idx].permute(0, 3, 1, 2)
        return self._phi64(k)(_up(z, (th, tw)))


def group_tiles(grid: TileGrid) -> dict[tuple[int, int], list[int]]:
    """Tile indices (raster order) grouped by tile size (th, tw)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (_, _, th, tw) in enumerate(grid.tiles()):
        groups.setdefault((th, tw), []).append(i)
    return groups


def cut_tiles(f_CHW: torch.Tensor, grid: TileGrid, ids: list[int]) -> torch.Tensor:
    """Stack the latent tiles `ids` of one frame's latent (C, H, W) → (N, C, th, tw)."""
    tiles = grid.tiles()
    return torch.stack([f_CHW[:, y : y + th, x : x + tw] for (y, x, th, tw) in (tiles[i] for i in ids)])


def blocks_to_grid(blocks: list[torch.Tensor], grid: TileGrid, k: int) -> torch.Tensor:
    """Tile token blocks (raster order, each (hk, wk)) → the frame's grid (Hk, Wk)."""
    hk, wk = grid.grid_size(k)
    out = torch.empty((hk, wk), dtype=torch.long)
    for (y, x, h, w), b in zip(grid.token_blocks(k), blocks):
        out[y : y + h, x : x + w] = b
    return out


def grid_to_blocks(idx_HW: torch.Tensor, grid: TileGrid, k: int) -> list[torch.Tensor]:
    """The frame's grid (Hk, Wk) → tile token blocks in raster order."""
    return [idx_HW[y : y + h, x : x + w] for (y, x, h, w) in grid.token_blocks(k)]


class Tokenizer(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant = MultiScaleQuantizer(cfg)

    def grid_for(self, height: int, width: int) -> TileGrid:
        lh, lw = latent_size(height, width, self.cfg.stride)
        return TileGrid(lh, lw, self.cfg.tile, self.cfg.scales)

    @staticmethod
    def pad(x_BChw: torch.Tensor, stride: int) -> torch.Tensor:
        h, w = x_BChw.shape[-2:]
        ph, pw = (-h) % stride, (-w) % stride
        if ph or pw:
            x_BChw = F.pad(x_BChw, (0, pw, 0, ph), mode="replicate")
        return x_BChw

    @torch.no_grad()
    def encode_frame(self, x_1Chw: torch.Tensor) -> list[torch.Tensor]:
        """One frame (1, 3, h, w) in [0,1] → tokens: list over scales of (Hk, Wk) long."""
        h, w = x_1Chw.shape[-2:]
        grid = self.grid_for(h, w)
        f = self.encoder(self.pad(x_1Chw, self.cfg.stride))[0]
        blocks: list[list[torch.Tensor | None]] = [[None] * grid.n_tiles for _ in self.cfg.scales]
        for (_th, _tw), ids in group_tiles(grid).items():
            toks = self.quant.quantize_tiles64(cut_tiles(f, grid, ids))
            for k, t in enumerate(toks):
                for j, i in enumerate(ids):
                    blocks[k][i] = t[j]
        return [blocks_to_grid(b, grid, k) for k, b in enumerate(blocks)]  # type: ignore[arg-type]

    @torch.no_grad()
    def tokens_to_latent(self, idx_k: list[torch.Tensor], grid: TileGrid) -> torch.Tensor:
        """Stitched f_hat (C, H', W') float64 from the first len(idx_k) scales of one frame."""
        f = torch.zeros((self.cfg.latent_dim, grid.lh, grid.lw), dtype=torch.float64)
        tiles = grid.tiles()
        for (th, tw), ids in group_tiles(grid).items():
            acc = None
            for k, idx in enumerate(idx_k):
                bl = grid_to_blocks(idx, grid, k)
                h = self.quant.scale_contrib64(torch.stack([bl[i] for i in ids]), k, th, tw)
                acc = h if acc is None else acc + h
            if acc is None:
                continue
            for j, i in enumerate(ids):
                y, x, _, _ = tiles[i]
                f[:, y : y + th, x : x + tw] = acc[j]
        return f

    @torch.no_grad()
    def decode_latent(self, f_CHW: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """f_hat (C, H', W') → uint8 frame (h, w, 3)."""
        x = self.decoder(f_CHW.float()[None])[0, :, :height, :width]
        return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0)
