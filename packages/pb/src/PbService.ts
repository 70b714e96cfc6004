/**
 * The PB service behaviour: the TypeScript form of riak_api's `riak_api_pb_service`.
 *
 * A service owns a range of message codes. For every connection it gets its own state (from `init`), decodes the
 * request bodies for its codes, processes them and encodes the replies. A request may start a stream: either the
 * riak way (`stream(reqId)`, then every message sent to the connection through `ctx.send` goes to `processStream`)
 * or the Effect way (`streamOf(stream)`, the server sends each element of an Effect `Stream`).
 *
 * ```ts
 * const echo = PbService.make({
 *   name: "echo",
 *   init: () => 0,
 *   decode: (code, body) => PbService.decoded({ code, body }),
 *   encode: (reply: Uint8Array) => Either.right(reply),
 *   process: (msg, count) => PbService.reply(Uint8Array.of(msg.code + 1, ...msg.body), count + 1)
 * })
 * ```
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import type * as Fiber from "effect/Fiber"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { ErrorMessage, PbServiceError } from "./internal/errorMessage.js"
import { define } from "./internal/instance.js"

export type {
  /** What becomes the `errmsg` of an `RpbErrorResp`: text and bytes are sent verbatim, a `Format` is rendered first. */
  ErrorMessage,
  /** A value to pretty-print into an error reply (riak's `{format, Term}` and `{format, Fmt, Args}`). */
  Format
} from "./internal/errorMessage.js"

export {
  /** Pretty-prints a value (riak's `{format, Term}`, which uses `~p`). */
  format,
  /** Formats arguments into a `node:util` `format` template (riak's `{format, Fmt, Args}`). */
  formatWith,
  /**
   * A failure a service reports from `process`/`processStream` (or from a reply `Stream`) without building an
   * `Error` result: it becomes an `RpbErrorResp`, the state stays as it was, the connection stays open.
   */
  PbServiceError,
  /** Renders an `ErrorMessage` to the bytes of the `errmsg` field. */
  renderErrorMessage,
  /** Renders any reason as text: strings verbatim, bytes as UTF-8, anything else inspected. */
  renderReason
} from "./internal/errorMessage.js"

// ---------------------------------------------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------------------------------------------

/**
 * A security target: a bucket type, a bucket, or a `{ type, bucket }` pair. A check without a target is global
 * (riak's `{Permission}` form, shown as `ANY`).
 *
 * @since 0.1.0
 * @category models
 */
export type Target = string | Uint8Array | { readonly type: string | Uint8Array; readonly bucket: string | Uint8Array }

/**
 * The permission a decoded request needs when security is on (riak's `PermAndTarget`), e.g.
 * `{ permission: "riak_kv.get", target: { type: "default", bucket: "users" } }`.
 *
 * @since 0.1.0
 * @category models
 */
export interface PermissionCheck {
  readonly permission: string
  readonly target?: Target | undefined
}

/**
 * The result of `decode`: a message (optionally with the permission it needs) or a reason it could not be decoded.
 *
 * @since 0.1.0
 * @category models
 */
export type DecodeResult<Req> =
  | { readonly _tag: "Decoded"; readonly message: Req; readonly permission: PermissionCheck | undefined }
  | { readonly _tag: "DecodeFailed"; readonly reason: unknown }

/**
 * `{ok, Message}` / `{ok, Message, PermAndTarget}`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decoded = <Req>(message: Req, permission?: PermissionCheck): DecodeResult<Req> => ({
  _tag: "Decoded",
  message,
  permission
})

/**
 * `{error, Reason}`: the client gets `Message decoding error: <reason>`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeFailed = (reason: unknown): DecodeResult<never> => ({ _tag: "DecodeFailed", reason })

// ---------------------------------------------------------------------------------------------------------------
// process / processStream results
// ---------------------------------------------------------------------------------------------------------------

/**
 * Send one or more replies (`{reply, R, S}`; in a stream `R` may be a list).
 *
 * @since 0.1.0
 * @category models
 */
export interface Reply<Resp, State> {
  readonly _tag: "Reply"
  readonly replies: ReadonlyArray<Resp>
  readonly state: State
}

/**
 * Enter streaming mode (`{reply, {stream, ReqId}, S}`): messages sent with `ctx.send` go to `processStream`.
 *
 * @since 0.1.0
 * @category models
 */
