"""``--model`` specs: torchvision, timm and Hugging Face models built on the meta device, their options,
the messages for a wrong spec (golden), missing packages, and user modules found from the current directory.

Regenerate the golden messages after an intended change with:
UPDATE_GOLDEN=1 python -m pytest tests/test_loader.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision
import transformers

from policyfreeze.cli import main
from policyfreeze.model.loader import ModelSpec, build_model, parse_spec
from policyfreeze.model.tree import ModelTree
from policyfreeze.model.walk import walk

ROOT = Path(__file__).parent.parent
GOLDEN = ROOT / "tests" / "golden" / "model-specs.txt"
CONSOLE_SCRIPT = Path(sys.executable).parent / "policyfreeze"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def tiny_bert_config(**changes) -> transformers.PretrainedConfig:
    settings = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2, vocab_size=99)
    return transformers.AutoConfig.for_model("bert", **{**settings, **changes})


def write_config(directory: Path, config: transformers.PretrainedConfig) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(config.to_json_string(), encoding="utf-8")
    return directory


def hub_cache(root: Path, repo: str, config: transformers.PretrainedConfig) -> Path:
    """A Hugging Face hub cache holding one checkpoint's config.json, laid out as huggingface_hub lays it out."""
    repository = root / ("models--" + repo.replace("/", "--"))
    (repository / "refs").mkdir(parents=True)
    (repository / "refs" / "main").write_text("0123abcd")
    write_config(repository / "snapshots" / "0123abcd", config)
    return root


# --- parsing ----------------------------------------------------------------------------

PARSED = [
    ("torchvision:resnet18", ModelSpec("torchvision:resnet18", "torchvision", "resnet18")),
    (
        "torchvision:resnet18,num_classes=10",
        ModelSpec("torchvision:resnet18,num_classes=10", "torchvision", "resnet18", "", (("num_classes", 10),)),
    ),
    (
        "timm:vit_tiny_patch16_224,drop_rate=0.1,global_pool=avg,class_token=false",
        ModelSpec(
            "timm:vit_tiny_patch16_224,drop_rate=0.1,global_pool=avg,class_token=false",
            "timm",
            "vit_tiny_patch16_224",
            "",
            (("drop_rate", 0.1), ("global_pool", "avg"), ("class_token", False)),
        ),
    ),
    ("hf:bert", ModelSpec("hf:bert", "hf", "bert")),
    (
        "hf:bert:BertForSequenceClassification,num_labels=3,classifier_dropout=none",
        ModelSpec(
            "hf:bert:BertForSequenceClassification,num_labels=3,classifier_dropout=none",
            "hf",
            "bert",
            "BertForSequenceClassification",
            (("num_labels", 3), ("classifier_dropout", None)),
        ),
    ),
    ("hf:org/name:AutoModel", ModelSpec("hf:org/name:AutoModel", "hf", "org/name", "AutoModel")),
    ("hf:./dir", ModelSpec("hf:./dir", "hf", "./dir")),
    (
        "hf:clip,vision_config.num_hidden_layers=1",
        ModelSpec(
            "hf:clip,vision_config.num_hidden_layers=1", "hf", "clip", "", (("vision_config.num_hidden_layers", 1),)
        ),
    ),
    ("mymodels:factory", ModelSpec("mymodels:factory", "module", "mymodels", "factory")),
    ("pkg.models:make", ModelSpec("pkg.models:make", "module", "pkg.models", "make")),
    ("path/to/models.py:tiny", ModelSpec("path/to/models.py:tiny", "file", "path/to/models.py", "tiny")),
]


@pytest.mark.parametrize(("text", "expected"), PARSED, ids=[text for text, _ in PARSED])
def test_parse_spec(text: str, expected: ModelSpec) -> None:
    assert parse_spec(text) == expected


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("bert", "type"),
        ("meta-llama/Llama-3.2-1B", "hub"),
        ("./dir", "directory"),
        ("../up", "directory"),
        ("/abs/dir", "directory"),
        ("~/dir", "directory"),
    ],
)
def test_hf_sources(name: str, source: str) -> None:
    assert parse_spec(f"hf:{name}").hf_source == source


