import type * as Duration from "effect/Duration"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import type * as Runtime from "effect/Runtime"
import * as Stream from "effect/Stream"
// Only the public modules: the Promise API is a client of the Effect API, whatever its internals become.
import { AmqpConnectError, AmqpError, type ConnectionOptions, make as makeConnection } from "../AmqpConnection.js"
import { AmqpConnection } from "../AmqpConnection.js"
import * as RpcClientModule from "../RpcClient.js"
import type { Options as ClientOptions, Payload, PublishOptions } from "../RpcClient.js"
import * as RpcServer from "../RpcServer.js"
import type { RequestMeta, Response, ServerConfig, ServerOptions } from "../RpcServer.js"

/** Options of `connect`: the client's options, plus the connection's (all but `urls`) under `connection`. */
export interface ConnectOptions extends ClientOptions {
  readonly connection?: Omit<ConnectionOptions, "urls">
}

/** Per-request options: a timeout for this request and AMQP publish properties. */
export interface RequestOptions extends PublishOptions {
  readonly timeout?: Duration.DurationInput
}

/** A connected RPC client for Promise code. */
export interface PromiseClient {
  /** Sends `payload` to `routingKey` and resolves with the reply's body; rejects with an `Rpc*` error. */
  readonly request: (payload: Payload, routingKey?: string, options?: RequestOptions) => Promise<Buffer>
  /**
   * Stops the client gracefully (requests in flight still get their reply or their timeout, within the client's
   * `drainTimeout`; later requests reject with RpcClientStopped), then closes the connection.
   */
  readonly close: () => Promise<void>
}

/** Options of `serve`: the server's config, plus the connection's options and the non-data server options. */
export interface ServeOptions extends ServerConfig {
  readonly connection?: Omit<ConnectionOptions, "urls">
  readonly server?: ServerOptions
}

/** A Promise handler: the reply body for a request (a rejection rejects the request, without requeue). */
export type PromiseHandler = (payload: Buffer, meta: RequestMeta) => Response | PromiseLike<Response>

/** A running server for Promise code. */
export interface PromiseServer {
  /** Stops consuming, lets requests in progress finish, closes the connection. */
  readonly close: () => Promise<void>
}

/** The error a failed Exit stands for: the typed failure itself (an Error subclass with `_tag`), else the defect. */
const errorOf = (cause: Cause.Cause<unknown>): unknown => {
  const failure = Cause.failureOption(cause)
  return Option.isSome(failure) ? failure.value : Cause.squash(cause)
}

/**
 * Waits for the first connect attempt's outcome: connected, or the attempt's error (the `AmqpConnectError` of its
 * last URL), so that `connect` fails like amqplib's instead of retrying silently while the caller waits.
 */
const firstConnect: Effect.Effect<void, AmqpError | AmqpConnectError, AmqpConnection> = Effect.flatMap(
  AmqpConnection,
  (connection) =>
    connection.state.changes.pipe(
      Stream.filter((state) => state._tag !== "Connecting"),
      Stream.runHead,
      Effect.flatMap((state) => {
        if (Option.isSome(state) && state.value._tag === "Connected") return Effect.void
        if (Option.isSome(state) && state.value._tag === "Disconnected") {
          const error = state.value.error
          return Effect.fail(error.cause instanceof AmqpConnectError ? error.cause : error)
        }
        return Effect.fail(new AmqpError({ reason: "Closed", message: "AMQP connection closed before it connected" }))
      })
    )
)

/** A ManagedRuntime of `layer` on a connection to `urls`, built after the first connect succeeded. */
const startRuntime = async <ROut, E>(
  urls: ConnectionOptions["urls"],
  connection: Omit<ConnectionOptions, "urls"> | undefined,
  layer: Layer.Layer<ROut, E, AmqpConnection>
): Promise<{ readonly runtime: Runtime.Runtime<ROut>; readonly dispose: () => Promise<void> }> => {
  const connectionLayer = Layer.scoped(AmqpConnection, makeConnection({ ...connection, urls }))
  const gated = Layer.unwrapEffect(Effect.as(firstConnect, layer)).pipe(Layer.provide(connectionLayer))
  const managed = ManagedRuntime.make(gated)
  const exit = await managed.runPromiseExit(managed.runtimeEffect)
  if (Exit.isFailure(exit)) {
    await managed.dispose()
    throw errorOf(exit.cause)
  }
  return { runtime: exit.value, dispose: () => managed.dispose() }
}

/** Connects an RPC client (see `promise.ts`). */
export const connect = async (
  urls: ConnectionOptions["urls"],
  options?: ConnectOptions
): Promise<PromiseClient> => {
  const { connection, ...clientOptions } = options ?? {}
  // Each request is the client's `Process.call` with the returned Promise as its caller (no fiber per request;
  // before, a pool of worker fibers ran `client.request` for Promise callers: docs/decisions.md).
  const { dispose, runtime } = await startRuntime(urls, connection, RpcClientModule.layer(clientOptions))
  const client = Context.get(runtime.context, RpcClientModule.RpcClient)
  let closing = false
  const stopped = () =>
    new RpcClientModule.RpcClientStopped({ client: clientOptions.name ?? "rpc-client", reason: "Stopping" })
  const request = (payload: Payload, routingKey?: string, options?: RequestOptions): Promise<Buffer> => {
    if (closing) return Promise.reject(stopped())
    if (options === undefined) return client.unsafeRequestPromise(payload, routingKey)
    const { timeout, ...publish } = options
    return client.unsafeRequestPromise(payload, routingKey, publish, timeout)
  }
  const close = () => {
    closing = true
    return dispose()
  }
  return { request, close }
}

/** Serves a Promise handler (see `promise.ts`). */
export const serve = async (
  urls: ConnectionOptions["urls"],
  options: ServeOptions,
  handler: PromiseHandler
): Promise<PromiseServer> => {
  const { connection, server, ...config } = options
  const effectHandler = (payload: Buffer, meta: RequestMeta) =>
    Effect.tryPromise({ try: () => Promise.resolve(handler(payload, meta)), catch: (cause) => cause })
  const layer = Layer.scopedDiscard(
    Effect.flatMap(RpcServer.serve(config, effectHandler, server), (running) => RpcServer.awaitReady(running))
  )
  const { dispose } = await startRuntime(urls, connection, layer)
  return { close: dispose }
}
