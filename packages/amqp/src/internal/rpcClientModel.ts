/**
 * Data model of the RPC client: requests, callback results and callbacks, the client's state and handle.
 * Leaf module; re-exported by `RpcClient.ts` (with the options and errors modules it re-exports).
 */
import type * as Amqp from "amqplib"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as SubscriptionRef from "effect/SubscriptionRef"
import type { Process } from "@warren/process"
import type { ChannelStatus } from "./channelOwner.js"
import type { RequestExchange } from "./rpcClientOptions.js"
import type { RequestError } from "./rpcClientErrors.js"

export * from "./rpcClientErrors.js"
export * from "./rpcClientOptions.js"

// ---------------------------------------------------------------------------------------------------------------
// Requests

/** A request body: bytes or a string (sent as UTF-8). */
export type Payload = Uint8Array | string

/**
 * Publish options passed through to the request (headers, expiration, persistent, priority, contentType,
 * mandatory, messageId, ...). `replyTo` and `correlationId` are always set by the client.
 */
export type PublishOptions = Omit<Amqp.Options.Publish, "replyTo" | "correlationId">

/** What `connected` and `handleReady` receive (Hare's `%{req_exchange, resp_queue}`). */
export interface Meta {
  /** The exchange requests are published to. */
  readonly requestExchange: RequestExchange
  /** The reply queue of this channel (server-named, or `amq.rabbitmq.reply-to` in direct mode). */
  readonly replyQueue: string
}

// ---------------------------------------------------------------------------------------------------------------
// Callback results

/** `handleRequest`: publish the request as it is (Hare's `{:ok, state}`). */
export interface Proceed<out State> {
  readonly _tag: "Proceed"
  readonly state: State
}

/** `handleRequest`: publish this request instead (Hare's `{:ok, payload, routing_key, opts, state}`). */
export interface ProceedWith<out State> {
  readonly _tag: "ProceedWith"
  readonly payload: Payload
  readonly routingKey: string
  readonly options: PublishOptions
  readonly state: State
}

/**
 * What `handleRequest` may return: `proceed`, `proceedWith`, `Process.reply(response, state)` (answer at
 * once, publish nothing), `Process.stopReply(reason, response, state)` (answer, then stop) or
 * `Process.stop(reason, state)` (stop; the caller fails with `RpcClientStopped`).
 */
export type RequestResult<State, Reason> =
  | Proceed<State>
  | ProceedWith<State>
  | Process.Reply<Payload, State>
  | Process.StopReply<Reason, Payload, State>
  | Process.Stop<Reason, State>

/** `handleRequest` result: publish the request unchanged. */
export const proceed = <State>(state: State): Proceed<State> => ({ _tag: "Proceed", state })

/** `handleRequest` result: publish this payload, routing key and options instead. */
export const proceedWith = <State>(
  payload: Payload,
  routingKey: string,
  options: PublishOptions,
  state: State
): ProceedWith<State> => ({ _tag: "ProceedWith", payload, routingKey, options, state })

/**
 * The callbacks of an RPC client process (Hare.RPC.Client's behaviour). Only `init` is required; a callback
 * may return its result directly or as an Effect (a failure crashes the client, like an Erlang exception).
 */
