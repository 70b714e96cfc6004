import amqp from "amqplib"
import type * as Amqp from "amqplib"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import { identity } from "effect/Function"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as FiberSet from "effect/FiberSet"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AmqpError, describe } from "./amqpError.js"
import { Reconnect as Backoff } from "@warren/process"
import { type AmqpConnectError, classify, connectError, detail, timedOut } from "./connectError.js"
import { type ConnectionOptions, resolveConfig, type Target } from "./connectionConfig.js"
import { coalesceWrites } from "./writeCoalescing.js"

export type { ConnectionOptions, TlsOptions } from "./connectionConfig.js"
export { redact } from "./connectionConfig.js"

/** Connection lifecycle as seen by channel owners. */
export type ConnectionState =
  | { readonly _tag: "Connecting"; readonly attempt: number }
  | { readonly _tag: "Connected"; readonly generation: number; readonly url: string }
  | { readonly _tag: "Disconnected"; readonly error: AmqpError; readonly retryIn: Option.Option<Duration.Duration> }
  | { readonly _tag: "Closed" }

/** The service: the connection state and a way to get channels on whatever connection is current. */
export interface AmqpConnectionShape {
  /** The connection state; read-only by convention (only the connection sets it). */
  readonly state: SubscriptionRef.SubscriptionRef<ConnectionState>
  /**
   * Opens a channel, waiting while disconnected (as long as the caller waits: bound it with the caller's own
   * timeout). Nothing leaks when the caller gives up: a channel that opens after the caller left is closed at
   * once. The channel is closed when the caller's scope closes. A channel error never closes the connection.
   */
  readonly openChannel: OpenChannel
  /** Waits until connected, or fails with AmqpError "Closed" if the connection is closed or gave up. */
  readonly awaitConnected: Effect.Effect<void, AmqpError>
}

/** The connection service tag. */
export class AmqpConnection extends Context.Tag("@warren/amqp/AmqpConnection")<AmqpConnection, AmqpConnectionShape>() {}

/** `openChannel`'s overloads: `{ confirm: true }` gives a ConfirmChannel (publisher confirms). */
export interface OpenChannel {
  (options: { readonly confirm: true }): Effect.Effect<Amqp.ConfirmChannel, AmqpError, Scope.Scope>
  (options?: { readonly confirm?: false | undefined }): Effect.Effect<Amqp.Channel, AmqpError, Scope.Scope>
  (
    options?: { readonly confirm?: boolean | undefined }
  ): Effect.Effect<Amqp.Channel | Amqp.ConfirmChannel, AmqpError, Scope.Scope>
}

// ---------------------------------------------------------------------------------------------------------------
// Connections and channels as amqplib objects plus what their events told us

interface Live {
  readonly model: Amqp.ChannelModel
  readonly display: string
  readonly lost: Deferred.Deferred<AmqpError>
  generation: number
  closed: boolean
  error: Error | undefined
}

interface ChannelInfo {
  readonly live: Live
  closed: boolean
  error: Error | undefined
}

const channelInfos = new WeakMap<Amqp.Channel, ChannelInfo>()

/** Destroys the model's socket (last resort when a clean close does not complete). */
const destroySocket = (model: Amqp.ChannelModel): void => {
  const connection: object = model.connection
  if (!("stream" in connection)) return
  const stream = connection.stream
  if (typeof stream === "object" && stream !== null && "destroy" in stream && typeof stream.destroy === "function") {
    Reflect.apply(stream.destroy, stream, [])
  }
}

const closeModel = (model: Amqp.ChannelModel, timeout: Duration.Duration): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    model.close().then(() => resume(Effect.void), () => resume(Effect.void))
  }).pipe(
    Effect.timeout(timeout),
    Effect.catchAll(() => Effect.sync(() => destroySocket(model)))
  )

const closeChannel = (channel: Amqp.Channel, timeout: Duration.Duration): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (channelInfos.get(channel)?.closed === true) return Effect.void
    return Effect.async<void>((resume) => {
      channel.close().then(() => resume(Effect.void), () => resume(Effect.void))
    }).pipe(Effect.timeout(timeout), Effect.ignore)
  })

/** Why a closed channel is gone. Evaluate it after the close event's call stack (connection close emits the
 *  channels' 'close' before its own). */
