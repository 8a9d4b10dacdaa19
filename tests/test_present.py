"""The presentation helpers every renderer shares: names shortened in the middle, lists and columns that fit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from policyfreeze.report.present import (
    FIRST_FLOOR,
    align,
    fit_columns,
    names_list,
    plural,
    shape,
    share,
    shorten_middle,
)

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=80)


@given(text, st.integers(1, 120))
def test_shorten_middle_keeps_both_ends(value, width):
    short = shorten_middle(value, width)
    assert len(short) <= width
    if len(value) <= width:
        assert short == value
    else:
        head, _, tail = short.partition("…")
        assert value.startswith(head) and value.endswith(tail) and len(head) >= len(tail)


@given(st.lists(st.text(alphabet="abc.0123", min_size=1, max_size=12), min_size=1, max_size=30), st.integers(0, 90))
def test_names_list_fits_and_counts_what_it_leaves_out(names, width):
    listed = names_list(names, width)
    assert len(listed) <= width
    if listed == ", ".join(names):
        return
    if listed:
        shown, _, more = listed.rpartition(", … (")
        assert more == f"{len(names) - len(shown.split(', '))} more)"
        assert shown == ", ".join(names[: len(shown.split(", "))])


@given(
    st.lists(st.tuples(text, st.integers(0, 10**12), text), min_size=1, max_size=12),
    st.integers(60, 140),
)
def test_fit_columns_fits_the_width(rows, width):
    cells = [[label or "x", f"{number:,}", statement or "y"] for label, number, statement in rows]
    lines = align(fit_columns(cells, [0, 2], width, indent=2), right={1}, indent="  ")
    assert all(len(line) <= width for line in lines)


@given(
    st.lists(st.tuples(text, text, text), min_size=1, max_size=12),
    st.integers(60, 140),
)
def test_fit_columns_cuts_the_first_columns_before_the_others(rows, width):
    cells = [[label or "x", old or "y", new or "z"] for label, old, new in rows]
    fitted = fit_columns(cells, [0, 1, 2], width, indent=2, first=[1, 2])
    assert all(len(line) <= width for line in align(fitted, indent="  "))
    if any(row[0] != cell[0] for row, cell in zip(fitted, cells)):  # a label was cut: the others first, to the floor
        assert all(len(row[i]) <= FIRST_FLOOR for row in fitted for i in (1, 2))


def test_labels_and_numbers():
    assert shorten_middle("layer1.0.downsample.0.weight", 12) == "layer1…eight"
    assert names_list(["bn1", "layer1.0.bn1", "layer1.0.bn2"], 22) == "bn1, … (2 more)"
    assert [plural(n, "tensor") for n in (0, 1, 1234)] == ["0 tensors", "1 tensor", "1,234 tensors"]
    assert [share(*p) for p in ((513_000, 11_689_512), (5_800, 11_689_512), (11_683_712, 11_689_512))] == [
        "4.4%",
        "<0.1%",
        ">99.9%",
    ]
    assert (shape((64, 3, 7, 7)), shape(())) == ("64×3×7×7", "scalar")
