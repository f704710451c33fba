"""Validating `inputs` against the app's declared input form (Dify's `user_input_form`)."""

from typing import Any

from apps.core.errors import InvalidParam

FIELD_TYPES = ("text-input", "paragraph", "select", "number")


def form_fields(user_input_form: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(type, config) for each declared field, skipping entries of unknown types."""
    fields = []
    for entry in user_input_form or []:
        for field_type, config in entry.items():
            if field_type in FIELD_TYPES and isinstance(config, dict) and config.get("variable"):
                fields.append((field_type, config))
    return fields


def inputs_validate(
    *, user_input_form: list[dict[str, Any]], inputs: dict[str, Any]
) -> dict[str, Any]:
    """The declared inputs, checked and cleaned; undeclared keys are dropped."""
    cleaned: dict[str, Any] = {}
    for field_type, config in form_fields(user_input_form):
        name = config["variable"]
        value = inputs.get(name)
        if value is None or value == "":
            if config.get("required"):
                raise InvalidParam(f"{name} is required in input form")
            cleaned[name] = config.get("default", "")
            continue
        if field_type == "number":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise InvalidParam(f"{name} in input form must be a number")
            try:
                cleaned[name] = float(value) if "." in str(value) else int(value)
            except ValueError:
                raise InvalidParam(f"{name} in input form must be a number") from None
            continue
        if not isinstance(value, str):
            raise InvalidParam(f"{name} in input form must be a string")
        if field_type == "select" and value not in config.get("options", []):
            raise InvalidParam(
                f"{name} in input form must be one of the following: {config.get('options', [])}"
            )
        max_length = config.get("max_length")
        if max_length and len(value) > int(max_length):
            raise InvalidParam(f"{name} in input form must be less than {max_length} characters")
        cleaned[name] = value
    return cleaned
