/** RPC servers: a behaviour server (a process) and a stateless `serve`, both on the channel owner. */
import * as Process from "@warren/process/Process"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AmqpError } from "./amqpError.js"
import { AmqpConnection as AmqpConnectionTag } from "./connection.js"
import { type Resolved, ServerConfig, type ServerOptions, resolve } from "./rpcServerConfig.js"
import {
  type Behaviour,
  type ChannelMeta,
  type Handler,
  type Ready,
  type ReadyMeta,
  reply,
  type RequestMeta,
  type Running,
  type Server,
  ServerTypeId,
  type ServerStatus
} from "./rpcServerModel.js"
import { countersFor } from "./rpcServerMetrics.js"
import { type Delivery, Link, type Sink, session } from "./rpcServerChannel.js"
import { processDelivery } from "./rpcServerRequests.js"

/** Waits until the server consumes on a channel and returns that status; fails once the server stopped. */
export const awaitReady = (server: Running): Effect.Effect<Ready, AmqpError> =>
  server.status.changes.pipe(
    Stream.filter((status) => status._tag === "Ready" || status._tag === "Stopped"),
    Stream.runHead,
    Effect.flatMap((status) =>
      Option.isSome(status) && status.value._tag === "Ready"
        ? Effect.succeed(status.value)
        : Effect.fail(new AmqpError({ reason: "Closed", message: `RPC server ${server.name} stopped` }))
    )
  )

export const makeLink = (config: Resolved) =>
  Effect.map(
    SubscriptionRef.make<ServerStatus>({ _tag: "Connecting", attempt: 1 }),
    (status) => new Link(config, status, countersFor(config.name))
  )

export type Message<Info> =
  | { readonly _tag: "Delivery"; readonly delivery: Delivery }
  | { readonly _tag: "Connected"; readonly meta: ChannelMeta }
  | { readonly _tag: "Ready"; readonly meta: ReadyMeta }
  | { readonly _tag: "SessionEnded"; readonly error: AmqpError }
  | { readonly _tag: "Info"; readonly message: Info }

export class ServerImpl<in Info, out Reason> implements Server<Info, Reason> {
  declare readonly [ServerTypeId]: { readonly _Info: (_: Info) => void; readonly _Reason: () => Reason }
  readonly name: string
  readonly status: SubscriptionRef.SubscriptionRef<ServerStatus>
  constructor(
    readonly process: Process.ProcessRef<never, unknown, never, never, Reason>,
    link: Link,
    readonly sendInfo: (message: Info) => boolean
  ) {
    this.name = link.config.name
    this.status = link.status
  }
}

export const toEffect = <A, R>(result: Process.Returns<A, R>): Effect.Effect<A, unknown, R> =>
  Effect.isEffect(result) ? (result as Effect.Effect<A, unknown, R>) : Effect.succeed(result as A)

/** Sends `message` to the server's `handleInfo` (dropped if the server has stopped). */
export const send = <Info>(server: Server<Info, unknown>, message: Info): Effect.Effect<void> =>
  Effect.sync(() => {
    if (server instanceof ServerImpl) server.sendInfo(message)
  })

/**
 * Starts a behaviour server (Hare's `start_link`): validates the config, runs `init`, then opens its channel,
 * declares, consumes, and keeps doing so after every channel or connection loss. Returns after `init`; use
 * `awaitReady` to wait for the consumer. Requests are handled one at a time, in order, with the state threaded
 * through. The server stops when the scope closes (after the request in hand; unacked requests are requeued by
 * the broker), when a handler returns `stop`, or when it crashes (`handleInfo` / `connected` failure).
 */
export const start = <Arg, State, Info = never, Reason = never, R = never>(
  behaviour: Behaviour<Arg, State, Info, Reason, R>,
  config: ServerConfig,
  arg: Arg,
  options?: ServerOptions
): Effect.Effect<
  Server<Info, Reason>,
  AmqpError | Process.InitStopped<Reason> | Process.InitIgnored,
  AmqpConnectionTag | R | Scope.Scope
