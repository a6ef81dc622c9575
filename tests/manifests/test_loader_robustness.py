"""Loading never raises, whatever the files contain: every problem becomes a ManifestError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from manifests.definitions import ParameterDef, WorkflowEntry
from manifests.loading import load_manifests
from tests.support.graphs import SMOKE_GRAPH

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["1", "2", "Invert", "Empty Image", "width", "image", "random", "smoke.json"]),
)
anything = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


def almost(fields: list[str], extra: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy:
    """Mappings that use the real keys (plus a typo now and then) with mostly plausible values."""
    keys = st.sampled_from([*fields, "typo"])
    return st.dictionaries(keys, st.one_of(anything, *extra.values()), max_size=6)


definition = almost(
    list(ParameterDef.model_fields),
    {
        "type": st.sampled_from(["string", "integer", "float", "boolean", "image"]),
        "targets": st.lists(
            st.fixed_dictionaries(
                {
                    "node": st.sampled_from(["1", "2", "3", "Invert", 1]),
                    "input": st.text(max_size=6),
                }
            ),
            max_size=2,
        ),
    },
)
entry = almost(
    list(WorkflowEntry.model_fields),
    {
        "workflow_file": st.sampled_from(["smoke.json", "missing.json", "../x.json"]),
        "parameters": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
    },
)


@settings(max_examples=60, deadline=None)
@given(
    base=st.dictionaries(st.sampled_from(["a", "b", "c", "bad name"]), definition, max_size=3),
    workflows=st.dictionaries(st.sampled_from(["w1", "w2", "bad/id"]), entry, max_size=3),
    graph=st.one_of(st.just(SMOKE_GRAPH), anything),
)
def test_loading_arbitrary_content_never_raises(
    base: dict[str, Any], workflows: dict[str, Any], graph: Any
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        manifests_dir, workflows_dir = Path(tmp, "m"), Path(tmp, "w")
        manifests_dir.mkdir()
        workflows_dir.mkdir()
        (manifests_dir / "base.yaml").write_text(yaml.safe_dump(base))
        (manifests_dir / "workflows.yaml").write_text(yaml.safe_dump(workflows))
        (workflows_dir / "smoke.json").write_text(json.dumps(graph))
        result = load_manifests(manifests_dir, workflows_dir)
    listed = {str(k) for k in workflows}
    assert set(result.workflows) | result.failed == listed
    assert all(e.workflow in result.failed for e in result.errors if e.workflow is not None)
