"""A small typed client of hera.migration.v2.MigrationService.

    from hera_client import HeraClient, decode_error

    with HeraClient("127.0.0.1:50051", token) as hera:
        plan = hera.preview(org, "2024-01-01", "2024-12-31")
        for progress in hera.start(org, "2024-01-01", "2024-12-31", request_id="..."):
            print(progress.sequence, progress.state)

Every call carries `authorization: Bearer <token>`. A failed call raises
`grpc.RpcError`; `decode_error` reads its google.rpc details (ErrorInfo's
stable reason, BadRequest's field violations).

The stubs are generated from the repository's proto into generated/
(generate.py), on first import when missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from typing import Iterator, Mapping, Optional, Sequence

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import generate

generate.ensure()

from hera.migration.v2 import migration_pb2 as pb  # noqa: E402
from hera.migration.v2 import migration_pb2_grpc as pb_grpc  # noqa: E402

__all__ = ["HeraClient", "DecodedError", "FieldViolation", "decode_error", "pb"]

# The domain of every ErrorInfo the server sends.
ERROR_DOMAIN = "hera-migrate"


class HeraClient:
    """MigrationService over one channel, on behalf of the token's user.

    `address` is host:port (plaintext); pass `credentials` (for instance
    grpc.ssl_channel_credentials(ca)) for a server with HERA_TLS_CERT.
    `timeout` (seconds) bounds each unary call; streams run until their run ends.
    """

    def __init__(
        self,
        address: str,
        token: str,
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        timeout: Optional[float] = 60.0,
    ) -> None:
        if credentials is None:
            self._channel = grpc.insecure_channel(address)
        else:
            self._channel = grpc.secure_channel(address, credentials)
        self._stub = pb_grpc.MigrationServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout

    @property
    def stub(self) -> pb_grpc.MigrationServiceStub:
        """The generated stub, for the RPCs this wrapper does not cover
        (pass metadata=client.metadata)."""
        return self._stub

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata: authorization: Bearer <token>."""
        return self._metadata

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "HeraClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def preview(
        self,
        organization_id: str,
        from_date: str,
        to_date: str,
        *,
        closed_period_policy: pb.ClosedPeriodPolicy = pb.CLOSED_PERIOD_POLICY_SKIP,
        batch_limit: int = 0,
        candidate_statuses: Sequence[str] = (),
        smart_code_mappings: Mapping[str, str] = {},
    ) -> pb.PreviewCandidatesResponse:
        """PreviewCandidates: the exact, read-only plan (candidates,
        prediction, risks, plan_fingerprint) for these choices."""
        request = pb.PreviewCandidatesRequest(
            organization_id=organization_id,
            from_date=from_date,
            to_date=to_date,
            batch_limit=batch_limit,
            candidate_statuses=list(candidate_statuses),
            closed_period_policy=closed_period_policy,
            smart_code_mappings=_mappings(smart_code_mappings),
        )
        return self._stub.PreviewCandidates(request, metadata=self._metadata, timeout=self._timeout)

    def start(
        self,
        organization_id: str,
        from_date: str,
        to_date: str,
        *,
        request_id: str = "",
        closed_period_policy: pb.ClosedPeriodPolicy = pb.CLOSED_PERIOD_POLICY_SKIP,
        batch_size: int = 0,
        expected_plan_fingerprint: str = "",
        dry_run: bool = False,
        max_transactions_per_second: Optional[float] = None,
        candidate_statuses: Sequence[str] = (),
        smart_code_mappings: Mapping[str, str] = {},
    ) -> Iterator[pb.MigrationProgress]:
        """StartMigration: creates a run and yields each of its events until
        it ends (the last one's `state` says how). The run belongs to the
        server: stopping the iteration does not stop it (WatchMigration
        picks it up). Errors raise grpc.RpcError while iterating."""
        request = pb.StartMigrationRequest(
            organization_id=organization_id,
            from_date=from_date,
            to_date=to_date,
            batch_size=batch_size,
            request_id=request_id,
            expected_plan_fingerprint=expected_plan_fingerprint,
            dry_run=dry_run,
            closed_period_policy=closed_period_policy,
            candidate_statuses=list(candidate_statuses),
            smart_code_mappings=_mappings(smart_code_mappings),
        )
        if max_transactions_per_second is not None:
            request.max_transactions_per_second = max_transactions_per_second
        for response in self._stub.StartMigration(request, metadata=self._metadata):
            yield response.progress

    def watch(
        self, organization_id: str, migration_id: str, *, after_sequence: int = 0
    ) -> Iterator[pb.MigrationProgress]:
        """WatchMigration: the run's events after `after_sequence` (0: its
        whole history), then live ones until it ends."""
        request = pb.WatchMigrationRequest(
            organization_id=organization_id,
            migration_id=migration_id,
            after_sequence=after_sequence,
        )
        for response in self._stub.WatchMigration(request, metadata=self._metadata):
            yield response.progress

    def get(self, organization_id: str, migration_id: str) -> pb.Migration:
        """GetMigration: the run with its parameters and latest event."""
        request = pb.GetMigrationRequest(organization_id=organization_id, migration_id=migration_id)
        response = self._stub.GetMigration(request, metadata=self._metadata, timeout=self._timeout)
        return response.migration


def _mappings(mappings: Mapping[str, str]) -> list[pb.SmartCodeMapping]:
    return [
        pb.SmartCodeMapping(source_smart_code=source, target_smart_code=target)
        for source, target in mappings.items()
    ]


@dataclass(frozen=True)
class FieldViolation:
    """One google.rpc.BadRequest.FieldViolation."""

    field: str
    description: str


@dataclass(frozen=True)
class DecodedError:
    """A failed call as a program reads it: branch on `reason`, not on `message`."""

    code: grpc.StatusCode
    message: str
    # ErrorInfo.reason ("INVALID_FIELD", "RUN_ALREADY_ACTIVE", ...); None
    # when the status carried no ErrorInfo (say a proxy answered, not us).
    reason: Optional[str] = None
    domain: Optional[str] = None
    # ErrorInfo.metadata ({"field": "from_date"} for INVALID_FIELD).
    metadata: Mapping[str, str] = dataclass_field(default_factory=dict)
    field_violations: Sequence[FieldViolation] = ()
    # The type names of details this decoder does not unpack.
    other_details: Sequence[str] = ()

    @property
    def field(self) -> Optional[str]:
        """The field the error names: ErrorInfo's, else the first violation's."""
        if "field" in self.metadata:
            return self.metadata["field"]
        return self.field_violations[0].field if self.field_violations else None


def decode_error(error: grpc.RpcError) -> DecodedError:
    """Reads a grpc.RpcError's code, message and google.rpc details (the
    grpc-status-details-bin trailer) into a DecodedError."""
    if not isinstance(error, grpc.Call):
        # Raised before any call was made (a channel closed, say).
        return DecodedError(code=grpc.StatusCode.UNKNOWN, message=str(error))
    code = error.code()
    message = error.details() or ""
    status = rpc_status.from_call(error)
    if status is None:
        return DecodedError(code=code, message=message)
    info: Optional[error_details_pb2.ErrorInfo] = None
    violations: list[FieldViolation] = []
    others: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(
                FieldViolation(field=v.field, description=v.description)
                for v in bad_request.field_violations
            )
        else:
            others.append(detail.TypeName())
    return DecodedError(
        code=code,
        message=status.message or message,
        reason=info.reason if info else None,
        domain=info.domain if info else None,
        metadata=dict(info.metadata) if info else {},
        field_violations=tuple(violations),
        other_details=tuple(others),
    )
