/** One request through an RPC server: run the handler, reply on the request's channel, ack or reject. */
import type * as Amqp from "amqplib"
import * as Process from "@warren/process/Process"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import { AmqpError, describe } from "./amqpError.js"
import { REMOTE_ERROR_HEADER, REMOTE_ERRORS_HEADER } from "./rpcClientModel.js"
import { isChannelOpen } from "./connection.js"
import { configError } from "./rpcServerConfig.js"
import { type ReplyOptions, type RequestMeta, type RequestResult, type Response, ServerLinkId } from "./rpcServerModel.js"
import { type Delivery, Link } from "./rpcServerChannel.js"

export const toBuffer = (data: Response): Buffer =>
  typeof data === "string"
    ? Buffer.from(data, "utf8")
    : Buffer.isBuffer(data)
    ? data
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength)

export const stringProp = (value: unknown): string | undefined => typeof value === "string" ? value : undefined

export const awaitDrain = (channel: Amqp.Channel): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const done = () => {
      channel.removeListener("drain", done)
      channel.removeListener("close", done)
      resume(Effect.void)
    }
    channel.once("drain", done)
    channel.once("close", done)
    return Effect.sync(() => {
      channel.removeListener("drain", done)
      channel.removeListener("close", done)
    })
  })

/** Publishes to the default exchange; waits for 'drain' when amqplib's write buffer is full. */
export const publish = (
  channel: Amqp.Channel,
  routingKey: string,
  content: Buffer,
  properties: Amqp.Options.Publish
): Effect.Effect<void, AmqpError> =>
  Effect.suspend(() => {
    let written: boolean
    try {
      written = channel.publish("", routingKey, content, properties)
    } catch (cause) {
      return Effect.fail(new AmqpError({ reason: "ChannelLost", message: `reply not sent: ${describe(cause)}`, cause }))
    }
    return written ? Effect.void : awaitDrain(channel)
  })

export const replyProperties = (meta: RequestMeta, options: ReplyOptions | undefined): Amqp.Options.Publish => {
  const properties: Amqp.Options.Publish = {}
  if (meta.contentType !== undefined) properties.contentType = meta.contentType
  const encoding = stringProp(meta.properties.contentEncoding)
  if (encoding !== undefined) properties.contentEncoding = encoding
  Object.assign(properties, options)
  if (meta.correlationId !== undefined) properties.correlationId = meta.correlationId
  else delete properties.correlationId
  return properties
}

export const sendReply = (
  link: Link,
  channel: Amqp.Channel,
  meta: RequestMeta,
  response: Response,
  options: ReplyOptions | undefined
): Effect.Effect<void, AmqpError> =>
  publish(channel, meta.replyTo, toBuffer(response), replyProperties(meta, options)).pipe(
    Effect.zipRight(Metric.increment(link.counters.replies)),
    Effect.tapError(() => Metric.increment(link.counters.replyErrors))
  )

export const settle = (delivery: Delivery, noAck: boolean, how: "ack" | "reject") => {
  const channel = delivery.active.channel
  if (noAck || !isChannelOpen(channel)) return
  try {
    if (how === "ack") channel.ack(delivery.message)
    else channel.nack(delivery.message, false, false)
  } catch {
    // The channel closed under us: the broker requeues the request.
  }
}

export const EMPTY = Buffer.alloc(0)

/** The first failure or defect of a handler's cause, as one line for an error reply. */
export const failureMessage = (cause: Cause.Cause<unknown>): string => {
  const error = Option.getOrUndefined(Cause.failureOption(cause)) ?? Option.getOrUndefined(Cause.dieOption(cause))
  if (error === undefined) return "the handler was interrupted"
  if (error instanceof Error) return error.message === "" ? error.name : error.message
  if (typeof error === "object" && error !== null && "_tag" in error) return String(error._tag)
  return String(error)
}

export const isRequestResult = (value: unknown): value is RequestResult<unknown, unknown> =>
  typeof value === "object" && value !== null && "_tag" in value &&
  (value._tag === "Reply" || value._tag === "NoReply" || value._tag === "Stop")

export const makeMeta = (link: Link, delivery: Delivery, replyTo: string): RequestMeta => {
  const { fields, properties } = delivery.message
  return {
    correlationId: stringProp(properties.correlationId),
    replyTo,
    contentType: stringProp(properties.contentType),
    exchange: fields.exchange,
    routingKey: fields.routingKey,
    queue: delivery.active.queue,
    redelivered: fields.redelivered,
    consumerTag: fields.consumerTag,
    generation: delivery.active.generation,
    properties,
    [ServerLinkId]: link
  }
}

