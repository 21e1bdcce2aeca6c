"""Training checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is a model weights file (``minisegnet.io``'s format: the state dict under its
names, the model's build config in the header's ``model`` entry) that also holds the training
state, plus a readable JSON copy of that state::

    checkpoint.safetensors   the model's parameters and buffers under their state_dict names,
                             the optimiser's arrays as "optimizer.<param index>.<name>", and in
                             the header's metadata "format": "minisegnet-checkpoint", "model"
                             and the JSON training state, "state" (below)
    checkpoint.json          the same training state, indented, for people (and a sha256 of the
                             .safetensors file)

The training state holds the run's config, the model's build config, the dataset's class
names, the epoch and batch reached, the optimiser's scalars (lr, step count), the schedule's
iteration, the class weights, the metrics history and NumPy's global RNG state. Everything else
random in a run is derived from the seed and the position in the run (data order and
augmentation from (seed, epoch, index); dropout masks from each layer's seed and call counter,
which are buffers in the state dict), so these are all it takes to continue exactly.

Atomic writes. Both files are written under a temporary name in the same folder and then
renamed with ``os.replace``, which replaces the old file in one step: a crash or Ctrl-C while
saving leaves the previous checkpoint intact, never half a file. The safetensors file is the
authority (its metadata carries the state, so weights and state cannot get out of step); its
metadata also records a sha256 over every tensor's name, dtype, shape and bytes, so a corrupted
file (not only a truncated one) is recognised when it is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from minisegnet import io
from minisegnet.io import json_default

FORMAT = "minisegnet-checkpoint"
VERSION = 1
WEIGHTS_NAME = "checkpoint.safetensors"
STATE_NAME = "checkpoint.json"
_OPT_PREFIX = "optimizer."


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, of another format, or does not fit the model."""


def _tensor_digest(arrays) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def checkpoint_paths(path) -> tuple[Path, Path]:
    """(weights file, JSON file) for a run folder or a checkpoint file path."""
    path = Path(path)
    if path.is_dir():
        return path / WEIGHTS_NAME, path / STATE_NAME
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    return path, path.with_suffix(".json")


def optimizer_arrays(optimizer) -> tuple[dict, dict]:
    """Split ``optimizer.state_dict()`` into (arrays by flat name, JSON-able rest)."""
    sd = optimizer.state_dict()
    arrays, scalars = OrderedDict(), {}
    for index, entries in sd["state"].items():
        for key, value in entries.items():
            if np.isscalar(value):
                scalars.setdefault(index, {})[key] = value
            else:
                arrays[f"{_OPT_PREFIX}{index}.{key}"] = np.asarray(value)
    rest = {k: v for k, v in sd.items() if k != "state"}
    rest["scalars"] = scalars
    return arrays, rest


def restore_optimizer(optimizer, arrays: dict, rest: dict) -> None:
    state: dict = {}
    for name, value in arrays.items():
        index, _, key = name[len(_OPT_PREFIX) :].partition(".")
        state.setdefault(index, {})[key] = value
    for index, entries in rest.get("scalars", {}).items():
        state.setdefault(index, {}).update(entries)
    optimizer.load_state_dict({**{k: v for k, v in rest.items() if k != "scalars"}, "state": state})


def save(path, model, optimizer, state: dict) -> Path:
    """Write the checkpoint (atomically) into folder ``path``; returns the weights file path.

    The file is a model weights file (``minisegnet.io``: the state dict under its names, the
    header's ``model`` entry) with the optimiser's arrays beside the model's and the training
    state in the header, under its own ``format``."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    weights_path, state_path = checkpoint_paths(folder)
    arrays = OrderedDict((k, io.host_array(v)) for k, v in model.state_dict().items())
    opt_arrays, opt_rest = optimizer_arrays(optimizer)
    for k, v in opt_arrays.items():
        arrays[k] = io.host_array(v)
    document = {
        "format": FORMAT,
        "version": VERSION,
        **state,
        "optimizer": opt_rest,
        "tensors_sha256": _tensor_digest(arrays),
    }
    text = json.dumps(document, default=json_default)
    metadata = {**io.model_metadata(model), "format": FORMAT, "state": text}
    io.save_state_dict(weights_path, arrays, metadata)
    readable = dict(document)
    readable["weights"] = weights_path.name
    _atomic_write_text(state_path, json.dumps(readable, indent=2, default=json_default) + "\n")
    return weights_path


def load(path) -> tuple[dict, OrderedDict, OrderedDict]:
    """Read a checkpoint: (state document, model arrays, optimiser arrays).

    Raises :class:`CheckpointError` naming the file when it is missing, unreadable, of another
    format, or its tensors do not match the digest recorded when it was saved.
    """
    from safetensors import safe_open

    weights_path, _ = checkpoint_paths(path)
    if not weights_path.is_file():
        hint = " (a run folder holds checkpoint.safetensors)" if Path(path).is_dir() else ""
        raise CheckpointError(f"checkpoint {weights_path} does not exist{hint}")
    try:
        with safe_open(str(weights_path), framework="numpy") as f:
            metadata = f.metadata() or {}
            arrays = OrderedDict((k, f.get_tensor(k)) for k in f.keys())
    except Exception as error:  # truncated, corrupt, not safetensors
        raise CheckpointError(
            f"checkpoint {weights_path} is corrupt or not a safetensors file ({error})"
        ) from None
    if metadata.get("format") != FORMAT or "state" not in metadata:
        raise CheckpointError(
            f"{weights_path} is not a minisegnet training checkpoint (no '{FORMAT}' state in "
            "its header); weights saved by minisegnet.io are loaded with --checkpoint too, "
            "but cannot be resumed"
        )
    try:
        document = json.loads(metadata["state"])
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"checkpoint {weights_path}: its state is not valid JSON ({error})"
        ) from None
    if document.get("tensors_sha256") != _tensor_digest(arrays):
        raise CheckpointError(
            f"checkpoint {weights_path} is corrupt: its tensors do not match the digest recorded "
            "when it was saved"
        )
    model_arrays = OrderedDict((k, v) for k, v in arrays.items() if not k.startswith(_OPT_PREFIX))
    opt_arrays = OrderedDict((k, v) for k, v in arrays.items() if k.startswith(_OPT_PREFIX))
    return document, model_arrays, opt_arrays


def load_weights_into(model, arrays, source) -> None:
    """``model.load_state_dict(arrays)``, with every mismatch listed in one CheckpointError."""
    from minisegnet.nn import StateDictError

    try:
        model.load_state_dict(arrays)
    except StateDictError as error:
        problems = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        kinds = {"shape mismatch": [], "missing": [], "unexpected": []}
        for problem in problems:
            for kind, found in kinds.items():
                if problem.startswith(kind):
                    found.append(problem)
                    break
        parts = []
        for kind, found in kinds.items():
            if found:
                more = f"; ... {len(found) - 6} more {kind}" if len(found) > 6 else ""
                parts.append("; ".join(found[:6]) + more)
        raise CheckpointError(
            f"checkpoint {source} does not fit the {type(model).__name__} model "
            f"({len(problems)} mismatches: {len(kinds['shape mismatch'])} shapes, "
            f"{len(kinds['missing'])} missing, {len(kinds['unexpected'])} unexpected): "
            + "; ".join(parts)
        ) from None


def global_rng_state() -> dict:
    """NumPy's legacy global generator state as JSON-able values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": keys.tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def set_global_rng_state(state: dict) -> None:
    np.random.set_state(
        (
            state["name"],
            np.asarray(state["keys"], dtype=np.uint32),
            state["pos"],
            state["has_gauss"],
            state["cached_gaussian"],
        )
    )
