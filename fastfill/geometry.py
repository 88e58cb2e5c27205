"""Warping an image by a 3x3 transform (OpenCV), shared by the video's propagation and the held
fill that moves with the scene (:class:`fastfill.inpainter.FillHold`), and moving points by one
(the video's motion estimate and propagation). OpenCV comes with the video extra; callers pass the
module in."""

import numpy as np


def warp(cv2, image: np.ndarray, m: np.ndarray, size: tuple[int, int], border,
         interpolation=None) -> np.ndarray:
    """``image`` sampled (bilinearly unless ``interpolation``) at ``m``^-1 of each output pixel
    (an affine ``m`` takes warpAffine, about twice as fast); ``size`` is (width, height)."""
    flags = cv2.INTER_LINEAR if interpolation is None else interpolation
    if abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12:
        return cv2.warpAffine(image, m[:2] / m[2, 2], size, flags=flags, borderMode=border,
                              borderValue=0)
    return cv2.warpPerspective(image, m, size, flags=flags, borderMode=border, borderValue=0)


def transform_points(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The 3x3 ``m`` applied to points (N, 2) x, y: (N, 2) float64."""
    q = (m @ np.c_[p, np.ones(len(p))].T).T
    return q[:, :2] / q[:, 2:]
