"""Torch datasets and loaders over :class:`~training.datasets.DetectionSource`.

:class:`TrainingDataset` composes the augmentation pipeline of the official recipe (per item):

1. with probability ``hyp.mosaic`` (while mosaic is enabled): a mosaic of 4 images (of 9 with
   probability ``hyp.mosaic9``), random affine back to ``img_size``, and with probability
   ``hyp.mixup`` a mixup with a second mosaic;
2. otherwise: the image resized to a long side of ``img_size``, letterboxed to a square and
   randomly transformed (affine);
3. HSV jitter, horizontal flip with probability ``hyp.fliplr``.

Randomness comes from ``numpy.random.default_rng((seed, epoch, index))``, so an item is the
same whatever the number of workers or the order of loading, and a resumed run sees exactly the
images it would have seen. Shuffling uses a torch generator seeded with ``(seed, epoch)``.

Batches (:func:`collate`) are ``(images, targets, indices, unlabelled)``: ``images (B, 3, S, S)``
uint8 **RGB**, ``targets (N, 6)`` float32 ``image, class, cx, cy, w, h`` in input pixels,
``indices (B,)`` the source indices, ``unlabelled (B, nc)`` bool the classes whose objects may
be in the image without a box (merged sources, :mod:`training.merge`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from detector.preprocess import letterbox

from . import augment
from .config import Hyperparameters
from .datasets import DetectionSource

logger = logging.getLogger(__name__)

_EPOCH_SEED_STRIDE = 1_000_003


def labels_to_targets(labels: np.ndarray) -> np.ndarray:
    """``(n, 5)`` ``class, x1, y1, x2, y2`` -> ``(n, 5)`` ``class, cx, cy, w, h``."""
    out = np.empty_like(labels, dtype=np.float32)
    out[:, 0] = labels[:, 0]
    out[:, 1] = (labels[:, 1] + labels[:, 3]) / 2
    out[:, 2] = (labels[:, 2] + labels[:, 4]) / 2
    out[:, 3] = labels[:, 3] - labels[:, 1]
    out[:, 4] = labels[:, 4] - labels[:, 2]
    return out


def bgr_to_chw_rgb(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1)))


class TrainingDataset(Dataset):
    """Augmented training items (module docstring). Call :meth:`set_epoch` before each epoch.

    Args:
        source: the images and boxes. img_size: output side in pixels.
        hyp: augmentation settings. seed: master seed.
        augment: ``False`` gives plain letterboxed images (no randomness).
        cache_images: keep resized images in memory (fill it with :meth:`fill_cache` in the main
            process before creating workers, so they share it).
    """

    def __init__(self, source: DetectionSource, img_size: int, hyp: Hyperparameters, *,
                 seed: int = 0, augment: bool = True, cache_images: bool = False) -> None:
        self.source = source
        self.img_size = img_size
        self.hyp = hyp
        self.seed = seed
        self.augment = augment
        self.epoch = 0
        self.mosaic_enabled = augment and hyp.mosaic > 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache_images else None

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int, *, mosaic: bool = True) -> None:
        self.epoch = epoch
        self.mosaic_enabled = self.augment and mosaic and self.hyp.mosaic > 0

    def fill_cache(self) -> None:
        if self._cache is not None:
            for i in range(len(self)):
                self._resized(i)

    def _resized(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image resized to a long side of ``img_size`` with its labels (cached if enabled)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image, annotations = self.source.load(index)
        resized, ratio = augment.resize_long_side(image, self.img_size, augment=self.augment)
        labels = augment.scale_labels(annotations.labels, ratio, ratio)
        if self._cache is not None:
            self._cache[index] = (resized, labels)
        return resized, labels

    def rng_for(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))

    def load_item(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image (S, S, 3) uint8 BGR, labels (n, 5) class x1 y1 x2 y2)`` of item ``index``."""
        image, labels, _ = self._compose(index)
        return image, labels

    def unlabelled_mask(self, used: Sequence[int]) -> np.ndarray:
        """``(nc,)`` bool: classes unlabelled in any of the source items ``used`` (a mosaic's
        parts may come from sources that label different classes; the union is the
        conservative answer, see :mod:`training.merge`)."""
        mask = np.zeros(self.source.num_classes, dtype=bool)
        for i in set(used):
            for c in self.source.unlabelled_classes(i):
                mask[c] = True
        return mask

    def _compose(self, index: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """The augmented item and the source indices it was built from."""
        if not self.augment:
            image, labels = self._resized(index)
            return (*augment.letterbox_with_labels(image, labels, self.img_size, scaleup=False), [index])
        rng = self.rng_for(index)
        hyp = self.hyp
        if self.mosaic_enabled and rng.random() < hyp.mosaic:
            image, labels, used = self._mosaic(index, rng)
            if rng.random() < hyp.mixup:
                *other, other_used = self._mosaic(int(rng.integers(len(self))), rng)
                image, labels = augment.mixup((image, labels), tuple(other), rng)
                used = used + other_used
        else:
            used = [index]
            image, labels = self._resized(index)
            image, labels = augment.letterbox_with_labels(image, labels, self.img_size)
            image, labels = augment.random_affine(image, labels, rng, degrees=hyp.degrees,
                                                  translate=hyp.translate, scale=hyp.scale,
                                                  shear=hyp.shear)
        image = augment.augment_hsv(image, rng, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v)
        if rng.random() < hyp.fliplr:
            image, labels = augment.horizontal_flip(image, labels)
        return image, labels, used

    def _mosaic(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
        nine = rng.random() < self.hyp.mosaic9
        others = rng.integers(len(self), size=8 if nine else 3)
        used = [index, *others.tolist()]
        items = [self._resized(i) for i in used]
        build = augment.mosaic9 if nine else augment.mosaic4
        canvas, labels = build(items, self.img_size, rng)
        hyp = self.hyp
        image, labels = augment.random_affine(canvas, labels, rng, degrees=hyp.degrees,
                                              translate=hyp.translate, scale=hyp.scale,
                                              shear=hyp.shear, border=-self.img_size // 2)
        return image, labels, used

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
        image, labels, used = self._compose(index)
        return (bgr_to_chw_rgb(image), torch.from_numpy(labels_to_targets(labels)), index,
                torch.from_numpy(self.unlabelled_mask(used)))


@dataclass(frozen=True)
class EvalItemInfo:
    """How an evaluation image maps back to its source: ``orig_hw`` (pixels), letterbox
    ``gain`` and ``pad`` ``(pad_w, pad_h)``."""

    orig_hw: tuple[int, int]
    gain: float
    pad: tuple[float, float]


class EvalDataset(Dataset):
    """Letterboxed (square ``img_size``, official letterbox, no randomness) items for
    validation: ``(image (3, S, S) uint8 RGB, targets (n, 5) class cx cy w h in input pixels,
    index)``; :meth:`info` gives the mapping back to the original image."""

    def __init__(self, source: DetectionSource, img_size: int) -> None:
        self.source = source
        self.img_size = img_size

    def __len__(self) -> int:
        return len(self.source)

    def info(self, index: int) -> EvalItemInfo:
        h, w = self.source.image_shape(index)
        gain = min(self.img_size / h, self.img_size / w)
        pad_w = (self.img_size - round(w * gain)) / 2
        pad_h = (self.img_size - round(h * gain)) / 2
        return EvalItemInfo((h, w), gain, (pad_w, pad_h))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image, annotations = self.source.load(index)
        lb = letterbox(image, self.img_size, auto=False)
        labels = augment.scale_labels(annotations.labels, lb.ratio[0], lb.ratio[1], lb.pad[0], lb.pad[1])
        return bgr_to_chw_rgb(lb.image), torch.from_numpy(labels_to_targets(labels)), index


def collate(batch: Sequence[tuple]) -> tuple[torch.Tensor, ...]:
    """Stack images; prefix each target row with its image's position in the batch. Training
    items carry a fourth element, the ``(nc,)`` bool unlabelled-class mask, stacked to
    ``(B, nc)``; evaluation items have three."""
    images = torch.stack([item[0] for item in batch])
    targets = [torch.cat((torch.full((len(item[1]), 1), float(i)), item[1]), 1)
               for i, item in enumerate(batch)]
    indices = torch.tensor([item[2] for item in batch], dtype=torch.long)
    out = (images, torch.cat(targets, 0) if targets else torch.zeros((0, 6)), indices)
    if batch and len(batch[0]) == 4:
        out = (*out, torch.stack([item[3] for item in batch]))
    return out


class EpochShuffleSampler(Sampler[int]):
    """A permutation drawn from ``torch.Generator`` seeded with ``(seed, epoch)``."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * _EPOCH_SEED_STRIDE + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


def make_loader(dataset: Dataset, batch_size: int, *, workers: int, sampler: Sampler | None = None,
                drop_last: bool = False) -> DataLoader:
    """A DataLoader with :func:`collate`. Workers are started per epoch, after
    :meth:`TrainingDataset.set_epoch`, so they see the current epoch."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=workers, collate_fn=collate, drop_last=drop_last,
                      persistent_workers=False, pin_memory=False)
