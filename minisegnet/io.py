"""Weights on disk: safetensors files with a JSON config beside them, and ImageNet VGG16 import.

Files
-----
``save(model, "runs/fcn8s")`` writes two files::

    runs/fcn8s.safetensors   every parameter and buffer of ``model.state_dict()``, by dotted name
    runs/fcn8s.json          {"format": "minisegnet-weights", "model": {name, num_classes, config},
                              "tensors": count, "sha256": of the .safetensors file, ...}

Why safetensors: the format is a JSON header (names, dtypes, shapes, byte offsets) followed by the
raw little-endian arrays, readable from NumPy without pickle (so loading a file cannot run code)
and by PyTorch, JAX and others. Why a JSON file beside it: the config that rebuilds the network
(``load_model``) is human-readable and editable, and the sha256 it records lets ``load`` tell a
corrupt or truncated weights file from a wrong one. The model config is also put in the
safetensors header's metadata, so a weights file copied alone still says what it holds.

Loading checks every name and shape before copying anything and reports *every* mismatch
(missing, unexpected, wrong shape) in one :class:`minisegnet.nn.StateDictError`, naming the file.
A file that is not readable safetensors (truncated, corrupt, another format) raises
:class:`WeightsFileError` naming the file and what went wrong.

ImageNet VGG16
--------------
``import_vgg16(model, path)`` copies torchvision-layout VGG16 weights (``features.N.weight``,
``classifier.N.weight``, in a .safetensors or .npz file the user supplies; nothing is downloaded)
into the encoder of an FCN, DeconvNet or SegNet. torchvision numbers the layers of
``vgg16().features`` in sequence (conv, ReLU, ..., pool), so conv1_1 is ``features.0``, conv1_2
``features.2``, conv2_1 ``features.5`` ... conv5_3 ``features.28`` (``vgg16_bn`` interleaves a
BatchNorm after each conv and is recognised too). The classifier is "convolutionalised" as in the
FCN paper: ``classifier.0`` (fc6, 4096 x 25088) is reshaped to a 4096 x 512 x 7 x 7 convolution --
25088 = 512*7*7 is pool5 flattened in (C, H, W) order, so the reshape puts every weight on the
pool5 position it always multiplied -- and ``classifier.3`` (fc7, 4096 x 4096) to 4096 x 4096 x 1
x 1. ``classifier.6`` (the 1000 ImageNet classes) is dropped: FCN "decapitates" the network and
scores its own classes with new, zero-initialised layers.

To make such a file from torchvision (on a machine with torch)::

    sd = torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()
    numpy.savez("vgg16.npz", **{k: v.numpy() for k, v in sd.items()})

Note that these weights expect RGB images scaled to [0, 1] and normalised with the ImageNet mean
(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); Caffe's VGG16 (used by the original FCN and
SegNet) expects BGR in [0, 255] minus the mean pixel. The data pipeline must match the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minisegnet.arrays import to_host

__all__ = [
    "save", "save_state_dict", "load", "load_state_dict", "load_model", "read_config",
    "import_vgg16", "read_vgg16_file", "vgg16_key_map", "WeightsFileError", "VGGImportReport",
    "FORMAT", "check_model_spec", "json_default", "model_metadata", "read_header", "host_array",
]  # fmt: skip

FORMAT = "minisegnet-weights"
FORMAT_VERSION = 1


class WeightsFileError(ValueError):
    """A weights or config file that cannot be read (missing, truncated, corrupt, wrong format)."""


# ----------------------------------------------------------------------------- paths
def _paths(path) -> tuple[Path, Path]:
    """(weights file, JSON config file) for ``path`` given with or without ``.safetensors``."""
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix("")
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    return path, path.with_suffix(".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- saving
def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _tmp(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp")


def host_array(value) -> np.ndarray:
    """A state-dict entry (NumPy or CuPy array, or Tensor) as a C-contiguous NumPy array."""
    array = (
        value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else value
    )
    array = to_host(array)  # CuPy -> NumPy
    # np.require keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d)
    return np.require(array, requirements="C")


def _write_weights_tmp(weights_path: Path, state, metadata: dict | None) -> Path:
    from safetensors.numpy import save_file

    arrays = OrderedDict((name, host_array(value)) for name, value in state.items())
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(weights_path)
    save_file(dict(arrays), str(tmp), metadata=metadata)
    _fsync_file(tmp)
    return tmp


def save_state_dict(path, state, metadata: dict | None = None) -> Path:
    """Write ``{name: array}`` to a safetensors file (``metadata``: str -> str pairs).

    Arrays are copied to the host and made contiguous; the file is written to a temporary name
    and renamed, so an interrupted save never leaves a half-written file under the real name.
    """
    weights_path, _ = _paths(path)
    os.replace(_write_weights_tmp(weights_path, state, metadata), weights_path)
    return weights_path


def save(model, path, extra: dict | None = None) -> tuple[Path, Path]:
    """Save ``model.state_dict()`` to ``<path>.safetensors`` and its config to ``<path>.json``.

    ``model.config`` (set by :func:`minisegnet.models.build`) is recorded so :func:`load_model`
    can rebuild the network; ``extra`` adds fields of your own (epoch, metrics, ...) to the JSON.
    Returns the two paths.

    The two files are replaced as a pair. Both are first written in full under temporary names
    in the same folder (``.<name>.tmp``, flushed to disk), then renamed into place with
    ``os.replace`` (one step each), the weights first and the JSON last; the JSON carries the
    sha256 of its weights. A kill before the first rename leaves the old pair; a kill between
    the two renames leaves the new weights beside the old JSON *and* the new JSON still under
    its temporary name, which :func:`read_config` recognises by its sha256 and puts in place.
    So whenever a save stops, the old or the new pair loads, never a mixture.
    """
    weights_path, config_path = _paths(path)
    model_config = getattr(model, "config", None)
    state = model.state_dict()
    weights_tmp = _write_weights_tmp(weights_path, state, model_metadata(model))
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "weights": weights_path.name,
        "model": model_config,
        "class": type(model).__name__,
        "tensors": len(state),
        "parameters": int(model.num_parameters()),
        "sha256": _sha256(weights_tmp),
    }
    if extra:
        document["extra"] = extra
    config_tmp = _tmp(config_path)
    with open(config_tmp, "w") as f:
        f.write(json.dumps(document, indent=2, default=json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(weights_tmp, weights_path)
    os.replace(config_tmp, config_path)
    return weights_path, config_path


def model_metadata(model) -> dict[str, str]:
    """The safetensors header entries that make a file of ``model``'s state dict self-describing:
    ``format``, ``version`` and (for a model made by ``models.build``) ``model``, its build
    config as JSON. A training checkpoint's header starts from the same entries."""
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION)}
    model_config = getattr(model, "config", None)
    if model_config is not None:
        metadata["model"] = json.dumps(model_config, default=json_default)
    return metadata


