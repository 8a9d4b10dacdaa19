from pathlib import Path

import policyfreeze

POLICIES = Path(__file__).parent.parent / "policies"


def test_linear_probe_leaves_only_fc_trainable(resnet18_factory):
    model = resnet18_factory()
    report = policyfreeze.apply(model, POLICIES / "resnet18-linear-probe.freeze")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    assert len(report.changes) == 60
