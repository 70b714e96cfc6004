/**
 * A connection's behaviour state (held in its `Ref`), the types its steps share, and its snapshot for operators.
 */
import type * as Cause from "effect/Cause"
import type * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import type { PbService, PbServiceError, Peer } from "../PbService.js"
import type { ServiceInstance } from "./instance.js"

/** riak's security phases: STARTTLS first, then login, then requests. */
export type SecurityPhase =
  | { readonly _tag: "Off" }
  | { readonly _tag: "AwaitStartTls" }
  | { readonly _tag: "AwaitAuth"; readonly failures: number }
  | { readonly _tag: "Authenticated"; readonly user: string }

/** A stream in progress: riak's (`ctx.send` to `processStream`) or an Effect `Stream` run in a forked fiber. */
export type Streaming =
  | { readonly _tag: "Mailbox"; readonly instance: ServiceInstance; readonly reqId: unknown }
  | { readonly _tag: "Effect"; readonly instance: ServiceInstance; readonly token: object }

/**
 * What riak's `riak_api_pb_server` keeps in its state record: the service instances opened on this connection,
 * the security phase and the stream in progress. Only the connection's fiber changes it.
 */
export interface ConnectionState {
  readonly instances: ReadonlyMap<PbService, ServiceInstance>
  readonly security: SecurityPhase
  readonly streaming: Streaming | undefined
}

/** A message for the connection's mailbox. */
export type Envelope =
  | { readonly _tag: "Info"; readonly from: ServiceInstance; readonly info: unknown }
  | { readonly _tag: "Chunk"; readonly token: object; readonly replies: Chunk.Chunk<unknown> }
  | { readonly _tag: "End"; readonly token: object }
  | { readonly _tag: "Fail"; readonly token: object; readonly error: PbServiceError }
  | { readonly _tag: "Defect"; readonly token: object; readonly cause: Cause.Cause<unknown> }

/** What to do after a step: go on, or close the connection (after flushing what is buffered). */
export type Next = "Continue" | "Close"

/**
 * A step's outcome, when known synchronously, or the Effect that gives it. Requests to services that answer with
 * plain values are served without building any Effect.
 */
export type Step = Next | Effect.Effect<Next>

export const CONTINUE: Effect.Effect<Next> = Effect.succeed("Continue")
const CLOSE: Effect.Effect<Next> = Effect.succeed("Close")

export const toEffect = (step: Step): Effect.Effect<Next> =>
  typeof step !== "string" ? step : step === "Continue" ? CONTINUE : CLOSE

/** What serving a frame from the loop gives: a `Step`, or "Joined": the service's Effect was joined to the loop. */
export type LoopStep = Step | "Joined"

/** A snapshot of a connection, for operators and tests. */
export interface ConnectionInfo {
  readonly id: number
  readonly peer: Peer
  readonly user: string | undefined
  readonly secure: boolean
  readonly streaming: boolean
  readonly pendingFrames: number
  /** This connection's share of the server's byte budget: buffered input and output. */
  readonly bufferedBytes: number
  readonly readPaused: boolean
  readonly writeBlocked: boolean
}
