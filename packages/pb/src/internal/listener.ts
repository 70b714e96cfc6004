/**
 * A lean TCP listener on `node:net`: hands every accepted socket to a callback, and keeps nothing per connection.
 *
 * It replaces `NodeSocketServer` for the PB server (see docs/decisions.md, "PB server: own listener"): that one
 * wraps every connection in a platform `Socket` (latch, scope, FiberSet, context, closures) the PB connection never
 * uses, since it reads the raw `Net.Socket` itself; measured, that wrapper was about half of the server's heap per
 * idle connection.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"

/** Where and how to listen. */
export interface ListenOptions {
  readonly host: string
  readonly port: number
  readonly backlog: number
  readonly noDelay: boolean
  readonly keepAlive: boolean
}

/** The address actually bound. */
export interface BoundAddress {
  readonly host: string
  readonly port: number
}

/**
 * Listens and calls `onConnection` for every accepted socket (half-open allowed: the handler decides when to end).
 * When the scope closes: new connections are refused, `shutdown` runs (it ends the live connections), then the
 * listening socket is closed.
 */
export const listen = (
  options: ListenOptions,
  onConnection: (socket: Net.Socket) => void,
  shutdown: Effect.Effect<void>
): Effect.Effect<BoundAddress, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    let accepting = true
    const server = Net.createServer({ allowHalfOpen: true, noDelay: options.noDelay, keepAlive: options.keepAlive })
    server.on("connection", (socket: Net.Socket) => {
      if (accepting) onConnection(socket)
      else socket.destroy()
    })
    yield* Effect.acquireRelease(
      Effect.async<void, Error>((resume) => {
        const onError = (error: Error) => resume(Effect.fail(error))
        server.once("error", onError)
        server.listen({ host: options.host, port: options.port, backlog: options.backlog }, () => {
          server.off("error", onError)
          // Later errors of the listening socket (rare: EMFILE is retried by Node) are logged, not thrown.
          server.on("error", (error) => runFork(Effect.logError("PB server listener error", Cause.fail(error))))
          resume(Effect.void)
        })
      }),
      () =>
        Effect.suspend(() => {
          accepting = false
          return shutdown
        }).pipe(
          Effect.zipRight(Effect.async<void>((resume) => {
            server.close(() => resume(Effect.void))
          }))
        )
    )
    const address = server.address()
    return typeof address === "object" && address !== null
      ? { host: address.address, port: address.port }
      : { host: String(address), port: 0 }
  })