> =>
  Effect.gen(function*() {
    const resolved = yield* resolve(config, options)
    const connection = yield* AmqpConnectionTag
    const scope = yield* Effect.scope
    // Created before the process, so closed after it: the request in hand is answered and acked on an open channel.
    const sessionScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const link = yield* makeLink(resolved)
    let server: ServerImpl<Info, Reason> | undefined

    const processBehaviour: Process.Behaviour<Arg, State, never, never, never, Message<Info>, Reason, R> = {
      init: (initArg, self) => {
        const created = new ServerImpl<Info, Reason>(self, link, (message) => Process.unsafeSend(self, { _tag: "Info", message }))
        server = created
        return behaviour.init(initArg, created)
      },
      handleInfo: (message, state) => {
        switch (message._tag) {
          case "Delivery":
            return processDelivery(
              link,
              message.delivery,
              (payload, meta) => toEffect(behaviour.handleRequest(payload, meta, state))
            ).pipe(
              Effect.map(Option.match({
                onNone: () => Process.noreply(state),
                onSome: (result) =>
                  result._tag === "Stop" ? Process.stop(result.reason, result.state) : Process.noreply(result.state)
              }))
            )
          case "Connected":
            return behaviour.connected === undefined ? Process.noreply(state) : behaviour.connected(message.meta, state)
          case "Ready":
            return behaviour.handleReady === undefined ? Process.noreply(state) : behaviour.handleReady(message.meta, state)
          case "SessionEnded":
            return Effect.fail(message.error)
          case "Info":
            return behaviour.handleInfo === undefined ? Process.noreply(state) : behaviour.handleInfo(message.message, state)
        }
      },
      ...(behaviour.terminate === undefined ? {} : {
        terminate: (reason: Process.ExitReason<Reason>, state: State) => behaviour.terminate!(reason, state)
      })
    }

    const ref = yield* Process.start(processBehaviour, arg, { name: `RpcServer(${resolved.name})` }).pipe(
      Effect.onError(() => Scope.close(sessionScope, Exit.void))
    )
    const sink: Sink = {
      delivery: (delivery) => {
        Process.unsafeSend(ref, { _tag: "Delivery", delivery })
      },
      connected: (meta) => {
        Process.unsafeSend(ref, { _tag: "Connected", meta })
      },
      ready: (meta) => {
        Process.unsafeSend(ref, { _tag: "Ready", meta })
      },
      gaveUp: (error) => {
        Process.unsafeSend(ref, { _tag: "SessionEnded", error })
      }
    }
    // The channel owner's fiber lives in `sessionScope` (a child of the caller's scope, closed after the process)
    // and ends with the process: supervised by that scope.
    yield* session(link, connection, sink).pipe(
      (running) => Effect.raceFirst(running, Effect.asVoid(Process.await(ref))),
      Effect.ensuring(SubscriptionRef.set(link.status, { _tag: "Stopped" })),
      Effect.interruptible,
      Effect.forkIn(sessionScope)
    )
    return server!
  })

/** Waits until the server's status is Stopped (its channel closed). */
export const awaitStopped = (server: Running): Effect.Effect<void> =>
  server.status.changes.pipe(Stream.takeUntil((status) => status._tag === "Stopped"), Stream.runDrain)

/**
 * Stops a behaviour server like `gen_server:stop` and waits until it has exited and closed its channel (requests
 * it had not acknowledged are requeued by the broker). Returns the exit reason.
 */
export const exit = <Reason>(server: Server<never, Reason>, ...reason: [] | [Reason]): Effect.Effect<Process.ExitReason<Reason>> =>
  (reason.length === 0 ? Process.exit(server.process) : Process.exit(server.process, reason[0])).pipe(
    Effect.zipLeft(awaitStopped(server))
  )

/** Waits for a behaviour server to stop (exited, channel closed) and returns why. */
export const awaitExit = <Reason>(server: Server<never, Reason>): Effect.Effect<Process.ExitReason<Reason>> =>
  Process.await(server.process).pipe(Effect.zipLeft(awaitStopped(server)))

/**
 * Serves a stateless handler: up to `concurrency` requests at once (default 1), each answered with the
 * handler's bytes. Lives until the scope closes (in-flight requests are interrupted and requeued by the broker).
 */
export const serve = <E, R>(
  config: ServerConfig,
  handler: Handler<E, R>,
  options?: ServerOptions
): Effect.Effect<Running, AmqpError, AmqpConnectionTag | R | Scope.Scope> =>
  Effect.gen(function*() {
    const resolved = yield* resolve(config, options)
    const connection = yield* AmqpConnectionTag
    const link = yield* makeLink(resolved)
    const deliveries = yield* Queue.unbounded<Delivery>()
    yield* Effect.addFinalizer(() => Queue.shutdown(deliveries))
    // The channel owner first, so that on close the workers stop before the channel closes. Both are fibers of
    // the caller's scope (supervised by it: closing it interrupts them).
    yield* session(link, connection, {
      delivery: (delivery) => {
        Queue.unsafeOffer(deliveries, delivery)
      },
      connected: () => {},
      ready: () => {},
      gaveUp: () => {}
    }).pipe(
      Effect.ensuring(SubscriptionRef.set(link.status, { _tag: "Stopped" })),
      Effect.interruptible,
      Effect.forkScoped
    )
    const run = (payload: Buffer, meta: RequestMeta) => Effect.map(handler(payload, meta), (response) => reply(response, undefined))
    const worker = Effect.forever(Effect.flatMap(Queue.take(deliveries), (delivery) => processDelivery(link, delivery, run)))
    for (let i = 0; i < resolved.concurrency; i++) yield* Effect.forkScoped(Effect.interruptible(worker))
    return { name: resolved.name, status: link.status }
  })

// The public names of the server's other modules, for `RpcServer.ts`.
export * from "./rpcServerConfig.js"
export * from "./rpcServerModel.js"
export * from "./rpcServerMetrics.js"
export * from "./rpcServerRequests.js"
