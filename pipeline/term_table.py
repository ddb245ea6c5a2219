"""Terminal tables that fit the terminal by dropping columns, never by cutting numbers or ids (issue 16.7).

    cols = [Column("video_id", "video", ids, keep=True),          # never dropped, never wrapped
            Column("source", "source", names, keep=True, flex=True),  # may wrap (fold) when narrow
            Column("frames", "frames", frames, justify="right", priority=2), ...]
    print_columns(cols, title="...", console=Console())   # drops the lowest-priority columns that do not fit

The width is the console's (`rich.console.Console().width`: the terminal's, else `COLUMNS`, else 80). A
table lists the columns it left out below itself, so the user knows to widen the terminal or export.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FLEX_MIN = 12  # a wrappable column (file names, notes) is given at least this many characters


@dataclass
class Column:
    """One column: `cells` are the rendered strings. `keep`: never dropped; `flex`: may wrap (fold) down to
    `FLEX_MIN` characters, else the column is never wrapped or cut; `priority`: higher is dropped later."""

    key: str
    header: str
    cells: list[str] = field(default_factory=list)
    justify: str = "left"
    keep: bool = False
    flex: bool = False
    priority: int = 0

    @property
    def natural(self) -> int:
        return max([len(self.header), *(len(c) for c in self.cells)])

    @property
    def least(self) -> int:
        return min(self.natural, max(FLEX_MIN, len(self.header))) if self.flex else self.natural


def table_width(widths: list[int]) -> int:
    """Characters a rich `Table` (default box, padding 1 each side, outer edge) takes for these column widths."""
    return sum(widths) + 3 * len(widths) + 1


def fit_columns(cols: list[Column], width: int) -> tuple[list[Column], list[Column]]:
    """(kept, dropped): drop the droppable columns in order of priority (lowest first, the rightmost first
    among equals) until the kept ones fit in `width` (flexible columns at their least width)."""
    kept = list(cols)
    dropped: list[Column] = []
    order = sorted((c for c in cols if not c.keep), key=lambda c: (c.priority, -cols.index(c)))
    for c in order:
        if table_width([k.least for k in kept]) <= width:
            break
        kept.remove(c)
        dropped.append(c)
    return kept, dropped


def print_columns(cols: list[Column], title: str | None = None, console=None, width: int | None = None,
                  dropped_hint: str = "") -> list[str]:
    """Print `cols` as one rich table that fits the console; returns the keys of the columns left out (listed
    under the table, with `dropped_hint`, e.g. "use --csv for every column")."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    kept, dropped = fit_columns(cols, width or console.width)
    table = Table(title=title)
    for c in kept:
        table.add_column(c.header, justify=c.justify, no_wrap=not c.flex, overflow="fold" if c.flex else "ellipsis",
                         min_width=c.least)
    rows = max((len(c.cells) for c in kept), default=0)
    for i in range(rows):
        table.add_row(*(Text(c.cells[i]) for c in kept))
    console.print(table)
    if dropped:
        console.print(Text(f"(columns left out at {width or console.width} characters: "
                           f"{', '.join(c.header for c in dropped)}{'; ' + dropped_hint if dropped_hint else ''})"))
    return [c.key for c in dropped]
