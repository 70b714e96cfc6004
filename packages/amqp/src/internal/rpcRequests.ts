/**
 * The RPC client's request table: the requests it holds (parked until a channel and a slot are free, then in
 * flight until answered), keyed by correlation id, each with the `From` of its `Process.call`. Only the client's
 * process touches it (from its callbacks); callers are answered with `Process.unsafeReplyTo`.
 */
import type * as Amqp from "amqplib"
import { Process } from "@warren/process"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import type { AmqpError } from "./amqpError.js"
import {
  type Meta,
  type PublishOptions,
  REMOTE_ERROR_HEADER,
  REMOTE_ERRORS_HEADER,
  type ResolvedOptions,
  RpcChannelLost,
  type RpcChannelSetupFailed,
  RpcClientStopped,
  RpcNacked,
  RpcRemoteError,
  RpcUnroutable,
  type Stats
} from "./rpcClientModel.js"

/** What a caller gets back through its call: the reply body or why its request failed. */
export type ReplyValue =
  | Buffer
  | RpcChannelLost
  | RpcUnroutable
  | RpcNacked
  | RpcClientStopped
  | RpcChannelSetupFailed
  | RpcRemoteError

/**
 * A request: the call message, then (once accepted) its entry in the table. `published` is read by the caller
 * when its call times out (`RpcTimeout.published`).
 */
export class Request {
  published = false
  key = ""
  from: Process.From<ReplyValue> | undefined = undefined
  constructor(
    public payload: Buffer,
    public routingKey: string,
    public options: PublishOptions
  ) {}
}

/** One channel with its declarations done and its reply consumer confirmed. */
export class Session {
  alive = true
  constructor(
    readonly channel: Amqp.Channel,
    readonly confirm: boolean,
    readonly meta: Meta
  ) {}
}

/** The publish options of a request given none (shared, never mutated). */
export const noOptions: PublishOptions = {}

const metric = {
  requests: Metric.counter("warren_rpc_client_requests_total", {
    description: "RPC requests accepted by the client",
    incremental: true
  }),
  published: Metric.counter("warren_rpc_client_published_total", {
    description: "RPC requests published to the broker",
    incremental: true
  }),
  replies: Metric.counter("warren_rpc_client_replies_total", {
    description: "RPC replies matched to a waiting caller",
    incremental: true
  }),
  timeouts: Metric.counter("warren_rpc_client_timeouts_total", {
    description: "RPC requests that got no reply in time",
    incremental: true
  }),
  returned: Metric.counter("warren_rpc_client_returned_total", {
    description: "Mandatory RPC requests returned unroutable",
    incremental: true
  }),
  nacked: Metric.counter("warren_rpc_client_nacked_total", {
    description: "RPC requests nacked by the broker (publisher confirms)",
    incremental: true
  }),
  lateReplies: Metric.counter("warren_rpc_client_late_replies_total", {
    description: "Replies with an unknown correlation id (late or foreign), dropped",
    incremental: true
  }),
  channelLost: Metric.counter("warren_rpc_client_channel_lost_total", {
    description: "RPC requests failed because their channel died",
    incremental: true
  }),
  inFlight: Metric.gauge("warren_rpc_client_in_flight", { description: "RPC requests published and awaiting a reply" })
}

type Counted = "requests" | "published" | "replies" | "timeouts" | "returned" | "nacked" | "lateReplies" | "channelLost"

/** The request table of one client, with its counters. */
export class Requests {
  session: Session | undefined = undefined
  readonly inFlight = new Map<string, Request>()
  readonly waiting = new Map<string, Request>()
  /** A graceful stop began: no new requests. */
  stopping = false
  /** Callers of a graceful stop's drain, answered once nothing is in flight. */
  drainers: Array<Process.From<ReplyValue>> = []
  /** The last setup refusal, until a setup succeeds: requests fail with it at once. */
  setupFailure: RpcChannelSetupFailed | undefined = undefined
  readonly counts = {
    requests: 0,
    published: 0,
    replies: 0,
    timeouts: 0,
    returned: 0,
    nacked: 0,
    lateReplies: 0,
    channelLost: 0,
    sessions: 0
  }
  /** Metric tags: one array, reused, so metric hooks are cached (no registry lookup per update). */
  readonly tags: ReadonlyArray<MetricLabel.MetricLabel>
  /** The publish headers asking for error replies (remoteErrors). */
  readonly remoteHeaders: Readonly<Record<string, unknown>> | undefined

  constructor(
    readonly options: ResolvedOptions,
    readonly prefix: string,
    /** Called when a publisher-confirm nack comes (from amqplib's callback). */
    readonly onNack: (session: Session, key: string) => void
  ) {
    this.tags = [MetricLabel.make("client", options.name)]
    this.remoteHeaders = options.remoteErrors ? { [REMOTE_ERRORS_HEADER]: true } : undefined
  }

  count(name: Counted): void {
    this.counts[name]++
    metric[name].unsafeUpdate(1, this.tags)
  }

  gauge(): void {
    metric.inFlight.unsafeUpdate(this.inFlight.size, this.tags)
  }

  stopped(reason: RpcClientStopped["reason"]): RpcClientStopped {
    return new RpcClientStopped({ client: this.options.name, reason })
  }

  // -- accepting and publishing ------------------------------------------------------------------------------

  /** A request ready to go (its call is kept for the reply): publish now if possible, else park it (FIFO). */
  submit(request: Request, from: Process.From<ReplyValue>): void {
    request.from = from
    request.key = this.prefix + from.id
    const session = this.session
    if (session !== undefined && this.waiting.size === 0 && this.inFlight.size < this.options.maxInFlight) {
      if (this.publish(session, request)) return
    }
    this.waiting.set(request.key, request)
  }

