/** RPC server data model: request meta, reply results, statuses, the behaviour and handler types. */
import type * as Amqp from "amqplib"
import * as Process from "@warren/process/Process"
import * as Effect from "effect/Effect"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as ChannelOwner from "./channelOwner.js"

/** Symbol under which a RequestMeta carries its server (so that `replyTo(meta, ...)` can answer later). */
export const ServerLinkId: unique symbol = Symbol.for("@warren/amqp/RpcServer/link")

/** What a handler knows about a request (Hare's `meta`). */
export interface RequestMeta {
  /** The request's correlation id, copied to the reply. */
  readonly correlationId: string | undefined
  /** Where the reply goes (routing key on the default exchange). */
  readonly replyTo: string
  /** The request's content type, copied to the reply unless the handler sets one. */
  readonly contentType: string | undefined
  /** The exchange the request was published to ("" = default exchange). */
  readonly exchange: string
  /** The request's routing key. */
  readonly routingKey: string
  /** The server's queue (as declared on the channel that delivered the request). */
  readonly queue: string
  /** The broker delivered this request before (it was not acknowledged then). */
  readonly redelivered: boolean
  /** The consumer that received it. */
  readonly consumerTag: string
  /** The channel generation (1 for the server's first channel, +1 per reopen). */
  readonly generation: number
  /** Every AMQP property of the request (headers, message id, ...). */
  readonly properties: Amqp.MessageProperties
  /** The server that received the request (internal; keep it when storing meta for a later `replyTo`). */
  readonly [ServerLinkId]: unknown
}

/** The server's channel has been opened and its exchange, queue and bindings declared (Hare's `connected`). */
export interface ChannelMeta {
  readonly queue: string
  readonly exchange: string
  readonly generation: number
}

/** The broker confirmed the consumer (consume-ok; Hare's `handle_ready`). */
export interface ReadyMeta extends ChannelMeta {
  readonly consumerTag: string
}

/** Reply properties a handler may set; `correlationId` is always the request's. */
export type ReplyOptions = Pick<
  Amqp.Options.Publish,
  | "contentType"
  | "contentEncoding"
  | "headers"
  | "expiration"
  | "persistent"
  | "deliveryMode"
  | "priority"
  | "messageId"
  | "timestamp"
  | "type"
  | "appId"
>

/** A response body: bytes, or a string sent as UTF-8. */
export type Response = Uint8Array | string

/** `handleRequest` answers now (`{:reply, response, state}`). */
export interface Reply<out State> {
  readonly _tag: "Reply"
  readonly response: Response
  readonly state: State
  readonly options: ReplyOptions | undefined
}

/** What `handleRequest` may return: reply now, answer later (`noreply` + `replyTo`), or stop the server. */
export type RequestResult<State, Reason> = Reply<State> | Process.NoReply<State> | Process.Stop<Reason, State>

/** Answer the request with `response` (copied correlation id, request's content type unless `options` say). */
export const reply = <State>(response: Response, state: State, options?: ReplyOptions): Reply<State> => ({
  _tag: "Reply",
  response,
  state,
  options
})

/**
 * Where the server is: the channel owner's status (Connecting, Ready, Reconnecting, Stopped; the same names as the
 * client's), Ready carrying the queue, exchange, consumer tag and channel generation.
 */
export type ServerStatus = ChannelOwner.ChannelStatus<ReadyMeta>

/** The server's Ready status. */
export type Ready = Extract<ServerStatus, { readonly _tag: "Ready" }>

/** A running server of either form: its name and status. */
export interface Running {
  readonly name: string
  readonly status: SubscriptionRef.SubscriptionRef<ServerStatus>
}

/** Symbol marking behaviour servers. */
export const ServerTypeId: unique symbol = Symbol.for("@warren/amqp/RpcServer")

/** A running behaviour server: a process taking `Info` messages and stopping with `Reason`. */
export interface Server<in Info, out Reason> extends Running {
  readonly [ServerTypeId]: { readonly _Info: (_: Info) => void; readonly _Reason: () => Reason }
  /** The underlying process (for `Process.await`, supervisors, ...). */
  readonly process: Process.ProcessRef<never, unknown, never, never, Reason>
}

/** The RPC server behaviour (Hare.RPC.Server's callbacks). Callbacks may return plain results or Effects. */
export interface Behaviour<in Arg, State, Info = never, Reason = never, out R = never> {
  /** `ok(state)` starts the server; `ignore` / `stop(reason)` refuse (no channel, no terminate). */
  readonly init: (arg: Arg, server: Server<Info, Reason>) => Process.Returns<Process.InitResult<State, Reason>, R>
  /** A new channel is declared (after start and after every reopen), before consuming. */
  readonly connected?: (meta: ChannelMeta, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>
  /** The broker confirmed the consumer. */
  readonly handleReady?: (meta: ReadyMeta, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>
  /**
   * One request. A failure, defect or throw here does not crash the server: the request is counted as failed
   * and rejected without requeue (dead-lettered if the queue has a dead-letter exchange), the state is kept.
   */
  readonly handleRequest: (
    payload: Buffer,
    meta: RequestMeta,
    state: State
  ) => Process.Returns<RequestResult<State, Reason>, R>
  /** Messages sent with `RpcServer.send`. A failure here crashes the server, as in a gen_server. */
  readonly handleInfo?: (message: Info, state: State) => Process.Returns<Process.HandleResult<State, Reason>, R>
  /** Runs once when the server stops after a successful init, before its channel closes. */
  readonly terminate?: (reason: Process.ExitReason<Reason>, state: State) => void | Effect.Effect<unknown, unknown, R>
}

/** The stateless handler of `serve` / `layer`: the response bytes, or a failure (request rejected, counted). */
export type Handler<E = never, R = never> = (payload: Buffer, meta: RequestMeta) => Effect.Effect<Response, E, R>

/** Answers every request with its own payload (tests, benches). */
export const echo: Handler = (payload) => Effect.succeed(payload)