def json_default(value):
    """``json.dumps(..., default=json_default)``: NumPy scalars and arrays, tuples, sets and paths
    as JSON values (the one converter for model configs and training state); else a TypeError."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON: {value!r}")


# ----------------------------------------------------------------------------- loading
def _parse_config(config_path: Path, text: str) -> dict:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise WeightsFileError(f"{config_path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise WeightsFileError(
            f'{config_path}: not a minisegnet weights config (expected "format": "{FORMAT}")'
        )
    return document


def _finish_interrupted_save(weights_path: Path, config_path: Path) -> dict | None:
    """The new JSON of a :func:`save` stopped between its two renames, put in place.

    Such a save left the new weights under the real name and the new JSON under its temporary
    name; that JSON records the sha256 of those weights, which is how it is recognised (a
    temporary JSON of a save stopped earlier records weights that never arrived). Returns the
    document, or None when there is no such JSON. When the folder is read-only the document is
    used without being moved.
    """
    config_tmp = _tmp(config_path)
    if not (config_tmp.is_file() and weights_path.is_file()):
        return None
    try:
        document = _parse_config(config_tmp, config_tmp.read_text())
    except (WeightsFileError, OSError, UnicodeDecodeError):
        return None  # written only in part: the save stopped before renaming anything
    if document.get("sha256") != _sha256(weights_path):
        return None
    try:
        os.replace(config_tmp, config_path)
    except OSError:
        pass
    return document


def read_config(path) -> dict:
    """The JSON document saved beside the weights; :class:`WeightsFileError` if unreadable.

    A save interrupted between its two renames is completed first (see :func:`save`)."""
    weights_path, config_path = _paths(path)
    recovered = _finish_interrupted_save(weights_path, config_path)
    if recovered is not None:
        return recovered
    try:
        text = config_path.read_text()
    except FileNotFoundError:
        raise WeightsFileError(f"{config_path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise WeightsFileError(f"{config_path}: cannot be read ({error})") from None
    return _parse_config(config_path, text)


def read_header(path) -> dict[str, str]:
    """The metadata in the header of the safetensors file ``path`` (str -> str; empty when it
    has none), read without loading the tensors; :class:`WeightsFileError` when the file is not
    readable safetensors (truncated, corrupt, another format)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as error:  # safetensors raises its own SafetensorError and others
        raise WeightsFileError(
            f"{path}: cannot be read as a safetensors file (truncated, corrupt or another "
            f"format): {error}"
        ) from None


