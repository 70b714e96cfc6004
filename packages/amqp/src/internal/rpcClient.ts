/**
 * The RPC client: one `@warren/process` process (the Hare.RPC.Client gen_server) whose channel is kept by the
 * channel owner. Every request is a `Process.call`: `handleCall` runs `handleRequest` (if any) with the state,
 * publishes (or parks the request until the channel is ready) and keeps the `From` in the request table; the reply
 * consumer casts each reply to the process, which answers the caller with `replyTo`. Timeouts and abandonment are
 * the process core's (the call's timeout, `handleAbandoned`).
 */
import type * as Amqp from "amqplib"
import { EagerScheduler, Process } from "@warren/process"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AmqpConnection } from "../AmqpConnection.js"
import { AmqpError } from "./amqpError.js"
import * as ChannelOwner from "./channelOwner.js"
import {
  type Callbacks,
  type Client,
  type ClientState,
  type Meta,
  type Payload,
  type RequestError,
  type RequestResult,
  resolveOptions,
  RpcChannelSetupFailed,
  RpcTimeout,
  type SetupFailedReason
} from "./rpcClientModel.js"
import { EMPTY, noOptions, type ReplyValue, Request, Requests, Session } from "./rpcRequests.js"
import * as Topology from "./topology.js"

/** The reply queue name RabbitMQ uses for direct reply-to. */
export const DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

// ---------------------------------------------------------------------------------------------------------------
// Messages of the client process

/** Call: a graceful stop's drain (answered once nothing is in flight). */
class Drain {}
const drain = new Drain()

/** Casts from the channel owner and amqplib's callbacks (replies are cast as the amqplib message itself). */
class ChannelEvent {}
class Connected extends ChannelEvent {
  constructor(readonly session: Session) {
    super()
  }
}
class Ready extends ChannelEvent {}
class Lost extends ChannelEvent {
  constructor(readonly error: AmqpError, readonly setup: ChannelOwner.SetupFailure | undefined) {
    super()
  }
}
class GaveUp extends ChannelEvent {
  constructor(readonly error: AmqpError) {
    super()
  }
}
class Returned extends ChannelEvent {
  constructor(readonly message: Amqp.Message) {
    super()
  }
}
class Nacked extends ChannelEvent {
  constructor(readonly session: Session, readonly key: string) {
    super()
  }
}

type Call = Request | Drain
type Cast = Amqp.ConsumeMessage | ChannelEvent

const toBuffer = (payload: Payload): Buffer =>
  typeof payload === "string"
    ? Buffer.from(payload, "utf8")
    : Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)

const setupReason = (failure: ChannelOwner.SetupFailure): SetupFailedReason | undefined => {
  switch (failure.reason) {
    case "NotFound":
      return failure.step.startsWith("exchange") ? "ExchangeNotFound" : "Other"
    case "PreconditionFailed":
    case "AccessRefused":
    case "ResourceLocked":
      return failure.reason
    case "Other":
      return undefined
  }
}

let nextClientId = 0

/**
 * The scheduler of every client process (one for all: fibers on one eager scheduler queue behind each other
 * instead of nesting). The replies amqplib delivers from one socket read are handled in one process run right
 * after that read, the callers they answer resume in the same run, and a caller's next request is handled as soon
 * as it is made: no microtask hop between the reply's bytes and the next publish (docs/decisions.md).
 */
const clientScheduler = EagerScheduler.make({ coalesce: true })

/** Effect's default tracer (native spans, exported nowhere). */
const builtInTracer = Effect.runSync(Effect.tracer)

const newPrefix = (): string =>
  `${(++nextClientId).toString(36)}.${Math.floor(Math.random() * 0x100000000).toString(36)}.`

const mapResult = <A, B, R>(
  value: A | Effect.Effect<A, unknown, R>,
  f: (a: A) => B
): B | Effect.Effect<B, unknown, R> => Effect.isEffect(value) ? Effect.map(value, f) : f(value)

const toEffect = <A, R>(value: A | Effect.Effect<A, unknown, R>): Effect.Effect<A, unknown, R> =>
  Effect.isEffect(value) ? value : Effect.succeed(value)

