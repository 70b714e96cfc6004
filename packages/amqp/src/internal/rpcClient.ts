/**
 * The RPC client engine: a `@warren/process` process (the Hare.RPC.Client gen_server: init, connected,
 * handleReady, handleInfo, handleRequest, terminate, all serialized with the state) plus a channel session fiber
 * and a table of requests shared by both.
 *
 * Hot path, no fork per request. Without `handleRequest` a request needs no process state, so it does not go
 * through the mailbox: the caller's `Effect.async` registers it, publishes at once on the current channel (or
 * parks it until a channel / an in-flight slot is free) and arms its timer. An interrupted caller's request is
 * forgotten when the caller's fiber ends (a `CallerSlot` per fiber, observing its exit), not through a canceler
 * on each `Effect.async`: the canceler's interruption region cost more than the rest of the client's own work.
 * With `handleRequest` a request is a `Process.call`: `handleCall` runs the callback with the state, publishes,
 * returns `noreply`, and the process's call timeout is its clock. Either way the amqplib reply consumer looks the
 * correlation id up in a Map and answers the caller from the amqplib callback (replies never queue behind the
 * mailbox). Timers: one fiber per distinct timeout duration, on the Effect Clock (deadlines arrive in order, so
 * each list is a FIFO).
 */
import type * as Amqp from "amqplib"
import { Process } from "@warren/process"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Runtime from "effect/Runtime"
import * as MetricLabel from "effect/MetricLabel"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleIntervals from "effect/ScheduleIntervals"
import type * as Scope from "effect/Scope"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AmqpConnection, channelLost } from "../AmqpConnection.js"
import { AmqpError, describe } from "./amqpError.js"
import type { AmqpConnectionShape } from "./connection.js"
import {
  type Callbacks,
  type Client,
  type ClientState,
  type Meta,
  type Payload,
  type PublishOptions,
  type RequestError,
  type RequestResult,
  type ResolvedOptions,
  resolveOptions,
  RpcChannelLost,
  RpcClientStopped,
  type RpcConfigError,
  RpcNacked,
  RpcTimeout,
  RpcUnroutable,
  type Stats
} from "./rpcClientModel.js"

/** The reply queue name RabbitMQ uses for direct reply-to. */
export const DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

// ---------------------------------------------------------------------------------------------------------------
// Messages

/** A request as it travels through the mailbox. */
class RequestMessage {
  constructor(
    readonly payload: Buffer,
    readonly routingKey: string,
    readonly options: PublishOptions
  ) {}
}

/** What a caller gets back through the process: the reply body or the failure of its request. */
type ReplyValue = Buffer | RpcChannelLost | RpcUnroutable | RpcNacked | RpcClientStopped

/** Internal info: a channel was set up (`connected`). */
class SessionUp {
  constructor(readonly meta: Meta) {}
}

/** Internal info: the reply consumer was confirmed (`handleReady`). */
class SessionReady {
  constructor(readonly meta: Meta) {}
}

/** Internal info: the client cannot go on (connection closed for good, reconnect schedule ended). */
class SessionFatal {
  constructor(readonly error: AmqpError) {}
}

const toBuffer = (payload: Payload): Buffer =>
  typeof payload === "string"
    ? Buffer.from(payload, "utf8")
    : Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)

// ---------------------------------------------------------------------------------------------------------------
// The request table

/** The publish options of a request given none (shared, never mutated). */
const noOptions: PublishOptions = {}

/** How a caller is answered: through its process call, or directly (the resume of its `Effect.async`). */
type Resume = (result: Effect.Effect<Buffer, RequestError>) => void

/**
 * A request accepted by the client: waiting for a channel/slot, then in flight until answered. Requests that
 * went through `handleRequest` are process calls (`from`); the others are answered directly (`resume`) and
 * carry their own timer links.
 */
class Pending {
  done = false
  deadline = 0
  timers: TimerList | undefined = undefined
  /** The caller's slot, for a direct request (cleared when the request is settled). */
  slot: CallerSlot | undefined = undefined
  prev: Pending | undefined = undefined
  next: Pending | undefined = undefined
  constructor(
    readonly key: string,
    readonly payload: Buffer,
    readonly routingKey: string,
    readonly options: PublishOptions,
    readonly from: Process.From<ReplyValue> | undefined,
    readonly resume: Resume | undefined
  ) {}
}

