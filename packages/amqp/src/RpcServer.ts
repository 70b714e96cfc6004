/**
 * An AMQP RPC server (a port of Hare.RPC.Server) on an `AmqpConnection`.
 *
 * Two forms:
 * - `start(behaviour, config, arg)`: a stateful server process with Hare's callbacks (`init`, `connected`,
 *   `handleReady`, `handleRequest`, `handleInfo`, `terminate`). Requests are handled one at a time, in order,
 *   with the state threaded through (a gen_server built on `@warren/process`). `handleRequest` returns
 *   `reply(response, state)`, `noreply(state)` (answer later with `replyTo(meta, response)`) or
 *   `stop(reason, state)`.
 * - `serve(config, handler)` / `layer(config, handler)`: a stateless `(payload, meta) => Effect<bytes>` handler,
 *   up to `concurrency` requests at once. `echo` is a ready-made handler.
 *
 * Both: the exchange, queue and bindings are declared again on every new channel (after any reconnect);
 * replies go to the default exchange with routing key = the request's `reply_to`, the same correlation id
 * and the request's content type (unless the handler sets reply options). By default each request is
 * acknowledged after its handler finished (at-least-once; `prefetch` bounds the deliveries in flight); `noAck`
 * gives Hare's mode. A request without `reply_to` is acked, counted and dropped; a failing handler's request is
 * rejected without requeue and counted; neither stops the server. Metrics: `metrics`; a span per request.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { AmqpError } from "./internal/amqpError.js"
import type { AmqpConnection } from "./internal/connection.js"
import * as internal from "./internal/rpcServer.js"

export {
  /** Waits until the server consumes on a channel and returns that status; fails once the server stopped. */
  awaitReady,
  /** Answers every request with its own payload (tests, benches). */
  echo,
  /** Declaration of the request exchange. */
  ExchangeConfig,
  /** Stops a behaviour server like `gen_server:stop` and waits for it (`Normal`, or `Stopped(reason)`). */
  exit,
  /** Counters of all RPC servers, tagged with `server` = the server's name. */
  metrics,
  /** Declaration of the request queue; an empty name asks the broker for one. */
  QueueConfig,
  /** Answer the request now: `reply(response, state, options?)`. */
  reply,
  /** Answer a request later (Hare's `reply(meta, response)`), after `noreply`. */
  replyTo,
  /** Sends a message to the server's `handleInfo`. */
  send,
  /** Serves a stateless handler with up to `concurrency` requests at once. */
  serve,
  /** RPC server configuration: schema (validated at start) and type. */
  ServerConfig,
  /** Symbol under which a RequestMeta carries its server. */
  ServerLinkId,
  /** Symbol marking behaviour servers. */
  ServerTypeId,
  /** Starts a behaviour server (Hare's `start_link`). */
  start
} from "./internal/rpcServer.js"

export type {
  /** The RPC server behaviour (Hare.RPC.Server's callbacks). */
  Behaviour,
  /** The server's channel is declared (Hare's `connected` meta). */
  ChannelMeta,
  /** A stateless request handler. */
  Handler,
  /** The server's Ready status. */
  Ready,
  /** The broker confirmed the consumer (Hare's `handle_ready` meta). */
  ReadyMeta,
  /** `handleRequest` answers now. */
  Reply,
  /** Reply properties a handler may set. */
  ReplyOptions,
  /** What a handler knows about a request (Hare's `meta`). */
  RequestMeta,
  /** What `handleRequest` may return. */
  RequestResult,
  /** A response body: bytes, or a string sent as UTF-8. */
  Response,
  /** A running server of either form. */
  Running,
  /** A running behaviour server. */
  Server,
  /** Options that are not plain data (reopen schedule, no-ack reply timeout). */
  ServerOptions,
  /** Where the server is: Connecting, Ready, Reopening, Stopped. */
  ServerStatus
} from "./internal/rpcServer.js"

export {
  /** `init` declines to start the server. */
  ignore,
  /** Keep going with `state`; for a request, answer later with `replyTo`. */
  noreply,
  /** `init` succeeded with this state. */
  ok,
  /** Stop the server: `stop(reason)` from init (refuse to start), `stop(reason, state)` from a handler. */
  stop
} from "@warren/process/Process"

/** Waits for a behaviour server to stop and returns why (`Process.ExitReason`). */
const await_ = internal.awaitExit
export {
  /** Waits for a behaviour server to stop and returns why. */
  await_ as await
}

/**
 * A stateless handler served as a Layer: the server lives as long as the layer. The layer is built once the server
 * consumes (its queue declared and bound), so requests sent after it is up are not lost; `awaitReady: false` in
 * `options` builds it at once instead.
 */
export const layer = <E, R>(
  config: internal.ServerConfig,
  handler: internal.Handler<E, R>,
  options?: internal.ServerOptions
): Layer.Layer<never, AmqpError, AmqpConnection | Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(
    internal.serve(config, handler, options).pipe(
      Effect.tap((running) => options?.awaitReady === false ? Effect.void : internal.awaitReady(running))
    )
  )