def check_model_spec(spec, source) -> dict:
    """The ``"model"`` entry of a weights config (or checkpoint), checked before it is used:
    ``{"name": str, "num_classes": positive int, "config": {...} (optional)}``. Raises
    :class:`WeightsFileError` naming ``source`` and what is wrong."""
    if not isinstance(spec, dict):
        raise WeightsFileError(
            f'{source}: "model" must be an object {{"name": ..., "num_classes": ..., "config": '
            f"...}}, got {type(spec).__name__} {spec!r}"
        )
    problems = []
    if not isinstance(spec.get("name"), str):
        problems.append(f'"name" must be a model name, got {spec.get("name")!r}')
    classes = spec.get("num_classes")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        problems.append(f'"num_classes" must be a positive integer, got {classes!r}')
    if not isinstance(spec.get("config", {}), dict):
        problems.append(f'"config" must be an object, got {spec.get("config")!r}')
    if problems:
        raise WeightsFileError(f'{source}: its "model" entry is invalid: ' + "; ".join(problems))
    return spec


def load_state_dict(path, verify: bool = True) -> OrderedDict:
    """Read a safetensors file into ``{name: numpy array}``.

    With ``verify`` and a JSON config beside the file that records a sha256, the file's hash is
    checked first, so a corrupted (not only a truncated) file is reported as such.
    """
    from safetensors.numpy import load_file

    weights_path, config_path = _paths(path)
    if not weights_path.exists():
        raise WeightsFileError(f"{weights_path}: weights file not found")
    pending = _finish_interrupted_save(weights_path, config_path)
    if verify and (pending is not None or config_path.exists()):
        expected = read_config(weights_path).get("sha256")
        if expected is not None and _sha256(weights_path) != expected:
            raise WeightsFileError(
                f"{weights_path}: the file's sha256 does not match the one recorded in "
                f"{config_path.name} when it was saved; the weights file is corrupt or was "
                "replaced (re-save it, or pass verify=False to skip the check)"
            )
    try:
        arrays = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own SafetensorError and others
        raise WeightsFileError(
            f"{weights_path}: cannot be read as a safetensors file (truncated, corrupt or another "
            f"format): {error}"
        ) from None
    return OrderedDict(arrays)


