"""The CDP simulator's GraphQL endpoint: parse, validate and execute against the §6 SDL.

Every incoming document goes through graphql-core exactly as a strict server would: a syntax
or validation error, or variable values that are not of their declared types, answer 200 with
`errors` and are labelled so tests can assert a client never sends one. `HashId` values are
checked (8 letters or digits, API §6.3), which a plain SDL scalar would let through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLSyntaxError,
    build_schema,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)

from downloader.sim.cdp.jobs import UnknownJob
from downloader.sim.cdp.state import Outcome
from downloader.sources.cdp.documents import SCHEMA_FILE
from downloader.sources.cdp.exports import is_hash_id

__all__ = ["Executed", "GraphQLEndpoint", "load_schema"]

# A resolver takes the field's arguments (by their GraphQL names) and returns its value.
Resolver = Callable[..., Any]


def _hash_id(value: Any) -> str:
    if not is_hash_id(value):
        raise ValueError(f"HashId must be 8 letters or digits: {value!r}")
    return str(value)


def load_schema() -> GraphQLSchema:
    """The SDL of exports-spec §6, with `HashId` input values checked."""
    schema = build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))
    hash_id = schema.type_map["HashId"]
    assert isinstance(hash_id, GraphQLScalarType)
    # graphql-core 3.3 reads coerce_input_value, 3.2 parse_value: set both.
    hash_id.parse_value = hash_id.coerce_input_value = _hash_id  # type: ignore[method-assign]
    return schema


@dataclass(frozen=True)
class Executed:
    """An answer to `POST /graphql`: HTTP status, JSON body, label for the stats."""

    status: int
    body: dict[str, Any]
    outcome: str
    operation: str | None = None  # the root field asked for
    subject: str | None = None  # the job id polled


def _errors(errors: list[GraphQLError] | tuple[GraphQLError, ...]) -> dict[str, Any]:
    return {"errors": [e.formatted for e in errors], "data": None}


class GraphQLEndpoint:
    """Runs one request body against the schema, with `resolvers` for the root fields."""

    def __init__(self, resolvers: Mapping[str, Resolver]) -> None:
        self.schema = load_schema()
        roots = [self.schema.query_type, self.schema.mutation_type]
        for name, resolver in resolvers.items():
            root = next(r for r in roots if r is not None and name in r.fields)
            root.fields[name].resolve = _adapt(resolver)
        self._resolved = frozenset(resolvers)

    def run(self, body: object) -> Executed:
        if not isinstance(body, Mapping) or not isinstance(body.get("query"), str):
            return Executed(
                400, {"errors": [{"message": "expected {query, variables}"}]}, Outcome.BAD_REQUEST
            )
        variables = body.get("variables")
        operation_name = body.get("operationName")
        if not isinstance(variables, Mapping | None) or not isinstance(operation_name, str | None):
            return Executed(
                400,
                {"errors": [{"message": "bad variables or operationName"}]},
                Outcome.BAD_REQUEST,
            )
        try:
            document = parse(body["query"])
        except GraphQLSyntaxError as exc:
            return Executed(200, _errors([exc]), Outcome.INVALID_DOCUMENT)
        problems = validate(self.schema, document)
        if problems:
            return Executed(200, _errors(problems), Outcome.INVALID_DOCUMENT)
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            error = GraphQLError("no single operation to run: give a known operationName")
            return Executed(200, _errors([error]), Outcome.INVALID_DOCUMENT)
        roots = [s for s in operation.selection_set.selections if isinstance(s, FieldNode)]
        field = roots[0].name.value if len(roots) == 1 else None
        subject = (variables or {}).get("id") if field == "jobResult" else None
        if field is not None and field not in self._resolved:
            error = GraphQLError(f"{field} is not served by this simulator")
            return Executed(200, _errors([error]), Outcome.GRAPHQL_ERROR, field)
        result = execute_sync(
            self.schema,
            document,
            variable_values=dict(variables or {}),
            operation_name=operation_name,
        )
        assert isinstance(result, ExecutionResult)
        return Executed(200, dict(result.formatted), _outcome(result), field, subject)


def _adapt(resolver: Resolver) -> Callable[..., Any]:
    def resolve(_root: Any, _info: Any, **args: Any) -> Any:
        return resolver(**args)

    return resolve


def _outcome(result: ExecutionResult) -> str:
    if not result.errors:
        return Outcome.OK
    # Request errors (variable coercion) carry no path; field errors carry the field's.
    if any(e.path is None for e in result.errors):
        return Outcome.INVALID_VARIABLES
    if any(isinstance(e.original_error, UnknownJob) for e in result.errors):
        return Outcome.UNKNOWN_JOB
    return Outcome.GRAPHQL_ERROR
