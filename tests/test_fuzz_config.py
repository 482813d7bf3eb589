"""Fuzzing of configuration loading (hypothesis): whatever the file holds, `load_config` and
`config_from_dict` either return a valid AgentConfig or raise ConfigError that names the problem;
never another exception. Starting points: the full example (`agent config example`) mutated per key,
its TOML text mutated per byte, and arbitrary TOML-able documents. Case counts: docs/reliability.md."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.compat import tomllib
from agent.config import AgentConfig, config_from_dict, load_config
from agent.config_example import example_toml
from agent.errors import ConfigError

pytestmark = pytest.mark.faults

EXAMPLE_TEXT = example_toml()
EXAMPLE = tomllib.loads(EXAMPLE_TEXT)
# max_examples per test; docs/reliability.md quotes them (keep in sync)
CASES_KEY_MUTATION = 1000
CASES_TEXT_MUTATION = 1000
CASES_RANDOM_DOC = 500


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key / list index path in a TOML document (the example has ~200)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(EXAMPLE)

present = st.one_of(  # TOML has no null: built without None, not filtered (hypothesis' filter_too_much)
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "..", "/dev/null", "/", "127.0.0.1", "lews/v1/#", "a" * 300, "-1", "1e999"]),
)
scalars = st.one_of(st.none(), present)
toml_values = st.recursive(
    present,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _must_be_config_or_config_error(data: Any) -> None:
    try:
        cfg = config_from_dict(data)
    except ConfigError as exc:
        assert exc.message and exc.fix, "a ConfigError must name the problem and the fix"
        return
    assert isinstance(cfg, AgentConfig)


def _apply(doc: dict[str, Any], path: tuple[Any, ...], op: str, value: Any) -> None:
    parent: Any = doc
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = value
    elif op == "unknown_key" and isinstance(parent[last], dict):
        parent[last]["no_such_key_" + str(abs(hash(str(value))) % 1000)] = value
    elif op == "wrap":
        parent[last] = [parent[last]]


@settings(max_examples=CASES_KEY_MUTATION, deadline=None)
@given(
    muts=st.lists(
        st.tuples(
            st.sampled_from(PATHS), st.sampled_from(["delete", "replace", "unknown_key", "wrap"]), toml_values
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_example_is_valid_or_a_config_error(muts: list[tuple[tuple[Any, ...], str, Any]]) -> None:
    doc = copy.deepcopy(EXAMPLE)
    for path, op, value in muts:
        try:
            _apply(doc, path, op, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the parent: skip this one
    _must_be_config_or_config_error(doc)


# One full-suite run failed here on the filter_too_much health check (7 inputs generated, 50
# filtered out). The None filter is gone (see `present`); what is left are overruns of hypothesis'
# 8 kB choice buffer by six values of up to 12 leaves (strings up to 300 characters), which count
# as filtered inputs. Nothing is filtered on purpose, so the check is off for this test.
@settings(max_examples=CASES_RANDOM_DOC, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(doc=st.dictionaries(st.sampled_from([*EXAMPLE, "x", ""]), toml_values, max_size=6))
def test_arbitrary_documents_are_valid_or_a_config_error(doc: dict[str, Any]) -> None:
    _must_be_config_or_config_error(doc)


@settings(
    max_examples=CASES_TEXT_MUTATION,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(EXAMPLE_TEXT)), st.binary(max_size=6), st.integers(0, 8)
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_file_bytes_load_or_give_a_config_error(
    tmp_path: Path, edits: list[tuple[int, bytes, int]]
) -> None:
    data = bytearray(EXAMPLE_TEXT.encode())
    for pos, insert, delete in edits:
        pos = min(pos, len(data))
        data[pos : pos + delete] = insert
    path = tmp_path / "agent.toml"
    path.write_bytes(bytes(data))
    path.chmod(0o640)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        assert str(path) in exc.message or "agent.toml" in exc.message, exc.message
        return
    assert isinstance(cfg, AgentConfig)


def test_the_example_itself_loads() -> None:
    assert isinstance(config_from_dict(copy.deepcopy(EXAMPLE)), AgentConfig)


def _numeric_paths() -> list[tuple[Any, ...]]:
    out = []
    for path in PATHS:
        node: Any = EXAMPLE
        for k in path:
            node = node[k]
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            out.append(path)
    return out


@pytest.mark.parametrize("path", _numeric_paths(), ids=lambda p: ".".join(map(str, p)))
def test_nan_in_any_numeric_setting_is_refused(path: tuple[Any, ...]) -> None:
    """A NaN (valid TOML: `nan`) in any number of the example is a ConfigError naming the key."""
    doc = copy.deepcopy(EXAMPLE)
    _apply(doc, path, "replace", math.nan)
    with pytest.raises(ConfigError) as err:
        config_from_dict(doc)
    named = [str(k) for k in path[1:] if isinstance(k, str)]
    assert any(k in err.value.message for k in named), (named, err.value.message)


def test_infinite_freshness_limits_are_refused() -> None:
    keys = [p for p in _numeric_paths() if p[0] == "warning" and p[-1] == "max_age_s"]
    assert len(keys) >= 5
    accepted = []
    for path in keys:
        doc = copy.deepcopy(EXAMPLE)
        _apply(doc, path, "replace", math.inf)
        try:
            config_from_dict(doc)
            accepted.append(".".join(map(str, path)))
        except ConfigError:
            pass
    assert accepted == [], f"inf accepted for {accepted}"
