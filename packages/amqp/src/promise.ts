/**
 * warren's AMQP RPC for Node programs without Effect: Promises in, Promises out.
 *
 * A thin layer over the Effect `RpcClient` / `RpcServer` (same reconnects, same typed errors): each client or
 * server owns a ManagedRuntime holding its connection; each request is the client's `Process.call` with the
 * returned Promise as its caller (no fiber per request).
 * Errors are the Effect API's own classes: real `Error` subclasses, usable with `instanceof`, with a `_tag`.
 *
 * @example
 * ```ts
 * import { connect, RpcTimeout } from "@warren/amqp/promise"
 *
 * const rpc = await connect("amqp://guest:guest@localhost:5672")
 * try {
 *   const reply = await rpc.request("ping", "rpc_queue", { timeout: 2000 })
 *   console.log(reply.toString())
 * } catch (error) {
 *   if (error instanceof RpcTimeout) console.error("no reply in time")
 *   else throw error
 * } finally {
 *   await rpc.close()
 * }
 * ```
 */
import type * as internal from "./internal/promise.js"
import * as impl from "./internal/promise.js"

export {
  /** One URL could not be connected to; `reason` says why (Refused, AccessRefused, HandshakeTimeout, ...). */
  AmqpConnectError,
  /** An AMQP connection or channel failure (`reason` "Config" for invalid connection, client or server options). */
  AmqpError
} from "./AmqpConnection.js"

export {
  /** A request's channel died before its reply came (it may or may not have been handled). */
  RpcChannelLost,
  /** The client is stopping or stopped. */
  RpcClientStopped,
  /** The broker nacked the request (publisher confirms). */
  RpcNacked,
  /** No reply within the request's timeout. */
  RpcTimeout,
  /** A mandatory request came back unroutable. */
  RpcUnroutable
} from "./RpcClient.js"

export type {
  /** Options of `connect`: the RpcClient options, plus `connection` (AmqpConnection options but `urls`). */
  ConnectOptions,
  /** A connected client: `request`, `close`. */
  PromiseClient,
  /** A Promise request handler. */
  PromiseHandler,
  /** A running server: `close`. */
  PromiseServer,
  /** Per-request options: `timeout` and publish properties. */
  RequestOptions,
  /** Options of `serve`: the RpcServer config, plus `connection` and `server` (non-data server options). */
  ServeOptions
} from "./internal/promise.js"

/**
 * Connects to the first of `urls` that answers and starts an RPC client. Rejects like amqplib's `connect` when
 * the first attempt fails (an `AmqpConnectError` with its `reason`) or the options are invalid; once connected,
 * the client reconnects on its own (per `connection.reconnect`).
 */
export const connect: (
  urls: string | readonly [string, ...ReadonlyArray<string>],
  options?: internal.ConnectOptions
) => Promise<internal.PromiseClient> = impl.connect

/**
 * Serves `handler` on the queue of `options` and resolves once the server consumes (its queue declared and bound).
 * The handler gets the request body and meta and returns (or resolves with) the reply; a rejection rejects that
 * request without requeue and the server goes on. Rejects like `connect` when the first connect fails.
 */
export const serve: (
  urls: string | readonly [string, ...ReadonlyArray<string>],
  options: internal.ServeOptions,
  handler: internal.PromiseHandler
) => Promise<internal.PromiseServer> = impl.serve
