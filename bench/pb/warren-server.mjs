// warren's PB server (@warren/pb PbServer, default options: nodelay on) with the basic service (ping) and a tiny
// echo service registered through the PB service API on the spare codes 200 (request) / 201 (reply).
import { childArgs, failChild, NotAvailable } from "../lib/child.mjs"
import { ECHO_REQ, ECHO_RESP } from "./frames.mjs"
import { serveStats } from "./stats-endpoint.mjs"

const { port = 0 } = childArgs()

try {
  const pb = await import("@warren/pb").catch((error) => {
    throw new NotAvailable(`@warren/pb could not be loaded (${error.message}); run tsc -b`)
  })
  const { BasicService, PbServer, PbService, ServiceRegistry } = pb
  if (PbServer?.layer === undefined || BasicService?.make === undefined) {
    throw new NotAvailable("@warren/pb does not export PbServer.layer and BasicService.make yet")
  }
  const { Effect, Either, Fiber } = await import("effect")

  /** Replies with the request body under code 201. */
  const echo = PbService.make({
    name: "bench_echo",
    init: () => undefined,
    decode: (_code, body) => PbService.decoded(body),
    encode: (body) => {
      const out = new Uint8Array(1 + body.length)
      out[0] = ECHO_RESP
      out.set(body, 1)
      return Either.right(out)
    },
    process: (body, state) => PbService.reply(body, state)
  })

  const program = Effect.gen(function*() {
    const server = yield* PbServer.PbServer
    process.send({ type: "ready", port: server.address.port })
    return yield* Effect.never
  }).pipe(
    Effect.provide(PbServer.layer({ port })),
    Effect.provide(ServiceRegistry.registered([
      ...BasicService.registrations(BasicService.make()),
      ServiceRegistry.registration(echo, ECHO_REQ)
    ])),
    Effect.provide(ServiceRegistry.layer)
  )
  const fiber = Effect.runFork(program)
  fiber.addObserver((exit) => {
    if (exit._tag === "Failure") failChild(new Error(`PbServer stopped: ${String(exit.cause)}`))
  })
  serveStats(() => ({}), () => Effect.runPromise(Fiber.interrupt(fiber)))
} catch (error) {
  failChild(error)
}
