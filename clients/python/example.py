#!/usr/bin/env python3
"""Previews 2024, migrates it, replays the run's history, then shows how a
program reads an error. Environment: HERA_ADDR (default 127.0.0.1:50051),
HERA_TOKEN and HERA_ORG (the embedded default server prints both).

Exits 0 when the run SUCCEEDED and the bad request's error decoded as
INVALID_ARGUMENT / INVALID_FIELD naming from_date; 1 otherwise; 2 on bad usage.
"""
from __future__ import annotations

import os
import sys
import uuid

import grpc

from hera_client import HeraClient, decode_error, pb

FROM_DATE, TO_DATE = "2024-01-01", "2024-12-31"
POLICY = pb.CLOSED_PERIOD_POLICY_POST_TO_OPEN_PERIOD


def describe(progress: pb.MigrationProgress) -> str:
    return (
        f"event {progress.sequence} {pb.MigrationEventKind.Name(progress.kind)}"
        f" {pb.MigrationState.Name(progress.state)} {progress.progress_percentage:.1f}%"
        f" processed={progress.transactions_processed} remaining={progress.transactions_remaining}"
        f" migrated={progress.transactions_migrated} skipped={progress.transactions_skipped}"
        f" quarantined={progress.transactions_quarantined}"
    )


def main() -> int:
    address = os.environ.get("HERA_ADDR", "127.0.0.1:50051")
    token, org = os.environ.get("HERA_TOKEN"), os.environ.get("HERA_ORG")
    if not token or not org:
        print("set HERA_TOKEN and HERA_ORG (hera-migrate serve prints both)", file=sys.stderr)
        return 2

    with HeraClient(address, token) as hera:
        try:
            plan = hera.preview(org, FROM_DATE, TO_DATE, closed_period_policy=POLICY)
            prediction = plan.prediction
            print(
                f"preview: {plan.total_candidates} candidates; would migrate {prediction.migrated},"
                f" skip {prediction.skipped_closed + prediction.skipped_unmapped},"
                f" quarantine {prediction.quarantined}; estimate {plan.estimated_processing_time_ms} ms;"
                f" plan {plan.plan_fingerprint[:12]}"
            )

            request_id = f"python-example-{uuid.uuid4()}"
            print(f"start: request_id {request_id}")
            last = None
            for progress in hera.start(
                org, FROM_DATE, TO_DATE,
                request_id=request_id,
                closed_period_policy=POLICY,
                batch_size=250,
                expected_plan_fingerprint=plan.plan_fingerprint,
            ):
                print(describe(progress))
                last = progress
            if last is None:
                print("the start streamed no event", file=sys.stderr)
                return 1
            final_state = pb.MigrationState.Name(last.state)
            print(f"final state: {final_state} (migration {last.migration_id})")

            history = list(hera.watch(org, last.migration_id))
            print(
                f"watch: {len(history)} events in the run's history"
                f" (sequence {history[0].sequence}..{history[-1].sequence}),"
                f" last {pb.MigrationState.Name(history[-1].state)}"
            )

            run = hera.get(org, last.migration_id)
            print(
                f"get: {pb.MigrationState.Name(run.state)} in phase {pb.MigrationPhase.Name(run.phase)},"
                f" {run.progress.transactions_migrated} migrated, {len(run.quarantined)} quarantined"
            )
        except grpc.RpcError as error:
            failure = decode_error(error)
            print(f"call failed: {failure.code.name} {failure.reason}: {failure.message}", file=sys.stderr)
            return 1

        # A bad request, read as a program reads it: the code, the stable
        # reason and the field, never the message text.
        try:
            for _ in hera.start(org, "2024-13-01", TO_DATE, request_id=f"python-example-{uuid.uuid4()}"):
                pass
            print("the bad request was accepted", file=sys.stderr)
            return 1
        except grpc.RpcError as error:
            bad = decode_error(error)
        print(
            f"bad request: code={bad.code.name} reason={bad.reason} field={bad.field}"
            f" domain={bad.domain} message={bad.message!r}"
        )
        for violation in bad.field_violations:
            print(f"  violation {violation.field}: {violation.description}")

    expected = (
        final_state == "MIGRATION_STATE_SUCCEEDED"
        and bad.code == grpc.StatusCode.INVALID_ARGUMENT
        and bad.reason == "INVALID_FIELD"
        and bad.field == "from_date"
        and [v.field for v in bad.field_violations] == ["from_date"]
    )
    print("ok" if expected else "unexpected outcome")
    return 0 if expected else 1


if __name__ == "__main__":
    sys.exit(main())