/**
 * The direct request a fiber is waiting for, with the client it belongs to. A fiber waits in at most one request
 * at a time (of any client), so one slot per fiber is enough, and one exit observer per fiber, added with its
 * first request: when the fiber ends with a request still in its slot (the caller was interrupted:
 * `Fiber.interrupt`, the losing side of `Effect.timeout` or a race, a closed scope), the observer abandons it. The
 * slot is emptied when the request settles, so it holds on to no client after that.
 */
class CallerSlot {
  pending: Pending | undefined = undefined
  engine: Engine | undefined = undefined

  /** Abandons the request the slot still holds (its caller left it without an answer); empties the slot. */
  abandonHeld(): void {
    if (this.pending !== undefined && this.engine !== undefined) this.engine.abandonDirect(this.pending)
  }
}

/** Every fiber that made a direct request, with its slot (weakly held: an entry goes with its fiber). */
const callerSlots = new WeakMap<object, CallerSlot>()

/** Puts `pending` in `caller`'s slot; the first time, makes the caller's exit abandon whatever the slot holds. */
const watchCaller = (caller: Fiber.RuntimeFiber<unknown, unknown>, engine: Engine, pending: Pending): void => {
  let slot = callerSlots.get(caller)
  if (slot === undefined) {
    const created = new CallerSlot()
    callerSlots.set(caller, created)
    caller.addObserver(() => created.abandonHeld())
    slot = created
  } else {
    // Still taken: the fiber left that request without its answer (it was interrupted and now makes another
    // request, in a finalizer).
    slot.abandonHeld()
  }
  slot.pending = pending
  slot.engine = engine
  pending.slot = slot
}

/** Direct requests with the same timeout, oldest first (so deadlines are in order); one fiber sleeps until the head's. */
class TimerList {
  head: Pending | undefined = undefined
  tail: Pending | undefined = undefined
  wake: (() => void) | undefined = undefined
  fiber: Fiber.RuntimeFiber<void> | undefined = undefined
  constructor(readonly duration: Duration.Duration) {}

  append(pending: Pending): void {
    pending.timers = this
    pending.prev = this.tail
    pending.next = undefined
    if (this.tail === undefined) this.head = pending
    else this.tail.next = pending
    this.tail = pending
    if (this.wake !== undefined) {
      const wake = this.wake
      this.wake = undefined
      wake()
    }
  }

  unlink(pending: Pending): void {
    if (pending.prev === undefined) this.head = pending.next
    else pending.prev.next = pending.next
    if (pending.next === undefined) this.tail = pending.prev
    else pending.next.prev = pending.prev
    pending.prev = undefined
    pending.next = undefined
    pending.timers = undefined
  }
}

/** One channel with its declarations done and its reply consumer running. */
class Session {
  alive = true
  constructor(
    readonly channel: Amqp.Channel,
    readonly confirm: boolean,
    readonly replyQueue: string,
    readonly meta: Meta
  ) {}
}

const metric = {
  requests: Metric.counter("rpc_client_requests_total", {
    description: "RPC requests accepted by the client",
    incremental: true
  }),
  published: Metric.counter("rpc_client_published_total", {
    description: "RPC requests published to the broker",
    incremental: true
  }),
  replies: Metric.counter("rpc_client_replies_total", {
    description: "RPC replies matched to a waiting caller",
    incremental: true
  }),
  timeouts: Metric.counter("rpc_client_timeouts_total", {
    description: "RPC requests that got no reply in time",
    incremental: true
  }),
  returned: Metric.counter("rpc_client_returned_total", {
    description: "Mandatory RPC requests returned unroutable",
    incremental: true
  }),
  nacked: Metric.counter("rpc_client_nacked_total", {
    description: "RPC requests nacked by the broker (publisher confirms)",
    incremental: true
  }),
  lateReplies: Metric.counter("rpc_client_late_replies_total", {
    description: "Replies with an unknown correlation id (late or foreign), dropped",
    incremental: true
  }),
  channelLost: Metric.counter("rpc_client_channel_lost_total", {
    description: "RPC requests failed because their channel died",
    incremental: true
  }),
  inFlight: Metric.gauge("rpc_client_in_flight", { description: "RPC requests published and awaiting a reply" })
}

