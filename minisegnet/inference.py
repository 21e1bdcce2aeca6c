"""Running a trained network: its labels for images, the input sizes it takes, and loading
one from disk for inference.

    model, info = load_for_inference("runs/segnet-basic-builtin")   # eval mode
    labels = predict_labels(model, images)       # (N, 3, H, W) float32 -> (N, H, W) int64

Every prediction runs on the active backend's device, in eval mode, without recording a graph;
the model's mode is restored after.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

import minisegnet as ms
from minisegnet import backend as backends
from minisegnet import checkpoint as ckpt
from minisegnet.arrays import array_module, to_device, to_host
from minisegnet.options import ConfigError
from minisegnet.train_config import TrainConfig

__all__ = [
    "forward_scores", "labels_on_device", "predict_labels", "accepts_input_side",
    "input_side_bracket", "min_input_side", "too_small_error", "read_model_file",
    "load_for_inference", "input_multiple", "pad_to_multiple", "predict_full", "size_checked",
    "load_checkpoint", "full_frame_scores",
]  # fmt: skip


def forward_scores(model, images):
    """The network's class scores for ``images`` (N, 3, H, W), host or device: an array
    (N, K, H', W') on the backend's device, computed in eval mode without a graph (the main
    head's scores for a network that also returns auxiliary ones); the model's mode is restored
    after."""
    was_training = model.training
    model.eval()
    try:
        x = to_device(images, backends.current().device)
        with ms.no_grad():
            out = model(ms.Tensor.from_array(array_module(x).ascontiguousarray(x)))
        return (out[0] if isinstance(out, tuple) else out).data
    finally:
        model.train(was_training)


def labels_on_device(model, images):
    """Argmax class of every pixel, left where the backend computed it: images (N, 3, H, W)
    (host or device) -> (N, H, W) int64 on the backend's device."""
    return forward_scores(model, images).argmax(axis=1).astype(np.int64)


def predict_labels(model, images) -> np.ndarray:
    """Argmax class of every pixel: images (N, 3, H, W) float32 -> (N, H, W) int64 (host).

    The images go to the active backend's device and the network runs there (the model must be
    there too: ``model.to(...)``). Runs in eval mode without recording a graph; the model's mode
    is restored after."""
    return to_host(labels_on_device(model, images))


def accepts_input_side(model, side: int) -> bool:
    """Whether ``model`` runs on a (1, 3, side, side) zero image (eval mode, no graph, on the
    active backend). Refused means the forward pass raised ValueError: the ops' and networks'
    own geometry checks; anything else propagates."""
    try:
        predict_labels(model, np.zeros((1, 3, side, side), np.float32))
    except ValueError:
        return False
    return True


def input_side_bracket(
    model, failing: int = 0, limit: int = 1024, budget_s: float | None = None
) -> tuple[int, int | None]:
    """(low, high): ``low`` the largest square side known to be refused (at least ``failing``,
    a side already seen to fail; 0: none), ``high`` the smallest known to work (None when none
    up to ``limit`` does). Exact, high == low + 1, unless ``budget_s`` seconds ran out.

    Found by trying (:func:`accepts_input_side`): doubling from ``failing`` until a side works,
    then bisection. Why by trying: the rule follows from every pooling, padding and crop of the
    network (SegNet's five ceil-mode poolings need 17 pixels, SegNet-Basic's four 9, FCN's
    padded first convolution any), so asking the network is simpler and cannot drift from it.
    A refused side costs little (the forward pass stops at the first check that fails); a side
    that works costs a whole forward pass (13 s for the full-size DeconvNet at 200 pixels on
    two busy cores, milliseconds for the small presets), hence the budget.
    """
    t0 = time.perf_counter()
    low, high, side = failing, None, max(2 * failing, 1)
    while high is None:
        if accepts_input_side(model, side):
            high = side
        elif side >= limit:
            return side, None
        else:
            low, side = side, min(2 * side, limit)
    while high - low > 1 and (budget_s is None or time.perf_counter() - t0 < budget_s):
        middle = (low + high) // 2
        if accepts_input_side(model, middle):
            high = middle
        else:
            low = middle
    return low, high


def min_input_side(model, limit: int = 1024) -> int | None:
    """The smallest side s for which ``model`` accepts a (1, 3, s, s) image (None: no side up to
    ``limit``); see :func:`input_side_bracket`."""
    return input_side_bracket(model, 0, limit)[1]


