"""Properties over generated text: parse returns a Policy or raises a PolicyError located in the input.

The same check (``policy_strategies.check_input``: parse, then resolve and lint
what parses) runs on 100,000+ inputs in fuzz/fuzz_policies.py; here each
kind of input gets a few hundred examples so the suite stays fast.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_strategies import (
    any_text,
    check_input,
    check_location,
    grammar_texts,
    mutated,
    policies,
    policy_chars,
    token_soup,
)

from policyfreeze import PolicyError
from policyfreeze.language.parser import parse_source
from policyfreeze.language.source import Source

fuzz_settings = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz_settings
@given(policies())
def test_generated_policies_parse_and_resolve(text):
    source = Source("<generated>", text)
    policy = parse_source(source)  # the generator writes only valid policies
    for statement in policy.all_statements():
        line, column = source.line_col(statement.span.offset)
        assert (statement.span.line, statement.span.column) == (line, column)
        assert source.text[statement.span.offset :].startswith(statement.verb)
    check_input(text)


@settings(fuzz_settings, max_examples=100)  # from_lark draws slowly
@given(grammar_texts())
def test_text_from_the_grammar(text):
    check_input(text)


@fuzz_settings
@given(mutated(policies()))
def test_mutated_policies(text):
    check_input(text)


@fuzz_settings
@given(st.one_of(token_soup, policy_chars))
def test_token_soup_and_policy_characters(text):
    check_input(text)


@fuzz_settings
@given(any_text)
def test_arbitrary_unicode_including_surrogates(text):
    check_input(text)


@fuzz_settings
@given(st.binary(max_size=60) | policies().map(lambda text: text.encode() + b"\xff\xc3"))
def test_arbitrary_bytes(data):
    try:
        source = Source.from_bytes(data, "<bytes>")
    except PolicyError as exc:
        assert exc.code == "PF101" and "byte offset" in exc.message
        head = data[: int(exc.message.rsplit(" ", 1)[1])]
        check_location(Source("<bytes>", head.decode()), exc)
        return
    check_input(source.text)