/**
 * The mutable core shared by the process fiber, the session fiber, callers and amqplib callbacks. All of them run
 * on the one JS thread and every method here is synchronous, so no method ever sees another half done.
 */
class Engine {
  session: Session | undefined = undefined
  readonly inFlight = new Map<string, Pending>()
  readonly waiting = new Map<string, Pending>()
  /** Set by a graceful stop: no new requests. */
  stopping = false
  /** Set when the process has exited (after terminate): requests fail with it. */
  exitReason: Process.ExitReason<unknown> | undefined = undefined
  drainWaiters: Array<() => void> = []
  readonly timerLists = new Map<number, TimerList>()
  nextDirectId = 0
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

  constructor(
    readonly options: ResolvedOptions,
    readonly prefix: string,
    readonly clock: Clock.Clock,
    readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>
  ) {
    this.tags = [MetricLabel.make("client", options.name)]
  }

  count(name: Exclude<keyof Engine["counts"], "sessions">): void {
    this.counts[name]++
    metric[name].unsafeUpdate(1, this.tags)
  }

  gauge(): void {
    metric.inFlight.unsafeUpdate(this.inFlight.size, this.tags)
  }

  stopped(reason: RpcClientStopped["reason"]): RpcClientStopped {
    return new RpcClientStopped({ client: this.options.name, reason })
  }

  // -- answering ---------------------------------------------------------------------------------------------

  /** Answers the caller of `pending` once; false if it was answered already or gave up. */
  answer(pending: Pending, value: ReplyValue): boolean {
    if (pending.from !== undefined) return Process.unsafeReplyTo(pending.from, value)
    if (pending.done) return false
    this.settleDirect(pending)
    pending.resume!(Buffer.isBuffer(value) ? Effect.succeed(value) : Effect.fail(value))
    return true
  }

  /** Marks a direct request done: off its timer list and out of its caller's slot. */
  settleDirect(pending: Pending): void {
    pending.done = true
    if (pending.timers !== undefined) pending.timers.unlink(pending)
    const slot = pending.slot
    if (slot !== undefined) {
      if (slot.pending === pending) {
        slot.pending = undefined
        slot.engine = undefined
      }
      pending.slot = undefined
    }
  }

  /** Takes `pending` out of the tables (it is answered, timed out or abandoned). */
  remove(pending: Pending): void {
    if (this.waiting.delete(pending.key)) return
    if (this.inFlight.delete(pending.key)) this.settled()
  }

  // -- direct requests (no handleRequest): no mailbox hop ------------------------------------------------------

  /** A request answered directly: publish (or park) now, arm its timer; the caller's exit forgets it. */
  direct(payload: Buffer, routingKey: string, options: PublishOptions, timeout: Duration.Duration, timeoutMillis: number) {
    return Effect.async<Buffer, RequestError>((resume) => {
      this.count("requests")
      if (this.exitReason !== undefined) return resume(Effect.fail(this.stopped(this.exitReason)))
      if (this.stopping) return resume(Effect.fail(this.stopped("Stopping")))
      const pending = new Pending(`${this.prefix}d${this.nextDirectId++}`, payload, routingKey, options, undefined, resume)
      // The register function runs on the caller's fiber, so the current fiber is the caller.
      const caller = Fiber.getCurrentFiber()
      if (caller._tag === "Some") watchCaller(caller.value, this, pending)
      this.arm(pending, timeout, timeoutMillis)
      this.submit(pending)
    })
  }

  arm(pending: Pending, timeout: Duration.Duration, millis: number): void {
    if (!Number.isFinite(millis)) return
    pending.deadline = this.clock.unsafeCurrentTimeMillis() + millis
    const list = this.timerLists.get(millis)
    if (list !== undefined) return list.append(pending)
    const created = new TimerList(timeout)
    this.timerLists.set(millis, created)
    created.append(pending)
    created.fiber = this.runFork(this.timerLoop(created))
  }

  timerLoop(list: TimerList): Effect.Effect<void> {
    const engine = this
    return Effect.gen(function*() {
      for (;;) {
        const head = list.head
        if (head === undefined) {
          yield* Effect.async<void>((resume) => {
            list.wake = () => resume(Effect.void)
          })
          continue
        }
        const now = engine.clock.unsafeCurrentTimeMillis()
        if (head.deadline <= now) {
          list.unlink(head)
          engine.expire(head, list.duration)
          continue
        }
        yield* engine.clock.sleep(Duration.millis(head.deadline - now))
      }
    })
  }

