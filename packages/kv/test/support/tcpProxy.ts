/**
 * A TCP forwarder in front of the test database, for outage tests that must not disturb other tests sharing
 * the server: refused while stopped, forwarding while started; stopping cuts every forwarded connection (a
 * database outage as a client sees it). Works the same with the private cluster and with `DATABASE_URL`.
 */
import { Effect } from "effect"
import * as net from "node:net"

export interface TcpProxy {
  /** `target` with host and port replaced by the proxy's. */
  readonly url: string
  /** Starts listening (connections are forwarded). */
  readonly start: Effect.Effect<void>
  /** Stops listening and cuts every forwarded connection. */
  readonly stop: Effect.Effect<void>
  /**
   * Stops moving bytes in either direction, keeping every connection open (a stalled network or a hung
   * server: nothing is lost, nothing arrives) until `unstall`.
   */
  readonly stall: Effect.Effect<void>
  readonly unstall: Effect.Effect<void>
}

const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A stopped proxy to the server of `target` (a postgres:// URL); stopped when the scope closes. */
export const makeProxy = (target: string) =>
  Effect.gen(function*() {
    const upstream = new URL(target)
    const port = yield* freePort
    const sockets = new Set<net.Socket>()
    let server: net.Server | undefined
    let stalled = false

    const start = Effect.async<void>((resume) => {
      const created = net.createServer((client) => {
        const database = net.connect(Number(upstream.port || 5432), upstream.hostname)
        sockets.add(client)
        sockets.add(database)
        const drop = () => {
          client.destroy()
          database.destroy()
          sockets.delete(client)
          sockets.delete(database)
        }
        client.on("error", drop).on("close", drop)
        database.on("error", drop).on("close", drop)
        client.pipe(database)
        database.pipe(client)
        if (stalled) {
          client.pause()
          database.pause()
        }
      })
      server = created
      created.listen(port, "127.0.0.1", () => resume(Effect.void))
    })

    const stop = Effect.async<void>((resume) => {
      const current = server
      server = undefined
      for (const socket of sockets) socket.destroy()
      sockets.clear()
      if (current === undefined) resume(Effect.void)
      else current.close(() => resume(Effect.void))
    })

    const stall = Effect.sync(() => {
      stalled = true
      for (const socket of sockets) socket.pause()
    })
    const unstall = Effect.sync(() => {
      stalled = false
      for (const socket of sockets) socket.resume()
    })

    yield* Effect.addFinalizer(() => stop)
    const url = new URL(target)
    url.hostname = "127.0.0.1"
    url.port = String(port)
    return { url: url.toString(), start, stop, stall, unstall } satisfies TcpProxy
  })
