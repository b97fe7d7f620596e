"""Jet images: the constituents of a jet pixelised on a 40 x 40 (eta, phi) grid.

The seed's preprocessing (seed 002 L1397, after the top-tagging images of Kasieczka et
al., arXiv:1701.08784, and the autoencoder of Finke et al., arXiv:2104.09051):

1. **centring** on the kT- (= pT-) weighted centroid of the constituents,
   eta_c = sum pT eta / sum pT, phi_c likewise (phi differences wrapped to (-pi, pi]);
2. **rotation** so that the principal axis points to 12 o'clock: the principal axis is
   the eigenvector of the largest eigenvalue of the pT-weighted covariance of the
   centred (eta, phi); it is turned onto the vertical (phi) axis of the image;
3. **flips** so that the highest-pT region lies in the lower-left quadrant: the image is
   mirrored in phi when more pT lies above the centre than below it, and in eta when more
   lies right of the centre than left of it. (The seed does not spell out how "the
   highest-pT region" is found; the half-plane sums are the robust reading of it.)
4. **pixelisation** into 40 x 40 pixels of [delta eta, delta phi] = [0.029, 0.035]
   (so eta in +-0.58 along the columns, phi in +-0.70 along the rows, row 0 at the
   bottom, i.e. ``image[row, col]`` with row = phi bin, col = eta bin); the intensity is
   the summed pT in a pixel, constituents outside the frame are dropped;
5. **normalisation** by the total pT of the jet's constituents (the sum of ptrel over
   all constituents, inside the frame or not), so an image sums to at most 1;
6. an optional **pT remapping** pT -> pT^n per pixel (seed eq. 5.5, used for dark jets;
   default n = 1, none), applied after the normalisation;
7. a **Gaussian filter** of sigma_G = 1 pixel "to reduce the sparsity" (L1397-1399),
   with zeros outside the frame (``scipy.ndimage.gaussian_filter``, mode ``constant``).

The images have float32 values in [0, 1] (a sigmoid decoder reproduces them). An image
is not invertible into constituents; :meth:`JetImage.inverse_transform` says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepgen.errors import InvalidDataError, OptionError
from hepgen.transforms.base import Transform


class JetImage(Transform):
    """JetNet particle features (N, P, 4) -> jet images (N, H, W) (see the module docstring).

    Args:
        size: (rows, columns) = (phi bins, eta bins); seed: 40 x 40.
        pixel: (delta eta, delta phi) of a pixel; seed: (0.029, 0.035).
        centre: shift to the pT-weighted centroid (step 1).
        rotate: turn the principal axis to 12 o'clock (step 2).
        flip: put the hardest half-planes at the lower left (step 3).
        power: the pixel remapping pT -> pT^power (step 6; 1: none).
        sigma: width of the Gaussian filter in pixels (step 7; 0: none).
    """

    name = "jet-image"

    def __init__(self, size=(40, 40), pixel=(0.029, 0.035), centre: bool = True, rotate: bool = True,
                 flip: bool = True, power: float = 1.0, sigma: float = 1.0):
        self.size = (int(size[0]), int(size[1]))
        self.pixel = (float(pixel[0]), float(pixel[1]))
        if min(self.size) < 1 or min(self.pixel) <= 0:
            raise OptionError(f"jet image: size {self.size} and pixel {self.pixel} must be positive")
        if power <= 0 or sigma < 0:
            raise OptionError(f"jet image: need power > 0 and sigma >= 0, got {power} and {sigma}")
        self.centre, self.rotate, self.flip = bool(centre), bool(rotate), bool(flip)
        self.power, self.sigma = float(power), float(sigma)

    def params(self) -> dict[str, Any]:
        return {"size": list(self.size), "pixel": list(self.pixel), "centre": self.centre, "rotate": self.rotate,
                "flip": self.flip, "power": self.power, "sigma": self.sigma}

    def align(self, particle_features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps 1-3: (eta, phi, pT) per constituent after centring, rotation and flips
        (padded constituents get pT 0).

        Args:
            particle_features: (N, P, 4) = (etarel, phirel, ptrel, mask).
        """
        pf = np.asarray(particle_features, dtype=np.float64)
        if pf.ndim != 3 or pf.shape[-1] != 4:
            raise InvalidDataError(f"jet image: particle features must have shape (N, P, 4), got {pf.shape}")
        mask = pf[..., 3] > 0.5
        pt = np.where(mask, pf[..., 2], 0.0)
        eta = np.where(mask, pf[..., 0], 0.0)
        phi = np.where(mask, pf[..., 1], 0.0)
        total = pt.sum(1, keepdims=True)
        safe = np.where(total > 0, total, 1.0)
        if self.centre:
            eta = eta - (pt * eta).sum(1, keepdims=True) / safe
            # the centroid of phi differences taken about the leading-particle frame, wrapped
            phi_c = (pt * phi).sum(1, keepdims=True) / safe
            phi = np.mod(phi - phi_c + np.pi, 2 * np.pi) - np.pi
        if self.rotate:
            w = pt / safe
            cee, cpp, cep = (w * eta * eta).sum(1), (w * phi * phi).sum(1), (w * eta * phi).sum(1)
            # principal axis: angle theta of the major eigenvector from the eta axis
            theta = 0.5 * np.arctan2(2 * cep, cee - cpp)
            # rotate by (pi/2 - theta) so the major axis lies along phi (12 o'clock)
            a = (np.pi / 2 - theta)[:, None]
            c, s = np.cos(a), np.sin(a)
            eta, phi = c * eta - s * phi, s * eta + c * phi
        if self.flip:
            up = (pt * (phi > 0)).sum(1) > (pt * (phi < 0)).sum(1)
            phi = np.where(up[:, None], -phi, phi)
            right = (pt * (eta > 0)).sum(1) > (pt * (eta < 0)).sum(1)
            eta = np.where(right[:, None], -eta, eta)
        return eta, phi, pt

    def transform(self, particle_features: np.ndarray) -> np.ndarray:
        """(N, P, 4) particle features -> (N, rows, cols) float32 images (steps 1-7)."""
        eta, phi, pt = self.align(particle_features)
        n = len(pt)
        rows, cols = self.size
        col = np.floor(eta / self.pixel[0] + cols / 2).astype(np.int64)
        row = np.floor(phi / self.pixel[1] + rows / 2).astype(np.int64)
        inside = (pt > 0) & (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        total = pt.sum(1)
        norm = np.where(total > 0, total, 1.0)
        jet = np.broadcast_to(np.arange(n)[:, None], pt.shape)
        images = np.zeros((n, rows, cols), np.float64)
        np.add.at(images, (jet[inside], row[inside], col[inside]), (pt / norm[:, None])[inside])
        if self.power != 1.0:
            images = np.power(images, self.power)
        if self.sigma > 0:
            from scipy.ndimage import gaussian_filter

            images = gaussian_filter(images, sigma=(0, self.sigma, self.sigma), mode="constant", cval=0.0)
        return np.clip(images, 0.0, 1.0).astype(np.float32)

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        raise OptionError("jet images cannot be turned back into constituents")


__all__ = ["JetImage"]
