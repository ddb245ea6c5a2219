"""Tile geometry: how a latent of H'×W' is cut into tiles and how big each tile's token map is.

A latent (H', W') is cut into tiles of `tile`×`tile`; the last tile row / column is smaller when
H' or W' is not a multiple of `tile`. A tile of (th, tw) at scale s has a token map of
(ceil(s*th/tile), ceil(s*tw/tile)). Map sizes depend only on the tile row's height and the tile
column's width, so the tokens of one scale of a whole frame form a regular grid (Hk, Wk).
"""

from __future__ import annotations

from dataclasses import dataclass


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def split_sizes(n: int, tile: int) -> list[int]:
    """Sizes of the tiles along one axis of length n >= 1."""
    sizes = [tile] * (n // tile)
    if n % tile:
        sizes.append(n % tile)
    return sizes


def map_size(s: int, t: int, tile: int) -> int:
    """Token-map side at scale s for a tile side t (<= tile)."""
    return max(1, _ceil_div(s * t, tile))


@dataclass(frozen=True)
class TileGrid:
    """Tiles of one latent (lh, lw) for a scale schedule; all positions in latent / token units."""

    lh: int
    lw: int
    tile: int
    scales: tuple[int, ...]

    @property
    def rows(self) -> list[int]:
        return split_sizes(self.lh, self.tile)

    @property
    def cols(self) -> list[int]:
        return split_sizes(self.lw, self.tile)

    @property
    def n_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    def tiles(self) -> list[tuple[int, int, int, int]]:
        """(y0, x0, th, tw) of every tile in raster order, in latent units."""
        out = []
        y = 0
        for th in self.rows:
            x = 0
            for tw in self.cols:
                out.append((y, x, th, tw))
                x += tw
            y += th
        return out

    def token_blocks(self, k: int) -> list[tuple[int, int, int, int]]:
        """(y0, x0, hk, wk) of every tile's token block at scale index k, raster order."""
        s = self.scales[k]
        out = []
        y = 0
        for th in self.rows:
            hk = map_size(s, th, self.tile)
            x = 0
            for tw in self.cols:
                wk = map_size(s, tw, self.tile)
                out.append((y, x, hk, wk))
                x += wk
            y += hk
        return out

    def grid_size(self, k: int) -> tuple[int, int]:
        """(Hk, Wk): token grid of the whole frame at scale index k."""
        s = self.scales[k]
        return (
            sum(map_size(s, t, self.tile) for t in self.rows),
            sum(map_size(s, t, self.tile) for t in self.cols),
        )

    def tokens_per_frame(self, k: int) -> int:
        h, w = self.grid_size(k)
        return h * w

    def tile_seq_lengths(self, ti: int) -> list[int]:
        """Token count of tile ti at every scale."""
        _, _, th, tw = self.tiles()[ti]
        return [map_size(s, th, self.tile) * map_size(s, tw, self.tile) for s in self.scales]


def latent_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """Latent (H', W') for a frame of height × width padded to a multiple of stride."""
    return _ceil_div(height, stride), _ceil_div(width, stride)
