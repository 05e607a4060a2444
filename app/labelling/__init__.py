"""The Qt-free core of labelling a clip (issue 14): a label store with undo/redo and atomic save,
label file formats, and proposals from a detector, a tracker and interpolation.

>>> from app.labelling import LabelStore, prelabel, iter_clip_frames, carry_forward
>>> store = LabelStore(detector.names, path="clip/gt/gt.txt")
>>> run = prelabel(store, iter_clip_frames("clip.mp4", 0, 99), detector)   # proposals
>>> store.move_box(10, 3, (50, 60, 90, 160))                               # a correction
>>> carry_forward(store, 10, 3, run.detections.get)                         # follow it
>>> store.undo(); store.save()

No module of this package imports Qt; the GUI observes a store with :meth:`LabelStore.subscribe`
and runs :func:`propose_tracks` in a worker thread.
"""

from app.labelling.errors import (
    LabelFileError,
    LabellingError,
    LabelValidationError,
    TrackIdConflictError,
    UnknownBoxError,
)
from app.labelling.formats import (
    ImportedLabels,
    clip_data_yaml,
    export_yolo,
    load_store,
    read_cvat_mot,
    read_cvat_yolo,
    read_label_studio_video,
    read_mot,
    save_mot,
    write_clip_data_yaml,
)
from app.labelling.propagate import (
    CarryConfig,
    FrameProposals,
    PrelabelConfig,
    PrelabelRun,
    ProposalBox,
    apply_prelabels,
    carry_forward,
    follow_box,
    interpolate_all,
    interpolate_track,
    interpolate_xyxy,
    iter_clip_frames,
    prelabel,
    propose_tracks,
)
from app.labelling.store import BoxOrigin, LabelBox, LabelStore, ProposalResult, TrackScope

__all__ = [
    "BoxOrigin",
    "CarryConfig",
    "FrameProposals",
    "ImportedLabels",
    "LabelBox",
    "LabelFileError",
    "LabelStore",
    "LabelValidationError",
    "LabellingError",
    "PrelabelConfig",
    "PrelabelRun",
    "ProposalBox",
    "ProposalResult",
    "TrackIdConflictError",
    "TrackScope",
    "UnknownBoxError",
    "apply_prelabels",
    "carry_forward",
    "clip_data_yaml",
    "export_yolo",
    "follow_box",
    "interpolate_all",
    "interpolate_track",
    "interpolate_xyxy",
    "iter_clip_frames",
    "load_store",
    "prelabel",
    "propose_tracks",
    "read_cvat_mot",
    "read_cvat_yolo",
    "read_label_studio_video",
    "read_mot",
    "save_mot",
    "write_clip_data_yaml",
]
