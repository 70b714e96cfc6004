/**
 * The channel owner: open a channel on the connection, declare the topology, consume, watch for loss, reopen per a
 * Schedule. Written once; the RPC client and the RPC server run it for their channel and hear about each step
 * through synchronous events (they forward them to their process's mailbox).
 */
import type * as Amqp from "amqplib"
import { Reconnect } from "@warren/process"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AmqpError, describe } from "./amqpError.js"
import { type AmqpConnectionShape, channelLost } from "./connection.js"

/**
 * Where a channel owner is; the same names for the RPC client and the RPC server. `Ready` carries what the owner
 * adds about its live channel.
 */
export type ChannelStatus<Ready extends object = {}> =
  /** Opening a channel (waiting for the connection while it is down) and declaring. `attempt` counts from 1. */
  | { readonly _tag: "Connecting"; readonly attempt: number }
  /** Declared and consuming: the owner serves. */
  | ({ readonly _tag: "Ready" } & Ready)
  /** The channel failed on a live connection; the next attempt is in `retryIn`. */
  | { readonly _tag: "Reconnecting"; readonly error: AmqpError; readonly retryIn: Duration.Duration }
  /** Stopping or stopped: final. */
  | { readonly _tag: "Stopped" }

/** Why a declaration or consume was refused, from the broker's reply code. */
export type SetupFailureReason =
  | "NotFound"
  | "PreconditionFailed"
  | "AccessRefused"
  | "ResourceLocked"
  | "Other"

/** A setup step (declare, bind, consume) failed; `reason` is the broker's verdict. */
export class SetupFailure extends Data.TaggedError("SetupFailure")<{
  readonly step: string
  readonly reason: SetupFailureReason
  readonly error: AmqpError
}> {}

const reasonOf = (cause: unknown): SetupFailureReason => {
  const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined
  switch (code) {
    case 404:
      return "NotFound"
    case 406:
      return "PreconditionFailed"
    case 403:
      return "AccessRefused"
    case 405:
      return "ResourceLocked"
    default:
      return "Other"
  }
}

/** Runs one AMQP method of the setup; a refusal fails with a `SetupFailure` naming the step. */
export const setupStep = <A>(step: string, run: () => Promise<A>): Effect.Effect<A, SetupFailure> =>
  Effect.async<A, SetupFailure>((resume) => {
    run().then(
      (value) => resume(Effect.succeed(value)),
      (cause: unknown) =>
        resume(Effect.fail(
          new SetupFailure({
            step,
            reason: reasonOf(cause),
            error: new AmqpError({ reason: "ChannelOpen", message: `${step} failed: ${describe(cause)}`, cause })
          })
        ))
    )
  })

/** What the owner tells its user, synchronously, in this order per channel: Connected, Ready, Lost. */
export interface Events<Meta, Ready> {
  /** The channel is open and declared (Hare's `connected`). */
  readonly connected: (channel: Amqp.Channel, meta: Meta) => void
  /** The broker confirmed the consumer (consume-ok; Hare's `handle_ready`). */
  readonly ready: (channel: Amqp.Channel, meta: Meta, ready: Ready) => void
  /** The channel was lost, or its setup failed (`setup` then says which step and why). */
  readonly lost: (error: AmqpError, setup: SetupFailure | undefined) => void
  /** The owner gave up: the connection closed for good or the policy ended. Nothing follows. */
  readonly gaveUp: (error: AmqpError) => void
}

/** How to set a channel up. */
export interface Spec<Meta, Ready extends object> {
  readonly name: string
  readonly confirm: boolean
  /** Waits between attempts after a failure on a live connection; restarted after every Ready. */
  readonly policy: Reconnect.Policy<AmqpError>
  /** Declarations, one AMQP method at a time. */
  readonly declare: (channel: Amqp.Channel) => Effect.Effect<Meta, SetupFailure, Scope.Scope>
  /** Starts consuming; succeeds on consume-ok. `cancelled` is for the broker's basic.cancel (a `null` delivery). */
  readonly consume: (
    channel: Amqp.Channel,
    meta: Meta,
    cancelled: (error: AmqpError) => void
  ) => Effect.Effect<Ready, SetupFailure, Scope.Scope>
  readonly status: SubscriptionRef.SubscriptionRef<ChannelStatus<Ready>>
  readonly events: Events<Meta, Ready>
}

/** One channel's life: open, declare, consume, then wait for its loss. Returns the loss. */
const session = <Meta, Ready extends object>(
  connection: AmqpConnectionShape,
  spec: Spec<Meta, Ready>,
  readied: { value: boolean }
): Effect.Effect<AmqpError, AmqpError | SetupFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const channel: Amqp.Channel = yield* (spec.confirm ? connection.openChannel({ confirm: true }) : connection.openChannel())
    const meta = yield* spec.declare(channel)
    spec.events.connected(channel, meta)
    const cancelled = yield* Deferred.make<AmqpError>()
    const ready = yield* spec.consume(channel, meta, (error) => Deferred.unsafeDone(cancelled, Exit.succeed(error)))
    readied.value = true
    yield* SubscriptionRef.set(spec.status, { _tag: "Ready", ...ready } as ChannelStatus<Ready>)
    spec.events.ready(channel, meta, ready)
    return yield* Effect.raceFirst(Effect.flip(channelLost(channel)), Deferred.await(cancelled))
  })

/**
 * Keeps a consuming channel: sets one up, waits for its loss, waits per the policy, sets up the next. A lost
 * connection is not the channel's fault: the owner waits for the connection (in `openChannel`) without stepping
 * the policy, so the channel comes back as soon as the connection does. Ends when the connection is closed for
 * good or the policy gives up (`gaveUp`). Run it in a fiber of the owner's scope.
 */
export const run = <Meta, Ready extends object>(
  connection: AmqpConnectionShape,
  spec: Spec<Meta, Ready>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const backoff = Reconnect.make(spec.policy)
    let attempt = 0
    for (;;) {
      attempt += 1
      yield* SubscriptionRef.set(spec.status, { _tag: "Connecting", attempt })
      const readied = { value: false }
      const outcome = yield* Effect.either(Effect.scoped(session(connection, spec, readied)))
      const failure = outcome._tag === "Left" ? outcome.left : undefined
      const setup = failure instanceof SetupFailure ? failure : undefined
      const error = outcome._tag === "Right" ? outcome.right : failure instanceof SetupFailure ? failure.error : failure!
      if (readied.value) {
        attempt = 1
        yield* backoff.reset
      }
      if (error.reason === "Closed") {
        spec.events.gaveUp(error)
        return
      }
      spec.events.lost(error, setup)
      if (error.reason === "ConnectionLost") {
        yield* Effect.logWarning(`${spec.name} lost its connection`, error.message)
        continue
      }
      const retryIn = yield* backoff.next(error)
      if (Option.isNone(retryIn)) {
        yield* Effect.logError(`${spec.name} gave up reopening its channel`, error.message)
        spec.events.gaveUp(error)
        return
      }
      yield* Effect.logWarning(`${spec.name} lost its channel`, error.message)
      yield* SubscriptionRef.set(spec.status, { _tag: "Reconnecting", error, retryIn: retryIn.value })
      yield* Effect.sleep(retryIn.value)
    }
  })
