"""The compositions of rules: all of, any of, not."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from cds.rules.base import StrictModel

if TYPE_CHECKING:  # resolved when the table of kinds is built (cds.rules.kinds rebuilds these models)
    from cds.rules.kinds import Rule


class AllRule(StrictModel):
    all: list[Rule] = Field(min_length=1)


class AnyRule(StrictModel):
    any: list[Rule] = Field(min_length=1)


class NotRule(StrictModel):
    not_: Rule = Field(alias="not")
