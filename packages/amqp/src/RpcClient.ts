/**
 * An AMQP RPC client process: a port of Hare.RPC.Client on `@warren/process` and `AmqpConnection`.
 *
 * The client holds one channel on the connection, kept by the `ChannelOwner`. On every (re)open it declares a
 * server-named exclusive auto-delete reply queue and the request exchange, then `connected(meta, state)` runs;
 * on consume-ok `handleReady(meta, state)` runs, and only then are requests parked meanwhile published. Every
 * `request` is a `Process.call` to the client process, which publishes with `reply_to` and a fresh
 * `correlation_id` and answers with the matching reply (timeouts and abandonment are the process core's).
 *
 * Beyond the original: one clock per request and a typed `RpcTimeout` (saying whether it was published);
 * typed setup failures (`RpcChannelSetupFailed`) and, opt-in, remote handler errors (`RpcRemoteError`); requests in flight fail at once with
 * `RpcChannelLost` when their channel dies; the channel is reopened per a Schedule and requests made meanwhile
 * wait (within their timeout); an interrupted caller leaves nothing behind; returned `mandatory` requests fail
 * with `RpcUnroutable`; optional publisher confirms (`RpcNacked`), in-flight limit, direct reply-to; graceful
 * `stop`. Metrics `warren_rpc_client_*` (tag `client`) and a span `RpcClient.request` per request.
 *
 * @example
 * ```ts
 * // The simple path: no callbacks.
 * const program = Effect.gen(function*() {
 *   const client = yield* RpcClient.RpcClient
 *   const reply = yield* client.request("ping", "rpc_queue")
 * }).pipe(
 *   Effect.provide(RpcClient.layer({ exchange: {} })),
 *   Effect.provide(AmqpConnection.layer({ urls: "amqp://localhost" }))
 * )
 * ```
 */
import type { Process } from "@warren/process"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { AmqpConnection, AmqpError } from "./AmqpConnection.js"
import * as internal from "./internal/rpcClient.js"
import type {
  Callbacks,
  Client,
  Options,
  Payload,
  PublishOptions,
  RequestError
} from "./internal/rpcClientModel.js"

export {
  /** `handleRequest` result: publish the request unchanged (Hare's `{:ok, state}`). */
  proceed,
  /** `handleRequest` result: publish another payload / routing key / options (Hare's `{:ok, p, rk, opts, state}`). */
  proceedWith,
  /** Validates options given as anything; an `AmqpError` with reason "Config" says what is wrong. */
  resolveOptions,
  /** A request's channel died before its reply came. */
  RpcChannelLost,
  /** The broker refused the client's channel setup (missing exchange, other arguments, no access). */
  RpcChannelSetupFailed,
  /** The server's handler failed and said so (`remoteErrors: true`). */
  RpcRemoteError,
  /** The client is stopping or stopped. */
  RpcClientStopped,
  /** The broker nacked the request (publisher confirms). */
  RpcNacked,
  /** No reply within the request's timeout. */
  RpcTimeout,
  /** A mandatory request came back unroutable. */
  RpcUnroutable
} from "./internal/rpcClientModel.js"

export type {
  /** The callbacks of a client (Hare.RPC.Client's behaviour). */
  Callbacks,
  /** A running client: `request`, `send`, `stop`, `await`, `state`, `stats`. */
  Client,
  /** The client's channel state (Connecting, Ready, Reconnecting, Stopped). */
  ClientState,
  /** The request exchange config. */
  ExchangeConfig,
  /** Declaration arguments of the request exchange. */
  ExchangeOptions,
  /** What `connected` / `handleReady` receive: the request exchange and the reply queue. */
  Meta,
  /** Options of `start` / `make` / `layer`. */
  Options,
  /** A request body (bytes or a UTF-8 string). */
  Payload,
  /** `handleRequest` result: publish unchanged. */
  Proceed,
  /** `handleRequest` result: publish a modified request. */
  ProceedWith,
  /** Publish options passed through to a request. */
  PublishOptions,
  /** Every way a request can fail. */
  RequestError,
  /** What `handleRequest` may return. */
  RequestResult,
  /** The request exchange after defaults. */
  RequestExchange,
  /** Where replies come back: `"queue"` or `"direct"`. */
  ReplyMode,
  /** Why the channel setup was refused. */
  SetupFailedReason,
  /** Per-client counters. */
  Stats
} from "./internal/rpcClientModel.js"

/** The reply queue name of RabbitMQ's direct reply-to (`replyMode: "direct"`). */
export const DIRECT_REPLY_TO: string = internal.DIRECT_REPLY_TO

/**
 * Starts a client with callbacks (Hare's `start_link(mod, conn, config, initial)`): validates `options`
 * (`AmqpError` with reason "Config", like the connection and the server), runs `init(arg)` and waits for it (`Process.InitIgnored` / `Process.InitStopped` if it
 * declines), then opens the channel in the background. Linked to the current scope: closing it stops the
 * client gracefully. Needs an `AmqpConnection`.
 */
export const start: <Arg, State, Info = never, Reason = never, R = never>(
  callbacks: Callbacks<Arg, State, Info, Reason, R>,
  arg: Arg,
  options?: Options
) => Effect.Effect<
  Client<Info, Reason>,
  AmqpError | Process.InitStopped<Reason> | Process.InitIgnored,
  R | AmqpConnection | Scope.Scope
> = (callbacks, arg, options) => internal.start(callbacks, arg, options)

const noCallbacks: Callbacks<void, void> = {
  init: () => ({ _tag: "Ok", state: undefined })
}

/** A client without callbacks, for the scope's life. */
export const make = (options?: Options): Effect.Effect<Client, AmqpError, AmqpConnection | Scope.Scope> =>
  internal.start(noCallbacks, undefined, options).pipe(
    // `init` always returns ok here.
    Effect.catchTags({ InitIgnored: Effect.die, InitStopped: Effect.die })
  )

/** The client service for the simple path (`layer`). */
export class RpcClient extends Context.Tag("@warren/amqp/RpcClient")<RpcClient, Client>() {}

/** A client without callbacks as a Layer: `yield* RpcClient` then `client.request(...)`. */
export const layer = (options?: Options): Layer.Layer<RpcClient, AmqpError, AmqpConnection> =>
  Layer.scoped(RpcClient, make(options))

/** `request` on the `RpcClient` service of the context. */
export const request = (
  payload: Payload,
  routingKey?: string,
  options?: PublishOptions,
  timeout?: Duration.DurationInput
): Effect.Effect<Buffer, RequestError, RpcClient> =>
  Effect.flatMap(RpcClient, (client) => client.request(payload, routingKey, options, timeout))
