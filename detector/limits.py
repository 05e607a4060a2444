"""Upper bounds on sizes that come from files and options, checked before anything is allocated.

A weights file or a command line can ask for any size; without a bound, one number
(``img_size: 100000`` in a file's metadata, ``--img-size 65536``, a 3 MB zip that declares a
3 GiB record) makes the process allocate until the kernel kills it. Each bound here is far above
what a real YOLOv7 use needs and far below what exhausts a workstation.
"""

from __future__ import annotations

#: Largest letterbox size, pixels (inference and training). Why 4096: it covers a 4K UHD frame
#: (3840 px) at full resolution and is a multiple of every YOLOv7 stride (32 and 64), while the
#: activations grow with its square: yolov7-tiny needs about 0.15 GB at 640 px and ~6 GB at
#: 4096 px; at 8192 px it would be ~25 GB, and at 65536 px no machine has the memory.
MAX_IMG_SIZE_PX = 4096

#: Largest single tensor storage accepted in a ``.pt`` checkpoint, bytes. The largest tensor of
#: any official YOLOv7 (a 1280x640x3x3 conv of yolov7x / yolov7-e6e) is 28 MiB in float32; 1 GiB
#: leaves room for custom heads and flattened optimizer states and refuses absurd claims.
MAX_STORAGE_BYTES = 1 << 30

#: Largest ``data.pkl`` record of a ``.pt`` checkpoint, bytes. The official files hold 90-150 KB
#: of pickle (module tree, yaml, hyper-parameters); unpickled Python objects take several times
#: their pickled size, so a bound keeps a hostile pickle from filling memory with containers.
MAX_PICKLE_BYTES = 64 << 20

#: Largest numpy array a checkpoint pickle may rebuild, elements. Official training checkpoints
#: hold one: ``best_fitness``, a (1,) float64 array.
MAX_PICKLED_ARRAY_ELEMENTS = 1 << 20

__all__ = ["MAX_IMG_SIZE_PX", "MAX_PICKLED_ARRAY_ELEMENTS", "MAX_PICKLE_BYTES", "MAX_STORAGE_BYTES"]
