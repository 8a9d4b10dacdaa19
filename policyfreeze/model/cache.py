"""A cache of model manifests, so ``--model`` commands on a published architecture need no torch.

A spec that names a published architecture (``torchvision:``, ``timm:``,
``hf:``) builds a model whose structure depends only on the spec and on the
code that defines it. Its manifest is kept in ``$POLICYFREEZE_CACHE_DIR``, else
``$XDG_CACHE_HOME/policyfreeze``, else ``~/.cache/policyfreeze``, under
``manifests/<sha256 of the key>.json``, and read back instead of building the
model. The key holds the spec as written, the versions of the distributions
that define the model (read from their metadata: nothing is imported), for an
``hf:`` checkpoint or directory the digest of its config.json, policyfreeze's
version and the digest of the modules that turn a model into a manifest (so a
development checkout never reads what an older walk wrote).

An entry is one line of JSON (format, version, key) then the manifest. It is
untrusted input: one whose header differs from the expected key, or whose
manifest does not validate, is ignored and rebuilt, never an error. Entries
are written to a temporary file in the same directory and renamed over the
entry (``os.replace``), so a reader sees a whole entry or none, however many
processes write at once. A cache that cannot be written is skipped silently.

User code (``package.module:factory``, ``file.py:factory``) is never cached:
what it builds can depend on any file it imports, any environment variable,
anything at all.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import directory, read_entry, write_atomically
from .loader import ModelSpec
from .manifest import Manifest, parse, to_tree
from .tree import ModelTree

ENTRY_FORMAT = "policyfreeze-model-cache"
ENTRY_VERSION = 1


@dataclass(frozen=True)
class Entry:
    """Where the manifest of one keyed model lives, and the header it must carry."""

    path: Path
    header: dict[str, Any]


def entry(spec: ModelSpec, project_version: str) -> Entry | None:
    """The cache entry for ``spec``, or None when it cannot be cached (user code, a package missing...)."""
    if not spec.published:
        return None
    root = directory()
    if root is None:
        return None
    from importlib import metadata

    try:
        versions = {name: metadata.version(name) for name in spec.packages}
    except metadata.PackageNotFoundError:
        return None  # building it will say what to install
    key: dict[str, Any] = {
        "spec": spec.text,
        "packages": versions,
        "policyfreeze": project_version,
        "walk": _walk_digest(),
    }
    if spec.kind == "hf" and spec.hf_source != "type":
        config = _hf_config_file(spec)
        if config is None:
            return None  # not on this machine: building it will say how to fetch it
        try:
            key["config"] = hashlib.sha256(config.read_bytes()).hexdigest()
        except OSError:
            return None
    header = {"format": ENTRY_FORMAT, "version": ENTRY_VERSION, "key": key}
    digest = hashlib.sha256(_line(key).encode("utf-8")).hexdigest()
    return Entry(root / "manifests" / f"{digest}.json", header)


def read(cached: Entry) -> tuple[Manifest, ModelTree] | None:
    """The cached manifest and its tree, or None when there is none or it cannot be trusted."""
    data = read_entry(cached.path)
    if data is None:
        return None
    try:
        header, _, text = data.decode("utf-8").partition("\n")
        if json.loads(header) != cached.header:
            return None  # another key whose digest collides, or another format
        manifest = parse(text, str(cached.path))
        if manifest.model != cached.header["key"]["spec"]:
            return None
        return manifest, to_tree(manifest)
    except Exception:  # untrusted bytes: whatever reading them raises, the model is built instead
        return None


def write(cached: Entry, manifest: Manifest) -> None:
    """Store ``manifest`` atomically; a cache that cannot be written is skipped."""
    write_atomically(cached.path, (_line(cached.header) + "\n" + manifest.to_json()).encode("utf-8"))


def _line(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _walk_digest() -> str:
    """The digest of this package's model modules: they decide what a model's manifest holds."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _hf_config_file(spec: ModelSpec) -> Path | None:
    """The config.json an hf: checkpoint or directory spec builds from, found without importing transformers.

    A checkpoint's is the snapshot ``refs/main`` points to in the Hugging Face
    cache, located as huggingface_hub locates it.
    """
    if spec.hf_source == "directory":
        path = Path(spec.name).expanduser() / "config.json"
        return path if path.is_file() else None
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    repository = Path(os.path.expandvars(os.path.expanduser(hub))) / ("models--" + spec.name.replace("/", "--"))
    try:
        revision = (repository / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    path = repository / "snapshots" / revision / "config.json"
    return path if revision and "/" not in revision and path.is_file() else None
