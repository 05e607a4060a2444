"""Read official YOLOv7 ``.pt`` checkpoints without executing anything from the file.

An official release checkpoint (``yolov7-tiny.pt``, ``yolov7.pt``, ...) is a torch zip archive:

* ``<prefix>/data.pkl`` -- a pickle (protocol 2) of ``{'model': models.yolo.Model, 'optimizer',
  'training_results', 'epoch'}``; the model is a whole pickled ``nn.Module`` tree whose classes
  live in the official repository (``models.yolo``, ``models.common``);
* ``<prefix>/data/<key>`` -- one raw little-endian record per tensor storage, referenced from the
  pickle by persistent ids ``('storage', torch.HalfStorage, key, location, numel)``;
* ``<prefix>/version`` (and, on newer torch, ``byteorder``).

``torch.load(weights_only=False)`` would import the official ``models`` package (missing here:
"No module named 'models'") and run whatever the pickle asks for -- a pickle may call any
importable function, e.g. ``os.system``. ``torch.load(weights_only=True)`` refuses the file
because it is a pickled module. This module instead unpickles with a **restricted unpickler**:

* every global the pickle references must be on an allow-list (:data:`ALLOWED_GLOBALS`);
  anything else raises :class:`~detector.errors.UnsafeCheckpointError` naming the file and the
  global, before the global is even imported;
* official and ``torch.nn`` module classes map to inert stand-ins (:class:`PickledModule`) that
  only record their pickled ``__dict__`` (``_modules``, ``_parameters``, ``_buffers`` and the
  hyper-parameters such as BatchNorm ``eps``); no constructor or method of theirs runs;
* torch's tensor rebuild functions and storage types map to small re-implementations here that
  build CPU tensors from the zip records (storages tagged ``cuda:0`` are read to the CPU);
* a few data constructors a checkpoint needs (``collections.OrderedDict``, ``set``, numpy
  arrays for ``best_fitness``, ``_codecs.encode`` for latin-1 bytes) are admitted as such.

Sizes are checked before anything is allocated (:mod:`detector.limits`): every record must be
stored uncompressed, as ``torch.save`` writes it (so a record cannot expand beyond the bytes of
the file: a 3 MB zip that inflates to a 3 GiB storage is refused unread), its declared size must
match what the pickle asks for and lie inside the file, the records read together may not exceed
the file's size (overlapping records), and ``data.pkl`` and each storage have a size cap. A
checkpoint re-packed with compression is refused with a hint to re-save it with ``torch.save``.

Every error names the file. Two readers are built on it: :func:`read_official_checkpoint` (a pickled ``models.yolo.Model``,
the release and official training format) and :func:`read_state_dict_pickle` (a checkpoint whose
``model`` is a plain state dict).
"""

from __future__ import annotations

import collections
import io
import logging
import math
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from detector.errors import CheckpointError, UnsafeCheckpointError
from detector.limits import MAX_PICKLE_BYTES, MAX_PICKLED_ARRAY_ELEMENTS, MAX_STORAGE_BYTES

LOGGER = logging.getLogger(__name__)

# Official classes of WongKinYiu/yolov7 (``models/yolo.py``, ``models/common.py``) used by the
# deploy and training configs of yolov7-tiny, yolov7, yolov7x, yolov7-w6, yolov7-e6, yolov7-d6
# and yolov7-e6e (``cfg/deploy/*.yaml``, ``cfg/training/*.yaml``), plus the implicit layers that
# the training heads (IDetect, IAuxDetect) contain.
OFFICIAL_MODULE_CLASSES: dict[str, tuple[str, ...]] = {
    "models.yolo": ("Model", "Detect", "IDetect", "IAuxDetect"),
    "models.common": (
        "Conv", "Concat", "MP", "SP", "SPPCSPC", "RepConv", "ReOrg", "DownC", "Shortcut",
        "ImplicitA", "ImplicitM",
    ),
}

# torch.nn classes those official modules contain (``SyncBatchNorm``: training with --sync-bn).
TORCH_MODULE_CLASSES: dict[str, tuple[str, ...]] = {
    "torch.nn.modules.container": ("Sequential", "ModuleList"),
    "torch.nn.modules.conv": ("Conv2d",),
    "torch.nn.modules.batchnorm": ("BatchNorm2d", "SyncBatchNorm"),
    "torch.nn.modules.activation": ("LeakyReLU", "SiLU"),
    "torch.nn.modules.linear": ("Identity",),
    "torch.nn.modules.pooling": ("MaxPool2d",),
    "torch.nn.modules.upsampling": ("Upsample",),
}

