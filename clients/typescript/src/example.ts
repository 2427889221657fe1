// Previews 2024, migrates it, replays the run's history, then shows how a
// program reads an error. Environment: HERA_ADDR (default 127.0.0.1:50051),
// HERA_TOKEN and HERA_ORG (the embedded default server prints both).
//
// Exits 0 when the run SUCCEEDED and the bad request's error decoded as
// INVALID_ARGUMENT / INVALID_FIELD naming from_date; 1 otherwise; 2 on bad usage.
import { randomUUID } from 'node:crypto';

import { HeraClient, decodeError, type DecodedError, type MigrationProgress } from './hera_client';

const FROM_DATE = '2024-01-01';
const TO_DATE = '2024-12-31';
const POLICY = 'CLOSED_PERIOD_POLICY_POST_TO_OPEN_PERIOD';

function describe(progress: MigrationProgress): string {
  return (
    `event ${progress.sequence} ${progress.kind} ${progress.state} ${progress.progress_percentage.toFixed(1)}%` +
    ` processed=${progress.transactions_processed} remaining=${progress.transactions_remaining}` +
    ` migrated=${progress.transactions_migrated} skipped=${progress.transactions_skipped}` +
    ` quarantined=${progress.transactions_quarantined}`
  );
}

async function main(): Promise<number> {
  const address = process.env.HERA_ADDR ?? '127.0.0.1:50051';
  const token = process.env.HERA_TOKEN;
  const org = process.env.HERA_ORG;
  if (!token || !org) {
    console.error('set HERA_TOKEN and HERA_ORG (hera-migrate serve prints both)');
    return 2;
  }

  const hera = new HeraClient(address, token);
  try {
    let finalState: string;
    try {
      const plan = await hera.preview({
        organization_id: org,
        from_date: FROM_DATE,
        to_date: TO_DATE,
        closed_period_policy: POLICY,
      });
      const prediction = plan.prediction;
      console.log(
        `preview: ${plan.total_candidates} candidates; would migrate ${prediction?.migrated},` +
          ` skip ${(prediction?.skipped_closed ?? 0) + (prediction?.skipped_unmapped ?? 0)},` +
          ` quarantine ${prediction?.quarantined}; estimate ${plan.estimated_processing_time_ms} ms;` +
          ` plan ${plan.plan_fingerprint.slice(0, 12)}`,
      );

      const requestId = `typescript-example-${randomUUID()}`;
      console.log(`start: request_id ${requestId}`);
      let last: MigrationProgress | undefined;
      for await (const progress of hera.start({
        organization_id: org,
        from_date: FROM_DATE,
        to_date: TO_DATE,
        request_id: requestId,
        closed_period_policy: POLICY,
        batch_size: 250,
        expected_plan_fingerprint: plan.plan_fingerprint,
      })) {
        console.log(describe(progress));
        last = progress;
      }
      if (!last) {
        console.error('the start streamed no event');
        return 1;
      }
      finalState = last.state;
      console.log(`final state: ${finalState} (migration ${last.migration_id})`);

      const history: MigrationProgress[] = [];
      for await (const progress of hera.watch(org, last.migration_id)) history.push(progress);
      const [first, latest] = [history[0], history[history.length - 1]];
      console.log(
        `watch: ${history.length} events in the run's history` +
          ` (sequence ${first?.sequence}..${latest?.sequence}), last ${latest?.state}`,
      );

      const run = await hera.get(org, last.migration_id);
      console.log(
        `get: ${run.state} in phase ${run.phase},` +
          ` ${run.progress?.transactions_migrated ?? 0} migrated, ${run.quarantined.length} quarantined`,
      );
    } catch (error) {
      const failure = decodeError(error);
      console.error(`call failed: ${failure.codeName} ${failure.reason}: ${failure.message}`);
      return 1;
    }

    // A bad request, read as a program reads it: the code, the stable reason
    // and the field, never the message text.
    let bad: DecodedError;
    try {
      for await (const _ of hera.start({
        organization_id: org,
        from_date: '2024-13-01',
        to_date: TO_DATE,
        request_id: `typescript-example-${randomUUID()}`,
      })) {
        void _;
      }
      console.error('the bad request was accepted');
      return 1;
    } catch (error) {
      bad = decodeError(error);
    }
    console.log(
      `bad request: code=${bad.codeName} reason=${bad.reason} field=${bad.field}` +
        ` domain=${bad.domain} message=${JSON.stringify(bad.message)}`,
    );
    for (const violation of bad.fieldViolations) {
      console.log(`  violation ${violation.field}: ${violation.description}`);
    }

    const expected =
      finalState === 'MIGRATION_STATE_SUCCEEDED' &&
      bad.codeName === 'INVALID_ARGUMENT' &&
      bad.reason === 'INVALID_FIELD' &&
      bad.field === 'from_date' &&
      bad.fieldViolations.map((v) => v.field).join(',') === 'from_date';
    console.log(expected ? 'ok' : 'unexpected outcome');
    return expected ? 0 : 1;
  } finally {
    hera.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