  /** A direct request's timeout passed. */
  expire(pending: Pending, timeout: Duration.Duration): void {
    if (pending.done) return
    this.settleDirect(pending)
    this.remove(pending)
    pending.resume!(Effect.fail(this.timeoutError(pending.routingKey, timeout)))
  }

  timeoutError(routingKey: string, timeout: Duration.Duration): RpcTimeout {
    this.count("timeouts")
    return new RpcTimeout({ client: this.options.name, routingKey, timeout })
  }

  /** A direct caller ended without its answer (interrupted): forget its request. */
  abandonDirect(pending: Pending): void {
    if (pending.done) return
    this.settleDirect(pending)
    this.remove(pending)
  }

  /** A process caller gave up (timeout, interruption): forget its request. */
  abandonCall(key: string): void {
    const pending = this.waiting.get(key) ?? this.inFlight.get(key)
    if (pending !== undefined) this.remove(pending)
  }

  // -- publishing ----------------------------------------------------------------------------------------------

  /** A request ready to go: publish now if possible, else park it (FIFO). */
  submit(pending: Pending): void {
    const session = this.session
    if (session !== undefined && this.waiting.size === 0 && this.inFlight.size < this.options.maxInFlight) {
      if (this.publish(session, pending)) return
    }
    this.waiting.set(pending.key, pending)
  }

  /** Publishes on `session`; false (nothing published) if the channel is already closed. */
  publish(session: Session, pending: Pending): boolean {
    const properties: Amqp.Options.Publish = pending.options === noOptions
      ? { replyTo: session.replyQueue, correlationId: pending.key }
      : { ...pending.options, replyTo: session.replyQueue, correlationId: pending.key }
    const exchange = session.meta.requestExchange.name
    this.inFlight.set(pending.key, pending)
    try {
      if (session.confirm) {
        ;(session.channel as Amqp.ConfirmChannel).publish(
          exchange,
          pending.routingKey,
          pending.payload,
          properties,
          (error: unknown) => {
            // amqplib also calls back with "channel closed" when the channel dies: that is a channel loss,
            // reported by the session, not a nack.
            if (error instanceof Error && error.message === "message nacked") this.nacked(session, pending.key)
          }
        )
      } else {
        session.channel.publish(exchange, pending.routingKey, pending.payload, properties)
      }
    } catch {
      // The channel closed under us (its close event is on its way): keep the request for the next channel.
      this.inFlight.delete(pending.key)
      session.alive = false
      if (this.session === session) this.session = undefined
      return false
    }
    this.count("published")
    this.gauge()
    return true
  }

  /** Publishes parked requests while there is a channel and a free slot. */
  pump(): void {
    const session = this.session
    if (session === undefined || this.waiting.size === 0) return
    for (const [key, pending] of this.waiting) {
      if (this.inFlight.size >= this.options.maxInFlight) return
      this.waiting.delete(key)
      if (!this.publish(session, pending)) {
        this.waiting.set(key, pending)
        return
      }
    }
  }

  /** A request left the in-flight table: publish the next parked one, wake a graceful stop if drained. */
  settled(): void {
    this.gauge()
    if (this.waiting.size > 0) this.pump()
    if (this.stopping && this.inFlight.size === 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters
      this.drainWaiters = []
      for (const wake of waiters) wake()
    }
  }

  // -- broker events -----------------------------------------------------------------------------------------

  onReply(message: Amqp.ConsumeMessage): void {
    const key: unknown = message.properties.correlationId
    const pending = typeof key === "string" ? this.inFlight.get(key) : undefined
    if (pending === undefined) {
      this.count("lateReplies")
      return
    }
    this.inFlight.delete(pending.key)
    if (this.answer(pending, message.content)) this.count("replies")
    else this.count("lateReplies")
    this.settled()
  }