export interface StartStream<ReqId, State> {
  readonly _tag: "StartStream"
  readonly reqId: ReqId
  readonly state: State
}

/**
 * Stream the elements of an Effect `Stream` as replies. The stream ending ends the request; a `PbServiceError`
 * failure sends an `RpbErrorResp` and ends it. Nothing else is sent: a final "done" frame is the service's job.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReplyStream<Resp, State> {
  readonly _tag: "ReplyStream"
  readonly stream: Stream.Stream<Resp, PbServiceError>
  readonly state: State
}

/**
 * Reply with an `RpbErrorResp` (`{error, E, S}`); in a stream this also ends the stream.
 *
 * @since 0.1.0
 * @category models
 */
export interface Failure<State> {
  readonly _tag: "Failure"
  readonly error: ErrorMessage
  readonly state: State
}

/**
 * A request `process` has no clause for, e.g. a reply code (`RpbPingResp`) sent as a request. riak's service
 * would crash on it; the client gets riak's `Error processing incoming message` and the connection is closed, as in
 * riak, but nothing is logged as a defect (it is the client's mistake, not the service's).
 *
 * @since 0.1.0
 * @category models
 */
export interface Unexpected<State> {
  readonly _tag: "Unexpected"
  readonly state: State
}

/**
 * Send nothing and keep streaming (`{ignore, S}`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Ignore<State> {
  readonly _tag: "Ignore"
  readonly state: State
}

/**
 * Send the replies (maybe none) and end the stream (`{done, S}` / `{done, R, S}`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Done<Resp, State> {
  readonly _tag: "Done"
  readonly replies: ReadonlyArray<Resp>
  readonly state: State
}

/**
 * What `process` may return.
 *
 * @since 0.1.0
 * @category models
 */
export type ProcessResult<Resp, State, ReqId = never> =
  | Reply<Resp, State>
  | StartStream<ReqId, State>
  | ReplyStream<Resp, State>
  | Failure<State>
  | Unexpected<State>

/**
 * What `processStream` may return.
 *
 * @since 0.1.0
 * @category models
 */
export type StreamResult<Resp, State> = Reply<Resp, State> | Ignore<State> | Done<Resp, State> | Failure<State>

/**
 * One reply.
 *
 * @since 0.1.0
 * @category constructors
 */
export const reply = <Resp, State>(message: Resp, state: State): Reply<Resp, State> => ({
  _tag: "Reply",
  replies: [message],
  state
})

/**
 * Several replies, written in order (and coalesced into one socket write).
 *
 * @since 0.1.0
 * @category constructors
 */
export const replies = <Resp, State>(messages: ReadonlyArray<Resp>, state: State): Reply<Resp, State> => ({
  _tag: "Reply",
  replies: messages,
  state
})

/**
 * Enter streaming mode for `reqId`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const stream = <ReqId, State>(reqId: ReqId, state: State): StartStream<ReqId, State> => ({
  _tag: "StartStream",
  reqId,
  state
})

/**
 * Stream the elements of `replies` to the client.
 *
 * @since 0.1.0
 * @category constructors
 */
export const streamOf = <Resp, State>(
  replies: Stream.Stream<Resp, PbServiceError>,
  state: State
): ReplyStream<Resp, State> => ({ _tag: "ReplyStream", stream: replies, state })

/**
 * Reply with an `RpbErrorResp` carrying `error`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const error = <State>(error: ErrorMessage, state: State): Failure<State> => ({ _tag: "Failure", error, state })

/**
 * Refuse a request the service does not serve (a reply code sent as a request): riak's text, then close.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unexpected = <State>(state: State): Unexpected<State> => ({ _tag: "Unexpected", state })

/**
 * Send nothing, stay in the stream.
 *
 * @since 0.1.0
 * @category constructors
 */
export const ignore = <State>(state: State): Ignore<State> => ({ _tag: "Ignore", state })

/**
 * End the stream, after sending `messages` if any.
 *
 * @since 0.1.0
 * @category constructors
 */
export const done = <State, Resp = never>(state: State, messages: ReadonlyArray<Resp> = []): Done<Resp, State> => ({
  _tag: "Done",
  replies: messages,
  state
})