  /** Publishes on `session`; false (nothing published) if the channel is already closed. */
  publish(session: Session, request: Request): boolean {
    const given = request.options
    const headers = this.remoteHeaders
    const properties: Amqp.Options.Publish = given === noOptions
      ? headers === undefined
        ? { replyTo: session.meta.replyQueue, correlationId: request.key }
        : { replyTo: session.meta.replyQueue, correlationId: request.key, headers }
      : {
        ...given,
        replyTo: session.meta.replyQueue,
        correlationId: request.key,
        headers: headers === undefined ? given.headers : { ...given.headers, ...headers }
      }
    const exchange = session.meta.requestExchange.name
    const key = request.key
    this.inFlight.set(key, request)
    try {
      if (session.confirm) {
        ;(session.channel as Amqp.ConfirmChannel).publish(
          exchange,
          request.routingKey,
          request.payload,
          properties,
          (error: unknown) => {
            // amqplib also calls back with "channel closed" when the channel dies: that is a channel loss,
            // reported by the channel owner, not a nack.
            if (error instanceof Error && error.message === "message nacked") this.onNack(session, key)
          }
        )
      } else {
        session.channel.publish(exchange, request.routingKey, request.payload, properties)
      }
    } catch {
      // The channel closed under us (its close event is on its way): keep the request for the next channel.
      this.inFlight.delete(key)
      session.alive = false
      if (this.session === session) this.session = undefined
      return false
    }
    request.published = true
    this.count("published")
    this.gauge()
    return true
  }

  /** Publishes parked requests while there is a channel and a free slot. */
  pump(): void {
    const session = this.session
    if (session === undefined || this.waiting.size === 0) return
    for (const [key, request] of this.waiting) {
      if (this.inFlight.size >= this.options.maxInFlight) return
      this.waiting.delete(key)
      if (!this.publish(session, request)) {
        this.waiting.set(key, request)
        return
      }
    }
  }

  /** A request left the in-flight table: publish the next parked one, answer a drain if nothing is left. */
  settled(): void {
    this.gauge()
    if (this.waiting.size > 0) this.pump()
    if (this.stopping && this.inFlight.size === 0 && this.drainers.length > 0) {
      const drainers = this.drainers
      this.drainers = []
      for (const from of drainers) Process.unsafeReplyTo(from, EMPTY)
    }
  }

  /** The caller of `key` gave up (timeout, interruption): forget its request. */
  abandon(key: string): void {
    if (this.waiting.delete(key)) return
    if (this.inFlight.delete(key)) this.settled()
  }

  // -- broker events -----------------------------------------------------------------------------------------

  onReply(message: Amqp.Message): void {
    const key: unknown = message.properties.correlationId
    const request = typeof key === "string" ? this.inFlight.get(key) : undefined
    if (request === undefined) {
      this.count("lateReplies")
      return
    }
    this.inFlight.delete(request.key)
    const headers = message.properties.headers
    const remote = headers === undefined ? undefined : headers[REMOTE_ERROR_HEADER]
    const value: ReplyValue = remote === undefined
      ? message.content
      : new RpcRemoteError({ client: this.options.name, routingKey: request.routingKey, message: String(remote) })
    if (Process.unsafeReplyTo(request.from!, value)) this.count("replies")
    else this.count("lateReplies")
    this.settled()
  }

  onReturn(message: Amqp.Message): void {
    const key: unknown = message.properties.correlationId
    const request = typeof key === "string" ? this.inFlight.get(key) : undefined
    if (request === undefined) return
    this.inFlight.delete(request.key)
    this.count("returned")
    const fields = message.fields as Amqp.MessageFields & { readonly replyCode?: number; readonly replyText?: string }
    Process.unsafeReplyTo(
      request.from!,
      new RpcUnroutable({
        client: this.options.name,
        exchange: fields.exchange,
        routingKey: fields.routingKey,
        replyCode: fields.replyCode ?? 312,
        replyText: fields.replyText ?? "NO_ROUTE"
      })
    )
    this.settled()
  }

  onNacked(session: Session, key: string): void {
    if (!session.alive) return
    const request = this.inFlight.get(key)
    if (request === undefined) return
    this.inFlight.delete(key)
    this.count("nacked")
    Process.unsafeReplyTo(request.from!, new RpcNacked({ client: this.options.name, routingKey: request.routingKey }))
    this.settled()
  }

  // -- channel life ------------------------------------------------------------------------------------------

  /** The channel is set up and `handleReady` let the client go on: parked requests go out now. */
  activate(session: Session): void {
    this.counts.sessions++
    this.setupFailure = undefined
    this.session = session
    this.pump()
  }

  /** The channel died: every request in flight on it fails at once (its reply can no longer come). */
  deactivate(error: AmqpError): void {
    const session = this.session
    if (session !== undefined) session.alive = false
    this.session = undefined
    if (this.inFlight.size === 0) return
    const lost = Array.from(this.inFlight.values())
    this.inFlight.clear()
    for (const request of lost) {
      this.count("channelLost")
      Process.unsafeReplyTo(
        request.from!,
        new RpcChannelLost({ client: this.options.name, routingKey: request.routingKey, cause: error })
      )
    }
    this.settled()
  }

  /** Fails every parked request with `error`. */
  failWaiting(error: ReplyValue): void {
    if (this.waiting.size === 0) return
    const parked = Array.from(this.waiting.values())
    this.waiting.clear()
    for (const request of parked) Process.unsafeReplyTo(request.from!, error)
  }

  stats(): Stats {
    return { ...this.counts, inFlight: this.inFlight.size, waiting: this.waiting.size }
  }
}

/** A drain's answer (its value is not used). */
export const EMPTY: Buffer = Buffer.alloc(0)

/** The exported counters, for tests and dashboards. */
export const clientMetrics = metric