def test_parsing_imports_nothing() -> None:
    code = (
        "import sys\n"
        "from policyfreeze.model.loader import parse_spec\n"
        "parse_spec('hf:llama:AutoModelForCausalLM,num_hidden_layers=2')\n"
        "parse_spec('timm:resnet18'); parse_spec('torchvision:resnet18')\n"
        "print(sorted(m for m in ('torch', 'transformers', 'timm', 'torchvision') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- building ---------------------------------------------------------------------------


def tree_of(model: torch.nn.Module) -> ModelTree:
    return walk(model).tree


BUILT = [
    # (spec, the same model built by hand)
    ("torchvision:resnet18,num_classes=10", lambda: torchvision.models.resnet18(weights=None, num_classes=10)),
    ("timm:resnet18", lambda: timm.create_model("resnet18", pretrained=False)),
    ("timm:vit_tiny_patch16_224,num_classes=7", lambda: timm.create_model("vit_tiny_patch16_224", num_classes=7)),
    ("hf:bert,num_hidden_layers=2", lambda: transformers.BertModel(transformers.BertConfig(num_hidden_layers=2))),
    (
        "hf:bert:BertForSequenceClassification,num_hidden_layers=1,num_labels=3",
        lambda: transformers.BertForSequenceClassification(transformers.BertConfig(num_hidden_layers=1, num_labels=3)),
    ),
    (
        "hf:llama:AutoModelForCausalLM,num_hidden_layers=2,hidden_size=64,intermediate_size=128,"
        "num_attention_heads=4,num_key_value_heads=2,vocab_size=128",
        lambda: transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                num_hidden_layers=2,
                hidden_size=64,
                intermediate_size=128,
                num_attention_heads=4,
                num_key_value_heads=2,
                vocab_size=128,
            )
        ),
    ),
    ("hf:gpt2:GPT2LMHeadModel,n_layer=1", lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1))),
    (
        "hf:clip,vision_config.num_hidden_layers=1,text_config.num_hidden_layers=1",
        lambda: transformers.CLIPModel(
            transformers.CLIPConfig(vision_config={"num_hidden_layers": 1}, text_config={"num_hidden_layers": 1})
        ),
    ),
]


@pytest.mark.parametrize(("spec", "by_hand"), BUILT, ids=[spec for spec, _ in BUILT])
def test_published_models_are_built_as_their_library_builds_them(spec: str, by_hand) -> None:
    model = build_model(spec, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    with torch.device("meta"):
        expected = by_hand()
    assert tree_of(model) == tree_of(expected)  # every name, shape, dtype, class and tie


def test_hf_directory_builds_its_architecture_and_a_class_chosen(tmp_path: Path) -> None:
    config = tiny_bert_config(architectures=["BertForMaskedLM"])
    write_config(tmp_path / "tiny", config)
    default = build_model(f"hf:{tmp_path / 'tiny'}", device="meta")
    chosen = build_model(f"hf:{tmp_path / 'tiny'}:BertForTokenClassification,num_labels=5", device="meta")
    with torch.device("meta"):
        assert tree_of(default) == tree_of(transformers.BertForMaskedLM(config))
        expected = transformers.BertForTokenClassification(
            tiny_bert_config(architectures=["BertForMaskedLM"], num_labels=5)
        )
    assert tree_of(chosen) == tree_of(expected)


def test_hf_model_type_without_a_class_is_the_base_model() -> None:
    assert type(build_model("hf:llama", device="meta")).__name__ == "LlamaModel"


def test_hf_config_dtype_is_kept(tmp_path: Path) -> None:
    write_config(tmp_path / "bf16", tiny_bert_config(dtype="bfloat16"))
    for head in ("", ":BertModel"):
        model = build_model(f"hf:{tmp_path / 'bf16'}{head}", device="meta")
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_relative_hf_directory(tmp_path: Path, monkeypatch) -> None:
    write_config(tmp_path / "models" / "tiny", tiny_bert_config())
    monkeypatch.chdir(tmp_path)
    assert type(build_model("hf:./models/tiny", device="meta")).__name__ == "BertModel"


def test_hf_checkpoint_from_the_local_cache(tmp_path: Path, monkeypatch, capsys, model_cache: Path) -> None:
    """ORG/NAME reads the snapshot in the hub cache, nothing downloaded; the model cache keys on that config."""
    import huggingface_hub.constants

    hub = hub_cache(tmp_path / "hub", "tiny-org/tiny-bert", tiny_bert_config(architectures=["BertForMaskedLM"]))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))  # for a process started now,
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))  # and for this one, already started
    assert type(build_model("hf:tiny-org/tiny-bert", device="meta")).__name__ == "BertForMaskedLM"
    assert main(["manifest", "--model", "hf:tiny-org/tiny-bert"]) == 0
    built = capsys.readouterr()
    assert main(["manifest", "--model", "hf:tiny-org/tiny-bert"]) == 0
    assert capsys.readouterr() == built
    assert len(list((model_cache / "manifests").iterdir())) == 1
    assert '"cls.predictions.transform.dense.weight"' in built.out


def test_build_failure_is_a_build_error_with_its_cause() -> None:
    from policyfreeze.model.loader import ModelBuildError

    with pytest.raises(ModelBuildError) as info:
        build_model(f"{ROOT / 'tests' / 'lint_corpus' / 'models.py'}:needs_data", device="meta")
    assert info.value.__cause__ is not None


# --- the commands, offline, on the models the issue names --------------------------------


