"""Every GraphQL document the CDP source can send validates against exports-spec §6's schema."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import (
    GraphQLScalarType,
    GraphQLSchema,
    ObjectFieldNode,
    ObjectValueNode,
    OperationDefinitionNode,
    VariableNode,
    build_schema,
    parse,
    validate,
    visit,
)
from graphql.execution.values import get_variable_values
from graphql.language import ArgumentNode, Visitor

from downloader.sources.cdp.documents import (
    ALL_DOCUMENTS,
    JOB_RESULT,
    SCHEMA_FILE,
    SUBMIT_ANALYSIS,
    SUBMIT_SEGMENT_USERS,
    SUBMIT_TAG_USERS,
    SUBMIT_TAG_USERS_BY_KEY,
    Document,
    document_for,
    job_result_request,
    submit_request,
    variables_for,
)
from downloader.sources.cdp.exports import (
    Analysis,
    AnalysisType,
    CdpExport,
    SegmentUsers,
    TagUsers,
    is_hash_id,
)


def _hash_id(value: Any) -> str:
    if not is_hash_id(value):
        raise ValueError(f"not a HashId: {value!r}")
    return str(value)


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    """The SDL, with `HashId` values checked (8 letters or digits) as the platform does."""
    built = build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))
    hash_id = built.type_map["HashId"]
    assert isinstance(hash_id, GraphQLScalarType)
    # graphql-core 3.3 reads coerce_input_value, 3.2 parse_value: set both.
    hash_id.parse_value = hash_id.coerce_input_value = _hash_id  # type: ignore[method-assign]
    return built


EXPORTS: list[CdpExport] = [
    SegmentUsers("Pj01Ab23", "Sg01Ab23"),
    SegmentUsers("Pj01Ab23", "Sg01Ab23", tags=("Tg01Ab23", "Tg02Ab23"), properties=("usr_name",)),
    TagUsers(tag_id="Tg01Ab23"),
    TagUsers(tag_id="Tg01Ab23", properties=("usr_name", "usr_city"), detail=True),
    TagUsers(tag_id="Tg01Ab23", detail=False),
    TagUsers(tag_key="tag_vip"),
    TagUsers(tag_key="tag_vip", properties=("usr_name",), detail=True),
    *(Analysis("Pj01Ab23", "An01Ab23", t) for t in AnalysisType),
]


def _errors(schema: GraphQLSchema, text: str) -> list[str]:
    return [e.message for e in validate(schema, parse(text))]


def _coerce_variables(
    schema: GraphQLSchema, document: Document, variables: dict[str, Any]
) -> list[str]:
    """Type-check variable values against the operation's declarations, as a server does."""
    (operation,) = parse(document.text).definitions
    assert isinstance(operation, OperationDefinitionNode)
    definitions = operation.variable_definitions or ()
    declared = {d.variable.name.value for d in definitions}
    problems = [f"undeclared variable {name}" for name in variables if name not in declared]
    coerced = get_variable_values(schema, definitions, variables)
    if isinstance(coerced, list):
        problems += [error.message for error in coerced]
    return problems


@pytest.mark.parametrize("document", ALL_DOCUMENTS, ids=lambda d: d.operation)
def test_every_document_validates(schema: GraphQLSchema, document: Document) -> None:
    assert _errors(schema, document.text) == []
    (operation,) = parse(document.text).definitions
    assert isinstance(operation, OperationDefinitionNode)
    assert operation.name is not None and operation.name.value == document.operation
    assert document.field in document.text


class _Literals(Visitor):
    """Collects argument values that are not variables (objects may only hold variables)."""

    def __init__(self) -> None:
        super().__init__()
        self.literals: list[str] = []

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        self._check(node.value, node.name.value)

    def _check(self, value: Any, where: str) -> None:
        if isinstance(value, ObjectValueNode):
            for field in value.fields:
                assert isinstance(field, ObjectFieldNode)
                self._check(field.value, f"{where}.{field.name.value}")
        elif not isinstance(value, VariableNode):
            self.literals.append(where)


