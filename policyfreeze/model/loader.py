"""``--model`` specs → a model.

Published architectures, built from their code with no weights::

    torchvision:NAME[,KEY=VALUE...]      torchvision.models.get_model(NAME, weights=None, KEY=VALUE...)
    timm:NAME[,KEY=VALUE...]             timm.create_model(NAME, pretrained=False, KEY=VALUE...)
    hf:MODEL[:CLASS][,KEY=VALUE...]      a transformers class built from a config, KEY=VALUE overriding it

where MODEL is a model type (``bert``: ``AutoConfig.for_model``), ``ORG/NAME``
(its config.json in the local Hugging Face cache; nothing is downloaded) or a
directory holding config.json (``./dir``, ``/abs/dir``, ``~/dir``). CLASS is the
transformers class to build (``BertForSequenceClassification``,
``AutoModelForCausalLM``); without it, the config's ``architectures[0]``, else
``AutoModel``. And user code: ``package.module:factory``,
``path/to/file.py:factory``.

``parse_spec`` reads a well-formed spec without importing anything (the model
cache keys on it); only ``build_model`` imports torch and the model's package. Only the
command line imports user code, and only through this module.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PolicyUsageError

SPEC_HELP = (
    "a model is torchvision:NAME, timm:NAME, hf:MODEL[:CLASS] (a model type, ORG/NAME or ./dir), "
    "package.module:factory or path/to/file.py:factory"
)

#: prefix → (the extra that installs what it needs, the distributions that define its models)
PUBLISHED = {
    "torchvision": ("torch", ("torch", "torchvision")),
    "timm": ("timm", ("torch", "timm")),
    "hf": ("hf", ("torch", "transformers")),
}

_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_OPTION_KEY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


class ModelBuildError(PolicyUsageError):
    """The model's own code failed while building it (the spec itself was fine): another device may help."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` spec.

    ``kind`` is ``torchvision``, ``timm``, ``hf``, ``module`` or ``file``;
    ``name`` the model name, the hf MODEL, the module or the file; ``attribute``
    the factory of a module or file, or the hf CLASS ("" for the default);
    ``options`` the KEY=VALUE pairs in order.
    """

    text: str
    kind: str
    name: str
    attribute: str = ""
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def published(self) -> bool:
        """Whether the spec names a published architecture (whose structure only its package versions decide)."""
        return self.kind in PUBLISHED

    @property
    def extra(self) -> str:
        """The ``policyfreeze[...]`` extra that installs what building the model needs."""
        return PUBLISHED[self.kind][0] if self.published else "torch"

    @property
    def packages(self) -> tuple[str, ...]:
        """The distributions whose code defines the model (published specs only)."""
        return PUBLISHED[self.kind][1] if self.published else ()

    @property
    def hf_source(self) -> str:
        """For an hf spec: ``type`` (a model type), ``hub`` (ORG/NAME) or ``directory``."""
        if self.name.startswith((".", "/", "~")) or os.path.isabs(self.name):
            return "directory"
        return "hub" if "/" in self.name else "type"


def parse_spec(text: str) -> ModelSpec:
    """Read a spec; a malformed one is a usage error. Imports nothing (but the libraries whose model names
    a spec without a prefix is compared with, to suggest one)."""
    prefix, colon, rest = text.partition(":")
    if colon and prefix in PUBLISHED:
        return _parse_published(text, prefix, rest)
    target, colon, name = text.rpartition(":")
    if not colon or not target or not name:
        guess = _did_you_mean(_published_spelling(text)) if not colon else ""
        raise PolicyUsageError(f"--model {text!r}: not a model spec{guess}", help=SPEC_HELP)
    return ModelSpec(text, "file" if target.endswith(".py") else "module", target, name)


def _parse_published(text: str, kind: str, rest: str) -> ModelSpec:
    name, *pairs = rest.split(",")
    attribute = ""
    if kind == "hf":
        model, colon, attribute = name.rpartition(":")
        if not colon:
            model, attribute = name, ""
        elif not _IDENTIFIER.fullmatch(attribute):
            raise PolicyUsageError(
                f"--model {text}: {attribute!r} is not a class name: hf:MODEL:CLASS, e.g. hf:bert:BertForMaskedLM"
            )
        name = model
    if not name:
        example = {"hf": "hf:bert", "timm": "timm:resnet50", "torchvision": "torchvision:resnet18"}[kind]
        raise PolicyUsageError(f"--model {text}: the model's name is missing (e.g. {example})")
    options: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key = key.strip()
        if not equals or not _OPTION_KEY.fullmatch(key):
            example = "num_hidden_layers=4" if kind == "hf" else "num_classes=10"
            raise PolicyUsageError(
                f"--model {text}: {pair!r} is not KEY=VALUE: options follow the name, comma-separated "
                f"({kind}:{name}{':' + attribute if attribute else ''},{example})"
            )
        if key in options:
            raise PolicyUsageError(f"--model {text}: {key} is given twice")
        if "." in key and kind != "hf":
            raise PolicyUsageError(f"--model {text}: {key}: only hf: config overrides can have dotted names")
        options[key] = _value(value.strip())
    return ModelSpec(text, kind, name, attribute, tuple(options.items()))


def _value(text: str) -> Any:
    """An option's value: an int, a float, true/false, none, or else the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def build_model(spec: str | ModelSpec, *, device: str | None = None) -> Any:
    """Build the model a spec names (pretrained weights are never loaded).

    A problem with the spec is a ``PolicyUsageError``; the model's own code
    failing is a ``ModelBuildError`` (its cause is the exception).
    """
    parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec)
    torch = _require(parsed, "torch")
    factory = _factory(parsed)
    try:
        if device is None:
            model = factory()
        else:
            with torch.device(device):
                model = factory()
    except Exception as exc:  # the model's code: any failure becomes a usage error
        raise ModelBuildError(f"--model {parsed.text}: building the model failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise PolicyUsageError(
            f"--model {parsed.text}: the factory returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _require(spec: ModelSpec, module: str) -> Any:
    """Import one of the packages the spec needs; a missing one names the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(spec, exc) from None


def _missing(spec: ModelSpec, exc: ImportError) -> PolicyUsageError:
    name = (exc.name or "a package").partition(".")[0]
    why = "is not installed" if isinstance(exc, ModuleNotFoundError) else f"cannot be imported ({exc})"
    return PolicyUsageError(
        f"--model {spec.text} needs {name}, which {why}",
        help=f"install the extra: pip install 'policyfreeze[{spec.extra}]'",
    )


def _factory(spec: ModelSpec) -> Callable[[], Any]:
    """A callable that builds the model, once the spec has been checked against what is installed."""
    options = dict(spec.options)
    if spec.kind == "torchvision":
        return _torchvision(spec, options)
    if spec.kind == "timm":
        return _timm(spec, options)
    if spec.kind == "hf":
        return _hf(spec, options)
    module = _load_file(spec) if spec.kind == "file" else _import(spec)
    factory = getattr(module, spec.attribute, None)
    if not callable(factory):
        # Only the closest name is looked up: getting every attribute of a lazy module (transformers) imports it all.
        public = [name for name in dir(module) if not name.startswith("_")]
        close = [
            f"{spec.name}:{name}" for name in _close(spec.attribute, public) if callable(getattr(module, name, None))
        ]
        raise PolicyUsageError(
            f"--model {spec.text}: {spec.name} has no callable {spec.attribute!r}"
            + _did_you_mean(close or _published_spelling(spec.text))
        )
    return factory


def _torchvision(spec: ModelSpec, options: dict[str, Any]) -> Callable[[], Any]:
    models = _require(spec, "torchvision.models")
    try:
        builder = models.get_model_builder(spec.name)
    except ValueError:
        close = _close(spec.name, models.list_models())
        raise PolicyUsageError(
            f"--model {spec.text}: torchvision has no model {spec.name!r}"
            + _did_you_mean(f"torchvision:{name}" for name in close),
            help=None if close else "torchvision.models.list_models() lists them",
        ) from None
    return lambda: builder(weights=None, **options)


def _timm(spec: ModelSpec, options: dict[str, Any]) -> Callable[[], Any]:
    timm = _require(spec, "timm")
    if not timm.is_model(spec.name):
        close = _close(spec.name, timm.list_models())
        raise PolicyUsageError(
            f"--model {spec.text}: timm has no model {spec.name!r}" + _did_you_mean(f"timm:{name}" for name in close),
            help=None if close else "timm.list_models('PATTERN*') lists them",
        )
    return lambda: timm.create_model(spec.name, pretrained=False, **options)


def _hf(spec: ModelSpec, options: dict[str, Any]) -> Callable[[], Any]:
    _require(spec, "torch")
    transformers = _require(spec, "transformers")
    config = _hf_config(spec, transformers, options)
    model_class = _hf_class(spec, transformers, config)
    if hasattr(model_class, "from_config"):  # an Auto class
        return lambda: model_class.from_config(config)
    # As AutoModel.from_config builds its class: in the config's dtype.
    return lambda: model_class._from_config(config)


def _hf_config(spec: ModelSpec, transformers: Any, options: dict[str, Any]) -> Any:
    """The config, with the options applied as transformers applies them.

    For a model type they are the config class's arguments (so values derived
    from them, such as Llama's ``head_dim``, follow); for a config.json they are
    set on the loaded config, as ``AutoConfig.from_pretrained(path, KEY=VALUE)``
    sets them.
    """
    source = spec.hf_source
    if source == "type":
        known = list(transformers.CONFIG_MAPPING.keys())
        if spec.name not in known:
            raise PolicyUsageError(
                f"--model {spec.text}: transformers has no model type {spec.name!r}"
                + _did_you_mean(f"hf:{name}" for name in _close(spec.name, known)),
                help="a checkpoint is hf:ORG/NAME; a directory with config.json is hf:./path/to/dir",
            )
        default = transformers.AutoConfig.for_model(spec.name)
        arguments: dict[str, Any] = {}
        for key, value in options.items():
            _check_setting(spec, default, key)
            *path, last = key.split(".")
            level = arguments
            for part in path:
                level = level.setdefault(part, {})
            level[last] = value
        return transformers.AutoConfig.for_model(spec.name, **arguments) if arguments else default
    if source == "directory":
        directory = Path(spec.name).expanduser()
        if not (directory / "config.json").is_file():
            raise PolicyUsageError(f"--model {spec.text}: {spec.name} is not a directory holding config.json")
        config = _read_config(spec, transformers, str(directory))
    else:
        config = _read_config(spec, transformers, spec.name)
    for key, value in options.items():
        setattr(*_check_setting(spec, config, key), value)
    return config


def _read_config(spec: ModelSpec, transformers: Any, where: str) -> Any:
    try:
        return transformers.AutoConfig.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        if spec.hf_source == "hub" and isinstance(exc, OSError):
            local = f" (the directory {spec.name} exists: write hf:./{spec.name})" if Path(spec.name).is_dir() else ""
            raise PolicyUsageError(
                f"--model {spec.text}: the config of {spec.name} is not in the local Hugging Face cache"
                f"{local}; policyfreeze never downloads",
                help=f"fetch it with 'hf download {spec.name} config.json', "
                "or pass a directory holding its config.json: hf:./path/to/dir",
            ) from None
        raise PolicyUsageError(
            f"--model {spec.text}: cannot read the config: {type(exc).__name__}: {_first_line(exc)}"
        ) from None


def _check_setting(spec: ModelSpec, config: Any, key: str) -> tuple[Any, str]:
    """The (sub-)config a dotted KEY names and its last part; a name the config lacks is refused (a typo
    would be ignored)."""
    *path, last = key.split(".")
    target = config
    for part in path:
        target = getattr(target, part, None)
        if target is None or not hasattr(target, "to_dict"):
            raise PolicyUsageError(f"--model {spec.text}: {key}: the config has no sub-config {part!r}")
    known = list(target.to_dict())
    if last not in known and not hasattr(target, last):
        raise PolicyUsageError(
            f"--model {spec.text}: the {type(target).__name__} has no setting {last!r}"
            + _did_you_mean(
                spec.text.replace(f",{key}=", f",{'.'.join([*path, name])}=", 1) for name in _close(last, known)
            )
        )
    return target, last


def _hf_class(spec: ModelSpec, transformers: Any, config: Any) -> Any:
    name = spec.attribute
    if not name:
        architectures = getattr(config, "architectures", None) or []
        name = next((arch for arch in architectures if hasattr(transformers, arch)), "AutoModel")
    model_class = getattr(transformers, name, None)
    if not isinstance(model_class, type) or not (
        hasattr(model_class, "from_config") or issubclass(model_class, transformers.PreTrainedModel)
    ):
        classes = [n for n in dir(transformers) if n.endswith("Model") or "For" in n]
        raise PolicyUsageError(
            f"--model {spec.text}: transformers has no model class {name!r}"
            + _did_you_mean(f"hf:{spec.name}:{c}" for c in _close(name, classes)),
            help="CLASS is a transformers model class (BertForSequenceClassification) or an Auto class "
            "(AutoModelForCausalLM)",
        )
    return model_class


def _import(spec: ModelSpec) -> Any:
    # As `python -m policyfreeze` does, the current directory comes first, also for the console script.
    here = os.getcwd()
    if "" not in sys.path and here not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(spec.name)
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] == "torch":
            raise _missing(spec, exc) from None
        hint = _published_spelling(spec.text) if exc.name == spec.name.partition(".")[0] else []
        raise PolicyUsageError(f"--model {spec.text}: cannot import {spec.name}: {exc}" + _did_you_mean(hint)) from None
    except Exception as exc:
        raise PolicyUsageError(
            f"--model {spec.text}: importing {spec.name} failed: {type(exc).__name__}: {exc}"
        ) from None


def _load_file(spec: ModelSpec) -> Any:
    path = Path(spec.name)
    if not path.is_file():
        raise PolicyUsageError(f"--model {spec.text}: no such file {path}")
    module_name = "_policyfreeze_model_" + re.sub(r"\W", "_", path.stem)
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise PolicyUsageError(f"--model {spec.text}: {path} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] == "torch":
            raise _missing(spec, exc) from None
        raise PolicyUsageError(f"--model {spec.text}: running the file failed: ImportError: {exc}") from None
    except Exception as exc:
        raise PolicyUsageError(f"--model {spec.text}: running the file failed: {type(exc).__name__}: {exc}") from None
    return module


# Suggestions ----------------------------------------------------------------


def _close(word: str, candidates: Iterable[str]) -> list[str]:
    """The candidate most like ``word`` (difflib), if any is close: one good guess beats a list.

    A name that extends ``word`` comes first, the shortest: ``vit_base_patch16`` means ``vit_base_patch16_224``.
    """
    names = list(candidates)
    extending = [name for name in names if name.startswith(word)] if word else []
    if extending:
        return [min(extending, key=lambda name: (len(name), name))]
    return difflib.get_close_matches(word, names, n=1, cutoff=0.6)


def _did_you_mean(specs: Iterable[str]) -> str:
    found = list(dict.fromkeys(specs))
    if not found:
        return ""
    return "; did you mean " + " or ".join(f"'{spec}'" for spec in found) + "?"


def _published_spelling(text: str) -> list[str]:
    """What ``text`` probably meant as a published spec: a misspelt prefix, or a model name without one."""
    prefix, colon, rest = text.partition(":")
    if colon:
        close = difflib.get_close_matches(prefix.lower(), [*PUBLISHED, "transformers"], n=1, cutoff=0.6)
        if not close:
            return []
        return [f"{'hf' if close[0] == 'transformers' else close[0]}:{rest}"]
    return [f"{prefix}:{name}" for prefix, name in _published_names(text)]


def _published_names(name: str) -> list[tuple[str, str]]:
    """Where a bare model name is published: an exact name in each installed library, else the closest one."""
    catalogues = []
    for prefix, listing in (("torchvision", _torchvision_names), ("timm", _timm_names), ("hf", _hf_names)):
        try:
            catalogues.append((prefix, listing()))
        except Exception:  # a library that is missing or broken suggests nothing
            continue
    exact = [(prefix, name) for prefix, names in catalogues if name in names]
    if exact:
        return exact
    best: tuple[float, str, str] | None = None
    for prefix, names in catalogues:
        for close in _close(name, names):
            ratio = difflib.SequenceMatcher(None, name, close).ratio()
            if best is None or ratio > best[0]:
                best = (ratio, prefix, close)
    return [best[1:]] if best else []


def _torchvision_names() -> list[str]:
    import torchvision.models

    return torchvision.models.list_models()


def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


def _hf_names() -> list[str]:
    import transformers

    return list(transformers.CONFIG_MAPPING.keys())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
