/**
 * The per-connection instance of a service: its callbacks closed over the connection's state, with the message
 * types erased so the server can hold instances of services of different types.
 */
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import type * as Fiber from "effect/Fiber"
import type * as Option from "effect/Option"
import type {
  DecodeResult,
  Definition,
  PbContext,
  PbService,
  Peer,
  ProcessResult,
  Result,
  StreamResult
} from "../PbService.js"

/** What the server gives a service instance about its connection. */
export interface ConnectionLink {
  readonly connectionId: number
  readonly peer: Peer
  readonly user: Effect.Effect<Option.Option<string>>
  /** Offers `info` from `instance` to the connection mailbox (suspends while it is full). */
  readonly offer: (instance: ServiceInstance, info: unknown) => Effect.Effect<boolean>
  readonly unsafeOffer: (instance: ServiceInstance, info: unknown) => boolean
  readonly fork: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<Fiber.RuntimeFiber<A, E>>
}

/**
 * A service opened on one connection. `process`/`processStream` keep the new state; they return the service's
 * result as it came (a value, or an Effect of it) and may throw (a defect), so plain services cost no Effect.
 */
export interface ServiceInstance {
  readonly service: PbService
  readonly streams: boolean
  readonly decode: (code: number, body: Uint8Array) => DecodeResult<unknown>
  readonly encode: (reply: unknown) => Either.Either<Uint8Array, unknown>
  readonly process: (message: unknown) => Result<ProcessResult<unknown, unknown, unknown>>
  readonly processStream: (info: unknown, reqId: unknown) => Result<StreamResult<unknown, unknown>>
}

const plainTags = new Set<unknown>(["Reply", "Failure", "StartStream", "ReplyStream", "Ignore", "Done"])

/** A plain result rather than an Effect of one (by tag first: cheaper than `isEffect`, and no Effect has them). */
const isPlain = <R>(result: R | Effect.Effect<R, unknown>): result is R =>
  plainTags.has((result as { readonly _tag?: unknown })._tag) || !Effect.isEffect(result)

/** Runs `init` and closes the callbacks over the resulting state. */
export const openInstance = <Req, Resp, State, Info, ReqId>(
  service: PbService,
  definition: Definition<Req, Resp, State, Info, ReqId>,
  link: ConnectionLink
): Effect.Effect<ServiceInstance> =>
  Effect.suspend(() => {
    const initial = definition.init()
    return Effect.isEffect(initial) ? initial : Effect.succeed(initial)
  }).pipe(Effect.map((initialState) => {
    let state = initialState
    const ctx: PbContext<Info> = {
      connectionId: link.connectionId,
      peer: link.peer,
      user: link.user,
      send: (info) => link.offer(instance, info),
      unsafeSend: (info) => link.unsafeOffer(instance, info),
      fork: link.fork
    }
    const keep = <R extends { readonly state: State }>(result: R): R => {
      state = result.state
      return result
    }
    const kept = <R extends { readonly state: State }>(result: Result<R>): Result<R> =>
      isPlain(result) ? keep(result) : Effect.map(result, keep)
    const processStream = definition.processStream
    const instance: ServiceInstance = {
      service,
      streams: processStream !== undefined,
      // The server only hands `process` what this instance's `decode` produced, and `processStream` what this
      // instance's `ctx.send` accepted, so these casts restore the types `decode` and `send` erased.
      decode: (code, body) => definition.decode(code, body),
      encode: (reply) => definition.encode(reply as Resp),
      process: (message) => kept(definition.process(message as Req, state, ctx)),
      processStream: (info, reqId) =>
        processStream === undefined
          ? Effect.dieMessage(`service ${service.name} has no processStream`)
          : kept(processStream(info as Info, reqId as ReqId, state, ctx))
    }
    return instance
  }))