@pytest.mark.parametrize("document", ALL_DOCUMENTS, ids=lambda d: d.operation)
def test_documents_take_every_value_as_a_variable(document: Document) -> None:
    visitor = _Literals()
    visit(parse(document.text), visitor)
    assert visitor.literals == []
    assert "exportFileName" not in document.text


@pytest.mark.parametrize("charset", [None, "UTF-8", "GBK"])
@pytest.mark.parametrize("export", EXPORTS, ids=repr)
def test_every_submission_validates_with_its_variables(
    schema: GraphQLSchema, export: CdpExport, charset: str | None
) -> None:
    request = submit_request(export, charset)
    body = request.body()
    assert _errors(schema, body["query"]) == []
    assert _coerce_variables(schema, request.document, body["variables"]) == []
    assert body["operationName"] == request.document.operation
    flat = str(body["variables"])
    assert ("charset" in flat) == (charset is not None)
    assert "exportFileName" not in flat


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        (SUBMIT_TAG_USERS, {"tagId": "tag_vip"}),
        (SUBMIT_TAG_USERS, {"tagId": "Tg01Ab23", "properties": ["usr_name", None]}),
        (SUBMIT_TAG_USERS_BY_KEY, {"parameter": {"tagKey": "tag_vip", "detail": True}}),
        (SUBMIT_ANALYSIS, {"projectId": "Pj01Ab23", "id": "An01Ab23", "param": "FUNNELS"}),
        (SUBMIT_SEGMENT_USERS, {"segmentId": "Sg01Ab23"}),
        (JOB_RESULT, {"jobId": "AbQ3XApY"}),
    ],
)
def test_the_variable_check_catches_wrong_values(
    schema: GraphQLSchema, document: Document, variables: dict[str, Any]
) -> None:
    assert _coerce_variables(schema, document, variables) != []


@pytest.mark.parametrize("job_id", ["VGFnVXNlckV4cG9ydEpvYkR0bzpBYlEzWEFwWQ", "AbQ3XApY"])
def test_job_result_request_validates(schema: GraphQLSchema, job_id: str) -> None:
    request = job_result_request(job_id)
    assert request.document is JOB_RESULT
    assert request.variables == {"id": job_id}
    assert _coerce_variables(schema, JOB_RESULT, request.variables) == []


@pytest.mark.parametrize(
    ("export", "document", "charset", "variables"),
    [
        (
            SegmentUsers("Pj01Ab23", "Sg01Ab23"),
            SUBMIT_SEGMENT_USERS,
            None,
            {"projectId": "Pj01Ab23", "segmentId": "Sg01Ab23"},
        ),
        (
            SegmentUsers("Pj01Ab23", "Sg01Ab23", tags=("Tg01Ab23",), properties=("usr_name",)),
            SUBMIT_SEGMENT_USERS,
            "UTF-16LE",
            {
                "projectId": "Pj01Ab23",
                "segmentId": "Sg01Ab23",
                "tags": ["Tg01Ab23"],
                "properties": ["usr_name"],
                "charset": "UTF-16LE",
            },
        ),
        (TagUsers(tag_id="Tg01Ab23"), SUBMIT_TAG_USERS, None, {"tagId": "Tg01Ab23"}),
        (
            TagUsers(tag_id="Tg01Ab23", properties=("usr_name",), detail=True),
            SUBMIT_TAG_USERS,
            "UTF-8",
            {
                "tagId": "Tg01Ab23",
                "properties": ["usr_name"],
                "charset": "UTF-8",
                "detailExport": True,
            },
        ),
        (
            TagUsers(tag_id="Tg01Ab23", detail=False),
            SUBMIT_TAG_USERS,
            None,
            {"tagId": "Tg01Ab23", "detailExport": False},
        ),
        (
            TagUsers(tag_key="tag_vip"),
            SUBMIT_TAG_USERS_BY_KEY,
            None,
            {"parameter": {"tagKey": "tag_vip"}},
        ),
        (
            TagUsers(tag_key="tag_vip", properties=("usr_name",), detail=True),
            SUBMIT_TAG_USERS_BY_KEY,
            "GBK",
            {
                "parameter": {
                    "tagKey": "tag_vip",
                    "properties": ["usr_name"],
                    "charset": "GBK",
                    "detailExport": True,
                }
            },
        ),
        (
            Analysis("Pj01Ab23", "An01Ab23", AnalysisType.FUNNELS),
            SUBMIT_ANALYSIS,
            None,
            {"projectId": "Pj01Ab23", "id": "An01Ab23", "param": {"analysisType": "FUNNELS"}},
        ),
        (
            Analysis("Pj01Ab23", "An01Ab23", AnalysisType.CHARTS),
            SUBMIT_ANALYSIS,
            "GBK",
            {
                "projectId": "Pj01Ab23",
                "id": "An01Ab23",
                "param": {"analysisType": "CHARTS"},
                "charset": "GBK",
            },
        ),
    ],
)
def test_variables_table(
    export: CdpExport, document: Document, charset: str | None, variables: dict[str, Any]
) -> None:
    assert document_for(export) is document
    assert variables_for(export, charset) == variables


