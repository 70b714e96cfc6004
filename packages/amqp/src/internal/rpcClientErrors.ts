/** Every way an RPC request can fail: one tagged error per cause, and the headers of remote errors. */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import type { Process } from "@warren/process"
import type { AmqpError } from "./amqpError.js"

// ---------------------------------------------------------------------------------------------------------------
// Errors of a request

/**
 * No reply within the request's timeout (one clock, from the call to the reply). `published` says whether the
 * request had gone out to the broker: when false, no server can have seen it and a retry is safe.
 */
export class RpcTimeout extends Data.TaggedError("RpcTimeout")<{
  readonly client: string
  readonly routingKey: string
  readonly timeout: Duration.Duration
  readonly published: boolean
}> {
  override get message(): string {
    return `RPC request to "${this.routingKey}" got no reply within ${Duration.format(this.timeout)}${
      this.published ? "" : " (never published)"
    }`
  }
}

/** Why the client's channel could not be set up, from the broker's reply to a declaration. */
export type SetupFailedReason =
  /** The request exchange does not exist (passive check) — 404. */
  | "ExchangeNotFound"
  /** The exchange or reply queue exists with other arguments — 406. */
  | "PreconditionFailed"
  /** The user may not declare or use it — 403. */
  | "AccessRefused"
  /** An exclusive resource held by another connection — 405. */
  | "ResourceLocked"
  /** Anything else (see `cause`). */
  | "Other"

/**
 * The client's channel setup was refused by the broker (a missing request exchange, one declared with other
 * arguments, no permission): requests waiting for the channel, and those made until a setup succeeds, fail with
 * it at once. The client keeps retrying per its `reconnect` policy.
 */
export class RpcChannelSetupFailed extends Data.TaggedError("RpcChannelSetupFailed")<{
  readonly client: string
  readonly reason: SetupFailedReason
  /** The AMQP method that was refused, e.g. `exchange.declare orders`. */
  readonly step: string
  readonly cause: AmqpError
}> {
  override get message(): string {
    return `RPC client ${this.client} cannot set up its channel (${this.reason}): ${this.cause.message}`
  }
}

/**
 * The server's handler failed and the server said so (a warren `RpcServer` answering a client with
 * `remoteErrors: true`): `message` is the server's.
 */
export class RpcRemoteError extends Data.TaggedError("RpcRemoteError")<{
  readonly client: string
  readonly routingKey: string
  readonly message: string
}> {}

/** Request header by which a client asks for error replies (servers that do not know it ignore it). */
export const REMOTE_ERRORS_HEADER = "x-warren-remote-errors"

/** Reply header carrying a failed handler's message (only sent to requests with `REMOTE_ERRORS_HEADER`). */
export const REMOTE_ERROR_HEADER = "x-warren-error"

/**
 * The channel (or the whole connection) the request was published on died before the reply came: the reply can
 * no longer arrive, so the request fails at once. It may or may not have been processed by the server.
 */
export class RpcChannelLost extends Data.TaggedError("RpcChannelLost")<{
  readonly client: string
  readonly routingKey: string
  readonly cause: AmqpError
}> {
  override get message(): string {
    return `RPC request to "${this.routingKey}" lost its channel: ${this.cause.message}`
  }
}

/** A `mandatory` request that no queue was bound for came back (basic.return): nobody will answer it. */
export class RpcUnroutable extends Data.TaggedError("RpcUnroutable")<{
  readonly client: string
  readonly exchange: string
  readonly routingKey: string
  readonly replyCode: number
  readonly replyText: string
}> {
  override get message(): string {
    const exchange = this.exchange === "" ? "the default exchange" : `exchange "${this.exchange}"`
    return `RPC request to "${this.routingKey}" on ${exchange} is unroutable (${this.replyCode} ${this.replyText})`
  }
}

/** With publisher confirms on, the broker refused the request (basic.nack). */
export class RpcNacked extends Data.TaggedError("RpcNacked")<{
  readonly client: string
  readonly routingKey: string
}> {
  override get message(): string {
    return `RPC request to "${this.routingKey}" was nacked by the broker`
  }
}

/**
 * The client is stopping or has stopped (graceful stop, a `stop` result, a crash, its scope closed, or its
 * reconnect schedule ended): the request was not sent, or its reply will never be awaited.
 */
export class RpcClientStopped extends Data.TaggedError("RpcClientStopped")<{
  readonly client: string
  readonly reason: Process.ExitReason<unknown> | "Stopping"
}> {
  override get message(): string {
    const reason = this.reason
    const text = reason === "Stopping"
      ? "it is stopping"
      : reason._tag === "Crashed"
      ? `it crashed: ${describeCause(reason)}`
      : reason._tag === "Stopped"
      ? `it stopped: ${String(reason.reason)}`
      : `it stopped (${reason._tag})`
    return `RPC client ${this.client} cannot answer: ${text}`
  }
}

const describeCause = (reason: Process.Crashed): string => {
  // The first failure or defect, as a one-line message.
  const failures: Array<string> = []
  const visit = (cause: unknown): void => {
    if (typeof cause !== "object" || cause === null || !("_tag" in cause)) return
    const node = cause as { readonly _tag: string; readonly error?: unknown; readonly defect?: unknown; readonly left?: unknown; readonly right?: unknown }
    if (node._tag === "Fail") failures.push(messageOf(node.error))
    else if (node._tag === "Die") failures.push(messageOf(node.defect))
    else if (node._tag === "Sequential" || node._tag === "Parallel") {
      visit(node.left)
      visit(node.right)
    }
  }
  visit(reason.cause)
  return failures[0] ?? "interrupted"
}

const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : String(error)

/** Every way a request can fail. */
export type RequestError =
  | RpcTimeout
  | RpcChannelLost
  | RpcUnroutable
  | RpcNacked
  | RpcClientStopped
  | RpcChannelSetupFailed
  | RpcRemoteError
