"""Small typed clients of hera.migration.v2: MigrationService (HeraClient)
and RolloutService (RolloutClient, fleet rollouts for platform operators).

    from hera_client import HeraClient, decode_error

    with HeraClient("127.0.0.1:50051", token) as hera:
        plan = hera.preview(org, "2024-01-01", "2024-12-31")
        for progress in hera.start(org, "2024-01-01", "2024-12-31", request_id="..."):
            print(progress.sequence, progress.state)

Every call carries `authorization: Bearer <token>`. A failed call raises
`grpc.RpcError`; `decode_error` reads its google.rpc details (ErrorInfo's
stable reason, BadRequest's field violations).

The stubs are generated from the repository's protos into generated/
(generate.py), on first import when missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from typing import Iterator, Mapping, Optional, Sequence, Union

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import generate

generate.ensure()

from hera.migration.v2 import migration_pb2 as pb  # noqa: E402
from hera.migration.v2 import migration_pb2_grpc as pb_grpc  # noqa: E402
from hera.migration.v2 import rollout_pb2 as rollout_pb  # noqa: E402
from hera.migration.v2 import rollout_pb2_grpc as rollout_pb_grpc  # noqa: E402

__all__ = [
    "HeraClient", "RolloutClient", "Stage", "DecodedError", "FieldViolation", "decode_error",
    "pb", "rollout_pb",
]

# The domain of every ErrorInfo the server sends.
ERROR_DOMAIN = "hera-migrate"


class _Connected:
    """One channel on behalf of the token's user.

    `address` is host:port (plaintext); pass `credentials` (for instance
    grpc.ssl_channel_credentials(ca)) for a server with HERA_TLS_CERT.
    `timeout` (seconds) bounds each unary call; streams run until they end.
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
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata: authorization: Bearer <token>."""
        return self._metadata

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class HeraClient(_Connected):
    """MigrationService over one channel, on behalf of the token's user
    (see _Connected for address, credentials and timeout)."""

    def __init__(self, address: str, token: str, **options) -> None:
        super().__init__(address, token, **options)
        self._stub = pb_grpc.MigrationServiceStub(self._channel)

    @property
    def stub(self) -> pb_grpc.MigrationServiceStub:
        """The generated stub, for the RPCs this wrapper does not cover
        (pass metadata=client.metadata)."""
        return self._stub

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


@dataclass(frozen=True)
class Stage:
    """One stage of a rollout: a count of organizations, a share of them
    (percent), or the rest: Stage.count(1), Stage.share(25), Stage.rest_of_them()."""

    organizations: Optional[int] = None
    percent: Optional[int] = None
    rest: bool = False

    @staticmethod
    def count(organizations: int) -> "Stage":
        return Stage(organizations=organizations)

    @staticmethod
    def share(percent: int) -> "Stage":
        return Stage(percent=percent)

    @staticmethod
    def rest_of_them() -> "Stage":
        return Stage(rest=True)

    def message(self) -> rollout_pb.RolloutStage:
        if self.organizations is not None:
            return rollout_pb.RolloutStage(organizations=self.organizations)
        if self.percent is not None:
            return rollout_pb.RolloutStage(percent=self.percent)
        return rollout_pb.RolloutStage(rest=self.rest)


class RolloutClient(_Connected):
    """RolloutService over one channel: one migration across organizations,
    stage by stage, each organization migrated and validated before the next
    stage. The token's user must hold a platform role (PLATFORM_ADMIN or
    PLATFORM_OPERATOR) in HERA's platform organization. See _Connected for
    address, credentials and timeout."""

    def __init__(self, address: str, token: str, **options) -> None:
        super().__init__(address, token, **options)
        self._stub = rollout_pb_grpc.RolloutServiceStub(self._channel)

    @property
    def stub(self) -> rollout_pb_grpc.RolloutServiceStub:
        """The generated stub (pass metadata=client.metadata)."""
        return self._stub

    def start(
        self,
        organizations: Union[Sequence[str], str],
        stages: Sequence[Stage],
        from_date: str,
        to_date: str,
        *,
        request_id: str = "",
        closed_period_policy: pb.ClosedPeriodPolicy = pb.CLOSED_PERIOD_POLICY_SKIP,
        batch_size: int = 0,
        max_concurrency: int = 0,
        rollback_failed_stage: bool = False,
    ) -> rollout_pb.Rollout:
        """StartRollout over the listed organization ids, or every
        organization with candidates when `organizations` is "all". The
        rollout belongs to the server (any replica drives it); watch() follows it."""
        everyone = organizations == "all"
        request = rollout_pb.StartRolloutRequest(
            organization_ids=[] if everyone else list(organizations),
            all_with_candidates=everyone,
            stages=[stage.message() for stage in stages],
            migration=pb.StartMigrationRequest(
                from_date=from_date,
                to_date=to_date,
                batch_size=batch_size,
                closed_period_policy=closed_period_policy,
            ),
            max_concurrency=max_concurrency,
            rollback_failed_stage=rollback_failed_stage,
            request_id=request_id,
        )
        return self._stub.StartRollout(request, metadata=self._metadata, timeout=self._timeout).rollout

    def watch(self, rollout_id: str) -> Iterator[rollout_pb.Rollout]:
        """WatchRollout: the rollout now, then at each of its changes, until it ends."""
        request = rollout_pb.WatchRolloutRequest(rollout_id=rollout_id)
        for response in self._stub.WatchRollout(request, metadata=self._metadata):
            yield response.rollout

    def get(self, rollout_id: str) -> rollout_pb.Rollout:
        """GetRollout: the rollout with every organization's standing."""
        request = rollout_pb.GetRolloutRequest(rollout_id=rollout_id)
        return self._stub.GetRollout(request, metadata=self._metadata, timeout=self._timeout).rollout

    def pause(self, rollout_id: str) -> rollout_pb.Rollout:
        """PauseRollout: its runs under way pause; no organization starts."""
        request = rollout_pb.PauseRolloutRequest(rollout_id=rollout_id)
        return self._stub.PauseRollout(request, metadata=self._metadata, timeout=self._timeout).rollout

    def resume(self, rollout_id: str) -> rollout_pb.Rollout:
        """ResumeRollout: a paused rollout goes on where it stopped."""
        request = rollout_pb.ResumeRolloutRequest(rollout_id=rollout_id)
        return self._stub.ResumeRollout(request, metadata=self._metadata, timeout=self._timeout).rollout

    def cancel(self, rollout_id: str) -> rollout_pb.Rollout:
        """CancelRollout: its runs under way are cancelled; nothing more starts."""
        request = rollout_pb.CancelRolloutRequest(rollout_id=rollout_id)
        return self._stub.CancelRollout(request, metadata=self._metadata, timeout=self._timeout).rollout


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