def too_small_error(
    model, name: str, side: int, what: str, hint: str = "", reason: str = "", budget_s: float = 10.0
) -> ConfigError | None:
    """After ``model`` refused images of ``side`` pixels: a ConfigError saying so (``what``: the
    option or file that gave the size; ``hint`` may use ``{needed}``; ``reason``: the refusal's
    own message, quoted when the search for the exact minimum ran out of time), or None when
    larger images are refused too (then the refusal was not about the size: a bug)."""
    low, high = input_side_bracket(model, side, budget_s=budget_s)
    if high is None:
        return None
    if high == low + 1:
        need = f"at least {high}x{high} pixels"
    else:
        need = f"more than {low}x{low} pixels ({high}x{high} work{'; ' + reason if reason else ''})"
    return ConfigError(
        f"{what} is too small for {name.replace('_', '-')}: its poolings need images of {need}"
        f"{hint.format(needed=high)}"
    )


def read_model_file(path) -> dict:
    """The one reader of trained networks for inference: a run folder (its
    ``checkpoint.safetensors``, else its ``model.safetensors``), a training checkpoint or a
    ``minisegnet.io`` weights file. Returns ``{"spec", "arrays", "config", "dataset",
    "source"}``: the model entry (``{"name", "num_classes", "config"}``), the model's state
    dict, the run's TrainConfig as a dict and its dataset's names and colours (None when the
    file does not record them) and the file read.

    Which of the two formats a file is, its header says (``format``): a checkpoint is read and
    checked by ``checkpoint.load`` (optimiser arrays set aside), a weights file by
    ``io.read_config`` and ``io.load_state_dict`` (its JSON beside it is the authority on the
    model and the run). Every problem is a :class:`~minisegnet.checkpoint.CheckpointError`
    naming the file."""
    from minisegnet import io

    path = Path(path)
    weights_path, _ = ckpt.checkpoint_paths(path)
    if path.is_dir() and not weights_path.exists() and (path / "model.safetensors").exists():
        weights_path = path / "model.safetensors"
    if not weights_path.exists():
        raise ckpt.CheckpointError(f"checkpoint {path} does not exist")
    try:
        header = io.read_header(weights_path)
    except io.WeightsFileError as error:
        raise ckpt.CheckpointError(
            f"checkpoint {weights_path} is corrupt or not a safetensors file ({error})"
        ) from None
    if header.get("format") == ckpt.FORMAT:
        document, arrays, _ = ckpt.load(weights_path)
        return {
            "spec": document["model"],
            "arrays": arrays,
            "config": document["config"],
            "dataset": document["dataset"],
            "source": weights_path,
        }
    try:
        meta = io.read_config(weights_path)
        arrays = io.load_state_dict(weights_path)
    except io.WeightsFileError as error:
        raise ckpt.CheckpointError(str(error)) from None
    if not meta.get("model"):
        raise ckpt.CheckpointError(f"{weights_path}: records no model config")
    extra = meta.get("extra") or {}
    return {
        "spec": meta["model"],
        "arrays": arrays,
        "config": extra.get("train_config"),
        "dataset": extra.get("dataset"),
        "source": weights_path,
    }


def load_for_inference(path, model: str | None = None, width=None):
    """(model in eval mode, info) from what :func:`read_model_file` reads. ``info``: ``config``
    (TrainConfig or None), ``class_names``, ``palette``, ``ignore_index``, ``source``.
    ``model``/``width`` build another network than the file's (its weights must fit: every
    mismatched name and shape is listed otherwise)."""
    from minisegnet import io, models

    found = read_model_file(path)
    spec, arrays, dataset, weights_path = (
        found["spec"], found["arrays"], found["dataset"], found["source"]
    )  # fmt: skip
    config = None if found["config"] is None else TrainConfig.from_dict(found["config"])
    try:
        io.check_model_spec(spec, ckpt.checkpoint_paths(weights_path)[1])
    except io.WeightsFileError as err:
        raise ckpt.CheckpointError(str(err)) from None
    name = spec["name"] if model is None else model
    try:
        name = models.canonical_name(name)
    except ValueError:
        where = "--model: unknown" if model is not None else f"{weights_path} records an unknown"
        raise ConfigError(
            f"{where} model {name!r}; valid models: "
            f"{', '.join(n.replace('_', '-') for n in models.names())}"
        ) from None
    options = dict(spec.get("config", {}))
    if name != spec["name"]:
        options = models.small_preset(name)
    if width is not None:
        options["width"] = float(width)
    net = models.build(name, spec["num_classes"], materialize=False, **options)
    ckpt.load_weights_into(net, arrays, weights_path)
    net.eval()
    if dataset is None:
        from minisegnet.data.palette import voc_palette

        dataset = {
            "class_names": [str(i) for i in range(spec["num_classes"])],
            "palette": voc_palette(spec["num_classes"]).tolist(),
            "ignore_index": 255,
        }
    info = {
        "config": config,
        "class_names": list(dataset["class_names"]),
        "palette": np.asarray(dataset["palette"], dtype=np.uint8),
        "ignore_index": dataset.get("ignore_index", 255),
        "source": weights_path,
    }
    return net, info