  onReturn(message: Amqp.Message): void {
    const key: unknown = message.properties.correlationId
    const pending = typeof key === "string" ? this.inFlight.get(key) : undefined
    if (pending === undefined) return
    this.inFlight.delete(pending.key)
    this.count("returned")
    const fields = message.fields as Amqp.MessageFields & { readonly replyCode?: number; readonly replyText?: string }
    this.answer(
      pending,
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

  nacked(session: Session, key: string): void {
    if (!session.alive) return
    const pending = this.inFlight.get(key)
    if (pending === undefined) return
    this.inFlight.delete(key)
    this.count("nacked")
    this.answer(pending, new RpcNacked({ client: this.options.name, routingKey: pending.routingKey }))
    this.settled()
  }

  // -- sessions and stop -------------------------------------------------------------------------------------

  /** The channel is set up: requests may flow. */
  activate(session: Session): void {
    this.counts.sessions++
    this.session = session
    this.pump()
  }

  /** The channel died: every request in flight on it fails at once (its reply can no longer come). */
  deactivate(session: Session, error: AmqpError): void {
    session.alive = false
    if (this.session === session) this.session = undefined
    if (this.inFlight.size === 0) return
    const lost = Array.from(this.inFlight.values())
    this.inFlight.clear()
    for (const pending of lost) {
      this.count("channelLost")
      this.answer(pending, new RpcChannelLost({ client: this.options.name, routingKey: pending.routingKey, cause: error }))
    }
    this.settled()
  }

  /** Fails every parked request (graceful stop). */
  failWaiting(reason: RpcClientStopped["reason"]): void {
    if (this.waiting.size === 0) return
    const parked = Array.from(this.waiting.values())
    this.waiting.clear()
    for (const pending of parked) this.answer(pending, this.stopped(reason))
  }

  /** Fails every request in flight (end of a graceful stop's drain, exit). */
  failInFlight(reason: RpcClientStopped["reason"]): void {
    if (this.inFlight.size === 0) return
    const lost = Array.from(this.inFlight.values())
    this.inFlight.clear()
    for (const pending of lost) this.answer(pending, this.stopped(reason))
    this.gauge()
  }

  /** The process exited: fail everything left, stop the timers. */
  exited(reason: Process.ExitReason<unknown>): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.exitReason = reason
      this.stopping = true
      this.failWaiting(reason)
      this.failInFlight(reason)
      const fibers: Array<Fiber.RuntimeFiber<void>> = []
      for (const list of this.timerLists.values()) {
        if (list.fiber !== undefined) fibers.push(list.fiber)
      }
      this.timerLists.clear()
      return fibers.length === 0 ? Effect.void : Fiber.interruptAll(fibers)
    })
  }

  /** Succeeds once nothing is in flight (used by a graceful stop, after `stopping` is set). */
  readonly drained: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.inFlight.size === 0) {
      resume(Effect.void)
      return
    }
    const wake = () => resume(Effect.void)
    this.drainWaiters.push(wake)
    return Effect.sync(() => {
      this.drainWaiters = this.drainWaiters.filter((waiter) => waiter !== wake)
    })
  })

  stats(): Stats {
    return { ...this.counts, inFlight: this.inFlight.size, waiting: this.waiting.size }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The channel session

type Ref = Process.ProcessRef<RequestMessage, ReplyValue, never, unknown, unknown>

const setupError = (step: string, cause: unknown) =>
  new AmqpError({ reason: "ChannelOpen", message: `RPC client channel setup failed (${step}): ${describe(cause)}`, cause })

const setupStep = <A>(step: string, run: () => Promise<A>): Effect.Effect<A, AmqpError> =>
  Effect.async<A, AmqpError>((resume) => {
    run().then(
      (value) => resume(Effect.succeed(value)),
      (cause: unknown) => resume(Effect.fail(setupError(step, cause)))
    )
  })

const assertExchangeOptions = (exchange: Meta["requestExchange"]): Amqp.Options.AssertExchange => {
  const given = exchange.options
  const options: Amqp.Options.AssertExchange = {}
  if (given.durable !== undefined) options.durable = given.durable
  if (given.autoDelete !== undefined) options.autoDelete = given.autoDelete
  if (given.internal !== undefined) options.internal = given.internal
  if (given.alternateExchange !== undefined) options.alternateExchange = given.alternateExchange
  if (given.arguments !== undefined) options.arguments = given.arguments
  return options
}

/**
 * Opens a channel, declares the reply queue, the exchange, consumes (one at a time, Hare's order), activates the
 * session, then waits until the channel is lost. Returns the loss; fails with a setup error. Scoped: the
 * channel is closed when the scope closes.
 */
const runSession = (
  engine: Engine,
  connection: AmqpConnectionShape,
  self: Ref,
  state: SubscriptionRef.SubscriptionRef<ClientState>,
  ready: { reached: boolean }
): Effect.Effect<AmqpError, AmqpError, Scope.Scope> =>
  Effect.gen(function*() {
    const options = engine.options
    const channel: Amqp.Channel = yield* connection.openChannel({ confirm: options.confirm })
    const cancelled = yield* Deferred.make<AmqpError>()
    channel.on("return", (message: Amqp.Message) => engine.onReturn(message))

    const exchange = options.exchange
    const replyQueue = options.replyMode === "direct"
      ? DIRECT_REPLY_TO
      : (yield* setupStep("reply queue", () => channel.assertQueue("", { exclusive: true, autoDelete: true }))).queue
    if (exchange.name !== "") {
      if (exchange.passive) {
        yield* setupStep(`exchange ${exchange.name}`, () => channel.checkExchange(exchange.name))
      } else {
        yield* setupStep(
          `exchange ${exchange.name}`,
          () => channel.assertExchange(exchange.name, exchange.type, assertExchangeOptions(exchange))
        )
      }
    }
    const meta: Meta = { requestExchange: exchange, replyQueue }
    const session = new Session(channel, options.confirm, replyQueue, meta)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        session.alive = false
        if (engine.session === session) engine.session = undefined
      })
    )
    // consume resolves on consume-ok: the consumer is registered and replies can come.
    yield* setupStep("consume", () =>
      channel.consume(
        replyQueue,
        (message) => {
          if (message === null) {
            Deferred.unsafeDone(
              cancelled,
              Exit.succeed(
                new AmqpError({ reason: "ChannelLost", message: "the broker cancelled the reply consumer" })
              )
            )
          } else {
            engine.onReply(message)
          }
        },
        { noAck: true }
      ))
    engine.activate(session)
    ready.reached = true
    yield* SubscriptionRef.set(state, { _tag: "Ready", meta })
    Process.unsafeSend(self, new SessionUp(meta))
    Process.unsafeSend(self, new SessionReady(meta))
    const lost = yield* Effect.raceFirst(Effect.flip(channelLost(channel)), Deferred.await(cancelled))
    engine.deactivate(session, lost)
    return lost
  })

