/**
 * The channel owner: one channel on an `AmqpConnection`, opened, declared (`Topology`), consuming, watched for
 * loss and reopened per a `Reconnect` policy. `RpcClient` and `RpcServer` are built on it; use it for any other
 * consumer that must survive channel and connection losses.
 *
 * A lost connection does not step the policy: the owner waits for the connection (whose own `reconnect` paces the
 * attempts) and reopens as soon as it is back. The policy paces retries of a channel that fails on a live
 * connection (a declaration refused, a consumer cancelled).
 *
 * @since 0.2.0
 */
import type * as Effect from "effect/Effect"
import type { AmqpConnectionShape } from "./internal/connection.js"
import * as internal from "./internal/channelOwner.js"

export type {
  /** Connecting, Ready, Reconnecting, Stopped: the same names for every channel owner. */
  ChannelStatus,
  /** What the owner tells its user, synchronously, per channel: connected, ready, lost; gaveUp at the end. */
  Events,
  /** How to set a channel up: declarations, consume, policy, status, events. */
  Spec,
  /** Why a setup step was refused (from the broker's reply code). */
  SetupFailureReason
} from "./internal/channelOwner.js"

export {
  /** A setup step (declare, bind, consume) was refused by the broker. */
  SetupFailure,
  /** Runs one AMQP method of a channel's setup; a refusal fails with `SetupFailure` naming the step. */
  setupStep
} from "./internal/channelOwner.js"

/**
 * Keeps a consuming channel until the connection is closed for good or the policy gives up (`events.gaveUp`).
 * Run it in a fiber of the owner's scope (e.g. `Effect.forkScoped` in a process's `init`): interrupting it closes
 * the channel.
 */
export const run: <Meta, Ready extends object>(
  connection: AmqpConnectionShape,
  spec: internal.Spec<Meta, Ready>
) => Effect.Effect<void> = internal.run