@pytest.mark.parametrize(
    ("spec", "policy", "trainable"),
    [
        ("hf:llama", "freeze all\nunfreeze norm\n", "4,096 of 6,607,343,616"),
        ("timm:vit_base_patch16_224", "freeze all\nunfreeze head\n", "769,000 of 86,567,656"),
    ],
)
def test_plan_on_hugging_face_and_timm_models_offline(spec: str, policy: str, trainable: str, tmp_path: Path) -> None:
    path = tmp_path / "p.freeze"
    path.write_text(policy)
    env = {**os.environ, **OFFLINE}
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "plan", str(path), "--model", spec, "--format", "tree"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert trainable in done.stdout.splitlines()[0]


# --- messages -----------------------------------------------------------------------------

WRONG_SPECS = [
    "torchvision:vit_b16",
    "torchvision:nonet",
    "resnet18",
    "vit_base_patch16_224",
    "llama",
    "no-colon",
    "torchvison:resnet18",
    "transformers:bert",
    "timm:vit_base_patch16",
    "timm:resnett50",
    "hf:lama",
    "hf:",
    "hf:bert:BertForSequenceClasification",
    "hf:bert:bad-class",
    "hf:bert,4",
    "hf:bert,num_hiden_layers=2",
    "hf:clip,vision_conf.num_hidden_layers=1",
    "hf:bert,num_hidden_layers=2,num_hidden_layers=3",
    "hf:policyfreeze-tests/not-cached",
    "hf:./no-such-dir",
    "timm:resnet18,drop.rate=0.1",
    "mymodels:factory",
    "tests/lint_corpus/models.py:tide",
    "tests/lint_corpus/missing.py:tied",
    "torchvision:resnet18,no_such_option=1",
]


def test_wrong_specs_say_what_was_meant(capsys, monkeypatch) -> None:
    """One golden file: each wrong spec and the whole message `policyfreeze manifest --model SPEC` prints."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_HUB_CACHE", str(ROOT / "tests" / "no-such-hub-cache"))
    parts = []
    for spec in WRONG_SPECS:
        status = main(["manifest", "--model", spec])
        out, err = capsys.readouterr()
        assert (status, out) == (2, ""), spec
        assert "Traceback" not in err and "internal error" not in err
        parts.append(f"$ policyfreeze manifest --model {spec}\n{err}")
    actual = "\n".join(parts)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(actual, encoding="utf-8")
    assert actual == GOLDEN.read_text(encoding="utf-8")


def test_no_spec_error_triggers_the_cpu_fallback(capsys) -> None:
    status = main(["manifest", "--model", "torchvision:vit_b16"])
    assert status == 2
    assert "note:" not in capsys.readouterr().err


# --- missing packages -----------------------------------------------------------------------

MISSING = [
    # (package made unimportable, spec, the extra the message names)
    ("torch", "torchvision:resnet18", "torch"),
    ("torch", "tests/lint_corpus/models.py:tied", "torch"),
    ("torch", "hf:bert", "hf"),
    ("torchvision", "torchvision:resnet18", "torch"),
    ("transformers", "hf:bert", "hf"),
    ("timm", "timm:resnet18", "timm"),
]

# One process for every case: sys.modules[name] = None is how Python marks a module that cannot be imported.
MISSING_SCRIPT = """
import contextlib, io, json, sys
from policyfreeze.cli import main

results = []
for package, spec in json.loads(sys.argv[1]):
    sys.modules[package] = None
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["plan", "policies/bitfit.freeze", "--model", spec])
    del sys.modules[package]
    results.append([status, err.getvalue()])
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def missing_results() -> dict[tuple[str, str], tuple[int, str]]:
    cases = [[package, spec] for package, spec, _ in MISSING]
    done = subprocess.run(
        [sys.executable, "-c", MISSING_SCRIPT, json.dumps(cases)], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return {(package, spec): tuple(result) for (package, spec), result in zip(cases, json.loads(done.stdout))}


@pytest.mark.parametrize(("package", "spec", "extra"), MISSING, ids=[f"{p}-{s}" for p, s, _ in MISSING])
def test_a_missing_package_names_the_extra(package: str, spec: str, extra: str, missing_results) -> None:
    status, err = missing_results[package, spec]
    assert status == 2, err
    assert f"pip install 'policyfreeze[{extra}]'" in err
    assert f"needs {package}" in err
    assert "internal error" not in err and "Traceback" not in err


# --- user modules from the current directory --------------------------------------------------


def test_console_script_imports_modules_from_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\n\ndef factory():\n    return nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the worktree's policyfreeze, not the current directory
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "manifest", "--model", "mymodels:factory"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert [p["name"] for p in json.loads(done.stdout)["parameters"]] == ["0.weight", "0.bias", "1.weight", "1.bias"]
