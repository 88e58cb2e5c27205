"""The `fastfill` command line: a thin click shell over the public API.

Exit codes (DESIGN.md §3): 0 all done, 1 some inputs failed, 2 usage or engine error.
Known errors (FastfillError) print one line; set FASTFILL_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import os
import sys

import click

from .errors import FastfillError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastfill")
def cli():
    """fastfill: fill the masked regions of images (object removal)."""


@cli.command()
def info():
    """Print the build of the native kernels and the installed back-ends."""
    from . import ops

    click.echo(f"fastfill {__import__('fastfill').__version__}")
    b = ops.build_info()
    click.echo(f"native kernels: {', '.join(b['backends'])}"
               f" (OpenMP: {'yes, ' + str(b['omp_max_threads']) + ' threads' if b['openmp'] else 'no'})")
    if "cuda" in b["backends"]:
        click.echo(f"CUDA runtime: {b['cuda_runtime_status']}")
    from importlib import metadata

    # Versions from the installed distributions: importing torch or TensorRT just to print a
    # version would take seconds.
    for dist in ("numpy", "onnxruntime", "onnxruntime-gpu", "pillow", "torch", "onnx", "tensorrt",
                 "openvino", "av", "ray"):
        try:
            click.echo(f"{dist}: {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            click.echo(f"{dist}: not installed")


def main(argv=None):
    """Entry point: run the click group, turning known errors into one line and an exit code."""
    try:
        # Commands return their exit code (0/1/2) so that this one place decides how to leave.
        rv = cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_USAGE)
    except FastfillError as e:
        if os.environ.get("FASTFILL_DEBUG"):
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)


if __name__ == "__main__":
    main()