def load(model, path, strict: bool = True, verify: bool = True) -> None:
    """Load the weights at ``path`` into ``model`` (in place).

    Every missing name, unexpected name and shape mismatch is reported together in one
    :class:`~minisegnet.nn.StateDictError` whose message starts with the file's path; nothing is
    loaded when any is found. ``strict=False`` allows missing and unexpected names.
    """
    from minisegnet.nn import StateDictError

    weights_path, _ = _paths(path)
    state = load_state_dict(weights_path, verify=verify)
    try:
        model.load_state_dict(state, strict=strict)
    except StateDictError as error:
        raise StateDictError(f"{weights_path}: {error}") from None


def load_model(path, verify: bool = True):
    """Rebuild the model described by ``<path>.json`` and load ``<path>.safetensors`` into it."""
    from minisegnet import models

    document = read_config(path)
    spec = document.get("model")
    if not spec:
        raise WeightsFileError(
            f"{_paths(path)[1]}: records no model config (the model was not made by "
            "models.build); build the model yourself and call io.load(model, path)"
        )
    check_model_spec(spec, _paths(path)[1])
    # materialize=False: every weight is overwritten by the file, so skip drawing random ones
    # (seconds for the full-size networks). Buffers and fixed kernels are loaded too.
    model = models.build(
        spec["name"], spec["num_classes"], materialize=False, **spec.get("config", {})
    )
    load(model, path, verify=verify)
    return model


# ----------------------------------------------------------------------------- VGG16 import
def vgg16_key_map(batch_norm: bool) -> list[tuple[str, int]]:
    """[(our conv name, torchvision ``features`` index)] for vgg16 (or vgg16_bn).

    torchvision builds ``features`` from [64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M]
    appending Conv2d, [BatchNorm2d,] ReLU for a number and MaxPool2d for M, so the indices are
    counted the same way here.
    """
    from minisegnet.models.vgg import VGG16_STAGES

    pairs, index = [], 0
    for s, stage in enumerate(VGG16_STAGES, start=1):
        for i in range(1, len(stage) + 1):
            pairs.append((f"conv{s}_{i}", index))
            index += 3 if batch_norm else 2
        index += 1  # the max pool
    return pairs


def read_vgg16_file(path) -> dict:
    """Arrays of a torchvision-layout VGG16 file (.safetensors or .npz) as ``{key: array}``."""
    path = Path(path)
    if not path.exists():
        raise WeightsFileError(f"{path}: VGG16 weights file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: np.asarray(data[k]) for k in data.files}
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(str(path)))
    except Exception as error:
        raise WeightsFileError(
            f"{path}: cannot be read ({type(error).__name__}: {error})"
        ) from None
    raise WeightsFileError(f"{path}: expected a .safetensors or .npz file, got {path.suffix!r}")


@dataclass
class VGGImportReport:
    """What :func:`import_vgg16` did: ``loaded`` (model name, file key, shape), ``unused`` file keys
    with the reason, ``not_in_file`` model entries of the encoder left as initialised."""

    loaded: list = field(default_factory=list)
    unused: list = field(default_factory=list)
    not_in_file: list = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} arrays from the VGG16 file"]
        lines += [f"  {name} <- {key} {shape}" for name, key, shape in self.loaded]
        if self.unused:
            lines.append(f"not used ({len(self.unused)}):")
            lines += [f"  {key}: {why}" for key, why in self.unused]
        if self.not_in_file:
            lines.append(f"left as initialised ({len(self.not_in_file)}):")
            lines += [f"  {name}" for name in self.not_in_file]
        return "\n".join(lines)


