"""``minisegnet summary``: a model's layers, output shapes, parameters and multiply-adds, traced
on the backend it would compute on (``models.summary`` makes the table)."""

from __future__ import annotations

from minisegnet import backend, models
from minisegnet.inference import size_checked
from minisegnet.options import ConfigError, check_pixels, use_backend

__all__ = ["command"]


def command(args) -> int:
    """``minisegnet summary``: the layer table of ``args.model`` (its small preset, or the
    paper's configuration with ``--full``) for one ``--size`` x ``--size`` image."""
    try:
        name = models.canonical_name(args.model)
    except ValueError:
        raise ConfigError(
            f"--model: unknown model {args.model!r}; valid models: "
            f"{', '.join(n.replace('_', '-') for n in models.names())}"
        ) from None
    check_pixels(args.size, args.size, f"--size {args.size}")
    options = {} if args.width is None else {"width": args.width}
    preset = "full" if args.full else "small"
    with use_backend(args.backend or backend.DEFAULT):  # built and traced where it computes
        model = models.build(
            name, args.num_classes, preset=preset, seed=0, materialize=not args.full, **options
        )
        with size_checked(model, name, args.size, f"--size {args.size}"):
            table = models.summary(model, (1, 3, args.size, args.size))
        where = backend.current().name
    print(
        f"{name} ({preset} configuration{', width ' + str(args.width) if args.width else ''}), "
        f"{args.num_classes} classes, input 1x3x{args.size}x{args.size}, backend {where}"
    )
    print(table)
    return 0
