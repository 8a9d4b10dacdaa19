"""Every finding code: its severity and its documentation.

One table serves the linter (severity), the SARIF output (rule descriptions)
and ``docs/cli.md`` (a test keeps the page and this table in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass(frozen=True)
class Rule:
    """A finding code: ``name`` is a stable slug, ``staged`` whether it depends on the schedule stage.

    ``fix`` is the help line of a finding that brings no more specific one.
    """

    code: str
    name: str
    severity: Severity
    summary: str
    description: str
    fix: str
    staged: bool = False

    @property
    def needs_model(self) -> bool:
        return self.code.startswith("PF2")


RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (
        Rule(
            "PF101",
            "syntax-error",
            "error",
            "Syntax error",
            "The text is not a policy: an unknown word, a missing separator, an unclosed bracket, "
            "regex or quote, or a keyword used as a name without quotes.",
            "a statement is VERB SELECTOR [with OPTIONS], ended by ';' or a new line",
        ),
        Rule(
            "PF102",
            "invalid-regex",
            "error",
            "Invalid regular expression",
            "A match /REGEX/ that RE2 cannot compile (a syntax error, or a construct such as a "
            "backreference that could backtrack catastrophically), or an unknown regex flag.",
            "regexes use RE2 syntax (no backreferences or lookaround); the only flag is 'i'",
        ),
        Rule(
            "PF103",
            "invalid-slice",
            "error",
            "Invalid slice",
            "A children[SLICE] whose step is 0, or an empty slice children[].",
            "a slice is start:stop:step as in Python, with a step other than 0: children[0:2], children[::2]",
        ),
        Rule(
            "PF104",
            "invalid-option",
            "error",
            "Unknown or invalid option",
            "A with-option that is not lr, lr_scale or weight_decay, is given twice, or has a "
            "value out of range (lr and lr_scale positive, weight_decay 0 or more, all finite).",
            "options are lr and lr_scale (positive numbers) and weight_decay (0 or more), each given once",
        ),
        Rule(
            "PF105",
            "misplaced-option",
            "error",
            "Options on a verb other than unfreeze, or lr with lr_scale",
            "Only unfreeze takes options, and lr (absolute) and lr_scale (relative) exclude each other.",
            "give options to unfreeze only, with lr or lr_scale but not both",
        ),
        Rule(
            "PF106",
            "mixed-schedule-units",
            "error",
            "More than one schedule unit in one file",
            "A schedule counts in one unit: every block of a file is 'at epoch N', every block 'at step N', "
            "or every block 'at phase N'.",
            "use one unit per file",
        ),
        Rule(
            "PF107",
            "unknown-noqa-code",
            "warning",
            "'# noqa' names a code that does not exist",
            "A '# noqa: CODE' comment names a code that is no finding code (a typo such as PF026 for "
            "PF206): it silences nothing, and the finding it was meant for still shows.",
            "name an existing code (policyfreeze lint --help lists them), or remove the comment",
        ),
        Rule(
            "PF201",
            "selects-nothing",
            "warning",
            "Statement selects nothing in this model",
            "No parameter (for freeze/unfreeze) or module (for eval/train) of the model is in the "
            "statement's selection: usually a misspelt name or a policy written for another model.",
            "compare with the model's names: 'policyfreeze plan POLICY --model SPEC --format tree' shows them",
        ),
        Rule(
            "PF202",
            "dead-statement",
            "warning",
            "Statement is dead: every parameter it reaches is decided again later",
            "The last statement that reaches a parameter decides it. Every parameter (or module) this "
            "statement reaches is reached again by a later statement, so it has no effect.",
            "remove the statement, or move it after the statements that override it",
        ),
        Rule(
            "PF203",
            "no-op-statement",
            "info",
            "Statement changes nothing",
            "What the statement reaches is already in the state it sets, given the model as built and "
            "the statements before it.",
            "remove the statement if nothing else was meant",
        ),
        Rule(
            "PF204",
            "tied-parameter-conflict",
            "warning",
            "Tied parameter reached under names that are decided differently",
            "One tensor is registered under several names (tied weights). Statements decide it "
            "differently under different names; the last of them wins for the tensor under every name.",
            "decide every name of a tied tensor the same way",
            staged=True,
        ),
        Rule(
            "PF205",
            "nothing-trainable",
            "error",
            "The policy leaves no parameter trainable",
            "After the policy every parameter is frozen: an optimizer would have nothing to train.",
            "unfreeze the parameters to train",
            staged=True,
        ),
        Rule(
            "PF206",
            "unpinned-frozen-norm",
            "warning",
            "Normalization layer frozen but its running statistics still update",
            "A BatchNorm-like layer's parameters end up frozen, but the layer is not pinned with "
            "'eval', so model.train() still updates its running mean and variance.",
            "pin the layers in eval mode with an 'eval' statement",
            staged=True,
        ),
        Rule(
            "PF207",
            "unfreeze-non-float",
            "error",
            "Unfreezing a parameter whose dtype cannot require gradients",
            "Only floating-point and complex tensors can require gradients; unfreezing an integer or "
            "boolean parameter fails when the policy is applied.",
            "leave the parameter out of the unfreeze with 'except'",
            staged=True,
        ),
        Rule(
            "PF208",
            "tied-tensor-decided-by-one-name",
            "warning",
            "A tied tensor decided through one name also changes under another",
            "One tensor is registered under several names (tied weights, such as an output head sharing the "
            "embedding). The statement that decides it selects some of its names, and another is selected by "
            "no statement or last by one that decides it the other way (freeze all; unfreeze lm_head): the "
            "tensor changes under that name too, silently.",
            "select every name of the tensor in the statement, or none",
            staged=True,
        ),
        Rule(
            "PF209",
            "adapter-base-unfrozen",
            "warning",
            "An adapter layer's base weights are unfrozen",
            "On a model with adapters (PEFT's LoRA and the other tuners), the statement unfreezes the weights of "
            "the layer an adapter wraps, so they train along with the adapter (usually a selector that names the "
            "layer rather than its adapter parameters).",
            "select the adapter parameters instead: 'unfreeze *.q_proj.lora_*'",
            staged=True,
        ),
    )
}