HEAD_CLASSES = ("Detect", "IDetect", "IAuxDetect")

# torch storage type name -> dtype of its elements.
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "HalfStorage": torch.float16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


# --------------------------------------------------------------------------------------------
# Inert stand-ins
# --------------------------------------------------------------------------------------------


class PickledObject:
    """Inert record of an instance of an allow-listed class, built by the unpickler.

    The pickle creates it with ``cls.__new__(cls)`` and hands it its state; nothing of the
    original class runs. ``qualified_name`` is the global the pickle referenced
    (e.g. ``"models.common.Conv"``); ``state`` is the pickled ``__dict__``.
    """

    qualified_name: ClassVar[str] = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Pickled modules are rebuilt with NEWOBJ (``__new__`` only). A pickle that *calls* the
        # class is not something torch writes; refuse it instead of guessing.
        raise CheckpointError(
            f"the pickle calls {self.qualified_name}(...) directly, which torch.save never "
            "writes; the checkpoint is malformed"
        )

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise CheckpointError(
                f"pickled state of {self.qualified_name} is {type(state).__name__}, expected a "
                "dict of attributes; the checkpoint is malformed"
            )
        self.state = state

    @property
    def class_name(self) -> str:
        """The class name without its module, e.g. ``"Conv"``."""
        return self.qualified_name.rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"<pickled {self.qualified_name}>"


class PickledModule(PickledObject):
    """Stand-in for a pickled ``nn.Module``: children, parameters, buffers, hyper-parameters."""

    state: dict[str, Any]

    def _ordered(self, key: str) -> dict[str, Any]:
        value = getattr(self, "state", {}).get(key, {})
        if not isinstance(value, dict):
            raise CheckpointError(f"{self.qualified_name}.{key} is {type(value).__name__}, not a dict")
        return value

    @property
    def children(self) -> dict[str, Any]:
        """``_modules`` in registration order (values may be ``None``)."""
        return self._ordered("_modules")

    @property
    def parameters(self) -> dict[str, Any]:
        """``_parameters`` in registration order (values may be ``None``, e.g. a bias-less conv)."""
        return self._ordered("_parameters")

    @property
    def buffers(self) -> dict[str, Any]:
        """``_buffers`` in registration order, without the non-persistent ones."""
        skipped = getattr(self, "state", {}).get("_non_persistent_buffers_set", set())
        return {k: v for k, v in self._ordered("_buffers").items() if k not in skipped}

    @property
    def attributes(self) -> dict[str, Any]:
        """Plain pickled attributes (hyper-parameters): no ``_``-prefixed torch internals, no
        modules or tensors."""
        return {
            k: v
            for k, v in getattr(self, "state", {}).items()
            if not k.startswith("_") and _is_plain_value(v)
        }


def _is_plain_value(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _is_plain_value(v) for k, v in value.items())
    return False


def _make_stand_in(module: str, name: str) -> type[PickledModule]:
    return type(name, (PickledModule,), {"qualified_name": f"{module}.{name}", "__module__": __name__})


@dataclass(frozen=True)
class StorageType:
    """Inert stand-in for ``torch.HalfStorage`` & co.: only says which dtype a record holds."""

    name: str
    dtype: torch.dtype

    def __setstate__(self, state: Any) -> None:
        # Without this, a pickle could BUILD on the shared instance and change its dtype for
        # every later load in the process (BUILD writes __dict__ even on frozen dataclasses).
        raise CheckpointError(f"the pickle tries to modify torch.{self.name}; the checkpoint is malformed")


class _SafeCallable:
    """An allow-listed function as the unpickler hands it out: callable, but immune to the
    pickle ``BUILD`` opcode (which could otherwise set ``__defaults__`` & co. on the shared
    function object and change it for the rest of the process)."""

    __slots__ = ("_function", "_global_name")

    def __init__(self, function: Callable[..., Any], global_name: str) -> None:
        self._function = function
        self._global_name = global_name

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError(f"the pickle tries to modify {self._global_name}; the checkpoint is malformed")

    def __repr__(self) -> str:
        return f"<allow-listed {self._global_name}>"