export interface Callbacks<in Arg, State, Info = never, Reason = never, R = never> {
  /** Runs in `start`, which waits for it: `Process.ok(state)`, `Process.ignore` or `Process.stop(reason)`. */
  readonly init: (arg: Arg) => Process.Returns<Process.InitResult<State, Reason>, R>
  /** After every channel open + declarations + consume: `Process.noreply(state)` or `Process.stop(reason, state)`. */
  readonly connected?:
    | ((meta: Meta, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>)
    | undefined
  /** When the broker confirmed the reply consumer (consume-ok). */
  readonly handleReady?:
    | ((meta: Meta, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>)
    | undefined
  /** Any message sent with `client.send` (or `Process.send(client.ref, ...)`). */
  readonly handleInfo?:
    | ((message: Info, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>)
    | undefined
  /** Before a request is published; may pass, rewrite, answer or stop. See `RequestResult`. */
  readonly handleRequest?:
    | ((
      payload: Buffer,
      routingKey: string,
      options: PublishOptions,
      state: State
    ) => Process.Returns<RequestResult<State, Reason>, R>)
    | undefined
  /** When the client stops (after `init` succeeded), before its channel is closed. */
  readonly terminate?:
    | ((reason: Process.ExitReason<Reason>, state: State) => void | Effect.Effect<unknown, unknown, R>)
    | undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Client state and handle

/**
 * The client's channel as seen from outside (for monitoring and tests): the channel owner's status (Connecting,
 * Ready, Reconnecting, Stopped; the same names as the server's), Ready carrying the `meta`.
 */
export type ClientState = ChannelStatus<{ readonly meta: Meta }>

/** Counters of one client since it started (also exported as metrics, tagged with the client name). */
export interface Stats {
  /** Requests accepted by the client (including those answered by `handleRequest`). */
  readonly requests: number
  /** Requests published to the broker. */
  readonly published: number
  /** Replies matched to a waiting caller. */
  readonly replies: number
  readonly timeouts: number
  /** Mandatory requests returned unroutable. */
  readonly returned: number
  /** Requests nacked by the broker (publisher confirms). */
  readonly nacked: number
  /** Replies with an unknown correlation id (late, for a caller that gave up, or foreign): dropped. */
  readonly lateReplies: number
  /** Requests failed because their channel died. */
  readonly channelLost: number
  /** Published and awaiting a reply now. */
  readonly inFlight: number
  /** Accepted but not yet published (waiting for a channel or for an in-flight slot) now. */
  readonly waiting: number
  /** Channels set up so far (1 + reconnects). */
  readonly sessions: number
}

/** A running RPC client. */
export interface Client<in Info = never, Reason = never> {
  /** The client's name (options.name). */
  readonly name: string
  /** The client's process, for `Process.await`, `Process.send`, supervision. */
  readonly ref: Process.ProcessRef<never, unknown, never, Info, Reason>
  /**
   * Publishes `payload` to the request exchange with `routingKey` (default `""`), `reply_to` = this client's
   * reply queue and a fresh `correlation_id`, and waits for the reply body: at most `timeout` (default the
   * client's, 5 s) from the call to the reply, including any wait for a channel or an in-flight slot. The
   * returned Effect is a description: each run of it (also concurrent runs) is a request of its own.
   */
  readonly request: (
    payload: Payload,
    routingKey?: string,
    options?: PublishOptions,
    timeout?: Duration.DurationInput
  ) => Effect.Effect<Buffer, RequestError>
  /**
   * `request` for Promise code (what `@warren/amqp/promise` uses): the same `Process.call` into the client, but
   * its caller is the returned Promise, settled directly by the reply (`Process.unsafeCallPromise`): no fiber per
   * request. Rejects with the `RequestError` itself. Not interruptible: a request gives up at its timeout. With
   * spans on, it runs `request` in the client's runtime instead (the span needs a fiber).
   */
  readonly unsafeRequestPromise: (
    payload: Payload,
    routingKey?: string,
    options?: PublishOptions,
    timeout?: Duration.DurationInput
  ) => Promise<Buffer>
  /** Sends a message to `handleInfo`. */
  readonly send: (message: Info) => Effect.Effect<void>
  /**
   * Graceful stop: refuses new requests (and fails those still waiting for a channel), waits up to
   * `drainTimeout` for the replies in flight (then fails the rest), runs `terminate`, closes the channel.
   * Without a reason the exit reason is `Normal`. Returns the exit reason.
   */
  readonly stop: {
    (): Effect.Effect<Process.ExitReason<Reason>>
    (reason: Reason): Effect.Effect<Process.ExitReason<Reason>>
  }
  /** Waits for the client to exit and returns why. */
  readonly await: Effect.Effect<Process.ExitReason<Reason>>
  /** The channel's state; read-only by convention. */
  readonly state: SubscriptionRef.SubscriptionRef<ClientState>
  /** Counters since start. */
  readonly stats: Effect.Effect<Stats>
}