const lostError = (channel: Amqp.Channel): AmqpError => {
  const info = channelInfos.get(channel)
  if (info !== undefined && info.live.closed) {
    return new AmqpError({
      reason: "ConnectionLost",
      message: `channel closed with its connection: ${info.live.error?.message ?? "connection closed"}`,
      cause: info.live.error
    })
  }
  return new AmqpError({
    reason: "ChannelLost",
    message: info?.error === undefined ? "channel closed" : `channel closed: ${info.error.message}`,
    cause: info?.error
  })
}

/** False once the channel has closed (known for channels opened by an AmqpConnection; others count as open). */
export const isChannelOpen = (channel: Amqp.Channel): boolean => channelInfos.get(channel)?.closed !== true

/**
 * Fails (never succeeds) once the channel is closed: AmqpError "ChannelLost" for a channel-level close (the
 * broker's error is the cause), "ConnectionLost" when the whole connection went away.
 */
export const channelLost = (channel: Amqp.Channel): Effect.Effect<never, AmqpError> =>
  Effect.async<never, AmqpError>((resume) => {
    const fail = () => resume(Effect.suspend(() => Effect.fail(lostError(channel))))
    if (channelInfos.get(channel)?.closed === true) {
      fail()
      return
    }
    channel.once("close", fail)
    return Effect.sync(() => {
      channel.removeListener("close", fail)
    })
  })

// ---------------------------------------------------------------------------------------------------------------
// The service

const stateCode = (state: ConnectionState): number => state._tag === "Connected" ? 1 : 0

