/**
 * A TCP forwarder in front of the test broker, for tests that need a broker "port" they control: refused
 * while stopped, forwarding to the real broker while started, and able to cut every forwarded connection at
 * once (a network failure as the client sees it, without touching the broker or other tests).
 */
import { Effect } from "effect"
import * as net from "node:net"

export interface TcpProxy {
  /** The proxy's port (refused while stopped). */
  readonly port: number
  /** `url` with host and port replaced by the proxy's. */
  readonly url: string
  /** Starts listening (connections are forwarded to the broker). */
  readonly start: Effect.Effect<void>
  /** Stops listening and cuts every forwarded connection. */
  readonly stop: Effect.Effect<void>
  /** Cuts every forwarded connection but keeps listening. */
  readonly cut: Effect.Effect<void>
}

const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A stopped proxy to the broker at `target` (an amqp:// URL). Stopped when the scope closes. */
export const makeProxy = (target: string) =>
  Effect.gen(function*() {
    const upstream = new URL(target)
    const port = yield* freePort
    const sockets = new Set<net.Socket>()
    let server: net.Server | undefined

    const cut = Effect.sync(() => {
      for (const socket of sockets) socket.destroy()
      sockets.clear()
    })

    const start = Effect.async<void>((resume) => {
      const created = net.createServer((client) => {
        const broker = net.connect(Number(upstream.port || 5672), upstream.hostname)
        sockets.add(client)
        sockets.add(broker)
        const drop = () => {
          client.destroy()
          broker.destroy()
          sockets.delete(client)
          sockets.delete(broker)
        }
        client.on("error", drop).on("close", drop)
        broker.on("error", drop).on("close", drop)
        client.pipe(broker)
        broker.pipe(client)
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

    yield* Effect.addFinalizer(() => stop)
    const url = new URL(target)
    url.hostname = "127.0.0.1"
    url.port = String(port)
    return { port, url: url.toString(), start, stop, cut } satisfies TcpProxy
  })
