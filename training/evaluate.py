"""Validation: mAP@0.5 and mAP@0.5:0.95, overall and per class, computed by pycocotools.

The model runs on square letterboxed images (:class:`~training.loader.EvalDataset`), the
official NMS keeps candidates above ``conf_thres = 0.001`` (IoU 0.65, official ``test.py``
settings for mAP), boxes are mapped back to the original image, and pycocotools' ``COCOeval``
(bbox, all areas, up to 100 detections per image) scores them against the ground truth
converted to a COCO dictionary (:func:`coco_ground_truth`). Evaluation ignore regions (COCO
``iscrowd``, MOT "not considered" rows) are passed as crowd boxes, so detections on them
count neither as hits nor as false positives.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.postprocess import non_max_suppression

from .datasets import DetectionSource
from .loader import EvalDataset, make_loader
from .loss import YOLOv7Loss

logger = logging.getLogger(__name__)

MAP_CONF_THRES = 0.001
MAP_IOU_THRES = 0.65
MAP_MAX_CANDIDATES = 10_000
"""Boxes entering NMS per image during validation (fewer than the detector's 30 000: an
untrained model puts most boxes just above 0.001 and NMS time grows with their square)."""


@dataclass(frozen=True)
class ClassAP:
    """Average precision of one class; ``None`` when the class has no ground truth."""

    name: str
    instances: int
    ap50: float | None
    ap50_95: float | None


@dataclass(frozen=True)
class EvaluationResult:
    """mAP values in [0, 1] (pycocotools ``stats[1]`` and ``stats[0]``), per-class APs,
    counts, and the mean validation loss components (``None`` when not computed)."""

    map50: float
    map50_95: float
    per_class: list[ClassAP]
    images: int
    instances: int
    detections: int
    loss: dict[str, float] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def fitness(self) -> float:
        """Model selection score of the official code: ``0.1 mAP@0.5 + 0.9 mAP@0.5:0.95``."""
        return 0.1 * self.map50 + 0.9 * self.map50_95

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fitness"] = self.fitness
        return out

    def table(self) -> str:
        """A plain-text table of the overall and per-class results."""
        rows = [f"{'class':<20}{'instances':>10}{'mAP@0.5':>10}{'mAP@.5:.95':>12}",
                f"{'all':<20}{self.instances:>10}{self.map50:>10.4f}{self.map50_95:>12.4f}"]
        for c in self.per_class:
            ap50 = "-" if c.ap50 is None else f"{c.ap50:.4f}"
            ap = "-" if c.ap50_95 is None else f"{c.ap50_95:.4f}"
            rows.append(f"{c.name:<20}{c.instances:>10}{ap50:>10}{ap:>12}")
        return "\n".join(rows)


def coco_ground_truth(source: DetectionSource) -> dict[str, Any]:
    """The ground truth of ``source`` as a COCO instances dictionary.

    Image ids are ``index + 1``, category ids ``class + 1``; boxes ``[x, y, w, h]`` in original
    pixels with ``area = w * h``; ignore regions become ``iscrowd = 1`` annotations of every
    category. A class the image's source does not label (:mod:`training.merge`) gets an
    image-wide ``iscrowd = 1`` box: its detections there count neither as hits nor as false
    positives (the image is no evidence about that class, as with Open Images' image-level
    labels). A coarse label (class id ``nc + g``, :mod:`training.merge`) becomes an ``iscrowd = 1``
    box of each member class of group ``g``: a detection of any member there is neither a hit
    nor a false positive, and the box is no miss.
    """
    images, annotations = [], []
    nc, groups = len(source.names), getattr(source, "class_groups", ())
    for index in range(len(source)):
        h, w = source.image_shape(index)
        images.append({"id": index + 1, "file_name": source.image_id(index), "height": h, "width": w})
        ann = source.annotations(index)
        for row in ann.labels:
            class_id = int(row[0])
            if class_id < nc:
                annotations.append(_coco_box(len(annotations) + 1, index + 1, class_id + 1, row[1:], 0))
                continue
            for member in groups[class_id - nc]:  # coarse label: which member is unknown
                annotations.append(_coco_box(len(annotations) + 1, index + 1, member + 1, row[1:], 1))
        for box in ann.ignore_xyxy:  # class-agnostic: one crowd box per category
            for category in range(len(source.names)):
                annotations.append(_coco_box(len(annotations) + 1, index + 1, category + 1, box, 1))
        for category in sorted(source.unlabelled_classes(index)):  # not labelled: not scored
            annotations.append(_coco_box(len(annotations) + 1, index + 1, category + 1,
                                         (0.0, 0.0, float(w), float(h)), 1))
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(source.names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _coco_box(ann_id: int, image_id: int, category_id: int, xyxy: Sequence[float], crowd: int) -> dict:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    w, h = x2 - x1, y2 - y1
    return {"id": ann_id, "image_id": image_id, "category_id": category_id,
            "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": crowd}


def coco_detections(detections: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """Per-image ``(M, 6)`` ``x1, y1, x2, y2, conf, class`` (original pixels; list index =
    source index) -> COCO result dictionaries."""
    results = []
    for index, det in enumerate(detections):
        for x1, y1, x2, y2, conf, cls in np.asarray(det, dtype=np.float64).reshape(-1, 6):
            results.append({"image_id": index + 1, "category_id": int(cls) + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": conf})
    return results


def coco_map(ground_truth: dict[str, Any], results: list[dict[str, Any]],
             names: Sequence[str]) -> tuple[float, float, list[ClassAP]]:
    """Run pycocotools ``COCOeval`` (bbox); returns ``(mAP@0.5, mAP@0.5:0.95, per class)``.
    No detections give zeros (pycocotools cannot load an empty result list)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    instances = np.bincount([a["category_id"] - 1 for a in ground_truth["annotations"]
                             if not a["iscrowd"]], minlength=len(names))
    if not results:
        per_class = [ClassAP(n, int(instances[i]), 0.0 if instances[i] else None,
                             0.0 if instances[i] else None) for i, n in enumerate(names)]
        return 0.0, 0.0, per_class
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    logger.debug("pycocotools:\n%s", captured.getvalue())
    precision = evaluator.eval["precision"]          # (iou thresholds, recall, class, area, maxDets)
    per_class = []
    for k, name in enumerate(names):
        p_all = precision[:, :, k, 0, -1]
        p_50 = precision[0, :, k, 0, -1]
        ap = float(p_all[p_all > -1].mean()) if (p_all > -1).any() else None
        ap50 = float(p_50[p_50 > -1].mean()) if (p_50 > -1).any() else None
        per_class.append(ClassAP(name, int(instances[k]), ap50, ap))
    map50_95, map50 = (max(float(v), 0.0) for v in evaluator.stats[:2])
    return map50, map50_95, per_class


