"""Plain-text tables, for the terminal: pipeline traces and the comparison reports print with the same one."""

from __future__ import annotations

__all__ = ["grid"]


def grid(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns; a one-cell row is a heading printed as it is, outside the column widths."""
    full = [header, *(r for r in rows if len(r) == len(header))]
    widths = [max(len(r[i]) for r in full) for i in range(len(header))]
    lines = []
    for cells in [header, *rows]:
        padded = cells if len(cells) == 1 else [c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)
