"""Small PNG images for image inputs, and the colour of one a job produced."""

from __future__ import annotations

import io

from PIL import Image


def solid_png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(out, format="PNG")
    return out.getvalue()


def first_pixel(png: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(png)) as image:
        pixel = image.convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return (int(pixel[0]), int(pixel[1]), int(pixel[2]))