/** Opens sessions one after another, waiting per the reconnect schedule between them. Ends only on a fatal error. */
const sessionLoop = (
  engine: Engine,
  connection: AmqpConnectionShape,
  self: Ref,
  state: SubscriptionRef.SubscriptionRef<ClientState>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const schedule = engine.options.reconnect
    let scheduleState: unknown = schedule.initial
    let attempt = 0
    for (;;) {
      attempt += 1
      if (!engine.stopping) yield* SubscriptionRef.set(state, { _tag: "Connecting", attempt })
      const ready = { reached: false }
      const outcome = yield* Effect.either(Effect.scoped(runSession(engine, connection, self, state, ready)))
      const error = Either.isLeft(outcome) ? outcome.left : outcome.right
      if (ready.reached) {
        attempt = 0
        scheduleState = schedule.initial
      }
      if (engine.stopping) return
      if (error.reason === "Closed") {
        Process.unsafeSend(self, new SessionFatal(error))
        return
      }
      const now = yield* Clock.currentTimeMillis
      const [nextState, , decision] = yield* schedule.step(now, error, scheduleState)
      scheduleState = nextState
      if (ScheduleDecision.isDone(decision)) {
        Process.unsafeSend(self, new SessionFatal(error))
        return
      }
      const retryIn = Duration.millis(Math.max(0, ScheduleIntervals.start(decision.intervals) - now))
      yield* SubscriptionRef.set(state, { _tag: "Reconnecting", error, retryIn })
      yield* Effect.logDebug("RPC client channel lost", error.message)
      yield* Effect.sleep(retryIn)
    }
  }).pipe(Effect.annotateLogs("rpc.client", engine.options.name))

// ---------------------------------------------------------------------------------------------------------------
// Start

let nextClientId = 0

/** Effect's default tracer (native spans, exported nowhere). */
const builtInTracer = Effect.runSync(Effect.tracer)

const newPrefix = (): string =>
  `${(++nextClientId).toString(36)}.${Math.floor(Math.random() * 0x100000000).toString(36)}.`

const toEffect = <A, R>(value: A | Effect.Effect<A, unknown, R>): Effect.Effect<A, unknown, R> =>
  Effect.isEffect(value) ? value : Effect.succeed(value)

