"""Request validation is strict: exact JSON types, bounds, choices, required, all errors at once."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifests.definitions import ParameterDef, WorkflowManifest
from manifests.errors import ParamError, ParamsInvalid
from manifests.validation import validate_params


def manifest_with(**definitions: dict[str, Any]) -> WorkflowManifest:
    return WorkflowManifest(
        id="test",
        workflow_file="test.json",
        parameters={name: ParameterDef.model_validate(d) for name, d in definitions.items()},
        template={"1": {"class_type": "PreviewAny", "inputs": {"source": ""}}},
    )


def errors_of(manifest: WorkflowManifest, params: dict[str, Any]) -> list[ParamError]:
    with pytest.raises(ParamsInvalid) as caught:
        validate_params(manifest, params)
    return caught.value.errors


STEPS = manifest_with(steps={"type": "integer", "default": 20, "min": 1, "max": 150})
CFG = manifest_with(cfg={"type": "float", "default": 7.0, "min": 0.0, "max": 30.0})
FLAG = manifest_with(flag={"type": "boolean", "default": True})
PROMPT = manifest_with(prompt={"type": "string", "required": True, "max_length": 10})
SEED = manifest_with(seed={"type": "integer", "default": "random", "random": True})


def test_unknown_parameter_is_rejected_by_name() -> None:
    errors = errors_of(STEPS, {"stpes": 20})
    assert [e.param for e in errors] == ["stpes"]
    assert "unknown parameter" in errors[0].reason and "steps" in errors[0].reason


def test_string_false_is_not_a_boolean() -> None:
    errors = errors_of(FLAG, {"flag": "false"})
    assert errors == [ParamError("flag", "expected true or false, got string 'false'")]


def test_fractional_number_is_not_truncated_to_an_integer() -> None:
    (error,) = errors_of(STEPS, {"steps": 8.9})
    assert error.param == "steps" and "expected an integer" in error.reason


def test_integral_float_is_not_accepted_as_an_integer() -> None:
    (error,) = errors_of(STEPS, {"steps": 20.0})
    assert "expected an integer" in error.reason


def test_boolean_is_not_accepted_as_an_integer() -> None:
    (error,) = errors_of(STEPS, {"steps": True})
    assert "got boolean true" in error.reason


def test_numeric_string_is_not_accepted_as_an_integer() -> None:
    (error,) = errors_of(STEPS, {"steps": "20"})
    assert "got string '20'" in error.reason


def test_boolean_is_not_accepted_as_a_float() -> None:
    (error,) = errors_of(CFG, {"cfg": False})
    assert error.param == "cfg" and "expected a number" in error.reason


def test_integer_is_accepted_as_a_float_and_sent_as_a_float() -> None:
    resolved = validate_params(CFG, {"cfg": 7})
    assert resolved == {"cfg": 7.0} and isinstance(resolved["cfg"], float)


def test_non_finite_float_is_rejected() -> None:
    (error,) = errors_of(CFG, {"cfg": math.inf})
    assert "finite" in error.reason


def test_null_is_rejected_with_a_hint_to_omit_the_parameter() -> None:
    (error,) = errors_of(STEPS, {"steps": None})
    assert "omit the parameter" in error.reason


def test_missing_required_parameter_is_reported() -> None:
    assert errors_of(PROMPT, {}) == [ParamError("prompt", "required")]


def test_string_longer_than_max_length_is_rejected() -> None:
    (error,) = errors_of(PROMPT, {"prompt": "x" * 11})
    assert "at most 10 characters" in error.reason


def test_value_outside_choices_is_rejected_listing_them() -> None:
    sampler = manifest_with(sampler={"type": "string", "choices": ["euler", "ddim"]})
    (error,) = errors_of(sampler, {"sampler": "Euler"})
    assert "one of: 'euler', 'ddim'" in error.reason


def test_integer_choice_does_not_match_a_boolean() -> None:
    batch = manifest_with(batch={"type": "integer", "choices": [1, 2]})
    assert errors_of(batch, {"batch": True})[0].param == "batch"


def test_string_not_matching_its_pattern_is_rejected() -> None:
    prefix = manifest_with(prefix={"type": "string", "pattern": "[a-z]+"})
    (error,) = errors_of(prefix, {"prefix": "../etc"})
    assert "pattern" in error.reason


def test_image_name_escaping_the_input_directory_is_rejected() -> None:
    image = manifest_with(image={"type": "image"})
    (error,) = errors_of(image, {"image": "../secret.png"})
    assert "input directory" in error.reason


def test_every_problem_is_reported_at_once() -> None:
    manifest = manifest_with(
        prompt={"type": "string", "required": True},
        steps={"type": "integer", "min": 1},
        flag={"type": "boolean"},
    )
    errors = errors_of(manifest, {"steps": 0, "flag": "yes", "extra": 1})
    assert sorted(e.param for e in errors) == ["extra", "flag", "prompt", "steps"]


def test_params_that_are_not_an_object_are_rejected() -> None:
    with pytest.raises(ParamsInvalid) as caught:
        validate_params(STEPS, ["steps", 20])  # type: ignore[arg-type]
    assert caught.value.errors[0].param == "params"


def test_defaults_are_filled_and_random_stays_random() -> None:
    manifest = manifest_with(
        seed={"type": "integer", "default": "random", "random": True},
        steps={"type": "integer", "default": 20},
        note={"type": "string"},
    )
    assert validate_params(manifest, {}) == {"seed": "random", "steps": 20}


def test_random_is_accepted_only_where_the_parameter_allows_it() -> None:
    assert validate_params(SEED, {"seed": "random"}) == {"seed": "random"}
    assert "expected an integer" in errors_of(STEPS, {"steps": "random"})[0].reason


def test_spec_special_handler_makes_its_value_acceptable() -> None:
    manifest = manifest_with(
        seed={
            "type": "integer",
            "special_handlers": [
                {"value": "random", "action": "generate_random_int", "args": {"min": 0, "max": 9}}
            ],
        }
    )
    assert validate_params(manifest, {"seed": "random"}) == {"seed": "random"}


def test_result_follows_declaration_order() -> None:
    manifest = manifest_with(a={"type": "integer"}, b={"type": "integer"}, c={"type": "integer"})
    assert list(validate_params(manifest, {"c": 3, "a": 1, "b": 2})) == ["a", "b", "c"]


# --- properties -------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=150))
def test_every_integer_inside_the_bounds_is_accepted_unchanged(steps: int) -> None:
    assert validate_params(STEPS, {"steps": steps}) == {"steps": steps}


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=151)))
def test_every_integer_outside_the_bounds_is_rejected(steps: int) -> None:
    (error,) = errors_of(STEPS, {"steps": steps})
    assert error.param == "steps" and ("must be >=" in error.reason or "must be <=" in error.reason)


@given(st.floats(min_value=0.0, max_value=30.0))
def test_every_float_inside_the_bounds_is_accepted(cfg: float) -> None:
    assert validate_params(CFG, {"cfg": cfg}) == {"cfg": cfg}


@given(
    st.one_of(
        st.floats(max_value=0.0, exclude_max=True, allow_nan=False),
        st.floats(min_value=30.0, exclude_min=True, allow_nan=False),
    )
)
def test_every_float_outside_the_bounds_is_rejected(cfg: float) -> None:
    assert errors_of(CFG, {"cfg": cfg})[0].param == "cfg"


@given(st.one_of(st.floats(), st.text(), st.booleans(), st.none(), st.lists(st.integers())))
def test_nothing_but_a_json_integer_passes_as_an_integer(value: Any) -> None:
    assert errors_of(STEPS, {"steps": value})[0].param == "steps"


@given(st.one_of(st.integers(), st.floats(), st.text(), st.none()))
def test_nothing_but_true_or_false_passes_as_a_boolean(value: Any) -> None:
    assert errors_of(FLAG, {"flag": value})[0].param == "flag"


@given(st.text(max_size=10))
def test_every_string_within_max_length_is_accepted(prompt: str) -> None:
    assert validate_params(PROMPT, {"prompt": prompt}) == {"prompt": prompt}


@given(st.text(min_size=11))
def test_every_string_over_max_length_is_rejected(prompt: str) -> None:
    assert errors_of(PROMPT, {"prompt": prompt})[0].param == "prompt"


@given(st.dictionaries(st.text().filter(lambda k: k != "steps"), st.integers(), min_size=1))
def test_every_unknown_name_is_reported(extra: dict[str, int]) -> None:
    errors = errors_of(STEPS, extra)
    assert sorted(e.param for e in errors) == sorted(extra)


SAMPLER = manifest_with(sampler={"type": "string", "choices": ["euler", "ddim", "uni_pc"]})


@given(st.sampled_from(["euler", "ddim", "uni_pc"]))
def test_every_choice_is_accepted(sampler: str) -> None:
    assert validate_params(SAMPLER, {"sampler": sampler}) == {"sampler": sampler}


@given(st.text().filter(lambda s: s not in ("euler", "ddim", "uni_pc")))
def test_every_string_outside_the_choices_is_rejected(sampler: str) -> None:
    assert "must be one of" in errors_of(SAMPLER, {"sampler": sampler})[0].reason
