// A small typed client of hera.migration.v2.RolloutService: one migration
// across organizations, stage by stage, each organization migrated and
// validated before the next stage. The token's user must hold a platform
// role (PLATFORM_ADMIN or PLATFORM_OPERATOR) in HERA's platform organization.
//
//   const fleet = new RolloutClient('127.0.0.1:50051', token);
//   const started = await fleet.start({ organization_ids, stages: [stage.count(1), stage.rest()], migration });
//   for await (const snapshot of fleet.watch(started.rollout_id)) console.log(snapshot.state);
import * as grpc from '@grpc/grpc-js';

import { Connected, loadProto, type HeraClientOptions } from './hera_client';
import type { ProtoGrpcType } from './generated/rollout';
import type { RolloutServiceClient } from './generated/hera/migration/v2/RolloutService';
import type { Rollout__Output } from './generated/hera/migration/v2/Rollout';
import type { RolloutStage } from './generated/hera/migration/v2/RolloutStage';
import type { StartRolloutRequest } from './generated/hera/migration/v2/StartRolloutRequest';
import type { WatchRolloutResponse__Output } from './generated/hera/migration/v2/WatchRolloutResponse';

export type { Rollout__Output as Rollout } from './generated/hera/migration/v2/Rollout';
export type { RolloutStage } from './generated/hera/migration/v2/RolloutStage';
export type { StartRolloutRequest } from './generated/hera/migration/v2/StartRolloutRequest';

/** A rollout's stages: a count of organizations, a share of them, or the rest. */
export const stage = {
  count: (organizations: number): RolloutStage => ({ organizations }),
  share: (percent: number): RolloutStage => ({ percent }),
  rest: (): RolloutStage => ({ rest: true }),
};

/** A unary call's (error, response) callback, as a promise of the rollout it answers. */
type Answer = (error: grpc.ServiceError | null, response?: { rollout?: Rollout__Output | null }) => void;

/** RolloutService over one channel, on behalf of the token's platform operator. */
export class RolloutClient extends Connected {
  private readonly client: RolloutServiceClient;

  constructor(address: string, token: string, options: HeraClientOptions = {}) {
    super(token, options);
    const loaded = loadProto<ProtoGrpcType>('rollout');
    this.client = new loaded.hera.migration.v2.RolloutService(
      address,
      options.credentials ?? grpc.credentials.createInsecure(),
    );
  }

  close(): void {
    this.client.close();
  }

  /** StartRollout: the listed organization_ids (or all_with_candidates), in
   * its stages; answers the rollout's first snapshot. The rollout belongs to
   * the server (any replica drives it); watch follows it. */
  start(request: StartRolloutRequest): Promise<Rollout__Output> {
    return this.unary((answer) => this.client.StartRollout(request, this.metadata(), this.unaryOptions(), answer));
  }

  /** WatchRollout: the rollout now, then at each of its changes, until it ends. */
  async *watch(rolloutId: string): AsyncGenerator<Rollout__Output> {
    const call = this.client.WatchRollout({ rollout_id: rolloutId }, this.metadata());
    for await (const response of call as AsyncIterable<WatchRolloutResponse__Output>) {
      if (response.rollout) yield response.rollout;
    }
  }

  /** GetRollout: the rollout with every organization's standing. */
  get(rolloutId: string): Promise<Rollout__Output> {
    const request = { rollout_id: rolloutId };
    return this.unary((answer) => this.client.GetRollout(request, this.metadata(), this.unaryOptions(), answer));
  }

  /** PauseRollout: its runs under way pause; no organization starts. */
  pause(rolloutId: string): Promise<Rollout__Output> {
    const request = { rollout_id: rolloutId };
    return this.unary((answer) => this.client.PauseRollout(request, this.metadata(), this.unaryOptions(), answer));
  }

  /** ResumeRollout: a paused rollout goes on where it stopped. */
  resume(rolloutId: string): Promise<Rollout__Output> {
    const request = { rollout_id: rolloutId };
    return this.unary((answer) => this.client.ResumeRollout(request, this.metadata(), this.unaryOptions(), answer));
  }

  /** CancelRollout: its runs under way are cancelled; nothing more starts. */
  cancel(rolloutId: string): Promise<Rollout__Output> {
    const request = { rollout_id: rolloutId };
    return this.unary((answer) => this.client.CancelRollout(request, this.metadata(), this.unaryOptions(), answer));
  }

  private unary(call: (answer: Answer) => void): Promise<Rollout__Output> {
    return new Promise((resolve, reject) =>
      call((error, response) => (error || !response?.rollout ? reject(error) : resolve(response.rollout))),
    );
  }
}