def import_vgg16(model, path) -> VGGImportReport:
    """Copy ImageNet VGG16 weights in torchvision's layout into ``model.encoder``.

    Works for FCN (convs + fc6/fc7 convolutionalised), DeconvNet (convs + fc6/fc7; its batch norms
    stay as initialised unless the file is vgg16_bn) and SegNet (convs only; the classifier keys are
    reported unused). All shape mismatches (e.g. a width-scaled model, or fc_kernel != 7) are
    collected and raised together in one ValueError before anything is copied.
    """
    from minisegnet.models.vgg import VGG16

    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, VGG16):
        raise TypeError(
            f"import_vgg16: {type(model).__name__} has no VGG16 encoder (expected an FCN, "
            "DeconvNet or SegNet, or a VGG16)"
        )
    prefix = "encoder." if encoder is not model else ""
    arrays = read_vgg16_file(path)
    file_bn = "features.1.running_mean" in arrays
    if file_bn and not encoder.batch_norm:
        raise ValueError(
            f"import_vgg16: {path} holds VGG16-BN weights (features.1.running_mean present) but "
            f"the {type(model).__name__} encoder has no batch norm; its convs expect the "
            "activations of plain VGG16, so use a vgg16 (not vgg16_bn) file"
        )
    own = dict(encoder.named_parameters())
    own_buffers = dict(encoder.named_buffers())
    plan = []  # (our name, file key, transform to our shape)
    for conv, index in vgg16_key_map(file_bn):
        for part in ("weight", "bias"):
            plan.append((f"{conv}.{part}", f"features.{index}.{part}"))
        if file_bn:
            bn = "bn" + conv[len("conv") :]
            for part in ("weight", "bias", "running_mean", "running_var"):
                plan.append((f"{bn}.{part}", f"features.{index + 1}.{part}"))
    if encoder.fc_channels is not None:
        plan += [
            ("fc6.weight", "classifier.0.weight"),
            ("fc6.bias", "classifier.0.bias"),
            ("fc7.weight", "classifier.3.weight"),
            ("fc7.bias", "classifier.3.bias"),
        ]

    report, problems, copies = VGGImportReport(), [], []
    for name, key in plan:
        target = own.get(name)
        target_shape = tuple(target.shape) if target is not None else None
        if target is None and name in own_buffers:
            target_shape = tuple(own_buffers[name].shape)
        if key not in arrays:
            problems.append(f"missing in file: {key} (for {prefix}{name})")
            continue
        source = np.asarray(arrays[key])
        if target_shape is None:
            problems.append(f"model has no {prefix}{name} for {key}")
            continue
        if name.startswith(("fc6.weight", "fc7.weight")):
            # fc -> conv: (out, in) -> (out, C, k, k); valid only when the sizes agree.
            if source.ndim == 2 and source.size == int(np.prod(target_shape)):
                source = source.reshape(target_shape)
        if tuple(source.shape) != target_shape:
            problems.append(
                f"shape mismatch for {prefix}{name}: model has {target_shape}, "
                f"{key} has {tuple(arrays[key].shape)}"
            )
            continue
        copies.append((name, key, source))
    if problems:
        raise ValueError(
            f"import_vgg16 from {path} into {type(model).__name__} found {len(problems)} "
            "problem(s) (nothing was loaded):\n  " + "\n  ".join(problems)
        )

    used = set()
    for name, key, source in copies:
        if name in own:
            p = own[name]
            p.data = p.xp.asarray(source, dtype=p.dtype).copy()
        else:
            module_name, _, bname = name.rpartition(".")
            module = dict(encoder.named_modules())[module_name]
            old = module._buffers[bname]
            from minisegnet.tensor import array_module

            module._set_buffer(bname, array_module(old).asarray(source, dtype=old.dtype).copy())
        used.add(key)
        report.loaded.append((prefix + name, key, tuple(source.shape)))
    for key in arrays:
        if key in used:
            continue
        if key.startswith("classifier.6"):
            why = "the ImageNet 1000-class classifier (replaced by the model's own score layer)"
        elif key.startswith("classifier."):
            why = "fully connected layers; this encoder has no fc6/fc7"
        elif key.endswith("num_batches_tracked"):
            why = "batch-norm bookkeeping"
        else:
            why = "no matching layer"
        report.unused.append((key, why))
    loaded_names = {n for n, _, _ in copies}
    for name in list(own) + list(own_buffers):
        if name not in loaded_names:
            report.not_in_file.append(prefix + name)
    return report