# --------------------------------------------------------------------------------------------
# Safe re-implementations of the callables a torch checkpoint references
# --------------------------------------------------------------------------------------------


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    """Our ``torch._utils._rebuild_tensor_v2``: a strided view of a flat CPU storage tensor,
    after checking that the view stays inside the storage."""
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise CheckpointError(f"tensor rebuild got {type(storage).__name__} instead of a storage")
    if not (_is_int_tuple(size) and _is_int_tuple(stride) and len(size) == len(stride)):
        raise CheckpointError(f"tensor rebuild got invalid size {size!r} / stride {stride!r}")
    if not isinstance(storage_offset, int) or storage_offset < 0 or any(s < 0 for s in size + stride):
        raise CheckpointError(f"tensor rebuild got invalid offset {storage_offset!r} or negative sizes")
    if backward_hooks:
        raise CheckpointError("a pickled tensor carries backward hooks; refusing the checkpoint")
    if math.prod(size) > 0:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel():
            raise CheckpointError(
                f"a tensor of size {tuple(size)} at offset {storage_offset} reads past its storage "
                f"of {storage.numel()} elements; the checkpoint is truncated or corrupt"
            )
    return torch.as_strided(storage, tuple(size), tuple(stride), storage_offset)


def _is_int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> torch.Tensor:
    """Our ``torch._utils._rebuild_parameter``: the plain tensor (no autograd, no hooks)."""
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"parameter rebuild got {type(data).__name__} instead of a tensor")
    if backward_hooks:
        raise CheckpointError("a pickled parameter carries backward hooks; refusing the checkpoint")
    return data


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> torch.Tensor:
    """Our ``torch._utils._rebuild_parameter_with_state``: like :func:`_rebuild_parameter`;
    the extra Python attributes of the parameter (``state``) are dropped, they carry no weights."""
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError(f"unexpected _codecs.encode({type(text).__name__}, {encoding!r}) in the pickle")
    return text.encode("latin-1")


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` for plain ``ndarray`` only (e.g. ``best_fitness``),
    of at most :data:`~detector.limits.MAX_PICKLED_ARRAY_ELEMENTS` elements."""
    if subtype is not np.ndarray:
        raise CheckpointError(f"numpy array rebuild of {subtype!r} refused; only numpy.ndarray is allowed")
    if not (_is_int_tuple(shape) and all(n >= 0 for n in shape)):
        raise CheckpointError(f"numpy array rebuild with shape {shape!r:.100} refused; expected a tuple of sizes")
    if math.prod(shape) > MAX_PICKLED_ARRAY_ELEMENTS:
        raise CheckpointError(
            f"numpy array rebuild of shape {shape} refused: more than {MAX_PICKLED_ARRAY_ELEMENTS} elements, "
            "which no YOLOv7 checkpoint holds"
        )
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar`` for non-object dtypes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise CheckpointError(f"numpy scalar of dtype {dtype!r} refused")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype`` that always returns a fresh object (``copy=True``): the pickle's
    ``BUILD`` then cannot reach numpy's shared built-in dtype instances."""
    return np.dtype(spec, bool(align), True)


def _build_allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {}
    for table in (OFFICIAL_MODULE_CLASSES, TORCH_MODULE_CLASSES):
        for module, names in table.items():
            for name in names:
                allowed[(module, name)] = _make_stand_in(module, name)
    for name, dtype in STORAGE_DTYPES.items():
        allowed[("torch", name)] = StorageType(name, dtype)
    functions: dict[tuple[str, str], Callable[..., Any]] = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        ("_codecs", "encode"): _codecs_encode,
        ("numpy", "dtype"): _numpy_dtype,
    }
    for numpy_core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        functions[(numpy_core, "_reconstruct")] = _numpy_reconstruct
        functions[(numpy_core, "scalar")] = _numpy_scalar
    for (module, name), function in functions.items():
        allowed[(module, name)] = _SafeCallable(function, f"{module}.{name}")
    # Built-in types cannot be modified by BUILD ("cannot set attribute of immutable type").
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    # Protocol-2 pickles written by Python 3 name builtins "__builtin__" (Python 2 spelling).
    for builtins_module in ("builtins", "__builtin__"):
        allowed[(builtins_module, "set")] = set
        allowed[(builtins_module, "frozenset")] = frozenset
    allowed[("numpy", "ndarray")] = np.ndarray  # only as the subtype argument of _reconstruct
    return allowed


#: ``(module, name) -> what the restricted unpickler returns for that global``. Everything else
#: is refused with :class:`~detector.errors.UnsafeCheckpointError`.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = _build_allowed_globals()


# --------------------------------------------------------------------------------------------
# The restricted unpickler over a torch zip archive
# --------------------------------------------------------------------------------------------


class _TorchZipArchive:
    """Locates ``data.pkl`` and the storage records of a torch zip checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        if not zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path} is not a torch zip checkpoint (torch >= 1.6 format, like the official "
                "YOLOv7 release files). If it is a legacy or foreign format, re-save it with "
                "torch.save in an environment you trust, or pass an official release file."
            )
        try:
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CheckpointError(f"{path} is a damaged zip archive ({exc}); download it again") from exc
        pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(
                f"{path} is a zip file but not a torch checkpoint (expected one '<name>/data.pkl', "
                f"found {len(pickles)})"
            )
        self.prefix = pickles[0][: -len("data.pkl")]
        self.file_bytes = path.stat().st_size
        self.bytes_read = 0  # records read so far, bounded by the file size (overlapping records)
        self.big_endian = False
        byteorder_name = self.prefix + "byteorder"
        if byteorder_name in names:
            byteorder = self._read(byteorder_name, limit_bytes=16).decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byteorder record {byteorder!r}")
            self.big_endian = byteorder == "big"

    def _checked_info(self, name: str, limit_bytes: int) -> zipfile.ZipInfo:
        """The record's zip entry, after checking -- without reading it -- that its bytes are
        stored as they are (``torch.save`` never compresses), lie inside the file, stay under
        ``limit_bytes`` and, with the records read before, do not exceed the file's size."""
        try:
            info = self.zip.getinfo(name)
        except KeyError as exc:
            raise CheckpointError(f"{self.path} lacks the record {name!r}; the file is truncated or corrupt") from exc
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"{self.path}: record {name!r} is compressed ({info.file_size} bytes packed into "
                f"{info.compress_size}), which torch.save never writes; refusing to expand it. If the "
                "file was re-packed by another tool, re-save it with torch.save in an environment you trust"
            )
        if info.compress_size != info.file_size:
            raise CheckpointError(
                f"{self.path}: record {name!r} declares {info.file_size} bytes but stores "
                f"{info.compress_size}; the file is corrupt"
            )
        if info.file_size > limit_bytes:
            raise CheckpointError(
                f"{self.path}: record {name!r} has {info.file_size} bytes, more than the {limit_bytes} "
                "a YOLOv7 checkpoint needs; refusing the file"
            )
        if info.header_offset + info.file_size > self.file_bytes or (
            self.bytes_read + info.file_size > self.file_bytes
        ):
            raise CheckpointError(
                f"{self.path}: record {name!r} ({info.file_size} bytes) reaches beyond the "
                f"{self.file_bytes} bytes of the file or overlaps other records; the file is corrupt or hostile"
            )
        return info

    def _read(self, name: str, limit_bytes: int) -> bytes:
        info = self._checked_info(name, limit_bytes)
        try:
            data = self.zip.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(
                f"{self.path}: cannot read record {name!r} ({exc}); the file is truncated or "
                "corrupt, download it again"
            ) from exc
        self.bytes_read += len(data)
        return data

    def read_pickle(self) -> bytes:
        return self._read(self.prefix + "data.pkl", MAX_PICKLE_BYTES)

    def read_storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        """The storage record ``data/<key>`` as a flat CPU tensor of ``numel`` ``dtype`` elements;
        its size is checked against ``numel`` and the limits before anything is read."""
        name = f"{self.prefix}data/{key}"
        itemsize = torch.empty((), dtype=dtype).element_size()
        wanted_bytes = numel * itemsize
        if wanted_bytes > MAX_STORAGE_BYTES:
            raise CheckpointError(
                f"{self.path}: the pickle asks for a storage {name!r} of {wanted_bytes} bytes, more than "
                f"the {MAX_STORAGE_BYTES} any YOLOv7 tensor needs; refusing the file"
            )
        try:
            info = self.zip.getinfo(name)
        except KeyError as exc:
            raise CheckpointError(
                f"{self.path} lacks the storage record {name!r}; the file is truncated or corrupt"
            ) from exc
        if info.file_size != wanted_bytes:
            raise CheckpointError(
                f"{self.path}: storage {name!r} has {info.file_size} bytes, expected "
                f"{numel} x {itemsize}; the file is corrupt"
            )
        if numel == 0:
            return torch.empty(0, dtype=dtype)
        buffer = bytearray(self._read(name, MAX_STORAGE_BYTES))  # writable copy: tensors own their memory
        flat = torch.frombuffer(buffer, dtype=dtype)
        if self.big_endian and itemsize > 1:
            flat = flat.view(torch.uint8).view(-1, itemsize).flip(1).reshape(-1).view(dtype)
        return flat

    def close(self) -> None:
        self.zip.close()


class _RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals only through :data:`ALLOWED_GLOBALS` and
    tensor storages only through the archive's records."""

    def __init__(self, data: bytes, archive: _TorchZipArchive) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self._archive.path}: the pickle references the global '{module}.{name}', which "
                "is not on the allow-list of a YOLOv7 checkpoint; refusing the file (nothing in it "
                "was executed). Only load checkpoints from sources you trust."
            ) from None

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self._archive.path}: unexpected persistent id {pid!r:.200}")
        _, storage_type, key, location, numel = pid
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"{self._archive.path}: persistent id with storage type {storage_type!r:.100}")
        if not (isinstance(key, str) and isinstance(location, str) and isinstance(numel, int) and numel >= 0):
            raise CheckpointError(f"{self._archive.path}: malformed persistent id {pid!r:.200}")
        # ``location`` ('cuda:0' in the release files) is ignored: everything is read to the CPU.
        storage = self._storages.get(key)
        if storage is None:
            storage = self._archive.read_storage(key, storage_type.dtype, numel)
            self._storages[key] = storage
        elif storage.dtype != storage_type.dtype:
            raise CheckpointError(f"{self._archive.path}: storage {key!r} is used with two dtypes")
        return storage


def load_restricted_pickle(path: str | Path) -> Any:
    """Unpickle a torch zip checkpoint with the restricted unpickler.

    Returns the top-level object with official/torch modules replaced by :class:`PickledModule`
    stand-ins and tensors as CPU ``torch.Tensor`` (stored dtype, e.g. float16).

    Raises:
        CheckpointError: missing file, not a torch zip archive, truncated or corrupt records.
        UnsafeCheckpointError: the pickle references a global outside :data:`ALLOWED_GLOBALS`
            (raised when the global is met, before anything of it is imported or called).
    """
    path = Path(path)
    archive = _TorchZipArchive(path)
    try:
        unpickler = _RestrictedUnpickler(archive.read_pickle(), archive)
        try:
            return unpickler.load()
        except CheckpointError as exc:
            if str(path) in str(exc):
                raise
            raise _naming_the_file(exc, path) from exc
        except Exception as exc:  # any other unpickling failure: malformed/truncated pickle
            raise CheckpointError(
                f"{path}: cannot unpickle data.pkl ({type(exc).__name__}: {exc}); the file is not a "
                "valid torch checkpoint or is corrupt"
            ) from exc
    finally:
        archive.close()


def _naming_the_file(error: CheckpointError, path: Path) -> CheckpointError:
    """A copy of ``error`` (same type) whose message starts with ``path``.

    The stand-ins and rebuild functions run inside the unpickler and do not know the file; the
    entry points add it (when the message lacks it) so that every error names the file."""
    return type(error)(f"{path}: {error}")


# --------------------------------------------------------------------------------------------
# Official checkpoint reader
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficialCheckpoint:
    """What an official YOLOv7 checkpoint holds, as plain data.

    Attributes:
        path: the file read.
        state_dict: official keys (``model.<i>.<...>``) in the order of the official
            ``Model.state_dict()``, CPU tensors in their stored dtype (float16 in the releases;
            BatchNorm ``num_batches_tracked`` int64). Includes the Detect buffers ``anchors``
            (grid units, shape ``(nl, na, 2)``) and ``anchor_grid`` (pixels,
            ``(nl, 1, na, 1, 1, 2)``).
        names: class names (``model.names``), ``None`` if the model has none.
        num_classes: ``model.nc`` (checked against the head's ``nc`` and ``len(names)``).
        yaml_file: ``model.yaml_file`` (e.g. ``'yolov7-tiny.yaml'``) or ``None``.
        yaml: ``model.yaml``, the parsed config (anchors, backbone, head lists) or ``None``.
        stride: ``model.stride`` in pixels per head level, e.g. ``[8.0, 16.0, 32.0]``.
        anchors_px: anchors in pixels per level, ``(nl, na, 2)`` as nested lists (from the
            ``anchor_grid`` buffer).
        head: class of the last layer: ``'Detect'`` (deploy form), ``'IDetect'`` or
            ``'IAuxDetect'`` (training forms).
        module_types: layer index -> official class name (``'Conv'``, ``'RepConv'``,
            ``'Upsample'``, ``'Detect'``, ...), for every layer of ``model.model``.
        module_attributes: dotted module path (state-dict prefix, e.g. ``'model.0.bn'``) ->
            ``{'class': qualified class name, <plain pickled attributes>}``, for every module.
        hyper: summary of the hyper-parameters that live only in the pickle:
            ``batchnorm_eps``, ``batchnorm_momentum`` (sorted distinct values),
            ``activations`` (sorted distinct, e.g. ``'LeakyReLU(negative_slope=0.1)'``, ``'SiLU'``),
            ``upsample`` (distinct ``{'scale_factor', 'mode'}``), ``head`` (``nc, no, nl, na``),
            ``training_mode`` (``model.training`` when saved).
        source_key: ``'ema'`` when the model came from a training checkpoint's EMA, else
            ``'model'`` (see :func:`read_official_checkpoint`).
        epoch: the checkpoint's ``epoch`` (``-1`` in the releases) or ``None``.
        extra: the other top-level entries that are plain data (e.g. ``best_fitness`` as a
            float, ``training_results``, ``updates``); ``optimizer`` is reported only as
            ``has_optimizer``.
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    names: list[str] | None
    num_classes: int
    yaml_file: str | None
    yaml: dict[str, Any] | None
    stride: list[float]
    anchors_px: list[list[list[float]]]
    head: str
    module_types: dict[int, str]
    module_attributes: dict[str, dict[str, Any]] = field(repr=False)
    hyper: dict[str, Any]
    source_key: str
    epoch: int | None
    extra: dict[str, Any] = field(repr=False)


def read_official_checkpoint(path: str | Path) -> OfficialCheckpoint:
    """Read an official YOLOv7 checkpoint (release or training) safely.

    Accepted layouts: the release files ``{'model': Model, 'optimizer': None,
    'training_results': None, 'epoch': -1}``, and the official ``train.py`` checkpoints
    ``{'model', 'ema', 'optimizer', 'best_fitness', 'epoch', 'updates', ...}``. When ``'ema'``
    holds a model it is used instead of ``'model'``: it holds the exponential-moving-average
    weights that the official ``test.py``/``detect.py`` evaluate and that
    ``strip_optimizer`` copies into ``'model'`` for release (``source_key`` tells which was
    used).

    Args:
        path: the ``.pt`` file.

    Returns:
        :class:`OfficialCheckpoint` with CPU tensors in their stored dtype.

    Raises:
        CheckpointError: missing file; not a torch zip checkpoint; truncated/corrupt records;
            no pickled ``models.yolo.Model`` under ``'model'``/``'ema'`` (e.g. a plain state
            dict -- see :func:`read_state_dict_pickle`); inconsistent class count or strides.
        UnsafeCheckpointError: the pickle references a global outside the allow-list.
    """
    path = Path(path)
    top = load_restricted_pickle(path)
    try:
        return _official_checkpoint(top, path)
    except CheckpointError as exc:
        if str(path) in str(exc):
            raise
        raise _naming_the_file(exc, path) from exc


def _official_checkpoint(top: Any, path: Path) -> OfficialCheckpoint:
    model, source_key = _select_model(top, path)
    layers = _model_layers(model, path)
    head_module = layers[-1][1]
    head = head_module.class_name
    if head not in HEAD_CLASSES:
        raise CheckpointError(f"{path}: the last layer is {head}, expected one of {', '.join(HEAD_CLASSES)}")

    state_dict = _collect_state_dict(model, path)
    names = _class_names(model.state.get("names"), path)
    num_classes = _num_classes(model, head_module, names, path)
    head_index = layers[-1][0]
    LOGGER.debug("read %s: %d tensors, head %s, from %r", path, len(state_dict), head, source_key)
    return OfficialCheckpoint(
        path=path,
        state_dict=state_dict,
        names=names,
        num_classes=num_classes,
        yaml_file=_optional_str(model.state.get("yaml_file")),
        yaml=model.state.get("yaml") if isinstance(model.state.get("yaml"), dict) else None,
        stride=_strides(model, head_module, path),
        anchors_px=_anchors_px(state_dict, head_index, path),
        head=head,
        module_types={index: module.class_name for index, module in layers},
        module_attributes=_module_attributes(model),
        hyper=_hyper_summary(model, head_module),
        source_key=source_key,
        epoch=top.get("epoch") if isinstance(top.get("epoch"), int) else None,
        extra=_extra_entries(top),
    )


def _select_model(top: Any, path: Path) -> tuple[PickledModule, str]:
    if not isinstance(top, dict):
        raise CheckpointError(
            f"{path}: the checkpoint holds a {type(top).__name__}, expected a dict with a 'model' entry"
        )
    for key in ("ema", "model"):
        candidate = top.get(key)
        if isinstance(candidate, PickledModule) and candidate.qualified_name == "models.yolo.Model":
            return candidate, key
    model = top.get("model")
    if isinstance(model, dict) and model and all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(
            f"{path}: 'model' is a plain state dict, not a pickled models.yolo.Model; it carries "
            "no class names or strides. Read it with read_state_dict_pickle() and give the "
            "architecture explicitly."
        )
    found = ", ".join(f"{k}: {_describe(v)}" for k, v in top.items()) or "nothing"
    raise CheckpointError(f"{path}: no YOLOv7 model in the checkpoint (found {found})")


def _describe(value: Any) -> str:
    if isinstance(value, PickledObject):
        return value.qualified_name
    return type(value).__name__


def _model_layers(model: PickledModule, path: Path) -> list[tuple[int, PickledModule]]:
    sequential = model.children.get("model")
    if not isinstance(sequential, PickledModule) or not sequential.children:
        raise CheckpointError(f"{path}: models.yolo.Model has no 'model' layer list")
    layers = []
    for key, module in sequential.children.items():
        if not key.isdigit() or not isinstance(module, PickledModule):
            raise CheckpointError(f"{path}: unexpected layer {key!r} ({_describe(module)}) in Model.model")
        layers.append((int(key), module))
    if [index for index, _ in layers] != list(range(len(layers))):
        raise CheckpointError(f"{path}: Model.model layers are not numbered 0..{len(layers) - 1}")
    return layers


def _collect_state_dict(root: PickledModule, path: Path) -> dict[str, torch.Tensor]:
    """Same traversal as ``nn.Module.state_dict``: own parameters, own persistent buffers, then
    each child depth-first; ``None`` entries are skipped."""
    state: dict[str, torch.Tensor] = {}

    def visit(module: PickledModule, prefix: str) -> None:
        for table in (module.parameters, module.buffers):
            for name, tensor in table.items():
                if tensor is None:
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise CheckpointError(f"{path}: {prefix}{name} is {type(tensor).__name__}, not a tensor")
                state[prefix + name] = _plain(tensor)
        for name, child in module.children.items():
            if child is None:
                continue
            if not isinstance(child, PickledModule):
                raise CheckpointError(f"{path}: submodule {prefix}{name} is {_describe(child)}")
            visit(child, f"{prefix}{name}.")

    visit(root, "")
    return state


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor without autograd state: a pickle can BUILD ``requires_grad``/backward hooks
    onto a rebuilt tensor (``Tensor.__setstate__``); ``detach`` drops both, sharing the data."""
    return tensor.detach()


def _class_names(raw: Any, path: Path) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, dict):  # some forks store {index: name}
        if sorted(raw) != list(range(len(raw))):
            raise CheckpointError(f"{path}: model.names dict keys are not 0..{len(raw) - 1}")
        raw = [raw[i] for i in range(len(raw))]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(n, str) for n in raw):
        raise CheckpointError(f"{path}: model.names is not a list of strings")
    return list(raw)


def _num_classes(model: PickledModule, head: PickledModule, names: list[str] | None, path: Path) -> int:
    head_nc = head.state.get("nc")
    model_nc = model.state.get("nc", head_nc)
    if not isinstance(head_nc, int) or model_nc != head_nc:
        raise CheckpointError(f"{path}: class count disagrees: model.nc={model_nc!r}, head nc={head_nc!r}")
    if names is not None and len(names) != head_nc:
        raise CheckpointError(f"{path}: model.names has {len(names)} names but the head has nc={head_nc}")
    return head_nc


def _strides(model: PickledModule, head: PickledModule, path: Path) -> list[float]:
    for owner in (model, head):
        stride = owner.state.get("stride")
        if isinstance(stride, torch.Tensor) and stride.dim() == 1 and stride.numel() > 0:
            return [float(s) for s in stride.double()]
    raise CheckpointError(f"{path}: the model carries no strides (model.stride / Detect.stride)")


def _anchors_px(state_dict: dict[str, torch.Tensor], head_index: int, path: Path) -> list[list[list[float]]]:
    anchor_grid = state_dict.get(f"model.{head_index}.anchor_grid")
    if anchor_grid is None or anchor_grid.dim() != 6 or anchor_grid.shape[-1] != 2:
        raise CheckpointError(f"{path}: the head has no anchor_grid buffer of shape (nl, 1, na, 1, 1, 2)")
    per_level = anchor_grid.double().reshape(anchor_grid.shape[0], -1, 2)
    return per_level.tolist()


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _iter_modules(root: PickledModule, prefix: str = "") -> list[tuple[str, PickledModule]]:
    found = [(prefix.rstrip("."), root)]
    for name, child in root.children.items():
        if isinstance(child, PickledModule):
            found.extend(_iter_modules(child, f"{prefix}{name}."))
    return found


def _module_attributes(root: PickledModule) -> dict[str, dict[str, Any]]:
    return {
        path: {"class": module.qualified_name, **module.attributes}
        for path, module in _iter_modules(root)
        if path  # the root Model's attributes (names, yaml, ...) have their own fields
    }


def _activation_label(module: PickledModule) -> str:
    if module.class_name == "LeakyReLU":
        return f"LeakyReLU(negative_slope={module.state.get('negative_slope')})"
    return module.class_name


def _hyper_summary(model: PickledModule, head: PickledModule) -> dict[str, Any]:
    eps: set[float] = set()
    momentum: set[float] = set()
    activations: set[str] = set()
    upsample: list[dict[str, Any]] = []
    for _, module in _iter_modules(model):
        kind = module.class_name
        if kind in ("BatchNorm2d", "SyncBatchNorm"):
            eps.add(module.state.get("eps"))
            momentum.add(module.state.get("momentum"))
        elif kind in ("LeakyReLU", "SiLU"):
            activations.add(_activation_label(module))
        elif kind == "Upsample":
            entry = {"scale_factor": module.state.get("scale_factor"), "mode": module.state.get("mode")}
            if entry not in upsample:
                upsample.append(entry)
    return {
        "batchnorm_eps": sorted(eps),
        "batchnorm_momentum": sorted(momentum),
        "activations": sorted(activations),
        "upsample": upsample,
        "head": {k: head.state.get(k) for k in ("nc", "no", "nl", "na")},
        "training_mode": bool(model.state.get("training", False)),
    }


def _extra_entries(top: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {"has_optimizer": top.get("optimizer") is not None}
    for key, value in top.items():
        if key in ("model", "ema", "optimizer", "epoch"):
            continue
        if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "fiu":
            value = value.item()  # best_fitness is a (1,) float64 array in official train.py
        if _is_plain_value(value):
            extra[key] = value
    return extra


# --------------------------------------------------------------------------------------------
# Plain state-dict pickles
# --------------------------------------------------------------------------------------------


def read_state_dict_pickle(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a torch zip checkpoint that holds a plain state dict, with the same restrictions.

    Accepted layouts: the state dict itself (``OrderedDict[str, Tensor]``), or a dict whose
    ``'ema'`` (preferred when not ``None``, as in :func:`read_official_checkpoint`),
    ``'model'`` or ``'state_dict'`` entry is one.

    Returns:
        ``{key: CPU tensor}`` in the file's order and stored dtype.

    Raises:
        CheckpointError: missing/invalid file, or no state dict in it (a pickled
            ``models.yolo.Model`` is pointed to :func:`read_official_checkpoint`).
        UnsafeCheckpointError: the pickle references a global outside the allow-list.
    """
    path = Path(path)
    top = load_restricted_pickle(path)
    try:
        return _state_dict_entry(top, path)
    except CheckpointError as exc:
        if str(path) in str(exc):
            raise
        raise _naming_the_file(exc, path) from exc


def _state_dict_entry(top: Any, path: Path) -> dict[str, torch.Tensor]:
    if _is_state_dict(top):
        return {name: _plain(tensor) for name, tensor in top.items()}
    if isinstance(top, dict):
        for key in ("ema", "model", "state_dict"):
            if _is_state_dict(top.get(key)):
                return {name: _plain(tensor) for name, tensor in top[key].items()}
        if any(isinstance(top.get(k), PickledModule) for k in ("ema", "model")):
            raise CheckpointError(
                f"{path}: the checkpoint holds a pickled module, not a plain state dict; read it "
                "with read_official_checkpoint()"
            )
    raise CheckpointError(
        f"{path}: no state dict found (expected a dict of tensors, or one under 'ema', 'model' "
        "or 'state_dict')"
    )


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


__all__ = [
    "ALLOWED_GLOBALS",
    "HEAD_CLASSES",
    "OFFICIAL_MODULE_CLASSES",
    "OfficialCheckpoint",
    "PickledModule",
    "PickledObject",
    "StorageType",
    "TORCH_MODULE_CLASSES",
    "load_restricted_pickle",
    "read_official_checkpoint",
    "read_state_dict_pickle",
]
