"""The strict base of every config section: the run config's (config.py) and the model's."""

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, model_validator


class Section(BaseModel):
    # Strict: a misspelt key is an error, not a silently ignored setting; no inf or nan.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        # pydantic reads true as 1; in a config, `max_steps: true` is a mistake, not a number
        for name, value in data.items() if isinstance(data, dict) else ():
            field = cls.model_fields.get(name)
            if isinstance(value, bool) and field and bool not in member_types(field.annotation):
                raise ValueError(f"{name}: expected a number, not {str(value).lower()}")
        return data


def member_types(annotation: Any) -> tuple[Any, ...]:
    """The types an annotation admits: (int, NoneType) for `int | None`."""
    return get_args(annotation) or (annotation,)
