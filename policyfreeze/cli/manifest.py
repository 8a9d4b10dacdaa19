"""``policyfreeze manifest``: a model's structure as JSON, so CI lints without torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import common


def register(commands) -> None:
    manifest = common.command(
        commands,
        "manifest",
        help="write a model manifest, so CI can lint without torch or the model's code",
        description=(
            "Write the manifest of a model: module names, classes, children order, parameter names,\n"
            "shapes, dtypes and tied names, as versioned JSON. 'lint --manifest FILE' then gives\n"
            "exactly the findings of 'lint --model SPEC'. --schema prints the format's JSON Schema."
        ),
        examples=[
            "policyfreeze manifest --model torchvision:resnet18 -o resnet18.manifest.json",
            "policyfreeze manifest --schema",
        ],
    )
    what = manifest.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", metavar="SPEC", help=common.MODEL_HELP + " (built on the meta device)")
    what.add_argument("--schema", action="store_true", help="print the JSON Schema of the manifest format")
    manifest.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    common.add_no_cache(manifest)
    manifest.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..model.manifest import json_schema

    if args.schema:
        text = json_schema()
    else:
        text = common.model_manifest(args.model, cache=not args.no_cache).to_json()
    if args.output in (None, common.STDIN):
        sys.stdout.write(text)
    else:
        common.write(Path(args.output), text.encode("utf-8"))
    return common.EXIT_OK
