"""Every GraphQL document the CDP source sends, written once, and the variables for each.

Documents take all values as variables, never as text spliced into the query (exports-spec §4),
and each validates against `schema.graphql` (tested with graphql-core). Optional arguments left
out of the variables are not sent at all: `charset` only when configured, never
`exportFileName` (the platform then names the file itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from downloader.sources.cdp.exports import Analysis, CdpExport, SegmentUsers, TagUsers

__all__ = [
    "ALL_DOCUMENTS",
    "JOB_RESULT",
    "SCHEMA_FILE",
    "SUBMIT_ANALYSIS",
    "SUBMIT_SEGMENT_USERS",
    "SUBMIT_TAG_USERS",
    "SUBMIT_TAG_USERS_BY_KEY",
    "Document",
    "GraphQLRequest",
    "document_for",
    "job_result_request",
    "submit_request",
    "variables_for",
]

# The SDL of exports-spec §6; the simulator executes against it, tests validate against it.
SCHEMA_FILE = Path(__file__).with_name("schema.graphql")


@dataclass(frozen=True)
class Document:
    """One operation: its text, its operation name and the root field its answer is under."""

    operation: str
    field: str
    text: str


# Each mutation selects `id stage error { code message }`: the job id to poll, its stage and,
# when it already says ERROR, the reason (API §6.4).
SUBMIT_SEGMENT_USERS = Document(
    "SubmitSegmentUserExportJob",
    "submitSegmentUserExportJob",
    """mutation SubmitSegmentUserExportJob($projectId: HashId!, $segmentId: HashId!,
    $tags: [HashId!], $properties: [String!], $charset: String) {
  submitSegmentUserExportJob(projectId: $projectId, segmentId: $segmentId, tags: $tags,
      properties: $properties, charset: $charset) { id stage error { code message } }
}
""",
)

SUBMIT_TAG_USERS = Document(
    "SubmitTagUserExportJob",
    "submitTagUserExportJob",
    """mutation SubmitTagUserExportJob($tagId: HashId!, $properties: [String!], $charset: String,
    $detailExport: Boolean) {
  submitTagUserExportJob(tagId: $tagId, properties: $properties, charset: $charset,
      detailExport: $detailExport) { id stage error { code message } }
}
""",
)

SUBMIT_TAG_USERS_BY_KEY = Document(
    "SubmitTagUserExportJobByKey",
    "submitTagUserExportJobByKey",
    """mutation SubmitTagUserExportJobByKey($parameter: TagUserExportJobByKeyInput!) {
  submitTagUserExportJobByKey(parameter: $parameter) { id stage error { code message } }
}
""",
)

SUBMIT_ANALYSIS = Document(
    "SubmitAnalysisExportJob",
    "submitAnalysisExportJob",
    """mutation SubmitAnalysisExportJob($projectId: HashId!, $id: HashId!,
    $param: AnalysisExportJobParam!, $charset: String) {
  submitAnalysisExportJob(projectId: $projectId, id: $id, param: $param, charset: $charset) {
    id stage error { code message }
  }
}
""",
)

# Polled with the mutation's id; the answer's own `id` is a different, short one (API §6.5).
JOB_RESULT = Document(
    "JobResult",
    "jobResult",
    """query JobResult($id: String!) {
  jobResult(id: $id) { id stage uris }
}
""",
)

ALL_DOCUMENTS: tuple[Document, ...] = (
    SUBMIT_SEGMENT_USERS,
    SUBMIT_TAG_USERS,
    SUBMIT_TAG_USERS_BY_KEY,
    SUBMIT_ANALYSIS,
    JOB_RESULT,
)


@dataclass(frozen=True)
class GraphQLRequest:
    """A document with its variables; `body()` is the JSON of `POST /graphql`."""

    document: Document
    variables: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {
            "query": self.document.text,
            "operationName": self.document.operation,
            "variables": self.variables,
        }


def document_for(export: CdpExport) -> Document:
    """The mutation that submits a job for `export`."""
    match export:
        case SegmentUsers():
            return SUBMIT_SEGMENT_USERS
        case TagUsers(tag_id=None):
            return SUBMIT_TAG_USERS_BY_KEY
        case TagUsers():
            return SUBMIT_TAG_USERS
        case Analysis():
            return SUBMIT_ANALYSIS
    raise TypeError(f"not a CDP export: {export!r}")


def _optional(**values: Any) -> dict[str, Any]:
    """The entries that are configured: None and empty lists are left out."""
    return {k: v for k, v in values.items() if v is not None and v != []}


def variables_for(export: CdpExport, charset: str | None) -> dict[str, Any]:
    """The variables of `document_for(export)`; `charset` is the config's `cdp.charset`."""
    match export:
        case SegmentUsers():
            return {
                "projectId": export.project_id,
                "segmentId": export.segment_id,
                **_optional(
                    tags=list(export.tags), properties=list(export.properties), charset=charset
                ),
            }
        case TagUsers(tag_id=None):
            parameter = {
                "tagKey": export.tag_key,
                **_optional(
                    properties=list(export.properties),
                    charset=charset,
                    detailExport=export.detail,
                ),
            }
            return {"parameter": parameter}
        case TagUsers():
            return {
                "tagId": export.tag_id,
                **_optional(
                    properties=list(export.properties), charset=charset, detailExport=export.detail
                ),
            }
        case Analysis():
            return {
                "projectId": export.project_id,
                "id": export.id,
                "param": {"analysisType": export.type.value},
                **_optional(charset=charset),
            }
    raise TypeError(f"not a CDP export: {export!r}")


def submit_request(export: CdpExport, charset: str | None) -> GraphQLRequest:
    return GraphQLRequest(document_for(export), variables_for(export, charset))


def job_result_request(job_id: str) -> GraphQLRequest:
    """The poll of a submitted job, by the id its mutation answered."""
    return GraphQLRequest(JOB_RESULT, {"id": job_id})