def test_config_values_are_accepted_as_parsed() -> None:
    analysis = Analysis("Pj01Ab23", "An01Ab23", "RETENTIONS")  # type: ignore[arg-type]
    assert analysis.type is AnalysisType.RETENTIONS
    segment = SegmentUsers("Pj01Ab23", "Sg01Ab23", tags=["Tg01Ab23"])  # type: ignore[arg-type]
    assert segment.tags == ("Tg01Ab23",)
    assert [e.item_id for e in EXPORTS[:1] + EXPORTS[2:3] + EXPORTS[5:6] + EXPORTS[7:8]] == [
        "Sg01Ab23",
        "Tg01Ab23",
        "tag_vip",
        "An01Ab23",
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: SegmentUsers("Pj01Ab2", "Sg01Ab23"),
        lambda: SegmentUsers("Pj01Ab23", "Sg01-b23"),
        lambda: SegmentUsers("Pj01Ab23", "Sg01Ab23", tags=("tag_vip",)),
        lambda: SegmentUsers("Pj01Ab23", "Sg01Ab23", properties=("",)),
        lambda: TagUsers(),
        lambda: TagUsers(tag_id="Tg01Ab23", tag_key="tag_vip"),
        lambda: TagUsers(tag_key="vip"),
        lambda: TagUsers(tag_key="tag_"),
        lambda: TagUsers(tag_id="Tg01Ab23", detail="yes"),  # type: ignore[arg-type]
        lambda: Analysis("Pj01Ab23", "An01Ab23", "FUNNEL"),  # type: ignore[arg-type]
    ],
)
def test_bad_exports_are_refused(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


# The older query-list variants of API §6.4: ids as String!, no projectId, another result type.
OLDER_VARIANTS = {
    "tag users, tagId as String!": """
        mutation Old($tagId: String!, $properties: [String!]) {
          submitTagUserExportJob(tagId: $tagId, properties: $properties) { id stage }
        }""",
    "segment users without projectId": """
        mutation Old($segmentId: HashId!, $tags: [HashId!], $properties: [String!]) {
          submitSegmentUserExportJob(segmentId: $segmentId, tags: $tags, properties: $properties) {
            id stage
          }
        }""",
    "segment users, segmentId as String!": """
        mutation Old($segmentId: String!, $projectId: HashId!) {
          submitSegmentUserExportJob(projectId: $projectId, segmentId: $segmentId) { id stage }
        }""",
    "analysis without projectId, AnalysisExportResult fields": """
        mutation Old($id: HashId!, $param: AnalysisExportJobParam!) {
          submitAnalysisExportJob(id: $id, param: $param) { resourceId status uri }
        }""",
    "analysis id as String!": """
        mutation Old($projectId: HashId!, $id: String!, $param: AnalysisExportJobParam!) {
          submitAnalysisExportJob(projectId: $projectId, id: $id, param: $param) { id stage }
        }""",
}


@pytest.mark.parametrize("text", OLDER_VARIANTS.values(), ids=OLDER_VARIANTS.keys())
def test_older_variants_do_not_validate(schema: GraphQLSchema, text: str) -> None:
    assert _errors(schema, text) != []
