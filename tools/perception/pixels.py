"""Any image array as the contiguous H×W×3 uint8 BGR frame the models take."""

from __future__ import annotations

import numpy as np


def to_bgr_uint8(frame: np.ndarray) -> np.ndarray:
    """``frame`` as a contiguous H×W×3 uint8 BGR array.

    Takes grey (H×W or H×W×1), BGR and BGRA (alpha dropped); uint8, uint16 (full range), bool,
    other integers (clipped) and floats (0..1 scaled to 0..255 when the maximum is at most 1,
    else clipped; NaN as 0). Other shapes raise ValueError, non-arrays TypeError.
    """
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"a frame is a numpy array, not {type(frame).__name__}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise ValueError(f"a frame is H×W, H×W×1, H×W×3 or H×W×4, not of shape {frame.shape}")
    if frame.dtype == np.uint8:
        image = frame
    elif frame.dtype == np.bool_:
        image = frame.astype(np.uint8) * 255
    elif frame.dtype == np.uint16:
        image = (frame // 257).astype(np.uint8)
    elif np.issubdtype(frame.dtype, np.floating):
        values = np.nan_to_num(frame.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        image = np.clip(values, 0, 255).astype(np.uint8)
    elif np.issubdtype(frame.dtype, np.integer):
        image = np.clip(frame, 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"a frame of type {frame.dtype} cannot be read")
    if image.ndim == 2:
        image = np.repeat(image[:, :, np.newaxis], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])