/** Builds a reconnecting connection whose life is the current scope. */
export const make = (options: ConnectionOptions): Effect.Effect<AmqpConnectionShape, AmqpError, Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* resolveConfig(options)
    // Work started from amqplib callbacks (logs, releasing a channel nobody waits for) runs in fibers of a
    // FiberSet in the connection's scope: supervised by it, interrupted when the connection closes.
    const forkSupervised = yield* FiberSet.makeRuntime<never>()
    const tag = config.connectionName ?? "default"
    const connects = Metric.counter("warren_amqp_connection_connects_total", {
      description: "Successful AMQP connects (including reconnects)",
      incremental: true
    }).pipe(Metric.tagged("connection", tag))
    const connectFailures = Metric.counter("warren_amqp_connection_connect_failures_total", {
      description: "Failed AMQP connect attempts (every URL of an attempt failed)",
      incremental: true
    }).pipe(Metric.tagged("connection", tag))
    const disconnects = Metric.counter("warren_amqp_connection_disconnects_total", {
      description: "Established AMQP connections that were lost",
      incremental: true
    }).pipe(Metric.tagged("connection", tag))
    const connectedGauge = Metric.gauge("warren_amqp_connection_connected", {
      description: "1 while the AMQP connection is up, else 0"
    }).pipe(Metric.tagged("connection", tag))

    const state = yield* SubscriptionRef.make<ConnectionState>({ _tag: "Connecting", attempt: 1 })
    let current: Live | undefined
    let generation = 0
    let lastError: AmqpError | undefined
    const openChannels = new Set<Amqp.Channel>()

    const setState = (next: ConnectionState) =>
      SubscriptionRef.set(state, next).pipe(Effect.zipRight(Metric.set(connectedGauge, stateCode(next))))

    let gaveUp = false

    const closedError = () =>
      new AmqpError({
        reason: "Closed",
        message: gaveUp && lastError !== undefined
          ? `AMQP connection closed: gave up reconnecting after ${lastError.message}`
          : "AMQP connection closed",
        cause: lastError
      })

    const logFromCallback = (message: string, cause: unknown) =>
      forkSupervised(
        Effect.logWarning(message, describe(cause)).pipe(Effect.annotateLogs("amqp.connection", tag))
      )

    // -- connecting ------------------------------------------------------------------------------------------

    const attach = (model: Amqp.ChannelModel, target: Target, lost: Deferred.Deferred<AmqpError>): Live => {
      const live: Live = { model, display: target.display, lost, generation: 0, closed: false, error: undefined }
      coalesceWrites(model)
      model.on("error", (error: Error) => {
        live.error = error
      })
      model.on("close", (error?: Error) => {
        live.closed = true
        if (error !== undefined) live.error = error
        Deferred.unsafeDone(
          lost,
          Exit.succeed(
            new AmqpError({
              reason: "ConnectionLost",
              message: `connection to ${target.display} lost: ${live.error?.message ?? "closed"}`,
              cause: live.error
            })
          )
        )
      })
      model.on("blocked", (reason: string) => logFromCallback("AMQP connection blocked by the broker", reason))
      model.on("unblocked", () => logFromCallback("AMQP connection unblocked", "unblocked"))
      return live
    }

    /**
     * Opens a resource with a Promise-returning amqplib call so that it is never leaked: if the caller has gone
     * (interrupted, or `guard` failed it, e.g. a timeout) by the time the resource arrives, it is released at once.
     */
    const openReleasing = <A, E>(
      open: () => Promise<A>,
      release: (resource: A) => Effect.Effect<void>,
      onError: (cause: unknown) => E,
      guard: (opening: Effect.Effect<A, E>) => Effect.Effect<A, E>
    ): Effect.Effect<A, E> => {
      const box: { opened: { readonly resource: A } | undefined; abandoned: boolean } = {
        opened: undefined,
        abandoned: false
      }
      return Effect.uninterruptibleMask((restore) =>
        restore(guard(Effect.async<A, E>((resume) => {
          open().then(
            (resource) => {
              if (box.abandoned) {
                forkSupervised(release(resource))
                return
              }
              box.opened = { resource }
              resume(Effect.succeed(resource))
            },
            (cause: unknown) => resume(Effect.fail(onError(cause)))
          )
          return Effect.sync(() => {
            box.abandoned = true
          })
        }))).pipe(
          // Opened, but the caller left at that very moment (timeout race, interruption): release it.
          Effect.onExit((exit) =>
            Exit.isFailure(exit) && box.opened !== undefined ? release(box.opened.resource) : Effect.void
          )
        )
      )
    }

    /** One URL: the connection, or why not (a timeout is probed once to tell a dead host from a silent port). */
    const connectOne = (target: Target): Effect.Effect<Live, AmqpConnectError> =>
      Effect.flatMap(Deferred.make<AmqpError>(), (lost) =>
        openReleasing(
          () => amqp.connect(target.connectUrl, config.socketOptions).then((model) => attach(model, target, lost)),
          (live) => closeModel(live.model, config.closeTimeout),
          (cause) => connectError(target.display, classify(cause), detail(target, cause), cause),
          Effect.timeoutFail({
            duration: config.connectTimeout,
            onTimeout: () => connectError(target.display, "Timeout", undefined)
          })
        )).pipe(
          Effect.catchIf(
            (error) => error.reason === "Timeout",
            (error) =>
              Effect.flatMap(
                timedOut(target.connectUrl, target.display, config.connectTimeout, error.cause),
                Effect.fail
              )
          )
        )

    /** Every URL in order until one connects; else an AmqpError "Connect" naming each failure (cause: the last). */
    const connectAny: Effect.Effect<Live, AmqpError> = Effect.gen(function*() {
      const failures: Array<AmqpConnectError> = []
      for (const target of config.targets) {
        const result = yield* Effect.either(connectOne(target))
        if (Either.isRight(result)) return result.right
        failures.push(result.left)
      }
      return yield* new AmqpError({
        reason: "Connect",
        message: failures.map((failure) => failure.message).join("; "),
        cause: failures[failures.length - 1]
      })
    })

    /** Publishes a fresh connection, waits until it is lost; closes it cleanly if interrupted. */
    const session = (live: Live): Effect.Effect<AmqpError> =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          generation += 1
          live.generation = generation
          current = live
        }),
        () =>
          setState({ _tag: "Connected", generation: live.generation, url: live.display }).pipe(
            Effect.zipRight(Metric.increment(connects)),
            Effect.zipRight(Effect.logInfo(`AMQP connected to ${live.display}`)),
            Effect.zipRight(Deferred.await(live.lost)),
            Effect.tap(() => Metric.increment(disconnects))
          ),
        () =>
          Effect.suspend(() => {
            if (current === live) current = undefined
            if (live.closed) return Effect.void
            const channels = Array.from(openChannels).filter((channel) => channelInfos.get(channel)?.live === live)
            return Effect.forEach(channels, (channel) => closeChannel(channel, config.closeTimeout), {
              concurrency: "unbounded",
              discard: true
            }).pipe(Effect.zipRight(closeModel(live.model, config.closeTimeout)))
          })
      )

    const loop: Effect.Effect<void> = Effect.gen(function*() {
      const backoff = Backoff.make(config.reconnect)
      let attempt = 0
      while (true) {
        attempt += 1
        // (the state starts as Connecting { attempt: 1 })
        if (generation > 0 || attempt > 1) yield* setState({ _tag: "Connecting", attempt })
        const connected = yield* Effect.either(connectAny)
        let error: AmqpError
        if (Either.isRight(connected)) {
          attempt = 0
          yield* backoff.reset
          error = yield* session(connected.right)
        } else {
          error = connected.left
          yield* Metric.increment(connectFailures)
        }
        lastError = error
        const retryIn = yield* backoff.next(error)
        // One WARN per failure, with the reason and what happens next: a person watching the logs can act on it.
        const what = error.reason === "Connect"
          ? `AMQP connect attempt ${attempt} failed: ${error.message}`
          : `AMQP connection lost: ${error.message}`
        if (Option.isNone(retryIn)) {
          gaveUp = true
          yield* Effect.logWarning(`${what}; giving up (the reconnect schedule ended)`)
          yield* setState({ _tag: "Closed" })
          return
        }
        const delay = Duration.format(Duration.millis(Math.round(Duration.toMillis(retryIn.value))))
        yield* Effect.logWarning(`${what}; next attempt in ${delay}`)
        yield* setState({ _tag: "Disconnected", error, retryIn })
        yield* Effect.sleep(retryIn.value)
      }
    }).pipe(Effect.annotateLogs("amqp.connection", tag))

    yield* Effect.addFinalizer(() => setState({ _tag: "Closed" }))
    yield* Effect.forkScoped(Effect.interruptible(loop))

    // -- channels --------------------------------------------------------------------------------------------

    const liveFor = (s: ConnectionState): Option.Option<Either.Either<Live, AmqpError>> => {
      if (s._tag === "Closed") return Option.some(Either.left(closedError()))
      if (s._tag === "Connected" && current !== undefined && current.generation === s.generation && !current.closed) {
        return Option.some(Either.right(current))
      }
      return Option.none()
    }

    const awaitLive: Effect.Effect<Live, AmqpError> = state.changes.pipe(
      Stream.filterMap(liveFor),
      Stream.runHead,
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(closedError()),
        onSome: (result) => result
      }))
    )

    const track = (channel: Amqp.Channel, live: Live) => {
      const info: ChannelInfo = { live, closed: false, error: undefined }
      channelInfos.set(channel, info)
      openChannels.add(channel)
      // Always listen for 'error': with no listener, amqplib would throw it out of its frame handler and the
      // whole connection would die (amqplib #649).
      channel.on("error", (error: Error) => {
        info.error = error
        logFromCallback("AMQP channel error (the connection stays up)", error)
      })
      channel.on("handler-error", (error: unknown, event: string) => {
        logFromCallback(`AMQP channel '${event}' listener threw`, error)
      })
      channel.once("close", () => {
        info.closed = true
        openChannels.delete(channel)
      })
    }

    const openOn = (
      live: Live,
      confirm: boolean,
      scope: Scope.Scope
    ): Effect.Effect<Amqp.Channel, AmqpError> =>
      openReleasing(
        () =>
          (confirm ? live.model.createConfirmChannel() : live.model.createChannel()).then((channel) => {
            track(channel, live)
            return channel
          }),
        (channel) => closeChannel(channel, config.closeTimeout),
        (cause) =>
          new AmqpError({ reason: "ChannelOpen", message: `could not open a channel: ${describe(cause)}`, cause }),
        identity
      ).pipe(Effect.tap((channel) => Scope.addFinalizer(scope, closeChannel(channel, config.closeTimeout))))

    const openChannelAny = (options?: { readonly confirm?: boolean | undefined }) =>
      Effect.gen(function*() {
        const scope = yield* Effect.scope
        while (true) {
          const live = yield* awaitLive
          const opened = yield* Effect.either(openOn(live, options?.confirm === true, scope))
          if (Either.isRight(opened)) return opened.right
          // The connection went away while the channel was opening: wait for the next one.
          if (!live.closed) return yield* Effect.fail(opened.left)
        }
      }).pipe(Effect.withSpan("AmqpConnection.openChannel", { attributes: { "amqp.connection": tag } }))

    return {
      state,
      openChannel: openChannelAny as OpenChannel,
      awaitConnected: Effect.asVoid(awaitLive)
    }
  })
