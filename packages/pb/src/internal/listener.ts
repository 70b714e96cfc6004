/**
 * The listener (riak's `riak_api_pb_listener`): takes accepted sockets and starts each connection as a child of
 * the server's supervisor; refuses connections beyond `maxConnections`; closes idle connections.
 */
import { EagerScheduler } from "@warren/process"
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scheduler from "effect/Scheduler"
import type * as Scope from "effect/Scope"
import type * as Net from "node:net"
import type { Registry } from "../ServiceRegistry.js"
import type { ByteBudget } from "./budget.js"
import { Connection } from "./connection.js"
import { errorText, Texts } from "./errors.js"
import { frame } from "./frame.js"
import * as Metrics from "./metrics.js"
import type { SecurityConfig } from "./security.js"
import type { ConnectionState } from "./state.js"

/** Per-connection settings, validated by PbServer. */
export interface ConnectionConfig {
  readonly nodelay: boolean
  readonly keepalive: boolean
  readonly maxFrameSize: number
  readonly maxConnections: number
  readonly idleTimeout: Duration.Duration | undefined
  readonly streamIdleTimeout: Duration.Duration | undefined
  readonly mailboxCapacity: number
  readonly flushBytes: number
  readonly readBufferBytes: number
  readonly closeTimeout: Duration.Duration
  readonly security: SecurityConfig | undefined
}

/** What all connections of a server share. */
export interface ServerContext {
  readonly config: ConnectionConfig
  readonly registry: Registry
  readonly budget: ByteBudget
  /** The server's clock (Effect's `Clock`: timeouts and the idle sweep follow it, and `TestClock` in tests). */
  readonly clock: Clock.Clock
  readonly connections: Map<number, Connection>
  /** Runs the connections' fibers (internal/scheduler.ts). */
  readonly scheduler: Scheduler.Scheduler
  /** Removes a finished connection. */
  readonly unregister: (connection: Connection) => void
}

/** Makes the shared context. */
export const makeContext = (
  config: ConnectionConfig,
  registry: Registry,
  budget: ByteBudget,
  clock: Clock.Clock
): ServerContext => {
  const connections = new Map<number, Connection>()
  return {
    config,
    registry,
    budget,
    clock,
    connections,
    // A connection's fiber waits only for its socket and for the Effects it runs itself: when such an Effect's
    // fiber wakes it, it serves on at once (nested), as it does when a socket event wakes it.
    scheduler: EagerScheduler.make({ nestUnderFibers: true }),
    unregister: (connection) => {
      if (connections.get(connection.id) === connection) {
        connections.delete(connection.id)
        Metrics.connectionsActive.unsafeUpdate(connections.size, [])
      }
    }
  }
}

/**
 * A connection's life, run by the supervisor as a child in its own Scope: the Scope's finalizer closes the socket;
 * the behaviour state is in a Ref; the loop serves until the client is done, the connection idles out, or the
 * fiber is interrupted (peer gone, server shutting down).
 */
export const serve = (server: ServerContext, id: number, raw: Net.Socket): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const initial: ConnectionState = {
      instances: new Map(),
      security: server.config.security === undefined ? { _tag: "Off" } : { _tag: "AwaitStartTls" },
      streaming: undefined
    }
    const ref = yield* Ref.make(initial)
    const connection = new Connection(id, raw, server, ref, scope, initial)
    server.connections.set(id, connection)
    Metrics.connectionsActive.unsafeUpdate(server.connections.size, [])
    yield* Effect.addFinalizer((exit) => release(server, connection, exit))
    yield* Effect.withFiberRuntime<void>((fiber) => {
      connection.fiber = fiber
      connection.attach(raw)
      connection.updateReading()
      return Effect.void
    })
    yield* connection.loop()
  }).pipe(
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(`PB connection ${id} failed`, cause)
    )
  )

/**
 * The connection's Scope finalizer: releases the socket. After a normal finish the socket is ended gracefully (the
 * last replies go out) and destroyed if the peer has not closed within `closeTimeout`; when interrupted (the peer
 * is gone, or the server is shutting down) it is destroyed at once. The connection is listed until its socket is
 * released.
 */
const release = (server: ServerContext, connection: Connection, exit: Exit.Exit<unknown, unknown>) =>
  Effect.suspend(() => {
    const socket = connection.finish()
    if (socket.destroyed || Exit.isInterrupted(exit) || connection.closed) {
      socket.destroy()
      server.unregister(connection)
      return Effect.void
    }
    socket.end()
    return Effect.ensuring(
      awaitCloseOrDestroy(socket, server.config.closeTimeout),
      Effect.sync(() => server.unregister(connection))
    )
  })

/** Refuses a connection beyond `maxConnections`: an error reply, then a graceful close (destroyed on timeout). */
export const refuse = (raw: Net.Socket, config: ConnectionConfig): Effect.Effect<void> =>
  Effect.suspend(() => {
    Metrics.recordErrors("too_many_connections", 1)
    raw.on("error", () => {})
    raw.end(frame(errorText(Texts.tooManyConnections)))
    return awaitCloseOrDestroy(raw, config.closeTimeout)
  })

/** Waits for the peer to close a socket we ended; destroys it after `timeout`. */
const awaitCloseOrDestroy = (socket: Net.Socket, timeout: Duration.Duration): Effect.Effect<void> =>
  awaitClose(socket).pipe(
    // A finalizer runs uninterruptibly; the wait must be interruptible for the timeout to end it.
    Effect.interruptible,
    Effect.timeoutOption(timeout),
    Effect.flatMap((closed) => Option.isNone(closed) ? Effect.sync(() => socket.destroy()) : Effect.void)
  )

const awaitClose = (socket: Net.Socket): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (socket.closed) return resume(Effect.void)
    const done = () => resume(Effect.void)
    socket.once("close", done)
    return Effect.sync(() => socket.off("close", done))
  })

/**
 * The idle sweep, on the server's clock: one fiber for the whole server instead of a timer per connection (an
 * idle connection then costs no timer). A connection's activity is noted by the sweep that follows it (serving
 * reads no clock), and the connection is closed between `idleTimeout` and 1.25x that after its last activity (at
 * most two sweeps of `idleTimeout / 8` late).
 */
export const idleSweep = (server: ServerContext, idleTimeout: Duration.Duration): Effect.Effect<never> => {
  const idleMs = Duration.toMillis(idleTimeout)
  const every = Duration.millis(Math.min(Math.max(idleMs / 8, 10), 500))
  const sweep = Effect.sync(() => {
    const now = server.clock.unsafeCurrentTimeMillis()
    for (const connection of server.connections.values()) connection.checkIdle(now, idleMs)
  })
  return Effect.repeat(sweep, Schedule.spaced(every)).pipe(Effect.zipRight(Effect.never))
}