// ---------------------------------------------------------------------------------------------------------------
// Context and definition
// ---------------------------------------------------------------------------------------------------------------

/**
 * The address of the client at the other end of a connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface Peer {
  readonly address: string
  readonly port: number
}

/**
 * What a service can do with its own connection, from `process`, `processStream` or any other fiber.
 *
 * @since 0.1.0
 * @category models
 */
export interface PbContext<Info> {
  /** A number unique to the connection within the process. */
  readonly connectionId: number
  readonly peer: Peer
  /** The authenticated user, when security is on. */
  readonly user: Effect.Effect<Option.Option<string>>
  /**
   * Sends `info` to the connection's mailbox. While this service is streaming it goes to `processStream`; at any
   * other time it is dropped (like a riak message arriving outside a stream). Suspends while the mailbox is full
   * (so a producer is paced by the client's reading). `false` when the connection is gone.
   */
  readonly send: (info: Info) => Effect.Effect<boolean>
  /** `send` for callbacks outside Effect: `false` when the mailbox is full or the connection is gone. */
  readonly unsafeSend: (info: Info) => boolean
  /**
   * Forks work that belongs to the current request: it is interrupted when the request has finished (after its
   * reply, or when its stream ends) or when the connection closes, so a client that goes away cancels it.
   */
  readonly fork: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<Fiber.RuntimeFiber<A, E>>
}

/**
 * An encoded reply: its bytes (message code first), whole or in pieces.
 *
 * @since 0.1.0
 * @category models
 */
export type Encoded = Uint8Array | ReadonlyArray<Uint8Array>

/**
 * A value or an Effect of it: the callbacks of a service may be plain functions or return Effects.
 *
 * @since 0.1.0
 * @category models
 */
export type Result<A> = A | Effect.Effect<A, PbServiceError>

/**
 * The callbacks of a service. `Req` is the decoded request, `Resp` the reply message, `State` the per-connection
 * state, `Info` what other fibers send to the connection while streaming and `ReqId` the stream's identifier.
 *
 * Callbacks must not throw; a thrown exception or a defect is a bug in the service: the client gets a generic
 * error reply, the defect is logged and that connection is closed (the server and other connections go on).
 *
 * @since 0.1.0
 * @category models
 */
export interface Definition<Req, Resp, State, Info = never, ReqId = never> {
  /** A name for logs, metrics and `ServiceRegistry.services()` ordering. */
  readonly name: string
  /** The initial per-connection state (riak's `init/0`), created when a connection first uses the service. */
  readonly init: () => State | Effect.Effect<State>
  /** Decodes the body of a frame whose code belongs to this service (the code byte is not part of `body`). */
  readonly decode: (code: number, body: Uint8Array) => DecodeResult<Req>
  /**
   * Encodes a reply, with its message code as the first byte; `Either.left` is an encoding failure. Like riak's
   * iodata, the bytes may be given in pieces (`[Uint8Array.of(code), body]`), written one after the other.
   */
  readonly encode: (reply: Resp) => Either.Either<Encoded, unknown>
  /** Serves a request (riak's `process/2`). */
  readonly process: (message: Req, state: State, ctx: PbContext<Info>) => Result<ProcessResult<Resp, State, ReqId>>
  /** Serves a message sent with `ctx.send` while streaming `reqId` (riak's `process_stream/3`). */
  readonly processStream?:
    | ((info: Info, reqId: ReqId, state: State, ctx: PbContext<Info>) => Result<StreamResult<Resp, State>>)
    | undefined
}

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("@warren/pb/PbService")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * A registered-able service: a `Definition` with its types erased so services of different message types share
 * one registry. Identity matters: `deregister` and `swap` compare services by reference.
 *
 * @since 0.1.0
 * @category models
 */
export interface PbService {
  readonly [TypeId]: TypeId
  readonly name: string
}

/**
 * Builds a service from its callbacks.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <Req, Resp, State, Info = never, ReqId = never>(
  definition: Definition<Req, Resp, State, Info, ReqId>
): PbService => {
  const service: PbService = { [TypeId]: TypeId, name: definition.name }
  define(service, definition)
  return service
}

/**
 * @since 0.1.0
 * @category guards
 */
export const isPbService = (u: unknown): u is PbService => typeof u === "object" && u !== null && TypeId in u
