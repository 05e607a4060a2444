"""Several labelled sources merged into one training set (``format: merge`` data YAML).

Each source keeps its own layout (any format :func:`~training.datasets.load_data_config`
reads) and its own class names. A class map sends every source class onto a name of the one
target class list, or drops it (``null``); a source also declares which target classes it
*labels* (``labels``, by default the targets its map reaches). A target class a source does not
label is **unlabelled** there: its objects are in the images but carry no box, so they are not
background. :meth:`MergedSource.unlabelled_classes` gives that set per image; the loss
(:mod:`training.loss`, ``partial_label_ignore``) and the evaluation
(:func:`training.evaluate.coco_ground_truth`) use it so that such objects are neither taught nor
scored as background.

Example (``assets/configs/traffic.yaml``)::

    format: merge
    path: ../../../shared/data/detection
    names: [person, bicycle, car, motorcycle, bus, truck]
    sources:
      atl_highway_v12:
        format: yolo
        path: traffic_cctv/atl_highway_v12
        names: [bike, bus, car, truck]
        train: train/images
        val: [valid/images, test/images]
        classes: {bike: motorcycle, bus: bus, car: car, truck: truck}
        labels: [car, motorcycle, bus, truck]        # pedestrians are visible, not labelled

**Coarse labels.** A source class may map onto a *list* of target names, e.g.
``classes: {Vehicle: [car, truck, bus, motorcycle]}`` for a set that boxes every vehicle as
"Vehicle": each such box is one of the listed classes, which one is unknown. Its boxes get the
class id ``len(names) + g`` of a class group ``g`` (:attr:`MergedSource.class_groups`, shared by
all sources that list the same classes). The loss teaches such a box as an object that is *one of*
the group's classes and none of the others (:mod:`training.loss`), instead of forcing one member
(the naive map ``Vehicle: car`` teaches that trucks and buses are cars); the evaluation scores
the group's classes neither as hits nor as false positives there (crowd boxes). Source: the
hierarchical labels of YOLO9000 (Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR
2017, sec. 3: a box labelled with a coarse class backpropagates no loss that picks a finer one).

Keys of a source: ``format`` (default ``yolo``); ``path`` (relative to the merge's ``path``);
the keys of its format; ``classes`` (every source class, to a target name, a list of target
names (coarse label) or ``null``);
``labels`` (optional); ``others: drop`` (drop every source class ``classes`` does not list,
e.g. COCO's other 74 classes); ``splits`` (optional, ``[train]`` to use a source for training only,
``[val]`` for evaluation only; for ``yolo`` a missing ``train``/``val`` key means the same);
``repeat`` (optional, a whole number >= 1, default 1: the source's training images appear that many
times per epoch, so a small source that looks like the target cameras weighs more against larger
ones; the validation split is never repeated. Image-level oversampling as in the repeat factor
sampling of Gupta, Dollar & Girshick, "LVIS", CVPR 2019, sec. 4.2, here with one factor per
source).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import (
    Annotations,
    DataConfig,
    DetectionSource,
    YoloSource,
    _resolve,
    list_images,
    parse_names,
)
from .errors import DatasetError

SPLITS = ("train", "val")


@dataclass(frozen=True)
class ClassMap:
    """How one source's classes become target classes.

    ``to_target[i]`` is the target index of source class ``i``, ``len(names) + g`` for a coarse
    label of class group ``g`` (``groups[g]``, the member target indices), or ``-1`` (dropped);
    ``labelled`` the sorted target indices the source labels.
    """

    to_target: tuple[int, ...]
    labelled: tuple[int, ...]

    @classmethod
    def parse(cls, source_names: Sequence[str], target_names: Sequence[str], classes: Any,
              labels: Any, where: str, others: Any = None,
              groups: list[tuple[int, ...]] | None = None) -> ClassMap:
        """Validate a ``classes`` mapping and ``labels`` list (module docstring); with
        ``others="drop"`` the source classes ``classes`` does not list are dropped. A list of
        target names is a coarse label: its class group is looked up in, or appended to,
        ``groups`` (shared by the sources of one merge).

        Raises:
            DatasetError: a source class without an entry, an entry for a class the source does
                not have, an unknown target name, or ``labels`` missing a mapped target (``where``
                and the offending name are in the message).
        """
        if not isinstance(classes, Mapping):
            raise DatasetError(f"{where}: 'classes' must map each source class name to a target "
                               f"name or null (drop); source classes: {list(source_names)}")
        classes = {str(k): v for k, v in classes.items()}
        unknown_sources = sorted(set(classes) - set(source_names))
        if unknown_sources:
            raise DatasetError(f"{where}: classes {unknown_sources} are not classes of this source "
                               f"(its names: {list(source_names)})")
        missing = [n for n in source_names if n not in classes]
        if others == "drop":
            classes.update({n: None for n in missing})
            missing = []
        elif others is not None:
            raise DatasetError(f"{where}: 'others' may only be 'drop' (drop every class not listed "
                               f"in 'classes'), got {others!r}")
        if missing:
            raise DatasetError(f"{where}: source classes {missing} have no entry in 'classes'; map "
                               f"each to one of {list(target_names)} or to null to drop it")
        to_target = []
        for name in source_names:
            target = classes[name]
            if target is None:
                to_target.append(-1)
                continue
            if isinstance(target, (list, tuple)):
                to_target.append(_group_id(name, target, target_names, groups, where))
                continue
            if str(target) not in target_names:
                raise DatasetError(f"{where}: class {name!r} maps to {target!r}, which is not a target "
                                   f"class ({list(target_names)})")
            to_target.append(list(target_names).index(str(target)))
        nc = len(target_names)
        mapped = sorted({m for t in to_target if t >= 0
                         for m in ((t,) if t < nc else (groups or [])[t - nc])})
        if labels is None:
            labelled = mapped
        else:
            if isinstance(labels, str) or not isinstance(labels, Sequence):
                raise DatasetError(f"{where}: 'labels' must be a list of target class names")
            unknown = [str(n) for n in labels if str(n) not in target_names]
            if unknown:
                raise DatasetError(f"{where}: labels {unknown} are not target classes "
                                   f"({list(target_names)})")
            labelled = sorted({list(target_names).index(str(n)) for n in labels})
            undeclared = [target_names[t] for t in mapped if t not in labelled]
            if undeclared:
                raise DatasetError(f"{where}: classes map boxes onto {undeclared} but 'labels' does "
                                   "not declare them; add them to 'labels'")
        return cls(tuple(to_target), tuple(labelled))

    def target_names(self, target: int, names: Sequence[str],
                     groups: Sequence[tuple[int, ...]]) -> str | list[str]:
        """A target id as written in the YAML: a name, or the list of a coarse label."""
        return names[target] if target < len(names) else [names[m] for m in groups[target - len(names)]]

    def apply(self, annotations: Annotations) -> Annotations:
        """Rows of dropped classes removed, the others renumbered to target indices."""
        labels = annotations.labels
        if not len(labels):
            return annotations
        target = np.asarray(self.to_target, dtype=np.int64)[labels[:, 0].astype(np.int64)]
        keep = target >= 0
        out = labels[keep].copy()
        out[:, 0] = target[keep]
        return Annotations(out, annotations.ignore_xyxy)


def _group_id(name: str, members: Any, target_names: Sequence[str],
              groups: list[tuple[int, ...]] | None, where: str) -> int:
    """The class id ``len(target_names) + g`` of the coarse label ``members``."""
    if groups is None:
        raise DatasetError(f"{where}: class {name!r} maps to a list; coarse labels need a merge")
    unknown = [str(m) for m in members if str(m) not in target_names]
    if unknown:
        raise DatasetError(f"{where}: class {name!r} maps to {list(members)}, but {unknown} are not "
                           f"target classes ({list(target_names)})")
    group = tuple(sorted({list(target_names).index(str(m)) for m in members}))
    if len(group) < 2:
        raise DatasetError(f"{where}: class {name!r} maps to the list {list(members)}: a coarse label "
                           "needs two or more target classes (map to the name itself for one)")
    if group not in groups:
        groups.append(group)
    return len(target_names) + groups.index(group)


class MappedSource(DetectionSource):
    """One source seen through its :class:`ClassMap` (target class ids, target names)."""

    def __init__(self, source: DetectionSource, class_map: ClassMap, target_names: Sequence[str],
                 name: str, repeat: int = 1) -> None:
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.source = source
        self.repeat = repeat
        self.class_map = class_map
        self.names = list(target_names)
        self.name = name
        self._unlabelled = frozenset(set(range(len(target_names))) - set(class_map.labelled))

    def __len__(self) -> int:
        return len(self.source) * self.repeat

    def _original(self, index: int) -> int:
        """The index in ``source`` of item ``index`` (repeats cycle through the source)."""
        return self._check_index(index) % len(self.source)

    def image_id(self, index: int) -> str:
        return f"{self.name}/{self.source.image_id(self._original(index))}"

    def load_image(self, index: int) -> np.ndarray:
        return self.source.load_image(self._original(index))

    def image_shape(self, index: int) -> tuple[int, int]:
        return self.source.image_shape(self._original(index))

    def annotations(self, index: int) -> Annotations:
        return self.class_map.apply(self.source.annotations(self._original(index)))

    def unlabelled_classes(self, index: int) -> frozenset[int]:
        return self._unlabelled


class MergedSource(DetectionSource):
    """The concatenation of :class:`MappedSource` parts (``parts``), in order."""

    def __init__(self, parts: Sequence[MappedSource], names: Sequence[str],
                 class_groups: Sequence[tuple[int, ...]] = ()) -> None:
        self.parts = list(parts)
        self.names = list(names)
        self._class_groups = tuple(tuple(g) for g in class_groups)
        self._offsets = np.cumsum([0] + [len(p) for p in self.parts])

    @property
    def class_groups(self) -> tuple[tuple[int, ...], ...]:
        """Member target classes of each coarse label; class id ``len(names) + g`` is group ``g``."""
        return self._class_groups

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, index: int) -> tuple[MappedSource, int]:
        index = self._check_index(index)
        part = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self.parts[part], index - int(self._offsets[part])

    def part_ranges(self) -> list[tuple[str, int, int]]:
        """``(source name, first index, end index)`` of each part."""
        return [(p.name, int(a), int(b)) for p, a, b in zip(self.parts, self._offsets, self._offsets[1:])]

    def image_id(self, index: int) -> str:
        part, i = self._locate(index)
        return part.image_id(i)

    def load_image(self, index: int) -> np.ndarray:
        part, i = self._locate(index)
        return part.load_image(i)

    def image_shape(self, index: int) -> tuple[int, int]:
        part, i = self._locate(index)
        return part.image_shape(i)

    def annotations(self, index: int) -> Annotations:
        part, i = self._locate(index)
        return part.annotations(i)

    def unlabelled_classes(self, index: int) -> frozenset[int]:
        part, i = self._locate(index)
        return part.unlabelled_classes(i)


def load_merge(raw: Mapping[str, Any], root: Path, where: str) -> DataConfig:
    """A ``format: merge`` data YAML mapping (module docstring) as a :class:`DataConfig`.

    Raises:
        DatasetError: missing keys, malformed class maps (source and class named), a source
            format that cannot be merged, or a split with no images.
    """
    from .datasets import load_source_config

    names = parse_names(raw.get("names"), where)
    sources = raw.get("sources")
    if not isinstance(sources, Mapping) or not sources:
        raise DatasetError(f"{where}: 'sources' must map source names to their descriptions")
    parts: dict[str, list[MappedSource]] = {split: [] for split in SPLITS}
    description: dict[str, Any] = {"names": names, "sources": {}}
    groups: list[tuple[int, ...]] = []
    for source_name, spec in sources.items():
        here = f"{where}: source {source_name!r}"
        if not isinstance(spec, Mapping):
            raise DatasetError(f"{here}: expected a mapping")
        spec = dict(spec)
        source_root = (root / str(spec.get("path", "."))).resolve()
        splits = _source_splits(spec, source_root, here, load_source_config)
        source_names = next(iter(splits.values())).names
        class_map = ClassMap.parse(source_names, names, spec.get("classes"), spec.get("labels"), here,
                                   spec.get("others"), groups)
        repeat = _repeat(spec.get("repeat", 1), here)
        for split, source in splits.items():
            parts[split].append(MappedSource(source, class_map, names, str(source_name),
                                             repeat if split == "train" else 1))
        description["sources"][str(source_name)] = {
            "format": spec.get("format", "yolo"), "path": str(spec.get("path", ".")),
            **{split: spec[split] for split in SPLITS if split in spec},
            "classes": {n: class_map.target_names(t, names, groups)
                        for n, t in zip(source_names, class_map.to_target) if t >= 0},
            "labels": [names[t] for t in class_map.labelled],
            "images": {split: len(s) for split, s in splits.items()},
            **({"repeat": repeat} if repeat != 1 else {}),
        }
    for split in SPLITS:
        if not parts[split]:
            raise DatasetError(f"{where}: no source gives a {split} split")
    if groups:
        description["class_groups"] = [[names[m] for m in g] for g in groups]
    return DataConfig(names, MergedSource(parts["train"], names, groups),
                      MergedSource(parts["val"], names, groups), description)


def _repeat(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DatasetError(f"{where}: 'repeat' must be a whole number >= 1 (times its training images "
                           f"appear per epoch), got {value!r}")
    return value


def _source_splits(spec: dict[str, Any], root: Path, where: str, load_source_config
                   ) -> dict[str, DetectionSource]:
    fmt = spec.get("format", "yolo")
    if fmt == "merge":
        raise DatasetError(f"{where}: a merge cannot contain another merge")
    wanted = spec.get("splits")
    if wanted is not None and (not isinstance(wanted, list) or not set(wanted) <= set(SPLITS) or not wanted):
        raise DatasetError(f"{where}: 'splits' must be a non-empty list of {list(SPLITS)}")
    if fmt == "yolo":  # either split may be absent
        source_names = parse_names(spec.get("names"), where)
        present = [s for s in SPLITS if s in spec and (wanted is None or s in wanted)]
        if not present:
            raise DatasetError(f"{where}: give 'train' and/or 'val' image folders")
        return {s: YoloSource(list_images(_resolve(root, spec[s])), source_names) for s in present}
    config = load_source_config({k: v for k, v in spec.items()
                                 if k not in ("classes", "labels", "splits", "path", "others", "repeat")},
                                root, where)
    splits = {"train": config.train, "val": config.val}
    return {s: splits[s] for s in (wanted or SPLITS)}

