"""Masks that are not files: synthetic holes (what the models are trained, validated and
calibrated on) and the text found in an image.

NumPy and Pillow only (no torch), so the runtime's tools (``fastfill quantize`` calibrates on
them) and the training package (``train`` imports them from here) share one definition. The
generators live in :mod:`fastfill.masks.synthetic`; its public names are re-exported here.
:mod:`fastfill.masks.text` finds text (``text_mask(image)``; extra ``text``: OpenCV and the
PP-OCR model are loaded only when a detector is made). Nothing here is imported by
``import fastfill``.
"""

from .synthetic import (CE_IMAGE_SIZE, CE_OVERLAP, CE_PRED_SIZE, MASKS, center_mask, freeform_mask,
                        hole_centers, make_mask_generator, mixed_mask, object_mask, rect_mask)
from .text import TextDetector, TextOptions, TextTrack, text_mask

__all__ = ["center_mask", "rect_mask", "freeform_mask", "object_mask", "mixed_mask", "MASKS",
           "make_mask_generator", "hole_centers", "CE_IMAGE_SIZE", "CE_PRED_SIZE", "CE_OVERLAP",
           "TextDetector", "TextOptions", "TextTrack", "text_mask"]
