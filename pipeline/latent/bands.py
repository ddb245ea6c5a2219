"""The latent grids of one GOP: sub-bands of a 3-D (time × space) wavelet pyramid, and their layers.

Planes: 0 = Y (H×W, J spatial levels), 1 = Cb and 2 = Cr (4:2:0, ceil(H/2)×ceil(W/2), J-1 levels, so
every chroma band has the size of the luma band one level finer). Time: LeGall 5/3 over the GOP's
frames (index 0 = the low frame). Orientation o: 0 = LL, 1 = low rows/high columns, 2 = high rows/low
columns, 3 = HH.

Layer 0 holds the LL bands; layer m >= 1 the detail bands of luma level J+1-m and chroma level J-m.
Cutting the stream after layer m drops every finer band: a lower-resolution picture of every frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from pipeline.latent.dwt import low_size


@dataclass(frozen=True)
class Band:
    plane: int
    orient: int  # 0 LL, 1 LH, 2 HL, 3 HH
    level: int  # spatial level j (LL: the plane's J)
    layer: int  # 0-based
    rows: tuple[int, int]
    cols: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]


@dataclass(frozen=True)
class Geometry:
    frames: int
    height: int
    width: int
    levels: int  # J (luma spatial levels); layers = J + 1

    @property
    def n_layers(self) -> int:
        return self.levels + 1

    def plane_shape(self, p: int) -> tuple[int, int]:
        return (self.height, self.width) if p == 0 else ((self.height + 1) // 2, (self.width + 1) // 2)

    def plane_levels(self, p: int) -> int:
        return self.levels if p == 0 else self.levels - 1

    @cached_property
    def bands(self) -> list[Band]:
        """All bands in coding order: layer, plane, orientation."""
        out: list[Band] = []
        for m in range(self.n_layers):
            for p in range(3):
                h, w = self.plane_shape(p)
                jp = self.plane_levels(p)
                if m == 0:
                    out.append(Band(p, 0, jp, 0, (0, low_size(h, jp)), (0, low_size(w, jp))))
                    continue
                j = jp + 1 - m
                if j < 1:
                    continue
                h0, h1 = low_size(h, j), low_size(h, j - 1)
                w0, w1 = low_size(w, j), low_size(w, j - 1)
                out.append(Band(p, 1, j, m, (0, h0), (w0, w1)))
                out.append(Band(p, 2, j, m, (h0, h1), (0, w0)))
                out.append(Band(p, 3, j, m, (h0, h1), (w0, w1)))
        return out

    def layer_bands(self, m: int) -> list[Band]:
        return [b for b in self.bands if b.layer == m]

    def parent(self, b: Band) -> Band | None:
        """The same plane's band one level coarser (same orientation; LL above the coarsest details)."""
        if b.orient == 0:
            return None
        for c in self.bands:
            if c.plane == b.plane and c.layer == b.layer - 1 and (c.orient == b.orient or c.orient == 0):
                return c
        return None

    def find(self, plane: int, orient: int, layer: int) -> Band | None:
        for c in self.bands:
            if c.plane == plane and c.orient == orient and c.layer == layer:
                return c
        return None