@torch.no_grad()
def predict(model: nn.Module, dataset: EvalDataset, *, batch_size: int = 16,
            device: torch.device | str = "cpu", conf_thres: float = MAP_CONF_THRES,
            iou_thres: float = MAP_IOU_THRES, workers: int = 0,
            loss_fn: YOLOv7Loss | None = None, progress: bool = False,
            forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
            ) -> tuple[list[np.ndarray], dict[str, float] | None]:
    """Detections of ``model`` (or of ``forward``, see :func:`evaluate`) on every item of
    ``dataset`` in original-image pixels.

    Returns:
        ``(detections, loss)``: one ``(M, 6)`` float32 array ``x1, y1, x2, y2, conf, class``
        per item (index order) and, with ``loss_fn``, the mean loss components per image.
    """
    if forward is not None and loss_fn is not None:
        raise ValueError("the validation loss needs the model's raw maps: pass loss_fn or forward, not both")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    detections: list[np.ndarray] = [np.zeros((0, 6), np.float32)] * len(dataset)
    totals = {"box": 0.0, "obj": 0.0, "cls": 0.0}
    batches = 0
    loader = make_loader(dataset, batch_size, workers=workers)
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, desc="val", leave=False)
    try:
        for images, targets, indices in iterator:
            x = images.to(device).float() / 255
            if forward is not None:
                decoded = forward(x)
            else:
                decoded, raw = model.forward_with_raw(x)
            if loss_fn is not None:
                out = loss_fn(raw, targets.to(device))
                totals = {"box": totals["box"] + out.box, "obj": totals["obj"] + out.obj,
                          "cls": totals["cls"] + out.cls}
                batches += 1
            kept = non_max_suppression(decoded.float(), conf_thres, iou_thres,
                                       max_candidates=MAP_MAX_CANDIDATES)
            for det, index in zip(kept, indices.tolist()):
                detections[index] = _to_original(det.cpu().numpy(), dataset.info(index))
    finally:
        model.train(was_training)
    loss = {k: v / batches for k, v in totals.items()} if batches else None
    return detections, loss


def _to_original(det: np.ndarray, info) -> np.ndarray:
    out = det.astype(np.float32, copy=True)
    h, w = info.orig_hw
    out[:, [0, 2]] = ((out[:, [0, 2]] - info.pad[0]) / info.gain).clip(0, w)
    out[:, [1, 3]] = ((out[:, [1, 3]] - info.pad[1]) / info.gain).clip(0, h)
    return out


def evaluate(model: nn.Module, source: DetectionSource, *, img_size: int, batch_size: int = 16,
             device: torch.device | str = "cpu", conf_thres: float = MAP_CONF_THRES,
             iou_thres: float = MAP_IOU_THRES, workers: int = 0,
             loss_fn: YOLOv7Loss | None = None, progress: bool = False,
             ground_truth: dict[str, Any] | None = None,
             forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> EvaluationResult:
    """Evaluate ``model`` (eval-mode forward of a :class:`detector.YOLOv7`) on ``source``.

    Args:
        img_size: letterbox size (multiple of the model's largest stride).
        ground_truth: a precomputed :func:`coco_ground_truth` of ``source`` (saves re-reading
            image sizes every epoch).
        loss_fn: also compute the validation loss (lead heads).
        forward: the decoded prediction of a model input instead of ``model``'s own forward,
            e.g. :meth:`detector.Detector.forward_tensor` (another precision or backend); not
            with ``loss_fn``.

    Returns:
        :class:`EvaluationResult`.
    """
    # ground truth first: it reads every image size once, which the letterbox mapping reuses
    gt = ground_truth if ground_truth is not None else coco_ground_truth(source)
    dataset = EvalDataset(source, img_size)
    detections, loss = predict(model, dataset, batch_size=batch_size, device=device,
                               conf_thres=conf_thres, iou_thres=iou_thres, workers=workers,
                               loss_fn=loss_fn, progress=progress, forward=forward)
    results = coco_detections(detections)
    map50, map50_95, per_class = coco_map(gt, results, source.names)
    if not all(math.isfinite(v) for v in (map50, map50_95)):
        raise RuntimeError(f"pycocotools returned non-finite mAP ({map50}, {map50_95})")
    return EvaluationResult(
        map50=map50, map50_95=map50_95, per_class=per_class, images=len(source),
        instances=sum(c.instances for c in per_class), detections=len(results), loss=loss,
        settings={"img_size": img_size, "conf_thres": conf_thres, "iou_thres": iou_thres})