/**
 * Starts a client process: validates options, runs `init`, then (on `ok`) starts the channel owner in the
 * process's scope. The client lives until it stops itself, `stop` is called, or the current scope closes
 * (graceful stop).
 */
export const start = <Arg, State, Info, Reason, R>(
  callbacks: Callbacks<Arg, State, Info, Reason, R>,
  arg: Arg,
  rawOptions: unknown
): Effect.Effect<
  Client<Info, Reason>,
  AmqpError | Process.InitStopped<Reason> | Process.InitIgnored,
  R | AmqpConnection | Scope.Scope
> =>
  Effect.gen(function*() {
    const options = yield* resolveOptions(rawOptions)
    // Effect's built-in tracer exports nothing: spans only when another tracer is installed (unless set).
    const spans = options.spans ?? (yield* Effect.tracer) !== builtInTracer
    const connection = yield* AmqpConnection
    const name = options.name
    const status = yield* SubscriptionRef.make<ClientState>({ _tag: "Connecting", attempt: 1 })
    const selfBox: { ref: Process.ProcessRef<Call, ReplyValue, Cast, Info, Reason> | undefined } = { ref: undefined }
    const cast = (message: Cast) => {
      if (selfBox.ref !== undefined) Process.unsafeCast(selfBox.ref, message)
    }
    const table = new Requests(options, newPrefix(), (session, key) => cast(new Nacked(session, key)))
    const owner: { fiber: Fiber.RuntimeFiber<void> | undefined } = { fiber: undefined }
    const stoppedWhileStopping = table.stopped("Stopping")
    const handleRequest = callbacks.handleRequest

    const spec: ChannelOwner.Spec<Meta, { readonly meta: Meta }> = {
      name: `RPC client ${name}`,
      confirm: options.confirm,
      policy: options.reconnect,
      // Hare's order, one AMQP method at a time: reply queue, request exchange (then consume).
      declare: (channel) =>
        Effect.gen(function*() {
          channel.on("return", (message: Amqp.Message) => cast(new Returned(message)))
          const replyQueue = options.replyMode === "direct"
            ? DIRECT_REPLY_TO
            : yield* Topology.declareReplyQueue(channel)
          if (options.exchange.name !== "") yield* Topology.declareExchange(channel, options.exchange)
          const meta: Meta = { requestExchange: options.exchange, replyQueue }
          return meta
        }),
      consume: (channel, meta, cancelled) =>
        ChannelOwner.setupStep("basic.consume", () =>
          channel.consume(meta.replyQueue, (message) => {
            if (message === null) {
              cancelled(new AmqpError({ reason: "ChannelLost", message: "the broker cancelled the reply consumer" }))
            } else {
              cast(message)
            }
          }, { noAck: true })).pipe(Effect.as({ meta })),
      status,
      events: {
        connected: (channel, meta) => cast(new Connected(new Session(channel, options.confirm, meta))),
        ready: () => cast(readyEvent),
        lost: (error, setup) => cast(new Lost(error, setup)),
        gaveUp: (error) => cast(new GaveUp(error))
      }
    }
    // The session of the channel `connected` announced, made active by `handleReady`.
    let announced: Session | undefined = undefined
    const readyEvent = new Ready()

    const noreplyUnchanged = Process.noreply(undefined as State)
    const noreply = (state: State) => state === noreplyUnchanged.state ? noreplyUnchanged : Process.noreply(state)

    const afterRequest = (
      result: RequestResult<State, Reason>,
      from: Process.From<ReplyValue>,
      request: Request
    ): Process.CallResult<ReplyValue, State, Reason> | typeof result => {
      switch (result?._tag) {
        case "Proceed":
          table.submit(request, from)
          return noreply(result.state)
        case "ProceedWith":
          request.payload = toBuffer(result.payload)
          request.routingKey = result.routingKey
          request.options = result.options
          table.submit(request, from)
          return noreply(result.state)
        case "Reply":
          return Process.reply(toBuffer(result.value), result.state)
        case "StopReply":
          return Process.stopReply(result.reason, toBuffer(result.value), result.state)
        default:
          // Stop is passed on as is; anything else crashes the process with BadReturn.
          return result
      }
    }

    const onChannelEvent = (
      event: ChannelEvent,
      current: State
    ): Process.Returns<Process.HandleResult<State, Reason>, R> => {
      if (event instanceof Returned) {
        table.onReturn(event.message)
      } else if (event instanceof Nacked) {
        table.onNacked(event.session, event.key)
      } else if (event instanceof Connected) {
        announced = event.session
        return callbacks.connected === undefined ? noreply(current) : callbacks.connected(event.session.meta, current)
      } else if (event instanceof Ready) {
        const session = announced
        if (session === undefined || !session.alive) return noreply(current)
        // Parked requests go out only after handleReady let the client go on.
        const activate = (result: Process.HandleResult<State, Reason>) => {
          if (result?._tag === "NoReply") table.activate(session)
          return result
        }
        return callbacks.handleReady === undefined
          ? activate(noreply(current))
          : mapResult(callbacks.handleReady(session.meta, current), activate)
      } else if (event instanceof Lost) {
        if (announced !== undefined) announced.alive = false
        announced = undefined
        table.deactivate(event.error)
        const reason = event.setup === undefined ? undefined : setupReason(event.setup)
        if (reason !== undefined) {
          const failure = new RpcChannelSetupFailed({
            client: name,
            reason,
            step: event.setup!.step,
            cause: event.error
          })
          table.setupFailure = failure
          table.failWaiting(failure)
        }
      } else if (event instanceof GaveUp) {
        return Effect.fail(table.setupFailure ?? event.error)
      }
      return noreply(current)
    }

    const behaviour: Process.Behaviour<Arg, State, Call, ReplyValue, Cast, Info, Reason, R | Scope.Scope> = {
      init: (initArg, self) =>
        Effect.flatMap(
          toEffect(callbacks.init(initArg)) as Effect.Effect<Process.InitResult<State, Reason>, unknown, R>,
          (result): Effect.Effect<Process.InitResult<State, Reason>, never, Scope.Scope> => {
            if (result?._tag !== "Ok") return Effect.succeed(result)
            selfBox.ref = self
            // Supervised by the process: forked into the scope `start` runs init in, interrupted by terminate.
            return Effect.forkScoped(
              ChannelOwner.run(connection, spec).pipe(Effect.annotateLogs("rpc.client", name))
            ).pipe(
              Effect.map((fiber) => {
                owner.fiber = fiber
                return result
              })
            )
          }
        ),
      handleCall: (request, from, current) => {
        if (request instanceof Drain) {
          table.stopping = true
          table.failWaiting(stoppedWhileStopping)
          if (table.inFlight.size === 0) return Process.reply(EMPTY, current)
          table.drainers.push(from)
          return noreply(current)
        }
        table.count("requests")
        if (table.stopping) return Process.reply(stoppedWhileStopping, current)
        if (table.setupFailure !== undefined) return Process.reply(table.setupFailure, current)
        if (handleRequest === undefined) {
          table.submit(request, from)
          return noreply(current)
        }
        return mapResult(
          handleRequest(request.payload, request.routingKey, request.options, current),
          (result) => afterRequest(result, from, request)
        ) as Process.Returns<Process.CallResult<ReplyValue, State, Reason>, R>
      },
      handleCast: (message, current) => {
        if (message instanceof ChannelEvent) return onChannelEvent(message, current)
        table.onReply(message)
        return noreply(current)
      },
      handleInfo: (message, current) =>
        callbacks.handleInfo === undefined ? noreply(current) : callbacks.handleInfo(message, current),
      handleAbandoned: (from, current) => {
        table.abandon(table.prefix + from.id)
        return noreply(current)
      },
      terminate: (reason, current) => {
        table.stopping = true
        const closeChannel = Effect.suspend(() => {
          const fiber = owner.fiber
          owner.fiber = undefined
          return fiber === undefined ? Effect.void : Fiber.interrupt(fiber)
        }).pipe(Effect.zipRight(SubscriptionRef.set(status, { _tag: "Stopped" })))
        const user = callbacks.terminate === undefined
          ? Effect.void
          : Effect.suspend(() => toEffect(callbacks.terminate!(reason, current)))
        return Effect.ensuring(user, closeChannel)
      }
    }

    const ref = yield* Process.start(behaviour, arg, { name, scheduler: clientScheduler })
    const publicRef = ref as unknown as Process.ProcessRef<never, unknown, never, Info, Reason>

    /** Stops accepting and waits (bounded) for the replies in flight; the caller then stops the process. */
    const drainAndWait = Effect.zipRight(
      SubscriptionRef.set(status, { _tag: "Stopped" }),
      Effect.ignore(Process.call(ref, drain, { timeout: options.drainTimeout }))
    )

    // Closing the scope stops gracefully too (this finalizer runs before the process's own).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => Process.isAlive(ref) ? Effect.zipRight(drainAndWait, Process.stopNow(ref)) : Effect.void)
    )

    const failed = (
      error: Process.CallTimeout | Process.ProcessExited<Reason>,
      request: Request,
      timeout: Duration.Duration
    ) => {
      if (error._tag === "CallTimeout") {
        table.count("timeouts")
        return new RpcTimeout({ client: name, routingKey: request.routingKey, timeout, published: request.published })
      }
      return table.stopped(error.reason)
    }

    const defaultTimeout = options.timeout
    const defaultCallOptions: Process.CallOptions = { timeout: defaultTimeout }
    const request: Client<Info, Reason>["request"] = (payload, routingKey = "", publishOptions, timeout) => {
      const duration = timeout === undefined ? defaultTimeout : Duration.decode(timeout)
      const body = toBuffer(payload)
      const given = publishOptions ?? noOptions
      const callOptions = timeout === undefined ? defaultCallOptions : { timeout: duration }
      // The returned Effect may be run many times (and concurrently): each run is a request of its own, with
      // its own `Request` (it carries the run's correlation id, `From` and `published` flag).
      const call: Effect.Effect<Buffer, RequestError> = Effect.suspend(() => {
        const message = new Request(body, routingKey, given)
        return Effect.matchEffect(Process.call(ref, message, callOptions), {
          onFailure: (error) => Effect.fail(failed(error, message, duration)),
          onSuccess: (value: ReplyValue) => Buffer.isBuffer(value) ? Effect.succeed(value) : Effect.fail(value)
        })
      })
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

    const runtime = yield* Effect.runtime<never>()
    const isCallError = (error: unknown): error is Process.CallTimeout | Process.ProcessExited<Reason> =>
      typeof error === "object" && error !== null && "_tag" in error &&
      (error._tag === "CallTimeout" || error._tag === "ProcessExited")
    const unsafeRequestPromise: Client<Info, Reason>["unsafeRequestPromise"] = (
      payload,
      routingKey = "",
      publishOptions,
      timeout
    ) => {
      if (spans) {
        return Runtime.runPromiseExit(runtime, request(payload, routingKey, publishOptions, timeout)).then((exit) =>
          exit._tag === "Success" ? exit.value : Promise.reject(Cause.squash(exit.cause))
        )
      }
      let duration: Duration.Duration
      try {
        duration = timeout === undefined ? defaultTimeout : Duration.decode(timeout)
      } catch (error) {
        return Promise.reject(error)
      }
      const message = new Request(toBuffer(payload), routingKey, publishOptions ?? noOptions)
      return Process.unsafeCallPromise(ref, message, timeout === undefined ? defaultCallOptions : { timeout: duration })
        .then(
          (value: ReplyValue) => Buffer.isBuffer(value) ? value : Promise.reject(value),
          (error: unknown) => Promise.reject(isCallError(error) ? failed(error, message, duration) : error)
        )
    }

    const client: Client<Info, Reason> = {
      name,
      ref: publicRef,
      request,
      unsafeRequestPromise,
      send: (message) => Process.send(publicRef, message),
      stop: (...reason: [] | [Reason]) =>
        Effect.suspend(() => {
          if (!Process.isAlive(ref)) return Process.await(publicRef)
          return Effect.zipRight(
            drainAndWait,
            reason.length === 0 ? Process.exit(publicRef) : Process.exit(publicRef, reason[0])
          )
        }),
      await: Process.await(publicRef),
      state: status,
      stats: Effect.sync(() => table.stats())
    }
    return client
  })