/**
 * One delivery, start to end: skip it if its channel is gone (ack mode: the broker redelivers it), ack and count
 * it without reply_to, run the handler, publish its reply on the request's channel, then ack (or reject without
 * requeue when the handler failed). Returns the handler's result, or None when it did not run or failed.
 */
export const processDelivery = <State, Reason, R>(
  link: Link,
  delivery: Delivery,
  run: (payload: Buffer, meta: RequestMeta) => Effect.Effect<RequestResult<State, Reason>, unknown, R>
): Effect.Effect<Option.Option<RequestResult<State, Reason>>, never, R> =>
  Effect.suspend(() => {
    const config = link.config
    const counters = link.counters
    const { fields, properties } = delivery.message
    if (!config.noAck && !isChannelOpen(delivery.active.channel)) {
      return Effect.as(Metric.increment(counters.stale), Option.none())
    }
    const replyTo = stringProp(properties.replyTo)
    if (replyTo === undefined || replyTo === "") {
      settle(delivery, config.noAck, "ack")
      return Metric.increment(counters.requests).pipe(
        Effect.zipRight(Metric.increment(counters.noReplyTo)),
        Effect.zipRight(Effect.logWarning(`RPC server ${config.name}: request without reply_to dropped`)),
        Effect.as(Option.none())
      )
    }
    const meta = makeMeta(link, delivery, replyTo)
    return Effect.gen(function*() {
      yield* Metric.increment(counters.requests)
      const exit = yield* Effect.exit(
        Effect.suspend(() => run(delivery.message.content, meta)).pipe(
          Effect.filterOrFail(isRequestResult, (value) => new Process.BadReturn({ callback: "handleRequest", value }))
        )
      )
      if (Exit.isFailure(exit)) {
        const headers = properties.headers
        if (headers !== undefined && headers[REMOTE_ERRORS_HEADER] !== undefined && isChannelOpen(delivery.active.channel)) {
          // The client asked for error replies: answer at once with the failure's message (Hare- and pika-style
          // clients never send the header, so they keep the plain behaviour: no reply).
          yield* sendReply(link, delivery.active.channel, meta, EMPTY, {
            headers: { [REMOTE_ERROR_HEADER]: failureMessage(exit.cause) }
          }).pipe(Effect.catchAll((error) => Effect.logWarning(`RPC server ${config.name}: error reply not sent`, error.message)))
        }
        settle(delivery, config.noAck, "reject")
        yield* Metric.increment(counters.failures)
        yield* Effect.logError(`RPC server ${config.name}: handler failed; request rejected`, exit.cause)
        return Option.none()
      }
      const result = exit.value
      if (result._tag === "Reply") {
        const channel = delivery.active.channel
        if (isChannelOpen(channel)) {
          yield* sendReply(link, channel, meta, result.response, result.options).pipe(
            Effect.catchAll((error) => Effect.logWarning(`RPC server ${config.name}: reply not sent`, error.message))
          )
        } else if (config.noAck) {
          // The broker forgot this request already: answer it on whatever channel the server has now.
          yield* link.awaitChannel.pipe(
            Effect.timeoutFail({
              duration: config.replyTimeout,
              onTimeout: () => new AmqpError({ reason: "Timeout", message: "no channel to send the reply on" })
            }),
            Effect.flatMap((current) => sendReply(link, current, meta, result.response, result.options)),
            Effect.catchAll((error) => Effect.logWarning(`RPC server ${config.name}: reply not sent`, error.message))
          )
        }
        // (ack mode, channel gone: the broker redelivers the request, which will be answered then)
      }
      settle(delivery, config.noAck, "ack")
      return Option.some(result)
    }).pipe(
      Effect.withSpan("RpcServer.request", {
        kind: "server",
        attributes: {
          "messaging.system": "rabbitmq",
          "messaging.destination.name": delivery.active.queue,
          "messaging.rabbitmq.destination.routing_key": fields.routingKey,
          "messaging.message.conversation_id": meta.correlationId ?? "",
          "rpc.server": config.name
        }
      })
    )
  })

/**
 * Answers a request later (Hare's `reply(meta, response)`), typically after `handleRequest` returned `noreply`.
 * Publishes on the server's current channel, waiting for one while it reopens (bound it with a timeout); fails
 * with AmqpError "Closed" once the server stopped.
 */
export const replyTo = (meta: RequestMeta, response: Response, options?: ReplyOptions): Effect.Effect<void, AmqpError> =>
  Effect.suspend(() => {
    const link = meta[ServerLinkId]
    if (!(link instanceof Link)) {
      return Effect.fail(configError("replyTo needs the meta object given to handleRequest"))
    }
    return link.awaitChannel.pipe(Effect.flatMap((channel) => sendReply(link, channel, meta, response, options)))
  })
