"""Image helpers for the backends and the tools: loading, frames to images, the pixel budget, encoding."""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from tools.vision.base import VisionError

MAX_IMAGE_PIXELS = 100_000_000
"""The largest image :func:`load_image` decodes, in pixels (width × height): 100 megapixels, about
300 MB as RGB. A larger one, a decompression bomb included, is refused before it is decoded."""


class ImageTooLarge(VisionError):
    """An image refused for its size (over :data:`MAX_IMAGE_PIXELS`, or a decompression bomb)."""


def load_image(source: str | Path | bytes) -> Image.Image:
    """Open an image from a path or raw bytes as RGB, with a clear error when it can't be read
    (or has more than :data:`MAX_IMAGE_PIXELS` pixels)."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        with warnings.catch_warnings():
            # PIL warns of images over its own limit; the size is checked here, in words.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if isinstance(source, bytes):
                image = Image.open(io.BytesIO(source))
            else:
                path = Path(source)
                if not path.is_file():
                    raise VisionError(f"image not found: {path}")
                image = Image.open(path)
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            image.close()
            raise ImageTooLarge(
                f"image {name} is {width}×{height} ({width * height / 1e6:.0f} megapixels); "
                f"scenewatch reads images of up to {_megapixels()}: shrink it first"
            )
        image.load()
    except Image.DecompressionBombError:
        raise ImageTooLarge(
            f"image {name} is too large to read (more than {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} "
            f"megapixels); scenewatch reads images of up to {_megapixels()}: shrink it first"
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise VisionError(f"cannot read image {name}: {exc}") from exc
    return image.convert("RGB")


def _megapixels() -> str:
    return f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels"


def fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """Shrink an image so that its longest side is at most ``max_side`` (never enlarges)."""
    width, height = image.size
    scale = max_side / max(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def to_data_uri(image: Image.Image, quality: int = 90) -> str:
    """JPEG-encode an image as a base64 data URI (for OpenAI-compatible servers)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def frame_to_image(frame: np.ndarray, max_side: int) -> Image.Image:
    """A BGR frame as an RGB PIL image whose longest side is at most ``max_side`` (area averaging)."""
    height, width = frame.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
