"""Autoanchor: check that the anchors fit the data set; refit them when they do not.

Method of the official YOLOv5/YOLOv7 ``autoanchor`` (``check_anchors``, ``kmean_anchors``):

* Label sizes ``(w, h)`` are taken at the training scale (each image's long side =
  ``img_size``), times a random ``U(0.9, 1.1)`` per image for the check (the training scale
  jitter in miniature).
* A label fits an anchor when ``max(w/aw, aw/w, h/ah, ah/h) < anchor_t`` (the ×4 rule of the
  assigner). **Best possible recall** (BPR) = fraction of labels that fit at least one anchor.
* When BPR < 0.98: k-means (k = all anchors, on sizes whitened by their standard deviation,
  labels under 2 px dropped), then a genetic refinement — 1000 generations of multiplicative
  mutations (probability 0.9 per value, sigma 0.1, gains clipped to [0.3, 3]) keeping a
  mutant when it raises the fitness ``mean over labels of best_ratio * [best_ratio > 1/anchor_t]``
  where ``best_ratio`` is the label's best ``min(w/aw, aw/w, h/ah, ah/h)`` over anchors.
  The new anchors (sorted by area, smallest to the finest level) replace the old ones only
  when their BPR is higher. They are stored in the model's head buffers, hence in every saved
  checkpoint and weights file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from detector.heads import Detect

from .datasets import DetectionSource

logger = logging.getLogger(__name__)

BPR_THRESHOLD = 0.98
MIN_LABEL_SIDE_PX = 2.0
KMEANS_ITERATIONS = 30
EVOLVE_GENERATIONS = 1000
MUTATION_PROBABILITY = 0.9
MUTATION_SIGMA = 0.1


@dataclass(frozen=True)
class AnchorReport:
    """Outcome of :func:`check_anchors`; anchors are ``(nl, na, 2)`` pixel lists."""

    bpr_before: float
    anchors_above_threshold: float
    bpr_after: float
    anchors_before: list
    anchors_after: list
    changed: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def label_sizes(source: DetectionSource, img_size: int,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """``(n, 2)`` float64 label widths/heights in pixels at the training scale (long side of
    each image = ``img_size``), times ``U(0.9, 1.1)`` per image when ``rng`` is given."""
    sizes = []
    for index in range(len(source)):
        labels = source.annotations(index).labels
        if not len(labels):
            continue
        h, w = source.image_shape(index)
        scale = img_size / max(h, w)
        if rng is not None:
            scale *= rng.uniform(0.9, 1.1)
        sizes.append((labels[:, 3:5] - labels[:, 1:3]).astype(np.float64) * scale)
    return np.concatenate(sizes, 0) if sizes else np.zeros((0, 2))


def _best_ratio(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """``(n, k)`` worst-side ratio ``min(w/aw, aw/w, h/ah, ah/h)`` per label and anchor."""
    r = wh[:, None] / anchors[None]
    return np.minimum(r, 1 / r).min(2)


def anchor_metrics(wh: np.ndarray, anchors: np.ndarray, anchor_t: float = 4.0) -> tuple[float, float]:
    """``(best possible recall, mean number of anchors a label fits)``."""
    if not len(wh):
        return 1.0, 0.0
    x = _best_ratio(wh, anchors.reshape(-1, 2))
    bpr = float((x.max(1) > 1 / anchor_t).mean())
    above = float((x > 1 / anchor_t).sum(1).mean())
    return bpr, above


def anchor_fitness(wh: np.ndarray, anchors: np.ndarray, anchor_t: float = 4.0) -> float:
    best = _best_ratio(wh, anchors).max(1)
    return float((best * (best > 1 / anchor_t)).mean())


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator,
           iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; ``(k, d)`` centres. Fewer distinct points than
    ``k`` leave the remaining centres at random points."""
    n = len(points)
    centres = [points[rng.integers(n)]]
    for _ in range(1, k):
        d2 = ((points[:, None] - np.asarray(centres)[None]) ** 2).sum(-1).min(1)
        total = d2.sum()
        centres.append(points[rng.choice(n, p=d2 / total)] if total > 0 else points[rng.integers(n)])
    centres = np.asarray(centres, dtype=np.float64)
    for _ in range(iterations):
        nearest = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            members = points[nearest == j]
            if len(members):
                centres[j] = members.mean(0)
    return centres


