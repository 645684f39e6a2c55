"""Pictures of detector outputs: colormaps, heatmap overlays with the defect region
outlined, and PNG encoding (8-bit pictures, 16-bit raw maps)."""

from iadbench.visual.colormap import colorize
from iadbench.visual.overlay import OUTLINE_RGB, outline_mask, overlay, resize_map
from iadbench.visual.png import png_bytes, read_map_png, write_map_png

__all__ = [
    "OUTLINE_RGB",
    "colorize",
    "outline_mask",
    "overlay",
    "png_bytes",
    "read_map_png",
    "resize_map",
    "write_map_png",
]
