"""Properties over every shipped workflow, with params drawn from its own definitions."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifests.definitions import ParameterDef, WorkflowManifest
from manifests.errors import ParamsInvalid
from manifests.registry import ManifestRegistry
from manifests.render import is_link, render_prompt
from manifests.validation import same_value, validate_params

SHIPPED = ManifestRegistry().snapshot().workflows


def values_for(defn: ParameterDef) -> st.SearchStrategy[Any]:
    """Every value the definition should accept."""
    if defn.choices is not None:
        strategy: st.SearchStrategy[Any] = st.sampled_from(defn.choices)
    elif defn.type == "integer":
        low = int(defn.min) if defn.min is not None else None
        high = int(defn.max) if defn.max is not None else None
        strategy = st.integers(min_value=low, max_value=high)
    elif defn.type == "float":
        strategy = st.floats(
            min_value=defn.min, max_value=defn.max, allow_nan=False, allow_infinity=False
        )
    elif defn.type == "boolean":
        strategy = st.booleans()
    elif defn.pattern is not None:
        strategy = st.from_regex(defn.pattern, fullmatch=True)
    else:
        strategy = st.text(max_size=min(defn.max_length or 200, 200))
    if defn.max_length is not None and defn.type in ("string", "image"):
        strategy = strategy.filter(lambda v: len(v) <= defn.max_length)
    token = defn.random_token()
    return st.one_of(st.just(token), strategy) if token is not None else strategy


def params_for(manifest: WorkflowManifest) -> st.SearchStrategy[dict[str, Any]]:
    required = {n: values_for(d) for n, d in manifest.parameters.items() if d.required}
    optional = {n: values_for(d) for n, d in manifest.parameters.items() if not d.required}
    return st.fixed_dictionaries(required, optional=optional)


@pytest.mark.parametrize("workflow_id", sorted(SHIPPED))
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_valid_params_render_into_a_consistent_graph(
    workflow_id: str, data: st.DataObject
) -> None:
    manifest = SHIPPED[workflow_id]
    params = data.draw(params_for(manifest))
    template_before = copy.deepcopy(manifest.template)
    rendered = render_prompt(manifest, params, revision="r", rng=random.Random(0))
    graph = rendered.prompt
    assert manifest.template == template_before
    # Every parameter is resolved: given values kept, random tokens replaced by integers in range.
    for name, defn in manifest.parameters.items():
        value = rendered.params.get(name)
        if name in params and not same_value(params[name], defn.random_token()):
            assert value == params[name]
        if defn.random_token() is not None and value is not None:
            low, high = defn.random_range()
            assert isinstance(value, int) and low <= value <= high
    # Bound inputs hold the resolved value; removed nodes are exactly the bypassed ones.
    for name, refs in manifest.bindings.items():
        for ref in refs:
            if ref.node_id in graph:
                assert graph[ref.node_id]["inputs"][ref.input] == rendered.params[name]
    removed = set(manifest.template) - set(graph)
    expected_removed = {
        b.node_id
        for name, b in manifest.bypasses.items()
        if any(same_value(rendered.params.get(name), w) for w in b.when)
    }
    assert removed == expected_removed
    for node in graph.values():
        for value in node["inputs"].values():
            if is_link(value):
                assert value[0] in graph


@pytest.mark.parametrize("workflow_id", sorted(SHIPPED))
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_validation_is_idempotent(workflow_id: str, data: st.DataObject) -> None:
    manifest = SHIPPED[workflow_id]
    resolved = validate_params(manifest, data.draw(params_for(manifest)))
    assert validate_params(manifest, resolved) == resolved


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.parametrize("workflow_id", sorted(SHIPPED))
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_arbitrary_json_params_either_validate_or_raise_params_invalid(
    workflow_id: str, data: st.DataObject
) -> None:
    manifest = SHIPPED[workflow_id]
    names = st.one_of(st.sampled_from(sorted(manifest.parameters)), st.text(max_size=8))
    params = data.draw(st.dictionaries(names, json_values, max_size=6))
    try:
        resolved = validate_params(manifest, params)
    except ParamsInvalid as exc:
        assert exc.errors and all(isinstance(e.reason, str) and e.reason for e in exc.errors)
    else:
        assert set(resolved) <= set(manifest.parameters)