def input_multiple(model) -> int:
    """The side multiple ``model`` needs (its class attribute ``input_multiple``; default 1)."""
    return int(getattr(model, "input_multiple", 1) or 1)


def pad_to_multiple(images, multiple: int):
    """(N, C, H, W) -> (N, C, H', W') with H', W' the next multiples of ``multiple``, zeros
    added at the bottom and right (same array module as ``images``)."""
    n, c, h, w = images.shape
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return images
    xp = array_module(images)
    return xp.pad(images, ((0, 0), (0, 0), (0, ph), (0, pw)))


def full_frame_scores(model, images, input_scale: float = 1.0):
    """The network's class scores for every pixel of (N, 3, H, W) ``images`` -> (N, K, H, W) on
    the backend's device.

    ``input_scale`` s = 1: the frames are padded to the network's ``input_multiple`` and the
    scores cropped back to (H, W). s != 1 (a network trained on frames scaled by s, e.g. 0.5 to
    train four times faster): the frames are resized bilinearly to (round(sH), round(sW)), run
    as above, and the scores resized bilinearly back to (H, W), so every original pixel is still
    scored once, at full resolution (the papers' protocol) -- only the network looked at fewer
    pixels. Resizing the scores, not the labels, keeps boundaries between coarse pixels smooth.
    """
    from minisegnet import functional as F

    h, w = images.shape[-2:]
    x = to_device(images, backends.current().device)
    sh, sw = (
        (h, w)
        if input_scale == 1
        else (max(1, round(h * input_scale)), max(1, round(w * input_scale)))
    )
    if (sh, sw) != (h, w):
        with ms.no_grad():
            x = F.interpolate(ms.Tensor.from_array(x), size=(sh, sw), mode="bilinear").data
    scores = forward_scores(model, pad_to_multiple(x, input_multiple(model)))[:, :, :sh, :sw]
    if (sh, sw) != (h, w):
        xp = array_module(scores)
        with ms.no_grad():
            small = ms.Tensor.from_array(xp.ascontiguousarray(scores))
            scores = F.interpolate(small, size=(h, w), mode="bilinear").data
    return scores


def predict_full(model, images, input_scale: float = 1.0):
    """Class of every pixel of (N, 3, H, W) ``images`` -> (N, H, W) int64 on the backend's
    device: the argmax of :func:`full_frame_scores` (padded to the network's
    ``input_multiple`` and cropped back; with ``input_scale`` != 1 resized before the network
    and its scores resized back to (H, W))."""
    h, w = images.shape[-2:]
    if input_scale == 1:  # no copy of the scores: the argmax of the cropped padded output
        labels = labels_on_device(model, pad_to_multiple(images, input_multiple(model)))
        return labels[:, :h, :w]
    return full_frame_scores(model, images, input_scale).argmax(axis=1).astype(np.int64)


@contextlib.contextmanager
def size_checked(model, name: str, side: int, what: str, hint: str = ""):
    """Run the body (forward passes of ``model`` on images of ``side`` pixels); a ValueError it
    raises becomes a ConfigError when the images are too small for the network (``what``: the
    option or file that gave the size), and otherwise propagates: a bug."""
    from minisegnet.data import DataError

    try:
        yield
    except DataError:  # a file of the dataset (names itself), not a refused size
        raise
    except ValueError as refusal:
        error = too_small_error(model, name, side, what, hint, reason=str(refusal))
        if error is None:
            raise
        raise error from None


def load_checkpoint(args):
    """``load_for_inference`` for --checkpoint (with --model, --width); its errors name it."""
    try:
        return load_for_inference(args.checkpoint, args.model, args.width)
    except ckpt.CheckpointError as error:
        raise ckpt.CheckpointError(f"--checkpoint: {error}") from None