const mapResult = <A, B, R>(
  value: A | Effect.Effect<A, unknown, R>,
  f: (a: A) => B
): B | Effect.Effect<B, unknown, R> => Effect.isEffect(value) ? Effect.map(value, f) : f(value)

/**
 * Starts a client process: validates options, runs `init`, then (on `ok`) starts the channel session. The
 * client lives until it stops itself, `stop` is called, or the current scope closes (graceful stop).
 */
export const start = <Arg, State, Info, Reason, R>(
  callbacks: Callbacks<Arg, State, Info, Reason, R>,
  arg: Arg,
  rawOptions: unknown
): Effect.Effect<
  Client<Info, Reason>,
  RpcConfigError | Process.InitStopped<Reason> | Process.InitIgnored,
  R | AmqpConnection | Scope.Scope
> =>
  Effect.gen(function*() {
    const options = yield* resolveOptions(rawOptions)
    // Effect's built-in tracer exports nothing: spans only when another tracer is installed (unless set).
    const spans = options.spans ?? (yield* Effect.tracer) !== builtInTracer
    const connection = yield* AmqpConnection
    const runtime = yield* Effect.runtime<never>()
    const engine = new Engine(options, newPrefix(), yield* Effect.clock, Runtime.runFork(runtime))
    const state = yield* SubscriptionRef.make<ClientState>({ _tag: "Connecting", attempt: 1 })
    const box: { session: Fiber.RuntimeFiber<void> | undefined } = { session: undefined }
    const name = options.name

    const stoppedWhileStopping = new RpcClientStopped({ client: name, reason: "Stopping" })

    const afterRequest = (
      result: RequestResult<State, Reason>,
      from: Process.From<ReplyValue>,
      request: RequestMessage
    ): Process.CallResult<ReplyValue, State, Reason> | typeof result => {
      switch (result?._tag) {
        case "Proceed":
          engine.submit(
            new Pending(engine.prefix + from.id, request.payload, request.routingKey, request.options, from, undefined)
          )
          return Process.noreply(result.state)
        case "ProceedWith":
          engine.submit(
            new Pending(engine.prefix + from.id, toBuffer(result.payload), result.routingKey, result.options, from, undefined)
          )
          return Process.noreply(result.state)
        case "Reply":
          return Process.reply(toBuffer(result.value), result.state)
        case "StopReply":
          return Process.stopReply(result.reason, toBuffer(result.value), result.state)
        default:
          // Stop is passed on as is; anything else crashes the process with BadReturn.
          return result
      }
    }

    const behaviour: Process.Behaviour<
      Arg,
      State,
      RequestMessage,
      ReplyValue,
      never,
      Info | SessionUp | SessionReady | SessionFatal,
      Reason,
      R | Scope.Scope
    > = {
      init: (initArg, self) =>
        Effect.flatMap(
          toEffect(callbacks.init(initArg)) as Effect.Effect<Process.InitResult<State, Reason>, unknown, R>,
          (result): Effect.Effect<Process.InitResult<State, Reason>, never, Scope.Scope> => {
            if (result?._tag !== "Ok") return Effect.succeed(result)
            return Effect.forkScoped(sessionLoop(engine, connection, self as Ref, state)).pipe(
              Effect.map((fiber) => {
                box.session = fiber
                return result
              })
            )
          }
        ),
      handleCall: (request, from, current) => {
        engine.count("requests")
        if (engine.stopping) return Process.reply(stoppedWhileStopping, current)
        return mapResult(
          callbacks.handleRequest!(request.payload, request.routingKey, request.options, current),
          (result) => afterRequest(result, from, request)
        ) as Process.Returns<Process.CallResult<ReplyValue, State, Reason>, R>
      },
      handleInfo: (message, current) => {
        if (message instanceof SessionUp) {
          return callbacks.connected === undefined ? Process.noreply(current) : callbacks.connected(message.meta, current)
        }
        if (message instanceof SessionReady) {
          return callbacks.handleReady === undefined
            ? Process.noreply(current)
            : callbacks.handleReady(message.meta, current)
        }
        if (message instanceof SessionFatal) return Effect.fail(message.error)
        return callbacks.handleInfo === undefined
          ? Process.noreply(current)
          : callbacks.handleInfo(message as Info, current)
      },
      handleAbandoned: (from, current) => {
        engine.abandonCall(engine.prefix + from.id)
        return Process.noreply(current)
      },
      terminate: (reason, current) => {
        engine.stopping = true
        const closeChannel = Effect.suspend(() => {
          const fiber = box.session
          box.session = undefined
          return fiber === undefined ? Effect.void : Fiber.interrupt(fiber)
        }).pipe(Effect.zipRight(SubscriptionRef.set(state, { _tag: "Stopped" })))
        const user = callbacks.terminate === undefined
          ? Effect.void
          : Effect.suspend(() => toEffect(callbacks.terminate!(reason, current)))
        return Effect.ensuring(user, Effect.zipRight(closeChannel, engine.exited(reason)))
      }
    }

    const ref = yield* Process.start(behaviour, arg, { name })

    const beginStop = Effect.suspend(() => {
      if (!engine.stopping) {
        engine.stopping = true
        engine.failWaiting("Stopping")
      }
      return SubscriptionRef.set(state, { _tag: "Stopped" })
    })

    /** Stops accepting, drains (bounded), fails what is left; the caller then stops the process. */
    const drain = beginStop.pipe(
      Effect.zipRight(Effect.timeoutOption(engine.drained, options.drainTimeout)),
      Effect.zipRight(Effect.sync(() => engine.failInFlight("Stopping")))
    )

    // Closing the scope stops gracefully too (this finalizer runs before the process's own), and whatever
    // happened, leaves no timer behind.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => Process.isAlive(ref) ? Effect.zipRight(drain, Process.stopNow(ref)) : Effect.void).pipe(
        Effect.zipRight(Effect.suspend(() => engine.exited(engine.exitReason ?? Process.shutdown)))
      )
    )

    // Without handleRequest a request needs no process state: it skips the mailbox (see `Engine.direct`).
    const viaProcess = callbacks.handleRequest !== undefined
    // The default timeout in milliseconds, decoded once rather than per request.
    const defaultTimeoutMillis = Duration.toMillis(options.timeout)
    const request: Client<Info, Reason>["request"] = (payload, routingKey = "", publishOptions, timeout) => {
      const duration = timeout === undefined ? options.timeout : Duration.decode(timeout)
      const call = viaProcess ? processRequest(payload, routingKey, publishOptions, duration) : engine.direct(
        toBuffer(payload),
        routingKey,
        publishOptions ?? noOptions,
        duration,
        timeout === undefined ? defaultTimeoutMillis : Duration.toMillis(duration)
      )
      return spans
        ? Effect.withSpan(call, "RpcClient.request", {
          kind: "client",
          // A stack trace per request costs more than the rest of the client's work.
          captureStackTrace: false,
          attributes: {
            "rpc.client": name,
            "messaging.destination.name": options.exchange.name,
            "messaging.rabbitmq.destination.routing_key": routingKey
          }
        })
        : call
    }

    const processRequest = (
      payload: Payload,
      routingKey: string,
      publishOptions: PublishOptions | undefined,
      duration: Duration.Duration
    ): Effect.Effect<Buffer, RequestError> =>
      Effect.matchEffect(
        Process.call(ref, new RequestMessage(toBuffer(payload), routingKey, publishOptions ?? noOptions), {
          timeout: duration
        }),
        {
          onFailure: (error) =>
            Effect.fail(
              error._tag === "CallTimeout"
                ? engine.timeoutError(routingKey, duration)
                : engine.stopped(error.reason)
            ),
          onSuccess: (value: ReplyValue) => Buffer.isBuffer(value) ? Effect.succeed(value) : Effect.fail(value)
        }
      )

    const publicRef = ref as unknown as Process.ProcessRef<never, unknown, never, Info, Reason>

    const client: Client<Info, Reason> = {
      name,
      ref: publicRef,
      request,
      send: (message) => Process.send(publicRef, message),
      stop: (...reason: [] | [Reason]) =>
        Effect.suspend(() => {
          if (!Process.isAlive(ref)) return Process.await(publicRef)
          return Effect.zipRight(
            drain,
            reason.length === 0 ? Process.exit(publicRef) : Process.exit(publicRef, reason[0])
          )
        }),
      await: Process.await(publicRef),
      state,
      stats: Effect.sync(() => engine.stats())
    }
    return client
  })
