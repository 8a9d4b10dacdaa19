"""Model manifests: ModelTree ⇄ manifest is exact, so lint against a manifest equals lint against the model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import models
import pytest
import torch
import torchvision

from policyfreeze.cli import main
from policyfreeze.errors import PolicyUsageError
from policyfreeze.language.source import Source
from policyfreeze.lint import lint
from policyfreeze.model import manifest as manifests
from policyfreeze.model.tree import ModelTree
from policyfreeze.model.walk import tree_of

ROOT = Path(__file__).parent.parent
TORCHVISION = ["resnet18", "mobilenet_v3_small", "vit_b_16", "convnext_tiny", "efficientnet_b0", "swin_t"]


@pytest.fixture(scope="module")
def trees() -> dict[str, ModelTree]:
    out = {}
    with torch.device("meta"):
        for name in TORCHVISION:
            out[name] = tree_of(torchvision.models.get_model(name, weights=None))
    for name, factory in models.FACTORIES.items():
        if name != "resnet18":
            out[name] = tree_of(factory())
    return out


def round_trip(tree: ModelTree) -> ModelTree:
    text = manifests.from_tree(tree, model="spec").to_json()
    return manifests.to_tree(manifests.parse(text))


@pytest.mark.parametrize("name", TORCHVISION + [n for n in models.FACTORIES if n != "resnet18"])
def test_tree_round_trips_exactly(trees, name: str) -> None:
    tree = trees[name]
    rebuilt = round_trip(tree)
    assert rebuilt == tree
    assert rebuilt.dotted_names == tree.dotted_names


def test_manifest_records_tied_parameters_and_shared_modules(trees) -> None:
    tied = manifests.from_tree(trees["tied"])
    [embedding] = [p for p in tied.parameters if p.name == "embed.weight"]
    assert embedding.aliases == ["head.weight"]
    shared = manifests.from_tree(trees["shared"])
    assert [(m.name, m.aliases) for m in shared.modules] == [("", []), ("a", ["b"]), ("c", [])]
    assert shared.modules[0].children == ["a", "b", "c"]


def test_manifest_records_classes_shapes_and_running_statistics(trees) -> None:
    document = json.loads(manifests.from_tree(trees["resnet18"], model="torchvision:resnet18").to_json())
    assert (document["format"], document["version"], document["model"]) == (
        "policyfreeze-manifest",
        1,
        "torchvision:resnet18",
    )
    bn1 = next(m for m in document["modules"] if m["name"] == "bn1")
    assert bn1 == {
        "name": "bn1",
        "classes": ["BatchNorm2d", "_BatchNorm", "_NormBase"],
        "children": [],
        "parameters": ["weight", "bias"],
        "aliases": [],
        "pinned": False,
        "running_stats": True,
    }
    assert document["parameters"][0] == {
        "name": "conv1.weight",
        "shape": [64, 3, 7, 7],
        "dtype": "float32",
        "requires_grad": True,
        "aliases": [],
    }


POLICIES = sorted((ROOT / "policies").glob("*.freeze")) + [
    ROOT / "tests" / "lint_corpus" / name
    for name in ("schedule-stages.freeze", "pf202-dead.freeze", "pf203-no-op.freeze", "noqa.freeze")
]
EXTRA = [
    "freeze all\nunfreeze *.bias\nfreeze match /norm/i\neval type(*Norm*)",
    "freeze children[0:2]; unfreeze children[-1]\nfreeze features.children[::2]",
    "unfreeze all\nfreeze embed\nfreeze head\nfreeze a, b\nunfreeze table",
]


@pytest.mark.parametrize("name", TORCHVISION + ["tied", "shared", "intparam", "keywords", "mro"])
def test_lint_against_the_manifest_equals_lint_against_the_model(trees, name: str) -> None:
    live, rebuilt = trees[name], round_trip(trees[name])
    texts = [(p.name, p.read_text(encoding="utf-8")) for p in POLICIES] + [
        (f"extra{i}", t) for i, t in enumerate(EXTRA)
    ]
    for source_name, text in texts:
        source = Source(source_name, text)
        assert list(lint(source, rebuilt)) == list(lint(source, live)), source_name


@pytest.mark.parametrize("spec", ["torchvision:resnet18", "torchvision:mobilenet_v3_small"])
def test_cli_lint_with_manifest_prints_what_lint_with_model_prints(
    spec: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(ROOT)
    manifest = tmp_path / "model.json"
    assert main(["manifest", "--model", spec, "-o", str(manifest)]) == 0
    argv = ["lint", "policies/", "tests/lint_corpus/schedule-stages.freeze", "--format", "json"]
    capsys.readouterr()
    with_model = main([*argv, "--model", spec]), capsys.readouterr().out
    with_manifest = main([*argv, "--manifest", str(manifest)]), capsys.readouterr().out
    assert with_manifest == with_model
    assert json.loads(with_model[1])["counts"]["findings"] > 0


def test_manifest_is_deterministic(trees) -> None:
    with torch.device("meta"):
        again = tree_of(torchvision.models.resnet18())
    assert manifests.from_tree(again).to_json() == manifests.from_tree(trees["resnet18"]).to_json()


def test_schema_command_prints_the_json_schema(capsys) -> None:
    assert main(["manifest", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(manifests.json_schema())
    assert schema["properties"]["version"]["const"] == 1
    assert set(schema["required"]) == {"modules", "parameters"}
    assert schema["$defs"]["ModuleEntry"]["additionalProperties"] is False


def _valid() -> dict:
    return {
        "format": "policyfreeze-manifest",
        "version": 1,
        "modules": [
            {"name": "", "classes": ["Net"], "children": ["fc"]},
            {"name": "fc", "classes": ["Linear"], "parameters": ["weight"]},
        ],
        "parameters": [{"name": "fc.weight", "shape": [2, 2], "dtype": "float32", "requires_grad": True}],
    }


def _edited(path: str, value) -> str:
    document = _valid()
    target = document
    keys = path.split("/")
    for key in keys[:-1]:
        target = target[int(key) if key.isdigit() else key]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return json.dumps(document)


BAD = [
    ("{", "not JSON"),
    ("[]", "invalid manifest at the document"),
    ('{"format": "other"}', "not a policyfreeze manifest"),
    (_edited("version", 2), "manifest version 2 is newer than this policyfreeze reads (1)"),
    (_edited("modules", KeyError), "invalid manifest at modules: Field required"),
    (_edited("modules/1/classes", KeyError), "invalid manifest at modules.1.classes"),
    (_edited("modules/0/children", ["fc.x"]), "invalid manifest at modules.0.children.0"),
    (_edited("modules/0/children", ["fc", "gone"]), "no module named 'gone'"),
    (_edited("modules/1/parameters", ["bias"]), "no parameter named 'fc.bias'"),
    (_edited("modules/0/name", "fc"), "'fc' names two entries"),
    (_edited("parameters/0/shape", [-1]), "invalid manifest at parameters.0.shape.0"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_manifest_is_a_usage_error(text: str, message: str) -> None:
    with pytest.raises(PolicyUsageError) as caught:
        manifests.to_tree(manifests.parse(text, "m.json"))
    assert message in str(caught.value)


def test_a_manifest_that_describes_a_cycle_ends(tmp_path: Path) -> None:
    document = _valid()
    document["modules"][1]["children"] = ["loop"]
    document["modules"][0]["aliases"] = ["fc.loop"]  # fc.loop is the root again
    with pytest.raises(PolicyUsageError, match="no module named 'fc.loop.fc'|names two entries|no parameter"):
        manifests.to_tree(manifests.parse(json.dumps(document)))


def test_cli_bad_manifest_exits_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(_edited("version", 2))
    assert main(["lint", str(ROOT / "policies"), "--manifest", str(bad)]) == 2
    assert "newer than this policyfreeze reads" in capsys.readouterr().err
    assert main(["lint", str(ROOT / "policies"), "--manifest", str(tmp_path / "missing.json")]) == 2


def test_hostile_manifests_are_usage_errors() -> None:
    cases = {
        "nested": "[" * 100_000 + "]" * 100_000,
        "huge-number": '{"format": "policyfreeze-manifest", "version": ' + "9" * 5000 + "}",
        "negative-shape": (
            '{"format": "policyfreeze-manifest", "version": 1, "modules": [{"name": "", "classes": ["M"], '
            '"parameters": ["w"]}], "parameters": [{"name": "w", "shape": [-1], "dtype": "float32", "requires_grad": true}]}'
        ),
    }
    for name, text in cases.items():
        with pytest.raises(PolicyUsageError):
            manifests.parse(text, name)


def _manifest(modules: list[dict], parameters: list[dict]) -> str:
    return json.dumps({"format": "policyfreeze-manifest", "version": 1, "modules": modules, "parameters": parameters})


def _param(name: str, **more) -> dict:
    return {"name": name, "shape": [1], "dtype": "float32", "requires_grad": True, **more}


NOT_A_TREE = [
    pytest.param(
        [{"name": "", "classes": ["M"], "children": ["a", "a"]}, {"name": "a", "classes": ["L"]}],
        [],
        "module '' lists 'a' twice",
        id="child-twice",
    ),
    pytest.param(
        [{"name": "", "classes": ["M"], "children": ["w"], "parameters": ["w"]}, {"name": "w", "classes": ["L"]}],
        [_param("w")],
        "module '' lists 'w' twice",
        id="child-and-parameter",
    ),
    pytest.param(
        [{"name": "", "classes": ["M"]}, {"name": "lost", "classes": ["L"]}],
        [],
        "module 'lost' is not reached from the root",
        id="unreached-module",
    ),
    pytest.param(
        [{"name": "", "classes": ["M"]}],
        [_param("w")],
        "parameter 'w' is not reached from the root",
        id="unreached-parameter",
    ),
    pytest.param(
        [
            {"name": "", "classes": ["M"], "children": ["a", "b"]},
            {"name": "b", "classes": ["L"]},
            {"name": "a", "classes": ["L"]},
        ],
        [],
        "'a' comes before 'b' in named_modules() order, not after it",
        id="out-of-order",
    ),
    pytest.param(
        [{"name": "", "classes": ["M"], "children": ["a", "b"]}, {"name": "b", "classes": ["L"], "aliases": ["a"]}],
        [],
        "'b' is first reached as 'a', which must be its name",
        id="alias-first",
    ),
]


@pytest.mark.parametrize(("modules", "parameters", "message"), NOT_A_TREE)
def test_a_manifest_that_is_not_a_tree_with_one_path_per_name_is_refused(
    modules, parameters, message, tmp_path, capsys
):
    path = tmp_path / "m.json"
    path.write_text(_manifest(modules, parameters))
    with pytest.raises(PolicyUsageError, match=re.escape(f"{path}: invalid manifest: {message}")):
        manifests.to_tree(manifests.load(path))
    assert main(["lint", str(ROOT / "policies"), "--manifest", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_repeated_children_are_refused_before_any_walk():
    """The shape that made a 5 KB manifest walk 2**depth paths: refused in time linear in its size."""
    depth = 60
    modules = [{"name": ".".join(["a"] * i), "classes": ["M"], "children": ["a", "a"]} for i in range(depth)]
    with pytest.raises(PolicyUsageError, match="lists 'a' twice"):
        manifests.to_tree(manifests.parse(_manifest(modules, [])))


SURROGATE = _manifest(
    [
        {"name": "", "classes": ["Net"], "children": ["fc"]},
        {"name": "fc", "classes": ["\ud800Linear"], "parameters": ["w"]},
    ],
    [_param("fc.w")],
)


def test_a_lone_surrogate_is_refused_with_where_it_is():
    assert "\\ud800" in SURROGATE  # json.dumps escapes it, as a hostile file would
    with pytest.raises(PolicyUsageError, match=r"invalid manifest at modules\.1\.classes\.0: a lone surrogate"):
        manifests.parse(SURROGATE, "m.json")
    key = SURROGATE.replace('"classes": ["\\ud800Linear"]', '"\\udc00": 1, "classes": ["Linear"]')
    with pytest.raises(PolicyUsageError, match=r"invalid manifest at modules\.1\.'\\udc00': a lone surrogate"):
        manifests.parse(key, "m.json")
    paired = SURROGATE.replace("\\ud800", "\\ud83d\\ude00")  # an escaped pair is a character: fine
    assert manifests.parse(paired).modules[1].classes == ["\N{GRINNING FACE}Linear"]


@pytest.mark.parametrize("output", ["text", "json", "github", "sarif"])
def test_a_lone_surrogate_in_a_manifest_is_a_usage_error_in_every_format(output, tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text(SURROGATE)
    assert main(["lint", str(ROOT / "policies"), "--manifest", str(path), "--format", output]) == 2
    assert "lone surrogate" in capsys.readouterr().err


def test_a_manifest_is_read_once_and_no_further_than_the_limit(tmp_path, monkeypatch, capsys):
    assert main(["lint", str(ROOT / "policies"), "--manifest", "/dev/zero"]) == 2
    assert "larger than the 64 MiB limit for a manifest" in capsys.readouterr().err
    path = tmp_path / "m.json"
    path.write_text(_valid_text := json.dumps(_valid()))
    monkeypatch.setattr(manifests, "MAX_MANIFEST_BYTES", len(_valid_text) - 1)
    with pytest.raises(PolicyUsageError, match="larger than the 0 MiB limit"):
        manifests.load(path)
    monkeypatch.setattr(manifests, "MAX_MANIFEST_BYTES", len(_valid_text))
    assert manifests.load(path).modules[1].name == "fc"


def test_adapter_base_is_written_only_where_true(trees):
    assert '"adapter_base"' not in manifests.from_tree(trees["resnet18"]).to_json()


def test_a_bare_module_has_no_classes_and_round_trips():
    model = torch.nn.Module()
    model.fc = torch.nn.Linear(2, 2)
    tree = tree_of(model)
    assert tree.modules[0].classes == ()
    assert round_trip(tree) == tree