def evolve_anchors(wh: np.ndarray, anchors: np.ndarray, rng: np.random.Generator,
                   anchor_t: float = 4.0, generations: int = EVOLVE_GENERATIONS) -> np.ndarray:
    """Genetic refinement of ``anchors (k, 2)`` (module docstring); returns the fittest."""
    best, best_fitness = anchors.copy(), anchor_fitness(wh, anchors, anchor_t)
    for _ in range(generations):
        gains = np.ones_like(best)
        while (gains == 1).all():
            mutate = rng.random(best.shape) < MUTATION_PROBABILITY
            gains = (mutate * rng.random() * rng.standard_normal(best.shape) * MUTATION_SIGMA + 1).clip(0.3, 3.0)
        candidate = (best * gains).clip(min=2.0)
        fitness = anchor_fitness(wh, candidate, anchor_t)
        if fitness > best_fitness:
            best, best_fitness = candidate, fitness
    return best


def fit_anchors(wh: np.ndarray, num_anchors: int, rng: np.random.Generator, anchor_t: float = 4.0,
                generations: int = EVOLVE_GENERATIONS) -> np.ndarray:
    """k-means + evolution on label sizes; ``(num_anchors, 2)`` sorted by area."""
    wh = wh[(wh >= MIN_LABEL_SIDE_PX).any(1)]
    if len(wh) == 0:
        raise ValueError("no label of at least 2 px to fit anchors to")
    small = int((wh < 3.0).any(1).sum())
    if small:
        logger.warning("%d of %d labels are smaller than 3 px at this image size", small, len(wh))
    spread = wh.std(0)
    spread[spread == 0] = 1.0
    anchors = kmeans(wh / spread, num_anchors, rng) * spread
    anchors = evolve_anchors(wh, anchors.clip(min=2.0), rng, anchor_t, generations)
    return anchors[np.argsort(anchors.prod(1))]


def set_anchors(head: Detect, anchors_px: torch.Tensor | np.ndarray) -> None:
    """Write ``(nl * na, 2)`` or ``(nl, na, 2)`` pixel anchors into the head's buffers
    (``anchor_grid`` in pixels, ``anchors`` in grid units)."""
    new = torch.as_tensor(np.asarray(anchors_px), dtype=head.anchor_grid.dtype,
                          device=head.anchor_grid.device).reshape(head.nl, head.na, 2)
    with torch.no_grad():
        head.anchor_grid.copy_(new.view_as(head.anchor_grid))
        head.anchors.copy_(new / head.stride.to(new.device).view(-1, 1, 1))


def check_anchors(head: Detect, source: DetectionSource, img_size: int, *, anchor_t: float = 4.0,
                  seed: int = 0, generations: int = EVOLVE_GENERATIONS) -> AnchorReport:
    """Measure BPR of ``head``'s anchors on ``source``; refit and store them when < 0.98.

    Returns:
        :class:`AnchorReport` (logged at INFO).
    """
    rng = np.random.default_rng(seed)
    wh = label_sizes(source, img_size, rng)
    before = head.anchor_grid.detach().cpu().reshape(-1, 2).double().numpy()
    bpr, above = anchor_metrics(wh, before, anchor_t)
    logger.info("autoanchor: %.2f anchors/target, best possible recall %.4f", above, bpr)
    after, bpr_after, changed = before, bpr, False
    if bpr < BPR_THRESHOLD and len(wh):
        candidate = fit_anchors(label_sizes(source, img_size), len(before), rng, anchor_t, generations)
        candidate_bpr, _ = anchor_metrics(wh, candidate, anchor_t)
        if candidate_bpr > bpr:
            set_anchors(head, candidate)
            after, bpr_after, changed = candidate, candidate_bpr, True
            logger.info("autoanchor: new anchors (BPR %.4f) stored in the model: %s",
                        candidate_bpr, np.round(candidate).astype(int).tolist())
        else:
            logger.info("autoanchor: refitted anchors are no better (BPR %.4f); kept the originals",
                        candidate_bpr)
    shape = (head.nl, head.na, 2)
    return AnchorReport(bpr, above, bpr_after, np.asarray(before).reshape(shape).tolist(),
                        np.asarray(after).reshape(shape).tolist(), changed)
